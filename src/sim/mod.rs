//! Flow-level simulator: max-min fair sharing (progressive filling) of every segment direction,
//! with a per-flow fixed cost and rate cap taken from the path's size-dependent model.
//!
//! Each flow first spends `alpha_s` (its path's fixed cost at its size; no bandwidth used),
//! then transfers its bytes at the max-min rate, never above `cap_Bps` (its path's asymptotic
//! rate at that size). Rates are recomputed at every event (a flow starting to transfer or
//! finishing), as SimGrid's default network model does.
#![allow(non_snake_case)]

mod scenario;
pub mod synth;
mod validate;

pub use scenario::{capacities, flows_for, load_flows, parse_flows, scenario_flows, FlowFile, FlowSpec, Scenario};
pub use validate::{check, validate, Check};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Hop, RouteKind};

/// Why flows could not be built for a simulation or synthetic results could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The calibration's or configuration's shape yields no route set.
    #[error("the rack shape: {0}")]
    Shape(#[from] crate::spec::SpecError),
    /// No payload of a route kind to size the flows by.
    #[error("no {kind} payload was measured in this calibration; give --bytes to choose the payload")]
    NoPayload {
        /// The route kind.
        kind: RouteKind,
    },
    /// A scenario has no flows in this shape (e.g. Path 1 with PP_prefill = 1).
    #[error("scenario {scenario} has no flows in this rack shape")]
    NoFlows {
        /// The scenario.
        scenario: &'static str,
    },
    /// An experiment names a route the rack does not have.
    #[error("experiment {experiment}: a route is not in this rack")]
    UnknownRoute {
        /// The experiment.
        experiment: String,
    },
}

impl crate::error::Classified for SimError {
    /// Every one is about the input (the calibration, a flag or the experiment list): exit 2.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

/// Capacity of each segment direction, B/s. A hop missing from the map is unconstrained.
pub type Capacities = BTreeMap<Hop, f64>;

/// One flow to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimFlow {
    /// Name shown in the output.
    pub name: String,
    /// Segment directions crossed.
    pub hops: Vec<Hop>,
    /// Bytes to move.
    pub bytes: u64,
    /// Release time, seconds.
    pub start_s: f64,
    /// Fixed cost before data moves, seconds (0 for an ideal flow).
    pub alpha_s: f64,
    /// Largest rate this flow reaches alone at its size, B/s (None: only the segments limit it).
    pub cap_Bps: Option<f64>,
}

/// What the simulator predicts for one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowOutcome {
    /// Flow name.
    pub name: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Release time, seconds.
    pub start_s: f64,
    /// Completion time, seconds (absolute, same clock as `start_s`).
    pub finish_s: f64,
    /// Mean goodput over its life: bytes / (finish - start), B/s.
    pub rate_Bps: f64,
}

/// Max-min fair rates (progressive filling) of flows crossing `hops[f]`, each capped at
/// `caps[f]`. Flows with no finite constraint get `f64::INFINITY`.
pub fn maxmin_rates(hops: &[&[Hop]], caps: &[Option<f64>], cap: &Capacities) -> Vec<f64> {
    maxmin_rates_shared(hops, caps, cap, 1.0)
}

/// [`maxmin_rates`] where a segment direction crossed by two or more of the flows offers only
/// `sharing` (in (0, 1]) of its capacity.
pub fn maxmin_rates_shared(hops: &[&[Hop]], caps: &[Option<f64>], cap: &Capacities, sharing: f64) -> Vec<f64> {
    let shared: Capacities = cap
        .iter()
        .map(|(h, c)| (*h, if hops.iter().filter(|f| f.contains(h)).count() >= 2 { c * sharing } else { *c }))
        .collect();
    let cap = &shared;
    let n = hops.len();
    let mut rate = vec![0.0; n];
    let mut frozen = vec![false; n];
    let mut left: BTreeMap<Hop, f64> = BTreeMap::new();
    for h in hops.iter().flat_map(|hs| hs.iter()) {
        if let Some(&c) = cap.get(h) {
            left.insert(*h, c);
        }
    }
    loop {
        let active: Vec<usize> = (0..n).filter(|&f| !frozen[f]).collect();
        if active.is_empty() {
            return rate;
        }
        // The smallest equal increment that fills some link or reaches some flow's cap.
        let mut inc = f64::INFINITY;
        for (h, &l) in &left {
            let users = active.iter().filter(|&&f| hops[f].contains(h)).count();
            if users > 0 {
                inc = inc.min(l / users as f64);
            }
        }
        for &f in &active {
            if let Some(c) = caps[f] {
                inc = inc.min(c - rate[f]);
            }
        }
        if !inc.is_finite() {
            for &f in &active {
                rate[f] = f64::INFINITY;
            }
            return rate;
        }
        let inc = inc.max(0.0);
        for &f in &active {
            rate[f] += inc;
        }
        let eps = 1e-9;
        for (h, l) in left.iter_mut() {
            let users = active.iter().filter(|&&f| hops[f].contains(h)).count();
            *l -= inc * users as f64;
            if users > 0 && *l <= eps * cap[h].max(1.0) {
                for &f in &active {
                    if hops[f].contains(h) {
                        frozen[f] = true;
                    }
                }
            }
        }
        for &f in &active {
            if caps[f].is_some_and(|c| rate[f] >= c * (1.0 - eps)) {
                frozen[f] = true;
            }
        }
    }
}

