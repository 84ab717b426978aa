//! Buffers the probes move data between: plain `cuMemAlloc` device memory (registrable with
//! ibverbs, unlike pool memory), pinned host memory that is *not* write-combined (the staged
//! TCP path reads it with the CPU), a mapped host flag for the start gate, and dmabuf export of
//! device memory for `ibv_reg_dmabuf_mr`.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, PinnedHostSlice};

use super::{CallContext, GpuError};

/// GPU page size used to round device allocations (what GPUDirect pins and maps): 64 KiB.
pub const GPU_PAGE_BYTES: usize = 64 * 1024;

/// First driver version with `cuMemGetHandleForAddressRange` (CUDA 11.7).
pub const DMABUF_MIN_DRIVER: i32 = 11070;

/// `len` rounded up to a whole number of `page`s (`page` a power of two). Zero stays zero.
pub fn round_up(len: usize, page: usize) -> usize {
    debug_assert!(page.is_power_of_two());
    len.div_ceil(page) * page
}

/// The host-page-aligned window a dmabuf export must cover for `[ptr, ptr+len)`:
/// `(aligned_start, offset_of_ptr_in_window, window_len)`. ibverbs then registers
/// `len` bytes at `offset` inside the dmabuf with iova `ptr`.
pub fn dmabuf_window(ptr: u64, len: usize, host_page: usize) -> (u64, u64, usize) {
    let page = host_page as u64;
    let start = ptr & !(page - 1);
    let offset = ptr - start;
    (start, offset, round_up(len + offset as usize, host_page))
}

/// The host page size.
pub fn host_page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

/// Device memory from `cuMemAlloc` (not a pool), freed on drop.
#[derive(Debug)]
pub struct DeviceBuffer {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
    len: usize,
}

// SAFETY: the buffer is a device address plus an Arc to its context; the driver API is
// thread-safe and every use binds the context to the calling thread first.
unsafe impl Send for DeviceBuffer {}
// SAFETY: shared references only read the address and length.
unsafe impl Sync for DeviceBuffer {}

impl DeviceBuffer {
    /// Allocates `len` bytes (rounded up to [`GPU_PAGE_BYTES`]) and fills them with `fill`.
    pub fn new(ctx: &Arc<CudaContext>, len: usize, fill: u8) -> Result<Self, GpuError> {
        if len == 0 {
            return Err(GpuError::Invalid("device buffer of 0 bytes".into()));
        }
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let alloc = round_up(len, GPU_PAGE_BYTES);
        // SAFETY: the context is current; the returned pointer is owned by `Self` and freed
        // exactly once in Drop.
        let ptr = unsafe { result::malloc_sync(alloc) }.call("cuMemAlloc")?;
        let buf = DeviceBuffer { ctx: ctx.clone(), ptr, len };
        // SAFETY: `ptr` points to `alloc >= len` bytes of device memory allocated above.
        unsafe { result::memset_d8_sync(ptr, fill, alloc) }.call("cuMemsetD8")?;
        Ok(buf)
    }

    /// The device address.
    pub fn ptr(&self) -> sys::CUdeviceptr {
        self.ptr
    }

    /// Usable length in bytes (as asked for).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (zero-length buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The owning context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Marks the allocation for synchronous memory operations, which GPUDirect RDMA through
    /// nvidia-peermem requires so that CUDA copies and NIC writes are ordered.
    pub fn set_sync_memops(&self) -> Result<(), GpuError> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let one: u32 = 1;
        // SAFETY: the attribute takes a pointer to an unsigned int that lives across the call;
        // `self.ptr` is a live allocation of this context.
        unsafe {
            sys::cuPointerSetAttribute(
                &one as *const u32 as *const std::ffi::c_void,
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_SYNC_MEMOPS,
                self.ptr,
            )
        }
        .result()
        .call("cuPointerSetAttribute(SYNC_MEMOPS)")
    }

    /// Exports the buffer as a dmabuf: `(fd, offset of the buffer inside it)`. Needs a driver
    /// of CUDA 11.7 or later (`driver_version` from [`super::driver_status`]) and a device with
    /// dmabuf support; callers fall back to `ibv_reg_mr` (nvidia-peermem) otherwise.
    pub fn export_dmabuf(&self, driver_version: i32) -> Result<(OwnedFd, u64), GpuError> {
        if driver_version < DMABUF_MIN_DRIVER {
            return Err(GpuError::Invalid(format!(
                "dmabuf export needs CUDA driver 11.7 or later, this one is {}.{}",
                driver_version / 1000,
                driver_version % 1000 / 10
            )));
        }
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let (start, offset, window) = dmabuf_window(self.ptr, self.len, host_page_size());
        let mut fd: std::ffi::c_int = -1;
        // SAFETY: `fd` is a writable int the driver fills with a new file descriptor; the
        // window lies inside this allocation (it is rounded to host pages, and the allocation
        // to 64 KiB GPU pages from a 64 KiB aligned base).
        unsafe {
            sys::cuMemGetHandleForAddressRange(
                &mut fd as *mut std::ffi::c_int as *mut std::ffi::c_void,
                start,
                window,
                sys::CUmemRangeHandleType::CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD,
                0,
            )
        }
        .result()
        .call("cuMemGetHandleForAddressRange")?;
        if fd < 0 {
            return Err(GpuError::Invalid("cuMemGetHandleForAddressRange returned no descriptor".into()));
        }
        // SAFETY: the driver just created `fd` for us and nothing else owns it.
        Ok((unsafe { OwnedFd::from_raw_fd(fd) }, offset))
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `ptr` came from cuMemAlloc in `new` and is freed only here.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}

