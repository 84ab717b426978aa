//! Copy-engine copies timed with CUDA events behind the start gate: peer copies between two
//! GPUs (Path 1 through the PCIe switch), and host<->device copies that isolate one GPU's PCIe
//! link per direction. Several lanes can run at once (bidirectional P2P, all GPUs to host):
//! each lane's time is its own direction under the others' interference, never a sum.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};

use super::gate::Gate;
use super::memory::{DeviceBuffer, PinnedBuffer};
use super::{CallContext, GpuError};

/// Most copies enqueued behind one gate. A stream's launch queue holds about a thousand
/// entries; enqueueing more than it holds while the gate spins would block the host before it
/// could release the gate. nvbandwidth uses 16 by default.
pub const MAX_LOOPS: u32 = 64;

/// How a copy probe repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyOptions {
    /// Bytes per copy (0 is allowed: the gated interval then holds only the events).
    pub bytes: usize,
    /// Copies per timed sample (behind one gate); the sample's time is divided by this.
    pub loops: u32,
    /// Timed samples.
    pub samples: u32,
    /// Untimed samples first (clocks up, TLBs warm, peer mappings made).
    pub warmup: u32,
    /// Longest a sample may take before it is declared hung, seconds.
    pub timeout_s: f64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { bytes: 64 << 20, loops: 16, samples: 20, warmup: 3, timeout_s: 30.0 }
    }
}

impl CopyOptions {
    /// Checks the options; the message names the option to fix.
    pub fn validate(&self) -> Result<(), GpuError> {
        if self.loops == 0 || self.loops > MAX_LOOPS {
            return Err(GpuError::Invalid(format!(
                "loops per sample must be 1..={MAX_LOOPS} (got {}): more would overflow the stream queue behind the start gate",
                self.loops
            )));
        }
        if self.samples == 0 {
            return Err(GpuError::Invalid("samples must be at least 1".into()));
        }
        if self.timeout_s.is_nan() || self.timeout_s <= 0.0 {
            return Err(GpuError::Invalid("timeout must be positive".into()));
        }
        Ok(())
    }
}

/// One side of a copy.
pub enum Side {
    /// Device memory of a GPU.
    Device(Arc<DeviceBuffer>),
    /// Pinned host memory.
    Host(Arc<PinnedBuffer>),
}

/// What a lane copies, and which context's stream drives it.
pub struct Lane {
    /// The stream the copies run on (its context's copy engine does the work).
    stream: Arc<CudaStream>,
    src: Side,
    dst: Side,
    start: CudaEvent,
    end: CudaEvent,
}

impl Lane {
    /// A lane copying `src` to `dst` on a new stream of `driver` (for peer copies the source's
    /// context, so the source GPU's copy engine pushes; for host copies the GPU's context).
    pub fn new(driver: &Arc<CudaContext>, src: Side, dst: Side) -> Result<Lane, GpuError> {
        if matches!((&src, &dst), (Side::Host(_), Side::Host(_))) {
            return Err(GpuError::Invalid("host-to-host copies do not cross a GPU link".into()));
        }
        let stream = driver.new_stream().call("cuStreamCreate")?;
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = driver.new_event(timing).call("cuEventCreate")?;
        let end = driver.new_event(timing).call("cuEventCreate")?;
        Ok(Lane { stream, src, dst, start, end })
    }

    fn len(&self) -> usize {
        let l = |s: &Side| match s {
            Side::Device(d) => d.len(),
            Side::Host(h) => h.len(),
        };
        l(&self.src).min(l(&self.dst))
    }

