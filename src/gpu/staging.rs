//! The GPU-staged TCP pipeline (Path 3 without GPUDirect): the sender copies chunks of GPU
//! memory into pinned host slots and sends each as soon as its copy lands; the receiver reads
//! each chunk into a pinned slot and copies it up to the GPU. Two slots per side (double
//! buffering) overlap the PCIe copy of chunk n+1 with the network transfer of chunk n.
//!
//! The pipeline is written against [`Stager`], so its ordering rules (never touch a slot
//! whose copy is in flight, never reuse a slot before its copy finished) are tested here with
//! a host-memory stager that defers copies; [`CudaStager`] is the real one.

use std::io::{Read, Write};
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};

use super::memory::{DeviceBuffer, PinnedBuffer};
use super::{CallContext, GpuError};

/// Host slots per side: two, for double buffering.
pub const SLOTS: usize = 2;

/// One chunk of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the transfer.
    pub index: usize,
    /// Byte offset in the device buffer.
    pub offset: usize,
    /// Bytes in this chunk (the last may be short).
    pub len: usize,
    /// Host slot it passes through.
    pub slot: usize,
}

/// Splits `total` bytes into chunks of `chunk` bytes (the last one shorter), alternating
/// over `slots` host slots. Empty when `total` is 0.
pub fn chunk_schedule(total: usize, chunk: usize, slots: usize) -> Result<Vec<Chunk>, GpuError> {
    if chunk == 0 {
        return Err(GpuError::Invalid("chunk size must be at least 1 byte".into()));
    }
    if slots == 0 {
        return Err(GpuError::Invalid("at least one host slot is needed".into()));
    }
    Ok((0..total.div_ceil(chunk))
        .map(|index| {
            let offset = index * chunk;
            Chunk { index, offset, len: chunk.min(total - offset), slot: index % slots }
        })
        .collect())
}

/// Bytes of pinned host memory one side needs: one slot per chunk in flight, each as large as
/// a chunk (or the whole transfer when it is smaller than a chunk).
pub fn pinned_bytes_needed(total: usize, chunk: usize, slots: usize) -> usize {
    chunk.min(total.max(1)) * slots
}

