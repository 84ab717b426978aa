//! Observations the solver works on, read from measurements: the best solo rate of every
//! route, and the aggregate rate through every segment direction that concurrent flows shared.
//! Hops are the ones each flow actually crossed (as recorded), never recomputed routes.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::results::{FlowResult, Measurement, MeasurementKind};
use crate::spec::{Hop, PathRef};

/// A value with its 95% interval, B/s, and the measurement it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Median (or aggregate) rate, B/s.
    pub value: f64,
    /// Low end of the 95% interval, B/s.
    pub low: f64,
    /// High end of the 95% interval, B/s.
    pub high: f64,
    /// Measurement id.
    pub evidence: String,
}

/// A route measured alone: its rate at the largest payload (small transfers can outrun a
/// shaper's sustained rate by its burst allowance, so the largest size measures capacity), and
/// its rate at each size.
#[derive(Debug, Clone)]
pub struct Solo {
    /// The route.
    pub path: PathRef,
    /// Hops it crossed.
    pub hops: Vec<Hop>,
    /// Peak (largest median goodput over sizes).
    pub peak: Rate,
    /// Payload `peak` was measured at, bytes.
    pub peak_bytes: u64,
    /// Median goodput per payload size, B/s.
    pub by_size: BTreeMap<u64, f64>,
    /// The flow results per size (for the path model fit).
    pub flows: BTreeMap<u64, FlowResult>,
}

/// Concurrent flows through one hop in one measurement.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The hop.
    pub hop: Hop,
    /// Measurement id.
    pub measurement: String,
    /// Indexes of the measurement's flows crossing the hop.
    pub flows: Vec<usize>,
    /// Best estimate of the rate carried through the hop while they ran together, B/s.
    pub carried: Rate,
    /// A rate the hop certainly carried (a safe lower bound of its capacity), B/s.
    pub bound: Rate,
}

/// One flow of a contended measurement.
#[derive(Debug, Clone)]
pub struct CoFlow {
    /// Route.
    pub path: PathRef,
    /// Payload, bytes.
    pub bytes: u64,
    /// Median goodput while contended, B/s.
    pub rate: f64,
    /// Hops it crossed.
    pub hops: Vec<Hop>,
}

/// Everything the solver reads.
#[derive(Debug, Default)]
pub struct Observations {
    /// Flows of each contended measurement, by measurement id.
    pub contended: BTreeMap<String, Vec<CoFlow>>,
    /// Contended measurements at the largest payload of their contention set (the ones whose
    /// aggregates measure capacity rather than fixed costs), by measurement id.
    pub largest: BTreeSet<String>,
    /// Burst makespan of each contended measurement (median, 95% low, high), seconds.
    pub spans: BTreeMap<String, (f64, f64, f64)>,
    /// Solo routes by route.
    pub solo: BTreeMap<PathRef, Solo>,
    /// Shared hops of contended measurements.
    pub shared: Vec<Shared>,
    /// Every hop crossed, with the (measurement, flow) pairs that crossed it.
    pub crossings: BTreeMap<Hop, Vec<(String, usize)>>,
}

fn interval(s: &crate::model::results::Summary) -> (f64, f64, f64) {
    (s.p50, s.ci95_low.unwrap_or(s.p50).min(s.p50), s.ci95_high.unwrap_or(s.p50).max(s.p50))
}

/// Streaming estimate of the rate carried through the flows `idx` of `m`. The runner streams
/// every flow of a contended measurement back to back through the same windows, so each
/// flow's throughput (payload / mean transfer time) counts and their sum is carried. When the
/// flows are all of the measurement's, the runner's own aggregate (sum per window, median over
/// windows) is a second estimate; the smaller of the two is kept (each overshoots in its own
/// failure mode: few windows for the aggregate, flows leaving a window early for the sum).
fn streaming(m: &Measurement, idx: &[usize]) -> Rate {
    let evidence = m.id.clone();
    let (mut value, mut low, mut high) = (0.0, 0.0, 0.0);
    for &i in idx {
        let f = &m.flows[i];
        let b = f.payload_bytes as f64;
        let t = &f.transfer_time_s;
        value += b / t.mean;
        low += b / t.ci95_high.unwrap_or(t.mean).max(t.mean);
        high += b / t.ci95_low.unwrap_or(t.mean).clamp(f64::MIN_POSITIVE, t.mean);
    }
    if idx.len() == m.flows.len() {
        if let Some(a) = &m.aggregate {
            let (v, l, h) = interval(&a.goodput_sum_Bps);
            if v < value {
                return Rate { value: v, low: l, high: h, evidence };
            }
        }
    }
    Rate { value, low, high, evidence }
}

/// Burst estimate: every flow of `m` sent one payload, released together; all bytes crossed
/// the hop within the makespan, so bytes / makespan never exceeds its capacity, and equals it
/// when the hop stayed full to the end.
fn burst(m: &Measurement) -> Option<Rate> {
    let span = m.aggregate.as_ref()?.makespan_s?;
    let bytes: f64 = m.flows.iter().map(|f| f.payload_bytes as f64).sum();
    let hi_t = span.ci95_high.unwrap_or(span.p50).max(span.p50);
    let lo_t = span.ci95_low.unwrap_or(span.p50).clamp(f64::MIN_POSITIVE, span.p50);
    Some(Rate { value: bytes / span.p50, low: bytes / hi_t, high: bytes / lo_t, evidence: m.id.clone() })
}

