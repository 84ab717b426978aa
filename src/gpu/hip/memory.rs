//! HIP buffers: `hipMalloc` device memory (registrable with a NIC, exportable as a dmabuf
//! through the HSA runtime) and pinned host memory from `hipHostMalloc`.
//!
//! Pinned host buffers use `hipHostMallocPortable | hipHostMallocNonCoherent`: the copies
//! that touch them run on the SDMA engines and are ordered by stream events, no kernel polls
//! them while they run, so GPU-side coherence is not needed, and non-coherent host memory
//! spares every access the coherence protocol (ROCm's guidance for bulk transfers). Passing
//! the flag explicitly keeps `HIP_HOST_COHERENT` in the environment from changing what is
//! measured. The start-gate flag is the one coherent allocation (see [`super::copy`]).

use std::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd};

use super::{check, ffi, set_device};
use crate::gpu::memory::{dmabuf_window, host_page_size, round_up, GPU_PAGE_BYTES};
use crate::gpu::GpuError;

/// Where to export and register a HIP buffer as a dmabuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmabufRegion {
    /// Start of the exported range (host-page aligned, inside the allocation).
    pub export_ptr: u64,
    /// Bytes exported (whole host pages covering the buffer).
    pub export_len: usize,
    /// The buffer's offset inside the exported range.
    pub ptr_in_window: u64,
}

impl DmabufRegion {
    /// The range to export for `[ptr, ptr + len)` with host pages of `page` bytes.
    pub fn for_buffer(ptr: u64, len: usize, page: usize) -> DmabufRegion {
        let (export_ptr, ptr_in_window, export_len) = dmabuf_window(ptr, len, page);
        DmabufRegion { export_ptr, export_len, ptr_in_window }
    }

    /// The offset `ibv_reg_dmabuf_mr` takes: where the buffer lies in the dmabuf, given the
    /// offset of the exported range that `hsa_amd_portable_export_dmabuf` reported (the
    /// dmabuf covers the whole allocation, so the export start need not be its offset 0).
    pub fn mr_offset(&self, hsa_offset: u64) -> u64 {
        hsa_offset + self.ptr_in_window
    }
}

/// Device memory from `hipMalloc`, freed on drop.
#[derive(Debug)]
pub struct HipDeviceBuffer {
    device: usize,
    ptr: *mut c_void,
    len: usize,
}

// SAFETY: a device address and its ordinal; every use selects the device on the calling
// thread first, and the HIP runtime is thread-safe.
unsafe impl Send for HipDeviceBuffer {}
// SAFETY: shared references only read the address and length.
unsafe impl Sync for HipDeviceBuffer {}

impl HipDeviceBuffer {
    /// Allocates `len` bytes (rounded up to 64 KiB) on HIP device `device`, filled with `fill`.
    pub fn new(device: usize, len: usize, fill: u8) -> Result<Self, GpuError> {
        if len == 0 {
            return Err(GpuError::Invalid("device buffer of 0 bytes".into()));
        }
        let api = ffi::hip()?;
        set_device(device)?;
        let alloc = round_up(len, GPU_PAGE_BYTES);
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `ptr` is writable; the allocation is owned by Self and freed once in Drop.
        check("hipMalloc", unsafe { (api.hipMalloc)(&mut ptr, alloc) })?;
        let buf = HipDeviceBuffer { device, ptr, len };
        // SAFETY: `ptr` points to `alloc` bytes of device memory just allocated.
        check("hipMemset", unsafe { (api.hipMemset)(ptr, i32::from(fill), alloc) })?;
        Ok(buf)
    }

    /// The device address.
    pub fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Usable length, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (zero-length buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// HIP ordinal of the owning device.
    pub fn device(&self) -> usize {
        self.device
    }

    /// Exports the buffer as a dmabuf: `(fd, offset of the buffer inside it)`, for
    /// `ibv_reg_dmabuf_mr`. Needs ROCm 5.6+ (`hsa_amd_portable_export_dmabuf`) and a kernel
    /// whose amdgpu driver exports dmabufs; callers fall back to `ibv_reg_mr` (a peer-memory
    /// client such as amdgpu's `amd_peer_direct`) otherwise.
    pub fn export_dmabuf(&self) -> Result<(OwnedFd, u64), GpuError> {
        let hsa = ffi::hsa()?;
        // SAFETY: no arguments; hsa_init is reference counted and HIP has already called it.
        let rc = unsafe { (hsa.hsa_init)() };
        if rc != 0 {
            return Err(GpuError::Driver { call: "hsa_init", name: format!("hsa_status {rc:#x}") });
        }
        let region = DmabufRegion::for_buffer(self.ptr as u64, self.len, host_page_size());
        let (mut fd, mut offset): (std::ffi::c_int, u64) = (-1, 0);
        // SAFETY: the exported range lies inside this allocation (host-page rounded; the
        // allocation is rounded to 64 KiB); `fd` and `offset` are writable for the call.
        let rc = unsafe {
            (hsa.hsa_amd_portable_export_dmabuf)(region.export_ptr as *const c_void, region.export_len, &mut fd, &mut offset)
        };
        if rc != 0 || fd < 0 {
            return Err(GpuError::Driver { call: "hsa_amd_portable_export_dmabuf", name: format!("hsa_status {rc:#x}") });
        }
        // SAFETY: the runtime created `fd` for us; closing it (OwnedFd's drop) is what
        // hsa_amd_portable_close_dmabuf does.
        Ok((unsafe { OwnedFd::from_raw_fd(fd) }, region.mr_offset(offset)))
    }
}

impl Drop for HipDeviceBuffer {
    fn drop(&mut self) {
        if let Ok(api) = ffi::hip() {
            let _ = set_device(self.device);
            // SAFETY: `ptr` came from hipMalloc in `new` and is freed only here.
            let _ = unsafe { (api.hipFree)(self.ptr) };
        }
    }
}

/// Pinned host memory from `hipHostMalloc(Portable | NonCoherent)`, zeroed, freed on drop.
pub struct HipPinned {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain host memory owned by Self; the pointer is only an alias used for DMA and for
// slices handed out under `&`/`&mut`.
unsafe impl Send for HipPinned {}
// SAFETY: `&self` hands out the address and read-only views; ordering CPU reads after the
// copies that write it is the caller's duty (events), as for any DMA target.
unsafe impl Sync for HipPinned {}

/// The `hipHostMalloc` flags of copy buffers (see the module doc).
pub const PINNED_FLAGS: u32 = ffi::HIP_HOST_MALLOC_PORTABLE | ffi::HIP_HOST_MALLOC_NON_COHERENT;

impl HipPinned {
    /// Allocates `len` bytes on the NUMA node of HIP device `device` (by a short-lived thread
    /// pinned there, so the caller's affinity stays).
    pub fn new(device: usize, len: usize) -> Result<Self, GpuError> {
        let node = super::numa_node(device);
        crate::rdma::numa::run_pinned(std::path::Path::new("/sys"), node, || Self::alloc(len)).0
    }

