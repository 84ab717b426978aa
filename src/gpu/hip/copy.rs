//! Event-timed SDMA copies on non-blocking HIP streams (peer, H2D, D2H), started together by
//! one start gate: the HIP side of [`crate::gpu::copy`], with its options and per-copy time.
//!
//! # The start gate: a stream wait on a value, not a spin kernel
//! Every lane's stream first waits (`hipStreamWaitValue32`, `>= 1`) on one 32-bit flag; the
//! copies and their events are queued behind the wait; one `hipStreamWriteValue32` of 1
//! releases every lane at once. Chosen over a spin kernel built at run time with hiprtc
//! because: the wait is a packet the command processor evaluates, so it needs no compiler
//! at run time (hiprtc pulls in the ROCm compiler libraries, often absent from runtime-only
//! images, and compiles per gfx target at start-up), holds no compute unit while it waits, and
//! cannot hang a GPU if the host dies (the flag lives in host memory and the process's
//! queues are torn down with it). The flag is allocated with `hipMallocSignalMemory`, the
//! memory `hipStreamWaitValue32` is documented for: an HSA signal in system memory, which the
//! command processors of every GPU can wait on (HIP's own cross-device event waits use the
//! same signals), so one write releases the lanes of several GPUs together.
//!
//! A device whose `hipDeviceAttributeCanUseStreamWaitValue` is 0 gets no gate: a single lane
//! is still timed exactly (its events bracket the copies on the GPU), but several lanes that
//! must start together are waived ([`choose_gate`]).

use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memory::{HipDeviceBuffer, HipPinned};
use super::{check, ffi, set_device};
use crate::gpu::copy::{per_copy_seconds, CopyOptions, LaneTimes};
use crate::gpu::{GpuError, Unavailable};

/// How the lanes of a set are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    /// Every stream waits on one flag; one write releases them all.
    StreamWait,
    /// No gate: each lane's copies start as they are queued (one lane only).
    Ungated,
}

/// The gate for lanes on devices with the given `hipStreamWaitValue32` support
/// (`(ordinal, supported)` per lane).
pub fn choose_gate(lanes: &[(usize, bool)]) -> Result<GateKind, Unavailable> {
    match lanes.iter().find(|(_, ok)| !ok) {
        None => Ok(GateKind::StreamWait),
        Some(_) if lanes.len() <= 1 => Ok(GateKind::Ungated),
        Some(&(device, _)) => Err(Unavailable::NoStartGate { device }),
    }
}

/// A non-blocking stream and its two timing events on one device.
struct Timed {
    device: usize,
    stream: ffi::hipStream_t,
    start: ffi::hipEvent_t,
    end: ffi::hipEvent_t,
}

// SAFETY: HIP stream and event handles are usable from any thread (each use selects the
// device first); a Timed is owned by one lane or gate and used by one thread at a time.
unsafe impl Send for Timed {}