/// Runs the flows to completion and returns one outcome per flow, in input order.
/// A flow that no finite capacity constrains finishes right after its fixed cost.
pub fn simulate(flows: &[SimFlow], cap: &Capacities) -> Vec<FlowOutcome> {
    simulate_shared(flows, cap, 1.0)
}

/// [`simulate`] with a sharing efficiency (see [`maxmin_rates_shared`]).
pub fn simulate_shared(flows: &[SimFlow], cap: &Capacities, sharing: f64) -> Vec<FlowOutcome> {
    #[derive(Clone, Copy, PartialEq)]
    enum Phase {
        Waiting,
        Moving,
        Done,
    }
    let n = flows.len();
    let mut phase = vec![Phase::Waiting; n];
    let mut left: Vec<f64> = flows.iter().map(|f| f.bytes as f64).collect();
    let mut finish = vec![0.0; n];
    let ready: Vec<f64> = flows.iter().map(|f| f.start_s + f.alpha_s.max(0.0)).collect();
    let mut now = flows.iter().map(|f| f.start_s).fold(f64::INFINITY, f64::min);
    if !now.is_finite() {
        return Vec::new();
    }
    while phase.iter().any(|p| *p != Phase::Done) {
        for f in 0..n {
            if phase[f] == Phase::Waiting && ready[f] <= now + 1e-12 {
                phase[f] = Phase::Moving;
                if left[f] <= 0.0 {
                    phase[f] = Phase::Done;
                    finish[f] = now;
                }
            }
        }
        let moving: Vec<usize> = (0..n).filter(|&f| phase[f] == Phase::Moving).collect();
        let hops: Vec<&[Hop]> = moving.iter().map(|&f| flows[f].hops.as_slice()).collect();
        let caps: Vec<Option<f64>> = moving.iter().map(|&f| flows[f].cap_Bps).collect();
        let rates = maxmin_rates_shared(&hops, &caps, cap, sharing);
        // Next event: a waiting flow becomes ready, or a moving flow finishes.
        let mut next = (0..n).filter(|&f| phase[f] == Phase::Waiting).map(|f| ready[f]).fold(f64::INFINITY, f64::min);
        let ends: Vec<f64> = moving
            .iter()
            .enumerate()
            .map(|(m, &f)| if rates[m].is_infinite() { now } else { now + left[f] / rates[m] })
            .collect();
        next = ends.iter().copied().fold(next, f64::min);
        if !next.is_finite() {
            break;
        }
        let dt = (next - now).max(0.0);
        for (m, &f) in moving.iter().enumerate() {
            let moved = if rates[m].is_infinite() { left[f] } else { rates[m] * dt };
            left[f] -= moved;
            // The flow whose end is the next event finishes by identity, not by its remaining
            // bytes reaching zero: late in time (start 1e9 s) or at huge rates `now + dt` can
            // round to `now`, and waiting for the bytes would never end.
            if ends[m] <= next || left[f] <= 1e-6 * (flows[f].bytes as f64).max(1.0) {
                left[f] = 0.0;
                phase[f] = Phase::Done;
                finish[f] = next;
            }
        }
        now = next;
    }
    flows
        .iter()
        .zip(finish)
        .map(|(f, end)| {
            let life = end - f.start_s;
            FlowOutcome {
                name: f.name.clone(),
                bytes: f.bytes,
                start_s: f.start_s,
                finish_s: end,
                rate_Bps: if life > 0.0 { f.bytes as f64 / life } else { f64::INFINITY },
            }
        })
        .collect()
}

/// Time from the first release to the last completion, seconds.
pub fn makespan(out: &[FlowOutcome]) -> f64 {
    let start = out.iter().map(|o| o.start_s).fold(f64::INFINITY, f64::min);
    let end = out.iter().map(|o| o.finish_s).fold(f64::NEG_INFINITY, f64::max);
    if start.is_finite() && end.is_finite() {
        end - start
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
