//! The HIP stager of the GPU-staged TCP path (Path 3): one non-blocking stream on the GPU,
//! two pinned (non-coherent, not write-combined) host slots, one event per slot marking its
//! last copy. The pipeline itself is [`crate::gpu::staging`]'s, shared with CUDA.

use std::ffi::c_void;
use std::sync::Arc;

use super::memory::{HipDeviceBuffer, HipPinned};
use super::{check, ffi, set_device};
use crate::gpu::staging::{check_chunk, Stager, SLOTS};
use crate::gpu::GpuError;

/// Stages between one HIP device buffer and two pinned host slots.
pub struct HipStager {
    device: Arc<HipDeviceBuffer>,
    stream: ffi::hipStream_t,
    done: [ffi::hipEvent_t; SLOTS],
    slots: Vec<HipPinned>,
    pending: [bool; SLOTS],
}

// SAFETY: HIP handles are usable from any thread once the device is selected (each call
// selects it); the stager is used by one thread at a time (`&mut self`).
unsafe impl Send for HipStager {}

impl HipStager {
    /// Slots of `chunk` bytes (at most the buffer's length) staging to or from `device`.
    pub fn new(device: Arc<HipDeviceBuffer>, chunk: usize) -> Result<Self, GpuError> {
        let api = ffi::hip()?;
        let len = chunk.min(device.len());
        let slots = (0..SLOTS).map(|_| HipPinned::new(device.device(), len)).collect::<Result<Vec<_>, _>>()?;
        set_device(device.device())?;
        let mut s = HipStager {
            device,
            stream: std::ptr::null_mut(),
            done: [std::ptr::null_mut(); SLOTS],
            slots,
            pending: [false; SLOTS],
        };
        // SAFETY: writable out-pointers; destroyed once in Drop (null handles skipped).
        check("hipStreamCreateWithFlags", unsafe {
            (api.hipStreamCreateWithFlags)(&mut s.stream, ffi::HIP_STREAM_NON_BLOCKING)
        })?;
        for e in s.done.iter_mut() {
            // SAFETY: as above.
            check("hipEventCreate", unsafe { (api.hipEventCreate)(e) })?;
        }
        Ok(s)
    }

    fn copy(&mut self, slot: usize, offset: usize, len: usize, to_host: bool) -> Result<(), GpuError> {
        check_chunk(self.pending[slot], slot, offset, len, self.slots[slot].len(), self.device.len())?;
        let api = ffi::hip()?;
        set_device(self.device.device())?;
        let dev = (self.device.ptr() as *mut u8).wrapping_add(offset) as *mut c_void;
        let host = self.slots[slot].as_mut_ptr() as *mut c_void;
        let (dst, src, kind) =
            if to_host { (host, dev, ffi::HIP_MEMCPY_DEVICE_TO_HOST) } else { (dev, host, ffi::HIP_MEMCPY_HOST_TO_DEVICE) };
        // SAFETY: both ranges were checked to lie inside their buffers, which outlive the copy
        // (`wait` runs before a slot is reused or read, and Drop synchronises the stream).
        check("hipMemcpyAsync", unsafe { (api.hipMemcpyAsync)(dst, src as *const c_void, len, kind, self.stream) })?;
        // SAFETY: live event and stream of the current device.
        check("hipEventRecord", unsafe { (api.hipEventRecord)(self.done[slot], self.stream) })?;
        self.pending[slot] = true;
        Ok(())
    }
}

impl Stager for HipStager {
    fn start_d2h(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
        self.copy(slot, offset, len, true)
    }

    fn start_h2d(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
        self.copy(slot, offset, len, false)
    }

    fn wait(&mut self, slot: usize) -> Result<(), GpuError> {
        if self.pending[slot] {
            let api = ffi::hip()?;
            // SAFETY: live event recorded on this stager's stream.
            check("hipEventSynchronize", unsafe { (api.hipEventSynchronize)(self.done[slot]) })?;
            self.pending[slot] = false;
        }
        Ok(())
    }

    fn slot(&self, slot: usize) -> &[u8] {
        self.slots[slot].as_slice()
    }

    fn slot_mut(&mut self, slot: usize) -> &mut [u8] {
        self.slots[slot].as_mut_slice()
    }
}

impl Drop for HipStager {
    fn drop(&mut self) {
        let Ok(api) = ffi::hip() else { return };
        let _ = set_device(self.device.device());
        // SAFETY: handles made in `new`, destroyed only here, after the stream drained.
        unsafe {
            if !self.stream.is_null() {
                let _ = (api.hipStreamSynchronize)(self.stream);
            }
            for e in self.done {
                if !e.is_null() {
                    let _ = (api.hipEventDestroy)(e);
                }
            }
            if !self.stream.is_null() {
                let _ = (api.hipStreamDestroy)(self.stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_checks_are_the_shared_ones() {
        assert!(check_chunk(false, 0, 0, 4096, 4096, 8192).is_ok());
        assert!(check_chunk(true, 1, 0, 1, 4096, 8192).unwrap_err().to_string().contains("in flight"));
        assert!(check_chunk(false, 0, 8000, 400, 4096, 8192).unwrap_err().to_string().contains("does not fit"));
        assert!(check_chunk(false, 0, 0, 4097, 4096, 8192).is_err());
    }
}
