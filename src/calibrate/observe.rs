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

/// A route measured alone: its peak rate over payload sizes, and its rate at each size.
#[derive(Debug, Clone)]
pub struct Solo {
    /// The route.
    pub path: PathRef,
    /// Hops it crossed.
    pub hops: Vec<Hop>,
    /// Peak (largest median goodput over sizes).
    pub peak: Rate,
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
    /// Rate carried through the hop while they ran together, B/s.
    pub carried: Rate,
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

/// Rate carried through the flows `idx` of `m` while they moved together: the runner's
/// aggregate when they are all of its flows, else the sum of their median goodputs (the runner
/// streams every flow of a contended measurement back to back through the same window).
fn carried(m: &Measurement, idx: &[usize]) -> Rate {
    let evidence = m.id.clone();
    if idx.len() == m.flows.len() {
        if let Some(a) = &m.aggregate {
            let (value, low, high) = interval(&a.goodput_sum_Bps);
            return Rate { value, low, high, evidence };
        }
    }
    let (mut value, mut low, mut high) = (0.0, 0.0, 0.0);
    for &i in idx {
        let (v, l, h) = interval(&m.flows[i].goodput_Bps);
        value += v;
        low += l;
        high += h;
    }
    Rate { value, low, high, evidence }
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
                        by_size: BTreeMap::new(),
                        flows: BTreeMap::new(),
                    });
                    s.by_size.insert(f.payload_bytes, f.goodput_Bps.p50);
                    s.flows.insert(f.payload_bytes, f.clone());
                    if f.goodput_Bps.p50 > s.peak.value {
                        let (value, low, high) = interval(&f.goodput_Bps);
                        s.peak = Rate { value, low, high, evidence: m.id.clone() };
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
                    let carried = carried(m, &flows);
                    o.shared.push(Shared { hop, measurement: m.id.clone(), flows, carried });
                }
            }
        }
    }
    o
}

impl Observations {
    /// The solo rate of `path` at `bytes` (else its peak), B/s.
    pub fn solo_rate(&self, path: &PathRef, bytes: u64) -> Option<f64> {
        let s = self.solo.get(path)?;
        Some(s.by_size.get(&bytes).copied().unwrap_or(s.peak.value))
    }
}