/// The device side of the staged path: asynchronous copies between device memory and host
/// slots, each slot's last copy awaitable.
pub trait Stager {
    /// Starts copying device bytes `[offset, offset+len)` into host slot `slot`.
    fn start_d2h(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError>;
    /// Starts copying the first `len` bytes of host slot `slot` to device offset `offset`.
    fn start_h2d(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError>;
    /// Blocks until the last copy started on `slot` has finished (returns at once if none).
    fn wait(&mut self, slot: usize) -> Result<(), GpuError>;
    /// The slot's bytes, for the CPU (only after [`Stager::wait`]).
    fn slot(&self, slot: usize) -> &[u8];
    /// The slot's bytes, for the CPU to fill (only after [`Stager::wait`]).
    fn slot_mut(&mut self, slot: usize) -> &mut [u8];
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> GpuError {
    move |source| GpuError::Io { what, source }
}

/// Sender: GPU -> pinned slots -> `out`, chunk by chunk, double-buffered.
pub fn send_staged<S: Stager + ?Sized, W: Write>(
    stager: &mut S,
    out: &mut W,
    total: usize,
    chunk: usize,
) -> Result<(), GpuError> {
    let plan = chunk_schedule(total, chunk, SLOTS)?;
    for c in plan.iter().take(SLOTS) {
        stager.start_d2h(c.slot, c.offset, c.len)?;
    }
    for (n, c) in plan.iter().enumerate() {
        stager.wait(c.slot)?;
        out.write_all(&stager.slot(c.slot)[..c.len]).map_err(io("sending a staged chunk"))?;
        if let Some(next) = plan.get(n + SLOTS) {
            stager.start_d2h(next.slot, next.offset, next.len)?;
        }
    }
    out.flush().map_err(io("flushing the staged stream"))
}

/// Receiver: `inp` -> pinned slots -> GPU, chunk by chunk; returns when the last chunk is in
/// device memory.
pub fn receive_staged<S: Stager + ?Sized, R: Read>(
    stager: &mut S,
    inp: &mut R,
    total: usize,
    chunk: usize,
) -> Result<(), GpuError> {
    let plan = chunk_schedule(total, chunk, SLOTS)?;
    for c in &plan {
        // The slot's previous upload (chunk index - SLOTS) must finish before it is refilled.
        stager.wait(c.slot)?;
        inp.read_exact(&mut stager.slot_mut(c.slot)[..c.len]).map_err(io("receiving a staged chunk"))?;
        stager.start_h2d(c.slot, c.offset, c.len)?;
    }
    for slot in 0..SLOTS {
        stager.wait(slot)?;
    }
    Ok(())
}

/// The real stager: one stream on the GPU's context, pinned (not write-combined) slots, one
/// event per slot marking its last copy.
pub struct CudaStager {
    stream: Arc<CudaStream>,
    device: Arc<DeviceBuffer>,
    slots: Vec<PinnedBuffer>,
    done: Vec<CudaEvent>,
    pending: [bool; SLOTS],
}

impl CudaStager {
    /// Slots of `chunk` bytes each on `ctx`, staging to or from `device`.
    pub fn new(ctx: &Arc<CudaContext>, device: Arc<DeviceBuffer>, chunk: usize) -> Result<Self, GpuError> {
        let len = chunk.min(device.len());
        let slots = (0..SLOTS).map(|_| PinnedBuffer::new(ctx, len)).collect::<Result<Vec<_>, _>>()?;
        let done = (0..SLOTS)
            .map(|_| ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)).call("cuEventCreate"))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.new_stream().call("cuStreamCreate")?;
        Ok(CudaStager { stream, device, slots, done, pending: [false; SLOTS] })
    }

    fn check(&self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
        check_chunk(self.pending[slot], slot, offset, len, self.slots[slot].len(), self.device.len())
    }
}

/// The checks every stager makes before a copy (CUDA and HIP alike): the slot is not in
/// flight and the chunk fits the slot (`slot_len` bytes) and the device buffer (`device_len`).
pub fn check_chunk(
    pending: bool,
    slot: usize,
    offset: usize,
    len: usize,
    slot_len: usize,
    device_len: usize,
) -> Result<(), GpuError> {
    if pending {
        return Err(GpuError::Invalid(format!("slot {slot} reused while its copy is in flight")));
    }
    if len > slot_len || offset + len > device_len {
        return Err(GpuError::Invalid(format!("chunk [{offset}, {}) does not fit the buffers", offset + len)));
    }
    Ok(())
}

impl Stager for CudaStager {
    fn start_d2h(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
        self.check(slot, offset, len)?;
        self.stream.context().bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the slot holds `len` bytes and the device range lies inside the buffer
        // (checked above); both outlive the copy because `wait` is called before the slot is
        // read and before `self` is dropped (Drop synchronises the stream).
        unsafe {
            sys::cuMemcpyDtoHAsync_v2(
                self.slots[slot].as_mut_ptr() as *mut std::ffi::c_void,
                self.device.ptr() + offset as u64,
                len,
                self.stream.cu_stream(),
            )
        }
        .result()
        .call("cuMemcpyDtoHAsync")?;
        self.done[slot].record(&self.stream).call("cuEventRecord")?;
        self.pending[slot] = true;
        Ok(())
    }

    fn start_h2d(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
        self.check(slot, offset, len)?;
        self.stream.context().bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: as in `start_d2h`, with the copy reading the slot instead of writing it.
        unsafe {
            sys::cuMemcpyHtoDAsync_v2(
                self.device.ptr() + offset as u64,
                self.slots[slot].as_mut_ptr() as *const std::ffi::c_void,
                len,
                self.stream.cu_stream(),
            )
        }
        .result()
        .call("cuMemcpyHtoDAsync")?;
        self.done[slot].record(&self.stream).call("cuEventRecord")?;
        self.pending[slot] = true;
        Ok(())
    }

