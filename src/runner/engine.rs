//! The one measurement loop of every measurement (`run` through agents, `probe --run` through
//! in-process transports): open the flows, warm up, run windows with every flow started from
//! one gate until the [`StopRule`] says stop, aggregate a contended set's windows with
//! [`window_aggregate`], close, and build the [`Measurement`]. What moves the data is a
//! [`FlowDriver`] (agents over `control`: [`super::measure`]; in-process transports:
//! [`super::local`]); time comes from a [`Clock`], so the loop is tested with a fake driver
//! and a fake clock, without root or sockets.

use crate::control::{WindowResult, WindowSpec};
use crate::model::results::{Aggregate, FlowResult, Measurement, MeasurementKind, StopReason};
use crate::spec::{Hop, PathRef};
use crate::stats::{self, StopRule};

pub use super::aggregate::window_aggregate;

/// A monotonic clock, seconds from an arbitrary origin.
pub trait Clock {
    /// Seconds now.
    fn now_s(&self) -> f64;
}

/// The process's monotonic clock.
pub struct SystemClock(std::time::Instant);

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_s(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// What every flow of a window does (the same for all): `warmup` transfers of `warmup_bytes`,
/// then transfers of `bytes` until `duration_s` has passed since the gate, at least
/// `min_count` and at most `max_count` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Payload per measured transfer, bytes.
    pub bytes: u64,
    /// Warmup transfers (not measured).
    pub warmup: u32,
    /// Payload per warmup transfer, bytes.
    pub warmup_bytes: u64,
    /// Measured transfers at least.
    pub min_count: u32,
    /// Measured transfers at most.
    pub max_count: u32,
    /// Keep going until this long after the gate, seconds.
    pub duration_s: f64,
}

impl Window {
    /// What flow `flow_id`'s sender is told: this window, as agents are armed with it.
    pub fn of_flow(&self, flow_id: u64) -> WindowSpec {
        WindowSpec {
            flow_id,
            bytes: self.bytes,
            warmup: self.warmup,
            warmup_bytes: self.warmup_bytes,
            min_count: self.min_count,
            max_count: self.max_count,
            duration_s: self.duration_s,
        }
    }
}

/// Moves the data of one measurement's flows.
pub trait FlowDriver {
    /// The driver's error.
    type Error;
    /// Flows, in the order results are returned.
    fn flows(&self) -> usize;
    /// Sets up every flow for payloads of up to `bytes`.
    fn open(&mut self, bytes: u64) -> Result<(), Self::Error>;
    /// Runs one window, every flow started from one gate; one result per flow (in flow
    /// order), every `starts_s` on one time line (seconds after the gate).
    fn window(&mut self, w: &Window) -> Result<Vec<WindowResult>, Self::Error>;
    /// Tears the flows down after a measurement that finished.
    fn close(&mut self) -> Result<(), Self::Error>;
    /// Drops the flows after a failure (without waiting on a peer that may be gone).
    fn abort(&mut self);
}

/// How the loop repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineOptions {
    /// When to stop.
    pub stop: StopRule,
    /// Warmup transfers per flow, in one window before measuring (0: none).
    pub warmup: u32,
    /// Warmup transfers carry at most this many bytes.
    pub warmup_max_bytes: u64,
    /// Warm up with the payload itself, whatever `warmup_max_bytes` (KV engines move whole blocks).
    pub warmup_full: bool,
    /// Length of one window, seconds (0: one transfer per flow per window).
    pub window_s: f64,
    /// Measured transfers per flow in every window of a contended set, at least.
    pub contended_min_count: u32,
    /// Burst windows of a contended set first (one transfer per flow each): their spans are
    /// the makespans; with none, each window's first round gives the makespan.
    pub bursts: u32,
}

/// Measured transfers of one flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowTimes {
    /// Warmup transfers done.
    pub warmup: u64,
    /// Seconds per measured transfer.
    pub times: Vec<f64>,
}

/// What the loop measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why it stopped.
    pub stop: StopReason,
    /// Per flow, in flow order.
    pub flows: Vec<FlowTimes>,
    /// A contended set's aggregate goodput per window, B/s.
    pub sums: Vec<f64>,
    /// A contended set's makespans, seconds.
    pub makespans: Vec<f64>,
}

/// Runs one measurement of `bytes` per flow over `d`: open, [`measure_open`], then close (or
/// abort after a failure).
pub fn measure<D: FlowDriver + ?Sized>(d: &mut D, o: &EngineOptions, bytes: u64, clock: &dyn Clock) -> Result<Outcome, D::Error> {
    let run = d.open(bytes).and_then(|()| measure_open(d, o, bytes, clock));
    match run {
        Ok(out) => {
            d.close()?;
            Ok(out)
        }
        Err(e) => {
            d.abort();
            Err(e)
        }
    }
}

