//! One window of one flow, the unit every measurement repeats: `warmup` transfers, then
//! back-to-back timed transfers from one instant (the window's gate) until a duration has
//! passed, with the receiver's delivered bytes sampled beside them where the transport can
//! tell. Agents run it for `linkcal run` (armed and released over the control plane), the
//! in-process driver of `probe --run` runs it directly; both hand the results to the runner's
//! one measurement loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DeliveryProbe, Sender, TransportError};

/// What a sender does in one window: `warmup` transfers (not timed into results), then
/// back-to-back transfers of `bytes` until `duration_s` has passed (at least `min_count`,
/// at most `max_count`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowSpec {
    /// Flow id.
    pub flow_id: u64,
    /// Payload per transfer, bytes.
    pub bytes: u64,
    /// Warmup transfers before the measured ones.
    pub warmup: u32,
    /// Payload of each warmup transfer, bytes.
    pub warmup_bytes: u64,
    /// Measured transfers at least.
    pub min_count: u32,
    /// Measured transfers at most.
    pub max_count: u32,
    /// Keep going until this much time has passed since the barrier, seconds.
    pub duration_s: f64,
}

/// Per-transfer timings of one window, as offsets from the barrier release on the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowResult {
    /// Flow id.
    pub flow_id: u64,
    /// Start of each measured transfer, seconds after the barrier.
    pub starts_s: Vec<f64>,
    /// Duration of each measured transfer, seconds.
    pub times_s: Vec<f64>,
    /// Warmup transfers done.
    pub warmup_done: u32,
    /// The agent's wall clock (`CLOCK_REALTIME`, seconds since the Unix epoch) at its barrier
    /// instant: `starts_s` of agents released a little apart are put on one time line with it
    /// (agents of one machine share the clock; on a rack it is as good as the hosts' NTP/PTP).
    #[serde(default)]
    pub go_epoch_s: Option<f64>,
    /// Bytes the receiver had acknowledged, sampled every few milliseconds while the timed
    /// transfers ran: (seconds after the barrier, bytes since the first sample). Empty where the
    /// transport cannot tell (see `transport::Sender::delivery_probe`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<(f64, u64)>,
    /// Payloads each measured transfer moved back to back (a gated loop of copies in a
    /// multi-lane sample): its `times_s` entry is the time per payload, and the transfer ran
    /// from its start for `copies` times that. 1 (the default) for a single payload.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub copies: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl WindowResult {
    /// A result with nothing measured yet.
    pub fn empty(flow_id: u64) -> Self {
        WindowResult {
            flow_id,
            starts_s: Vec::new(),
            times_s: Vec::new(),
            warmup_done: 0,
            go_epoch_s: None,
            delivered: Vec::new(),
            copies: 1,
        }
    }

    /// When measured transfer `k` ended, seconds after the gate.
    pub fn end_s(&self, k: usize) -> f64 {
        self.starts_s[k] + self.times_s[k] * f64::from(self.copies.max(1))
    }
}

/// Runs one window of one flow: warmup, then timed transfers (their delivered bytes sampled
/// beside them where the transport can tell).
pub fn run_window(
    mut sender: Box<dyn Sender>,
    w: WindowSpec,
    t0: Instant,
    go_epoch_s: Option<f64>,
) -> (u64, Box<dyn Sender>, Result<WindowResult, TransportError>) {
    let mut r = WindowResult { warmup_done: 0, go_epoch_s, ..WindowResult::empty(w.flow_id) };
    for _ in 0..w.warmup {
        if let Err(e) = sender.transfer(w.warmup_bytes) {
            return (w.flow_id, sender, Err(e));
        }
        r.warmup_done += 1;
    }
    // The first reading is taken here, before the first timed transfer starts.
    let mut probe = sender.delivery_probe();
    let first = probe.as_mut().and_then(|p| Some((t0.elapsed().as_secs_f64(), p()?)));
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let timed = std::thread::scope(|s| {
        let sampler = probe.zip(first).map(|(p, first)| s.spawn(move || sample_delivered(p, first, t0, stop)));
        let timed = timed_transfers(sender.as_mut(), &w, t0, &mut r);
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = sampler {
            // Wake it now: a sampler asleep until its next tick would hold the window open
            // (and leave the link idle, refilling the emulator's buckets) for up to a tick.
            h.thread().unpark();
            r.delivered = h.join().unwrap_or_default();
        }
        timed
    });
    match timed {
        Ok(()) => (w.flow_id, sender, Ok(r)),
        Err(e) => (w.flow_id, sender, Err(e)),
    }
}

/// The window's timed transfers, recorded into `r`.
fn timed_transfers(sender: &mut dyn Sender, w: &WindowSpec, t0: Instant, r: &mut WindowResult) -> Result<(), TransportError> {
    while (r.times_s.len() as u32) < w.max_count {
        let start = t0.elapsed().as_secs_f64();
        let d = sender.transfer(w.bytes)?;
        r.starts_s.push(start);
        r.times_s.push(d.as_secs_f64());
        if r.times_s.len() as u32 >= w.min_count && t0.elapsed().as_secs_f64() >= w.duration_s {
            break;
        }
    }
    Ok(())
}

/// Delivered-bytes samples every [`DELIVERY_SAMPLE`] while a window runs (a final one once it
/// ended), bytes counted from the first sample; at most [`MAX_DELIVERY_SAMPLES`] (beyond,
/// every other sample is dropped and the spacing doubles).
const DELIVERY_SAMPLE: Duration = Duration::from_millis(5);
const MAX_DELIVERY_SAMPLES: usize = 20_000;

fn sample_delivered(mut probe: DeliveryProbe, (t_first, base): (f64, u64), t0: Instant, stop: &AtomicBool) -> Vec<(f64, u64)> {
    let mut out = vec![(t_first, 0)];
    let mut every = DELIVERY_SAMPLE;
    loop {
        std::thread::park_timeout(every);
        let done = stop.load(Ordering::Relaxed);
        let Some(b) = probe() else { return Vec::new() };
        out.push((t0.elapsed().as_secs_f64(), b.saturating_sub(base)));
        if done {
            return out;
        }
        if out.len() >= MAX_DELIVERY_SAMPLES {
            out = out.into_iter().step_by(2).collect();
            every *= 2;
        }
    }
}