/// Page-locked host memory, portable across contexts and *not* write-combined (CPU reads of
/// write-combined memory are uncached and slow, which would throttle the TCP send).
pub struct PinnedBuffer {
    slice: PinnedHostSlice<u8>,
    ptr: *mut u8,
}

// SAFETY: the pinned allocation is plain host memory owned by `slice`; the raw pointer is only
// an alias of it, used for DMA sources/destinations and for slices handed out under `&`/`&mut`.
unsafe impl Send for PinnedBuffer {}
// SAFETY: `&self` only hands out the address and read-only views; ordering CPU reads after the
// copies that write the memory is the caller's duty (stream/event synchronisation), as for any
// DMA target.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    /// Allocates `len` bytes of pinned host memory (flags: `CU_MEMHOSTALLOC_PORTABLE`) on the
    /// NUMA node of `ctx`'s GPU: allocated and zeroed by a short-lived thread pinned to that
    /// node, so the pages land there whatever CPU the caller runs on (and its affinity stays).
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self, GpuError> {
        let node = super::device::numa_node(ctx.ordinal());
        crate::rdma::numa::run_pinned(std::path::Path::new("/sys"), node, || {
            Self::with_flags(ctx, len, sys::CU_MEMHOSTALLOC_PORTABLE)
        })
        .0
    }

    /// Allocates with explicit `cuMemHostAlloc` flags; write-combining is refused.
    pub fn with_flags(ctx: &Arc<CudaContext>, len: usize, flags: u32) -> Result<Self, GpuError> {
        if len == 0 {
            return Err(GpuError::Invalid("pinned buffer of 0 bytes".into()));
        }
        if flags & sys::CU_MEMHOSTALLOC_WRITECOMBINED != 0 {
            return Err(GpuError::Invalid("write-combined pinned memory is slow for CPU reads; not used".into()));
        }
        // SAFETY: the memory is uninitialised after the call; it is zeroed below before any read.
        let mut slice = unsafe { ctx.alloc_pinned_with_flags::<u8>(len, flags) }.call("cuMemHostAlloc")?;
        let ptr = slice.as_mut_ptr().call("cuEventSynchronize")?;
        // SAFETY: `ptr` points to `len` writable bytes just allocated and not yet shared.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(PinnedBuffer { slice, ptr })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// Always false (zero-length buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// Raw pointer for asynchronous copies. The caller orders CPU access after the copies
    /// that use it (stream or event synchronisation).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The bytes, for the CPU (after the copies that wrote them have completed).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` bytes for the life of `self`; callers synchronise
        // with outstanding copies before reading (documented on the type's users).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len()) }
    }

    /// The bytes, for the CPU to fill (no copy may be using them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` excludes other CPU references.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_allocations_to_pages() {
        assert_eq!(round_up(0, 4096), 0);
        assert_eq!(round_up(1, GPU_PAGE_BYTES), GPU_PAGE_BYTES);
        assert_eq!(round_up(GPU_PAGE_BYTES, GPU_PAGE_BYTES), GPU_PAGE_BYTES);
        assert_eq!(round_up(GPU_PAGE_BYTES + 1, GPU_PAGE_BYTES), 2 * GPU_PAGE_BYTES);
        assert_eq!(round_up(3 << 30, GPU_PAGE_BYTES), 3 << 30);
    }

    #[test]
    fn dmabuf_window_covers_the_buffer_on_page_bounds() {
        // Aligned pointer: no offset, length rounded to pages.
        assert_eq!(dmabuf_window(0x7f00_0000_0000, 10_000, 4096), (0x7f00_0000_0000, 0, 12_288));
        // Unaligned pointer: window starts at the page below, offset is the difference and the
        // window still covers the last byte.
        let (start, off, len) = dmabuf_window(0x1000_0123, 8192, 4096);
        assert_eq!((start, off), (0x1000_0000, 0x123));
        assert!(start + len as u64 >= 0x1000_0123 + 8192);
        assert_eq!(len % 4096, 0);
        assert_eq!(len, 12_288);
        assert!(host_page_size().is_power_of_two());
    }
}