/// The loop over opened flows: warmup window, burst windows (contended), then windows until
/// the stop rule says stop, timed from the end of the warmup.
pub fn measure_open<D: FlowDriver + ?Sized>(
    d: &mut D,
    o: &EngineOptions,
    bytes: u64,
    clock: &dyn Clock,
) -> Result<Outcome, D::Error> {
    let n = d.flows();
    let contended = n > 1;
    let mut flows = vec![FlowTimes::default(); n];
    if o.warmup > 0 {
        let wb = if o.warmup_full { bytes.max(1) } else { bytes.min(o.warmup_max_bytes).max(1) };
        let w = Window { bytes, warmup: o.warmup, warmup_bytes: wb, min_count: 0, max_count: 0, duration_s: 0.0 };
        for (f, r) in flows.iter_mut().zip(d.window(&w)?) {
            f.warmup = u64::from(r.warmup_done);
        }
    }
    let start = clock.now_s();
    let (mut sums, mut makespans) = (Vec::new(), Vec::new());
    let bursts = if contended { o.bursts } else { 0 };
    for _ in 0..bursts {
        let w = Window { bytes, warmup: 0, warmup_bytes: 0, min_count: 1, max_count: 1, duration_s: 0.0 };
        if let Some(span) = first_round_span(&d.window(&w)?) {
            makespans.push(span);
        }
    }
    loop {
        let have = flows.iter().map(|f| f.times.len() as u32).min().unwrap_or(0);
        let left = o.stop.max_samples.saturating_sub(have).max(1);
        let min_count = if contended { o.contended_min_count.min(left) } else { 1 };
        let w = Window { bytes, warmup: 0, warmup_bytes: 0, min_count, max_count: left, duration_s: o.window_s };
        let res = d.window(&w)?;
        if let Some((sum, span)) = window_aggregate(&res.iter().collect::<Vec<_>>(), bytes) {
            sums.push(sum);
            if bursts == 0 {
                makespans.push(span);
            }
        }
        for (f, r) in flows.iter_mut().zip(&res) {
            f.times.extend(&r.times_s);
        }
        let times: Vec<&[f64]> = flows.iter().map(|f| f.times.as_slice()).collect();
        let set_sums = if contended { sums.as_slice() } else { &[] };
        if let Some(stop) = o.stop.decide(&times, bytes, set_sums, clock.now_s() - start) {
            return Ok(Outcome { stop, flows, sums, makespans });
        }
    }
}

/// From the first start to the last end of every flow's first transfer (None unless every
/// flow made one).
fn first_round_span(res: &[WindowResult]) -> Option<f64> {
    let firsts: Vec<(f64, f64)> =
        res.iter().map(|r| r.times_s.first().and(Some((*r.starts_s.first()?, r.end_s(0))))).collect::<Option<_>>()?;
    let first = firsts.iter().map(|x| x.0).fold(f64::MAX, f64::min);
    Some(firsts.iter().map(|x| x.1).fold(f64::MIN, f64::max) - first)
}

/// A flow's result from its times (None when it measured nothing).
pub fn flow_result(path: PathRef, segments: Vec<Hop>, bytes: u64, t: &FlowTimes, stop: StopReason) -> Option<FlowResult> {
    let goodputs: Vec<f64> = t.times.iter().map(|s| bytes as f64 / s.max(1e-12)).collect();
    Some(FlowResult {
        path,
        segments,
        payload_bytes: bytes,
        goodput_Bps: stats::summarize_rate(&goodputs)?,
        transfer_time_s: stats::summarize_time(&t.times)?,
        samples: t.times.len() as u64,
        warmup: t.warmup,
        stop,
        transfer_times_s: t.times.clone(),
    })
}

/// A contended set's aggregate: its window sums, makespans, and the spread of its flows' p50
/// goodputs (max over min).
pub fn aggregate(flows: &[FlowResult], out: &Outcome) -> Option<Aggregate> {
    let p50s: Vec<f64> = flows.iter().map(|f| f.goodput_Bps.p50).collect();
    let max = p50s.iter().copied().fold(f64::MIN, f64::max);
    let min = p50s.iter().copied().fold(f64::MAX, f64::min);
    Some(Aggregate {
        goodput_sum_Bps: stats::summarize_rate(&out.sums)?,
        makespan_s: stats::summarize_time(&out.makespans),
        fairness_max_over_min: (min > 0.0).then(|| max / min),
    })
}

/// What names a measurement beside its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// `solo/ROUTE/BYTES` or `contended/SET/BYTES`.
    pub id: String,
    /// The contended set's name (None: solo).
    pub set: Option<String>,
    /// The flows' transports, e.g. `host_tcp` or `cuda_p2p+gpudirect_rdma`.
    pub transport: String,
    /// KV block of a KV engine's flows: bytes, tokens when known.
    pub kv_block: Option<(u64, Option<u64>)>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took, seconds.
    pub duration_s: f64,
}

/// The measurement of `routes` (one per flow, in flow order) at `bytes`; None when a flow
/// measured nothing.
pub fn measurement(label: Label, routes: &[(PathRef, Vec<Hop>)], bytes: u64, out: &Outcome) -> Option<Measurement> {
    let flows: Vec<FlowResult> =
        routes.iter().zip(&out.flows).map(|((p, h), t)| flow_result(*p, h.clone(), bytes, t, out.stop)).collect::<Option<_>>()?;
    let contended = flows.len() > 1;
    Some(Measurement {
        id: label.id,
        kind: if contended { MeasurementKind::Contended } else { MeasurementKind::Solo },
        set: label.set,
        transport: label.transport,
        kv_block_bytes: label.kv_block.map(|b| b.0),
        kv_block_tokens: label.kv_block.and_then(|b| b.1),
        started_at: label.started_at,
        duration_s: label.duration_s,
        aggregate: if contended { aggregate(&flows, out) } else { None },
        flows,
    })
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
