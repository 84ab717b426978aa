//! One value per CUDA device for the whole run: the retained primary context and the loaded
//! gate module. Creating them per flow re-retained the context and re-JITed the PTX for every
//! measurement (milliseconds each, and a context churn the driver logs).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A per-device (by CUDA ordinal) cache whose values are made once, on first use, and kept
/// until the process ends. A failed initialisation is not cached: the next call tries again.
pub struct PerDevice<T> {
    map: Mutex<BTreeMap<usize, T>>,
}

impl<T: Clone> PerDevice<T> {
    /// An empty cache (usable in a `static`).
    pub const fn new() -> Self {
        PerDevice { map: Mutex::new(BTreeMap::new()) }
    }

    /// The value for `device`, made by `init` if there is none yet. The lock is held while
    /// `init` runs, so two flows starting together still make one value.
    pub fn get_or_try_init<E>(&self, device: usize, init: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = map.get(&device) {
            return Ok(v.clone());
        }
        let v = init()?;
        map.insert(device, v.clone());
        Ok(v)
    }
}

impl<T: Clone> Default for PerDevice<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_value_per_device_for_the_run() {
        static CACHE: PerDevice<usize> = PerDevice::new();
        let made = AtomicUsize::new(0);
        let make = |d: usize| {
            made.fetch_add(1, Ordering::SeqCst);
            Ok::<usize, String>(d * 10)
        };
        for _ in 0..5 {
            for d in 0..3 {
                assert_eq!(CACHE.get_or_try_init(d, || make(d)), Ok(d * 10));
            }
        }
        assert_eq!(made.load(Ordering::SeqCst), 3, "made once per device, not once per flow");
        // A failure is not remembered.
        assert_eq!(CACHE.get_or_try_init(7, || Err::<usize, _>("no device".to_string())), Err("no device".into()));
        assert_eq!(CACHE.get_or_try_init(7, || make(7)), Ok(70));
        // Threads racing on one device still make one value.
        let c = PerDevice::<usize>::new();
        let n = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| c.get_or_try_init(0, || Ok::<_, ()>(n.fetch_add(1, Ordering::SeqCst))));
            }
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