    fn wait(&mut self, slot: usize) -> Result<(), GpuError> {
        if self.pending[slot] {
            self.done[slot].synchronize().call("cuEventSynchronize")?;
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

impl Drop for CudaStager {
    fn drop(&mut self) {
        // The slots must not be freed under an in-flight copy.
        let _ = self.stream.synchronize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_covers_the_transfer_and_alternates_slots() {
        let plan = chunk_schedule(10, 4, 2).unwrap();
        assert_eq!(
            plan,
            vec![
                Chunk { index: 0, offset: 0, len: 4, slot: 0 },
                Chunk { index: 1, offset: 4, len: 4, slot: 1 },
                Chunk { index: 2, offset: 8, len: 2, slot: 0 },
            ]
        );
        for (total, chunk) in [(1, 1), (1 << 20, 4096), (1_000_003, 65_536), (5, 100)] {
            let plan = chunk_schedule(total, chunk, SLOTS).unwrap();
            assert_eq!(plan.iter().map(|c| c.len).sum::<usize>(), total);
            assert!(plan.windows(2).all(|w| w[0].offset + w[0].len == w[1].offset && w[0].slot != w[1].slot));
            assert!(plan.iter().all(|c| c.len <= chunk && c.len > 0));
        }
        assert!(chunk_schedule(0, 4, 2).unwrap().is_empty());
        assert!(chunk_schedule(10, 0, 2).is_err());
        assert!(chunk_schedule(10, 4, 0).is_err());
    }

    #[test]
    fn pinned_sizing() {
        assert_eq!(pinned_bytes_needed(100 << 20, 4 << 20, 2), 8 << 20);
        assert_eq!(pinned_bytes_needed(1000, 4 << 20, 2), 2000, "a small transfer needs no full chunk");
        assert_eq!(pinned_bytes_needed(0, 4096, 2), 2);
    }

    /// A host-memory stager whose copies stay pending until `wait`, and which panics on the
    /// ordering mistakes a real GPU would turn into silent corruption.
    struct DeferredStager {
        device: Vec<u8>,
        slots: Vec<Vec<u8>>,
        pending: Vec<Option<(bool, usize, usize)>>, // (d2h?, offset, len)
        log: Vec<String>,
    }

    impl DeferredStager {
        fn new(device: Vec<u8>, chunk: usize) -> Self {
            DeferredStager { device, slots: vec![vec![0; chunk]; SLOTS], pending: vec![None; SLOTS], log: vec![] }
        }
    }

    impl Stager for DeferredStager {
        fn start_d2h(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
            assert!(self.pending[slot].is_none(), "slot {slot} reused while in flight");
            self.pending[slot] = Some((true, offset, len));
            self.log.push(format!("d2h{slot}@{offset}"));
            Ok(())
        }
        fn start_h2d(&mut self, slot: usize, offset: usize, len: usize) -> Result<(), GpuError> {
            assert!(self.pending[slot].is_none(), "slot {slot} reused while in flight");
            self.pending[slot] = Some((false, offset, len));
            self.log.push(format!("h2d{slot}@{offset}"));
            Ok(())
        }
        fn wait(&mut self, slot: usize) -> Result<(), GpuError> {
            if let Some((d2h, off, len)) = self.pending[slot].take() {
                if d2h {
                    self.slots[slot][..len].copy_from_slice(&self.device[off..off + len]);
                } else {
                    self.device[off..off + len].copy_from_slice(&self.slots[slot][..len]);
                }
            }
            Ok(())
        }
        fn slot(&self, slot: usize) -> &[u8] {
            assert!(self.pending[slot].is_none(), "CPU read slot {slot} under an in-flight copy");
            &self.slots[slot]
        }
        fn slot_mut(&mut self, slot: usize) -> &mut [u8] {
            assert!(self.pending[slot].is_none(), "CPU wrote slot {slot} under an in-flight copy");
            &mut self.slots[slot]
        }
    }

    #[test]
    fn pipeline_moves_every_byte_in_order_without_slot_hazards() {
        for (total, chunk) in [(1, 7), (7, 7), (100_003, 4096), (65_536, 1000)] {
            let src: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
            let mut tx = DeferredStager::new(src.clone(), chunk);
            let mut rx = DeferredStager::new(vec![0; total], chunk);
            let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let sender = std::thread::spawn(move || {
                send_staged(&mut tx, &mut a, total, chunk).unwrap();
                tx.log
            });
            receive_staged(&mut rx, &mut b, total, chunk).unwrap();
            let tx_log = sender.join().unwrap();
            assert_eq!(rx.device, src, "total {total} chunk {chunk}");
            // Double buffering: both slots are filled before the first send completes.
            if total > chunk {
                assert_eq!(&tx_log[..2], ["d2h0@0", &format!("d2h1@{chunk}")]);
            }
            assert_eq!(tx_log.len(), total.div_ceil(chunk));
            assert!(rx.pending.iter().all(Option::is_none), "receiver returned with uploads in flight");
        }
    }

    #[test]
    fn a_short_stream_is_an_io_error_not_a_hang() {
        let mut rx = DeferredStager::new(vec![0; 100], 10);
        let mut input: &[u8] = &[1u8; 55];
        let e = receive_staged(&mut rx, &mut input, 100, 10).unwrap_err();
        assert!(e.to_string().contains("receiving a staged chunk"), "{e}");
    }
}