    /// Enqueues one copy of `bytes`.
    fn enqueue(&self, bytes: usize) -> Result<(), GpuError> {
        let s = self.stream.cu_stream();
        // SAFETY: (all arms) the buffers are kept alive by the Arcs in `self` until the lane is
        // dropped, which happens after the stream is synchronised; `bytes <= self.len()` was
        // checked by the caller; `s` is a live stream of the current context.
        let r = unsafe {
            match (&self.src, &self.dst) {
                (Side::Device(a), Side::Device(b)) => {
                    sys::cuMemcpyPeerAsync(b.ptr(), b.context().cu_ctx(), a.ptr(), a.context().cu_ctx(), bytes, s)
                }
                (Side::Host(h), Side::Device(d)) => {
                    sys::cuMemcpyHtoDAsync_v2(d.ptr(), h.as_mut_ptr() as *const std::ffi::c_void, bytes, s)
                }
                (Side::Device(d), Side::Host(h)) => {
                    sys::cuMemcpyDtoHAsync_v2(h.as_mut_ptr() as *mut std::ffi::c_void, d.ptr(), bytes, s)
                }
                (Side::Host(_), Side::Host(_)) => unreachable!("refused in Lane::new"),
            }
        };
        r.result().call("cuMemcpyAsync")
    }
}

/// Seconds per copy, one value per timed sample, for each lane (same order as `lanes`).
pub type LaneTimes = Vec<Vec<f64>>;

/// Runs `lanes` together behind ONE gate: per sample the gate is armed, every lane's stream
/// (on whichever GPU) is held by it, each lane's `loops` copies are enqueued between its start
/// and end event, then one host write opens the gate for all. Warmup samples run the same way
/// and are discarded.
pub fn run_lanes(gate: &Gate, lanes: &[&Lane], opt: &CopyOptions) -> Result<LaneTimes, GpuError> {
    opt.validate()?;
    for l in lanes {
        if l.len() < opt.bytes {
            return Err(GpuError::Invalid(format!("buffer of {} bytes is smaller than the copy size {}", l.len(), opt.bytes)));
        }
    }
    let mut times = vec![Vec::with_capacity(opt.samples as usize); lanes.len()];
    for round in 0..opt.warmup + opt.samples {
        let t = one_sample(gate, lanes, opt)?;
        if round >= opt.warmup {
            for (acc, v) in times.iter_mut().zip(t) {
                acc.push(v);
            }
        }
    }
    Ok(times)
}

fn one_sample(gate: &Gate, lanes: &[&Lane], opt: &CopyOptions) -> Result<Vec<f64>, GpuError> {
    gate.arm();
    for l in lanes {
        gate.hold(&l.stream)?;
        l.start.record(&l.stream).call("cuEventRecord")?;
        for _ in 0..opt.loops {
            l.enqueue(opt.bytes)?;
        }
        l.end.record(&l.stream).call("cuEventRecord")?;
    }
    gate.release();
    let deadline = Instant::now() + Duration::from_secs_f64(opt.timeout_s);
    let mut out = Vec::with_capacity(lanes.len());
    for l in lanes {
        while !l.end.try_is_complete().call("cuEventQuery")? {
            if Instant::now() > deadline {
                return Err(GpuError::Timeout { what: "copies behind the start gate", seconds: opt.timeout_s });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let ms = l.start.elapsed_ms(&l.end).call("cuEventElapsedTime")?;
        out.push(per_copy_seconds(ms, opt.loops));
    }
    Ok(out)
}

/// Seconds per copy from an event interval in milliseconds over `loops` copies.
pub fn per_copy_seconds(elapsed_ms: f32, loops: u32) -> f64 {
    f64::from(elapsed_ms) * 1e-3 / f64::from(loops.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_with_the_reason() {
        assert!(CopyOptions::default().validate().is_ok());
        let bad = |o: CopyOptions| o.validate().unwrap_err().to_string();
        assert!(CopyOptions { bytes: 0, ..Default::default() }.validate().is_ok());
        assert!(bad(CopyOptions { loops: 0, ..Default::default() }).contains("loops"));
        assert!(bad(CopyOptions { loops: MAX_LOOPS + 1, ..Default::default() }).contains("stream queue"));
        assert!(bad(CopyOptions { samples: 0, ..Default::default() }).contains("samples"));
        assert!(bad(CopyOptions { timeout_s: f64::NAN, ..Default::default() }).contains("timeout"));
    }

    #[test]
    fn event_time_is_divided_over_the_loop() {
        assert!((per_copy_seconds(16.0, 16) - 1e-3).abs() < 1e-12);
        assert!((per_copy_seconds(2.5, 1) - 2.5e-3).abs() < 1e-12);
    }
}