impl Timed {
    fn new(device: usize) -> Result<Timed, GpuError> {
        let api = ffi::hip()?;
        set_device(device)?;
        let mut t = Timed { device, stream: std::ptr::null_mut(), start: std::ptr::null_mut(), end: std::ptr::null_mut() };
        // SAFETY: each out-pointer is writable; the handles are destroyed once in Drop (null
        // ones are skipped there, so a failure half-way frees what was made).
        check("hipStreamCreateWithFlags", unsafe {
            (api.hipStreamCreateWithFlags)(&mut t.stream, ffi::HIP_STREAM_NON_BLOCKING)
        })?;
        // SAFETY: as above.
        check("hipEventCreate", unsafe { (api.hipEventCreate)(&mut t.start) })?;
        // SAFETY: as above.
        check("hipEventCreate", unsafe { (api.hipEventCreate)(&mut t.end) })?;
        Ok(t)
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let Ok(api) = ffi::hip() else { return };
        let _ = set_device(self.device);
        // SAFETY: handles made in `new`, destroyed only here, after synchronising the stream.
        unsafe {
            if !self.stream.is_null() {
                let _ = (api.hipStreamSynchronize)(self.stream);
            }
            for e in [self.start, self.end] {
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

/// One side of a HIP copy.
pub enum HipSide {
    /// Device memory.
    Device(Arc<HipDeviceBuffer>),
    /// Pinned host memory.
    Host(Arc<HipPinned>),
}

impl HipSide {
    fn len(&self) -> usize {
        match self {
            HipSide::Device(d) => d.len(),
            HipSide::Host(h) => h.len(),
        }
    }
}

/// A lane: what it copies and the stream (on `driver`) that copies it.
pub struct HipLane {
    timed: Timed,
    src: HipSide,
    dst: HipSide,
}

impl HipLane {
    /// A lane copying `src` to `dst` on a new non-blocking stream of device `driver` (the
    /// source GPU for peer copies, so its SDMA engine pushes).
    pub fn new(driver: usize, src: HipSide, dst: HipSide) -> Result<HipLane, GpuError> {
        if matches!((&src, &dst), (HipSide::Host(_), HipSide::Host(_))) {
            return Err(GpuError::Invalid("host-to-host copies do not cross a GPU link".into()));
        }
        Ok(HipLane { timed: Timed::new(driver)?, src, dst })
    }

    fn enqueue(&self, api: &ffi::Hip, bytes: usize) -> Result<(), GpuError> {
        let s = self.timed.stream;
        // SAFETY: (all arms) the buffers are kept alive by the Arcs in `self` until the lane is
        // dropped, after its stream is synchronised; `bytes` was checked against both lengths.
        let rc = unsafe {
            match (&self.src, &self.dst) {
                (HipSide::Device(a), HipSide::Device(b)) => {
                    (api.hipMemcpyPeerAsync)(b.ptr(), b.device() as i32, a.ptr(), a.device() as i32, bytes, s)
                }
                (HipSide::Host(h), HipSide::Device(d)) => {
                    (api.hipMemcpyAsync)(d.ptr(), h.as_mut_ptr() as *const c_void, bytes, ffi::HIP_MEMCPY_HOST_TO_DEVICE, s)
                }
                (HipSide::Device(d), HipSide::Host(h)) => {
                    (api.hipMemcpyAsync)(h.as_mut_ptr() as *mut c_void, d.ptr(), bytes, ffi::HIP_MEMCPY_DEVICE_TO_HOST, s)
                }
                (HipSide::Host(_), HipSide::Host(_)) => unreachable!("refused in HipLane::new"),
            }
        };
        check(
            if matches!(self.src, HipSide::Device(_)) && matches!(self.dst, HipSide::Device(_)) {
                "hipMemcpyPeerAsync"
            } else {
                "hipMemcpyAsync"
            },
            rc,
        )
    }
}

/// The gate flag (signal memory) and the stream that writes it.
pub struct HipGate {
    flag: *mut c_void,
    writer: Timed,
}

// SAFETY: the flag is runtime-owned memory and the writer's handles are thread-safe HIP
// objects; the gate is used by one thread at a time (`&mut` in `run_lanes`).
unsafe impl Send for HipGate {}

impl HipGate {
    /// Allocates the flag on `device` (signal memory) and a writer stream there.
    pub fn new(device: usize) -> Result<HipGate, GpuError> {
        let api = ffi::hip()?;
        let writer = Timed::new(device)?;
        let mut flag: *mut c_void = std::ptr::null_mut();
        // SAFETY: `flag` is writable; 8 bytes of signal memory, freed once in Drop.
        check("hipExtMallocWithFlags(hipMallocSignalMemory)", unsafe {
            (api.hipExtMallocWithFlags)(&mut flag, 8, ffi::HIP_MALLOC_SIGNAL_MEMORY)
        })?;
        let gate = HipGate { flag, writer };
        gate.write(api, 0)?;
        Ok(gate)
    }

    /// Writes `value` to the flag from the writer stream and waits for the write.
    fn write(&self, api: &ffi::Hip, value: u32) -> Result<(), GpuError> {
        set_device(self.writer.device)?;
        // SAFETY: `flag` is live signal memory; the writer stream is live.
        check("hipStreamWriteValue32", unsafe { (api.hipStreamWriteValue32)(self.writer.stream, self.flag, value, 0) })?;
        if value == 0 {
            // Closing must land before any lane is queued behind it.
            // SAFETY: live stream.
            check("hipStreamSynchronize", unsafe { (api.hipStreamSynchronize)(self.writer.stream) })?;
        }
        Ok(())
    }

    fn hold(&self, api: &ffi::Hip, lane: &HipLane) -> Result<(), GpuError> {
        set_device(lane.timed.device)?;
        // SAFETY: live stream and signal memory; wait until flag >= 1, full mask.
        check("hipStreamWaitValue32", unsafe {
            (api.hipStreamWaitValue32)(lane.timed.stream, self.flag, 1, ffi::HIP_STREAM_WAIT_VALUE_GTE, u32::MAX)
        })
    }
}

impl Drop for HipGate {
    fn drop(&mut self) {
        if let Ok(api) = ffi::hip() {
            let _ = self.write(api, 1); // never leave a stream held
            let _ = set_device(self.writer.device);
            // SAFETY: allocated in `new`, freed only here, after the release write completed.
            unsafe {
                let _ = (api.hipStreamSynchronize)(self.writer.stream);
                let _ = (api.hipFree)(self.flag);
            }
        }
    }
}

/// Runs `lanes` together, `gate` holding them (None: [`GateKind::Ungated`], one lane).
/// Returns seconds per copy, per timed sample, per lane.
pub fn run_lanes(gate: Option<&HipGate>, lanes: &[HipLane], opt: &CopyOptions) -> Result<LaneTimes, GpuError> {
    opt.validate()?;
    if gate.is_none() && lanes.len() > 1 {
        return Err(GpuError::Invalid("several lanes need a start gate".into()));
    }
    if let Some(l) = lanes.iter().find(|l| l.src.len().min(l.dst.len()) < opt.bytes) {
        return Err(GpuError::Invalid(format!(
            "buffer of {} bytes is smaller than the copy size {}",
            l.src.len().min(l.dst.len()),
            opt.bytes
        )));
    }
    let api = ffi::hip()?;
    let mut times = vec![Vec::with_capacity(opt.samples as usize); lanes.len()];
    for round in 0..opt.warmup + opt.samples {
        let t = one_sample(api, gate, lanes, opt)?;
        if round >= opt.warmup {
            times.iter_mut().zip(t).for_each(|(acc, v)| acc.push(v));
        }
    }
    Ok(times)
}

fn one_sample(api: &ffi::Hip, gate: Option<&HipGate>, lanes: &[HipLane], opt: &CopyOptions) -> Result<Vec<f64>, GpuError> {
    if let Some(g) = gate {
        g.write(api, 0)?;
    }
    for l in lanes {
        if let Some(g) = gate {
            g.hold(api, l)?;
        }
        set_device(l.timed.device)?;
        // SAFETY: live event and stream of the current device.
        check("hipEventRecord", unsafe { (api.hipEventRecord)(l.timed.start, l.timed.stream) })?;
        for _ in 0..opt.loops {
            l.enqueue(api, opt.bytes)?;
        }
        // SAFETY: as above.
        check("hipEventRecord", unsafe { (api.hipEventRecord)(l.timed.end, l.timed.stream) })?;
    }
    if let Some(g) = gate {
        g.write(api, 1)?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(opt.timeout_s);
    let mut out = Vec::with_capacity(lanes.len());
    for l in lanes {
        loop {
            // SAFETY: live event.
            match unsafe { (api.hipEventQuery)(l.timed.end) } {
                ffi::HIP_SUCCESS => break,
                ffi::HIP_ERROR_NOT_READY if Instant::now() <= deadline => std::thread::sleep(Duration::from_micros(50)),
                ffi::HIP_ERROR_NOT_READY => {
                    return Err(GpuError::Timeout { what: "HIP copies behind the start gate", seconds: opt.timeout_s })
                }
                rc => check("hipEventQuery", rc)?,
            }
        }
        let mut ms = 0f32;
        // SAFETY: both events completed on the same stream; `ms` is writable.
        check("hipEventElapsedTime", unsafe { (api.hipEventElapsedTime)(&mut ms, l.timed.start, l.timed.end) })?;
        out.push(per_copy_seconds(ms, opt.loops));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_a_stream_wait_where_every_device_supports_it() {
        assert_eq!(choose_gate(&[(0, true), (1, true)]), Ok(GateKind::StreamWait));
        assert_eq!(choose_gate(&[(3, true)]), Ok(GateKind::StreamWait));
        // One lane without support: its events still time it exactly, so it runs ungated.
        assert_eq!(choose_gate(&[(3, false)]), Ok(GateKind::Ungated));
        // A set that must start together cannot without a gate: waived, naming the device.
        let e = choose_gate(&[(0, true), (5, false)]).unwrap_err();
        assert_eq!(e, Unavailable::NoStartGate { device: 5 });
        assert!(e.to_string().contains("hipStreamWaitValue32"), "{e}");
    }

    #[test]
    fn without_rocm_lanes_and_gates_are_waivers() {
        if ffi::hip().is_ok() {
            return;
        }
        assert!(matches!(HipGate::new(0), Err(GpuError::Unavailable(_))));
        assert!(matches!(run_lanes(None, &[], &CopyOptions::default()), Err(GpuError::Unavailable(_))));
        assert!(matches!(run_lanes(None, &[], &CopyOptions { loops: 0, ..Default::default() }), Err(GpuError::Invalid(_))));
    }
}
