//! A shared `dlopen` helper for the vendor libraries opened at run time (the HIP and HSA
//! runtimes, NVML): no build-time dependency on any of them, and a missing library or symbol
//! is the caller's waiver, never a loader error.

use std::ffi::{c_void, CString};

/// A `dlopen`ed library, never closed (it stays loaded for the process).
pub struct Lib(*mut c_void);

// SAFETY: a dlopen handle is a process-wide token; dlsym on it is thread-safe.
unsafe impl Send for Lib {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for Lib {}

impl Lib {
    /// The first of `names` that loads (`RTLD_NOW | RTLD_LOCAL`), or `None`.
    pub fn open<S: AsRef<str>>(names: &[S]) -> Option<Lib> {
        names.iter().find_map(|name| {
            let c = CString::new(name.as_ref()).ok()?;
            // SAFETY: `c` is a valid C string for the call; dlopen has no other preconditions.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            (!h.is_null()).then_some(Lib(h))
        })
    }

    /// The address of `name`, or `None` when the library does not export it.
    pub fn sym(&self, name: &str) -> Option<*mut c_void> {
        let c = CString::new(name).ok()?;
        // SAFETY: `self.0` is a live handle from dlopen; dlsym only looks the name up.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_that_does_not_exist_is_none_and_libc_resolves() {
        assert!(Lib::open(&["liblinkcal-no-such-library.so.9"]).is_none());
        // libc.so.6 is loaded in every Linux process: its `strlen` resolves, a made-up name does not.
        let libc = Lib::open(&["libc.so.6"]).expect("libc.so.6 loads");
        assert!(libc.sym("strlen").is_some());
        assert!(libc.sym("linkcal_no_such_symbol").is_none());
    }
}