/// The single fastest flow among `idx` (payload / mean time): a rate the hop surely carried.
fn fastest(m: &Measurement, idx: &[usize]) -> Rate {
    let f = idx.iter().map(|&i| &m.flows[i]).max_by(|a, b| a.transfer_time_s.mean.total_cmp(&b.transfer_time_s.mean).reverse());
    let f = f.expect("a shared hop has flows");
    let (_, lo, hi) = interval(&f.transfer_time_s);
    let b = f.payload_bytes as f64;
    Rate { value: b / f.transfer_time_s.mean, low: b / hi, high: b / lo.max(f64::MIN_POSITIVE), evidence: m.id.clone() }
}

/// Fixes `bound` of the shared hops: a burst over a hop all flows cross (every byte crossed it
/// within the makespan), else the fastest flow; never above the streaming estimate. A burst
/// starts from idle and ends on TCP's ramp of the last flow, so even when the hop stayed full
/// it reads a little low (2-3% on the emulated rack): it bounds the capacity and corroborates
/// the streaming estimate (see `solve::saturation_claims`), but `carried` stays streaming.
fn settle(o: &mut Observations, measurements: &[Measurement]) {
    let by_id: BTreeMap<&str, &Measurement> = measurements.iter().map(|m| (m.id.as_str(), m)).collect();
    for s in &mut o.shared {
        let m = by_id[s.measurement.as_str()];
        let all = s.flows.len() == m.flows.len();
        s.bound = match burst(m).filter(|_| all) {
            Some(b) => b,
            None => fastest(m, &s.flows),
        };
        if s.bound.value > s.carried.value {
            s.bound = s.carried.clone();
        }
    }
}

/// Reads the observations out of measurements (in order; a later solo measurement of the
/// same route and size replaces an earlier one).
pub fn observe(measurements: &[Measurement]) -> Observations {
    let mut o = Observations::default();
    let mut biggest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for m in measurements.iter().filter(|m| m.kind == MeasurementKind::Contended) {
        let size = m.flows.iter().map(|f| f.payload_bytes).max().unwrap_or(0);
        let set = m.set.clone().unwrap_or_else(|| m.id.clone());
        if biggest.get(&set).is_none_or(|(b, _)| size >= *b) {
            biggest.insert(set, (size, m.id.clone()));
        }
    }
    o.largest = biggest.into_values().map(|(_, id)| id).collect();
    for m in measurements {
        for (i, f) in m.flows.iter().enumerate() {
            for h in &f.segments {
                let v = o.crossings.entry(*h).or_default();
                if v.last() != Some(&(m.id.clone(), i)) {
                    v.push((m.id.clone(), i));
                }
            }
        }
        match m.kind {
            MeasurementKind::Solo => {
                for f in &m.flows {
                    let s = o.solo.entry(f.path).or_insert_with(|| Solo {
                        path: f.path,
                        hops: f.segments.clone(),
                        peak: Rate { value: 0.0, low: 0.0, high: 0.0, evidence: String::new() },
                        peak_bytes: 0,
                        by_size: BTreeMap::new(),
                        flows: BTreeMap::new(),
                    });
                    s.by_size.insert(f.payload_bytes, f.goodput_Bps.p50);
                    s.flows.insert(f.payload_bytes, f.clone());
                    if f.payload_bytes >= s.peak_bytes {
                        let (value, low, high) = interval(&f.goodput_Bps);
                        s.peak = Rate { value, low, high, evidence: m.id.clone() };
                        s.peak_bytes = f.payload_bytes;
                        s.hops = f.segments.clone();
                    }
                }
            }
            MeasurementKind::Contended => {
                let co = m
                    .flows
                    .iter()
                    .map(|f| CoFlow { path: f.path, bytes: f.payload_bytes, rate: f.goodput_Bps.p50, hops: f.segments.clone() })
                    .collect();
                o.contended.insert(m.id.clone(), co);
                if let Some(span) = m.aggregate.as_ref().and_then(|a| a.makespan_s) {
                    o.spans.insert(m.id.clone(), interval(&span));
                }
                let mut by_hop: BTreeMap<Hop, Vec<usize>> = BTreeMap::new();
                for (i, f) in m.flows.iter().enumerate() {
                    for h in &f.segments {
                        let v = by_hop.entry(*h).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
                for (hop, flows) in by_hop {
                    let carried = streaming(m, &flows);
                    let bound = carried.clone();
                    o.shared.push(Shared { hop, measurement: m.id.clone(), flows, carried, bound });
                }
            }
        }
    }
    settle(&mut o, measurements);
    o
}

impl Observations {
    /// The solo rate of `path` at `bytes` (else its peak), B/s.
    pub fn solo_rate(&self, path: &PathRef, bytes: u64) -> Option<f64> {
        let s = self.solo.get(path)?;
        Some(s.by_size.get(&bytes).copied().unwrap_or(s.peak.value))
    }
}
