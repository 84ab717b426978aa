//! Page-aligned host memory for host-memory RDMA (isolates the NIC and cable from any GPU).

use std::alloc::{alloc_zeroed, dealloc, Layout};

use super::{RdmaError, Unavailable};

/// The soft `RLIMIT_MEMLOCK` of this process, bytes; `None` when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// Whether registering `need` bytes of host memory fits the locked-memory `limit` (`None`:
/// unlimited). Root (CAP_IPC_LOCK) is not bound by it. Checked before allocating, so a low
/// limit is a waiver naming the limit rather than an `ibv_reg_mr` ENOMEM mid-run.
pub fn check_memlock(limit: Option<u64>, need: u64, privileged: bool) -> Result<(), Unavailable> {
    match limit {
        Some(limit) if !privileged && need > limit => Err(Unavailable::Memlock { limit, need }),
        _ => Ok(()),
    }
}

/// [`check_memlock`] for this process.
pub fn check_memlock_here(need: u64) -> Result<(), Unavailable> {
    check_memlock(memlock_limit(), need, nix::unistd::geteuid().is_root())
}

/// Zeroed, page-aligned host memory, freed on drop.
pub struct HostBuffer {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is plain heap memory owned by this value.
unsafe impl Send for HostBuffer {}
// SAFETY: shared references only expose the address and read-only views.
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    /// `len` bytes aligned to `align` (a power of two, e.g. the page size).
    pub fn new(len: usize, align: usize) -> Result<HostBuffer, RdmaError> {
        if len == 0 {
            return Err(RdmaError::Invalid("host buffer of 0 bytes".into()));
        }
        let layout = Layout::from_size_align(len, align).map_err(|e| RdmaError::Invalid(format!("host buffer layout: {e}")))?;
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(RdmaError::Invalid(format!("cannot allocate {len} bytes of host memory")));
        }
        Ok(HostBuffer { ptr, layout })
    }

    /// Start address.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false (zero-length buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    /// The bytes (no RDMA write may be landing in them).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised (zeroed) bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len()) }
    }

    /// The bytes, to fill (no RDMA operation may be using them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` excludes other references.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len()) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated with exactly this layout and is freed once.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_memlock_limit_is_a_waiver_naming_it() {
        let need = 4u64 << 30;
        let w = check_memlock(Some(8 << 20), need, false).unwrap_err().to_string();
        assert!(w.contains("RLIMIT_MEMLOCK is 8388608 bytes") && w.contains("4294967296"), "{w}");
        assert!(check_memlock(Some(8 << 20), need, true).is_ok(), "root is not bound by it");
        assert!(check_memlock(None, need, false).is_ok(), "unlimited");
        assert!(check_memlock(Some(need), need, false).is_ok());
    }

    #[test]
    fn aligned_and_zeroed() {
        let mut b = HostBuffer::new(10_000, 4096).unwrap();
        assert_eq!(b.as_mut_ptr() as usize % 4096, 0);
        assert_eq!(b.len(), 10_000);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[9_999] = 7;
        assert_eq!(b.as_slice()[9_999], 7);
        assert!(HostBuffer::new(0, 4096).is_err());
        assert!(HostBuffer::new(1, 3).is_err());
    }
}