    fn alloc(len: usize) -> Result<Self, GpuError> {
        if len == 0 {
            return Err(GpuError::Invalid("pinned buffer of 0 bytes".into()));
        }
        let api = ffi::hip()?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is writable; the memory is owned by Self and freed once in Drop.
        check("hipHostMalloc", unsafe { (api.hipHostMalloc)(&mut p, len, PINNED_FLAGS) })?;
        // SAFETY: `p` points to `len` writable bytes just allocated (first touch places them).
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, len) };
        Ok(HipPinned { ptr: p as *mut u8, len })
    }

    /// Length, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw pointer for asynchronous copies.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The bytes, for the CPU (after the copies that wrote them completed).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes, for the CPU to fill (no copy may be using them).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` excludes other CPU references.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for HipPinned {
    fn drop(&mut self) {
        if let Ok(api) = ffi::hip() {
            // SAFETY: `ptr` came from hipHostMalloc and is freed only here.
            let _ = unsafe { (api.hipHostFree)(self.ptr as *mut c_void) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmabuf_region_covers_the_buffer_on_host_pages() {
        let page = 4096;
        // hipMalloc returns aligned memory: nothing to shift, length rounded up to pages.
        let r = DmabufRegion::for_buffer(0x7f00_0000_0000, 10_000, page);
        assert_eq!(r, DmabufRegion { export_ptr: 0x7f00_0000_0000, export_len: 12_288, ptr_in_window: 0 });
        // A sub-buffer 0x123 bytes into a page: the export starts at the page below and still
        // covers the last byte.
        let (ptr, len) = (0x1000_0123u64, 8192usize);
        let r = DmabufRegion::for_buffer(ptr, len, page);
        assert_eq!(r.export_ptr, ptr - 0x123);
        assert_eq!(r.ptr_in_window, 0x123);
        assert_eq!(r.export_len % page, 0);
        assert!(r.export_ptr + r.export_len as u64 >= ptr + len as u64);
        assert_eq!(r.export_len, 3 * page, "8192 bytes from 0x123 touch three pages");
        // HSA reports where the exported range starts inside the allocation's dmabuf; the MR
        // offset adds the buffer's place in the range, and keeps the iova's page phase.
        let hsa_offset = 5 * page as u64;
        assert_eq!(r.mr_offset(hsa_offset), hsa_offset + 0x123);
        assert_eq!(r.mr_offset(hsa_offset) % page as u64, ptr % page as u64);
        // 64 KiB host pages (aarch64 kernels): the same rules at that page size.
        let r = DmabufRegion::for_buffer(0x2_0001_0000 + 70_000, 1, 65_536);
        assert_eq!((r.ptr_in_window, r.export_len), (70_000 - 65_536, 65_536));
    }

    #[test]
    fn pinned_copy_buffers_are_portable_and_non_coherent() {
        assert_eq!(PINNED_FLAGS & ffi::HIP_HOST_MALLOC_NON_COHERENT, 0x8000_0000);
        assert_eq!(PINNED_FLAGS & ffi::HIP_HOST_MALLOC_PORTABLE, 0x1);
        assert_eq!(PINNED_FLAGS & 0x4, 0, "never write-combined: the staged path reads it with the CPU");
    }

    #[test]
    fn without_rocm_allocation_is_a_waiver() {
        if ffi::hip().is_ok() {
            return;
        }
        assert!(matches!(HipDeviceBuffer::new(0, 1, 0), Err(GpuError::Unavailable(_))));
        assert!(matches!(HipPinned::new(0, 1), Err(GpuError::Unavailable(_))));
        assert!(matches!(HipPinned::new(0, 0), Err(GpuError::Invalid(_))));
    }
}
