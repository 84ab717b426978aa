//! The capacity solver: lower bounds from everything carried, identification from solo
//! bottlenecks and saturated aggregates, series groups from identical crossings.
//!
//! Rules (see ../shared/notes/calibration.md):
//! - every rate carried through a hop (a solo flow, or the aggregate of concurrent flows) is a
//!   lower bound of its capacity;
//! - a solo flow identifies its bottleneck when every other hop it crossed is shown faster
//!   (a lower bound or identified capacity above its rate by more than [`TOL`]);
//! - concurrent flows saturate a hop when their aggregate falls short of what they reach
//!   apart by more than [`SAT_MARGIN`], and no other shared hop explains the shortfall;
//! - hops crossed by the same flows in every measurement form a series group: only their
//!   minimum is identified, each member is a lower bound.

use std::collections::{BTreeMap, BTreeSet};

use super::observe::{Observations, Rate};
use crate::model::calibration::Method;
use crate::spec::{Hop, RouteKind};

/// Relative margin by which another hop must be faster to rule it out as a bottleneck.
pub const TOL: f64 = 0.02;
/// Relative shortfall of an aggregate below the sum of solo rates that counts as saturation.
pub const SAT_MARGIN: f64 = 0.05;

/// What the solver concluded for one hop.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// How.
    pub method: Method,
    /// Identified value with its interval (identified methods), or the best lower bound.
    pub rate: Option<Rate>,
    /// Series group index (into `Solution::groups`), if any.
    pub group: Option<usize>,
}

/// A series group: hops crossed together by the same flows everywhere.
#[derive(Debug, Clone)]
pub struct Group {
    /// Members.
    pub members: Vec<Hop>,
    /// The group's identified minimum, if any observation isolated the group.
    pub rate: Option<Rate>,
}

/// The solver's output.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Per hop.
    pub hops: BTreeMap<Hop, Estimate>,
    /// Series groups.
    pub groups: Vec<Group>,
}

/// A candidate identification: the hops that may be binding, the value, the method.
struct Claim {
    hops: Vec<Hop>,
    rate: Rate,
    method: Method,
}

fn series_groups(o: &Observations) -> Vec<Vec<Hop>> {
    let mut by_key: BTreeMap<&Vec<(String, usize)>, Vec<Hop>> = BTreeMap::new();
    for (h, key) in &o.crossings {
        by_key.entry(key).or_default().push(*h);
    }
    by_key.into_values().filter(|m| m.len() >= 2).collect()
}

fn lower_bounds(o: &Observations) -> BTreeMap<Hop, Rate> {
    let mut lb: BTreeMap<Hop, Rate> = BTreeMap::new();
    let mut offer = |h: Hop, r: &Rate| {
        if lb.get(&h).is_none_or(|cur| r.value > cur.value) {
            lb.insert(h, r.clone());
        }
    };
    for s in o.solo.values() {
        for h in &s.hops {
            offer(*h, &s.peak);
        }
    }
    for s in &o.shared {
        offer(s.hop, &s.bound);
    }
    lb
}

/// Saturation claims. Concurrent flows through a hop identify its capacity (their aggregate)
/// when the aggregate falls short of the sum of their solo rates by [`SAT_MARGIN`], one of
/// them was throttled below its solo rate by that margin, and every other hop it crossed is shown
/// not full (its lower bound exceeds the load this measurement put on it): then only this hop
/// (or hops crossed by exactly the same flows here) can have throttled it.
fn saturation_claims(o: &Observations, lb: &BTreeMap<Hop, Rate>) -> Vec<Claim> {
    let mut claims = Vec::new();
    let mut done: BTreeSet<(&str, &Vec<usize>)> = BTreeSet::new();
    for s in o.shared.iter().filter(|s| s.flows.len() >= 2 && o.largest.contains(&s.measurement)) {
        if !done.insert((&s.measurement, &s.flows)) {
            continue;
        }
        let Some(co) = o.contended.get(&s.measurement) else { continue };
        let class: Vec<Hop> =
            o.shared.iter().filter(|x| x.measurement == s.measurement && x.flows == s.flows).map(|x| x.hop).collect();
        // Their aggregate must fall short of what they reach alone by the margin.
        let solo_sum: Option<f64> = s.flows.iter().map(|&i| o.solo_rate(&co[i].path, co[i].bytes)).sum();
        if solo_sum.is_none_or(|sum| s.carried.value >= sum * (1.0 - SAT_MARGIN)) {
            continue;
        }
        let load = |h: &Hop| co.iter().filter(|f| f.hops.contains(h)).map(|f| f.rate).sum::<f64>();
        let pinned = s.flows.iter().any(|&i| {
            let f = &co[i];
            let throttled = o.solo_rate(&f.path, f.bytes).is_some_and(|solo| f.rate < solo * (1.0 - SAT_MARGIN));
            throttled
                && f.hops
                    .iter()
                    .filter(|h| !class.contains(h))
                    .all(|h| lb.get(h).is_some_and(|b| b.value > load(h) * (1.0 + TOL)))
        });
        if !pinned {
            continue;
        }
        // The streaming aggregate, when the capacity that makes max-min reproduce the measured
        // burst (each flow capped at its solo rate) agrees with it (other shared hops or a
        // noisy window would make them differ); without a burst, the streaming estimate.
        let rate = match o.spans.get(&s.measurement) {
            Some(span) => {
                let flows: Vec<(u64, f64, bool)> = co
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| Some((f.bytes, o.solo_rate(&f.path, f.bytes)?, s.flows.contains(&i))))
                    .collect();
                if flows.len() < co.len() {
                    continue;
                }
                // Two estimates must agree: the burst fit and the streaming aggregate. The
                // burst reads low by TCP's ramps (see observe::settle), so they must agree
                // within SAT_MARGIN, and the streaming aggregate is the value.
                match burst_fit(&flows, *span, s.carried.value, &s.measurement) {
                    Some(r) if (r.value / s.carried.value - 1.0).abs() <= SAT_MARGIN => {
                        Rate { low: s.carried.low.min(r.low), ..s.carried.clone() }
                    }
                    _ => continue,
                }
            }
            None => s.carried.clone(),
        };
        claims.push(Claim { hops: class, rate, method: Method::Saturation });
    }
    claims
}

/// Burst makespan of flows `(bytes, solo rate, crosses the hop)` released together, the hop
/// having capacity `c` (max-min, each flow capped at its solo rate).
fn burst_span(flows: &[(u64, f64, bool)], c: f64) -> f64 {
    let h = Hop::new(crate::spec::SegmentKind::GpuP, 0, crate::spec::Dir::Up);
    let sim: Vec<crate::sim::SimFlow> = flows
        .iter()
        .map(|(b, solo, through)| crate::sim::SimFlow {
            name: String::new(),
            hops: if *through { vec![h] } else { Vec::new() },
            bytes: *b,
            start_s: 0.0,
            alpha_s: 0.0,
            cap_Bps: Some(*solo),
        })
        .collect();
    let cap: crate::sim::Capacities = [(h, c)].into_iter().collect();
    crate::sim::makespan(&crate::sim::simulate(&sim, &cap))
}

/// The hop capacity for which the burst takes `span` (median, low, high) seconds, by
/// bisection; None when no capacity reproduces it, or when the makespan hardly depends on the
/// capacity near the solution or near the streaming estimate `near` (another flow's own limit
/// sets the makespan: the burst cannot tell).
fn burst_fit(flows: &[(u64, f64, bool)], span: (f64, f64, f64), near: f64, evidence: &str) -> Option<Rate> {
    let through: f64 = flows.iter().filter(|f| f.2).map(|f| f.1).sum();
    let bytes: f64 = flows.iter().filter(|f| f.2).map(|f| f.0 as f64).sum();
    let solve = |t: f64| -> Option<f64> {
        let (mut lo, mut hi) = (bytes / t * 0.5, through);
        if burst_span(flows, hi) > t * (1.0 + 1e-6) {
            return None;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if burst_span(flows, mid) > t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    };
    let c = solve(span.0)?;
    // Sensitivity: +-TOL on the capacity must move the makespan by at least TOL/2.
    for x in [c, near] {
        let (a, b) = (burst_span(flows, x * (1.0 - TOL)), burst_span(flows, x * (1.0 + TOL)));
        if (a - b) / span.0 < TOL / 2.0 {
            return None;
        }
    }
    let low = solve(span.2).unwrap_or(c).min(c);
    let high = solve(span.1).unwrap_or(c).max(c);
    Some(Rate { value: c, low, high, evidence: evidence.to_string() })
}

fn solo_claims(o: &Observations) -> Vec<Claim> {
    o.solo
        .values()
        .map(|s| Claim {
            hops: s.hops.iter().copied().collect::<BTreeSet<_>>().into_iter().collect(),
            rate: s.peak.clone(),
            method: match s.path.kind {
                RouteKind::PrefillGpuToHost
                | RouteKind::PrefillHostToGpu
                | RouteKind::DecodeGpuToHost
                | RouteKind::DecodeHostToGpu => Method::Isolated,
                RouteKind::PrefillInterRank | RouteKind::PrefillToDecode | RouteKind::DecodeInterRank | RouteKind::HostRdma => {
                    Method::Bottleneck
                }
            },
        })
        .collect()
}

/// Preference between identifications of one hop: an isolation probe first.
fn rank(m: Method) -> u8 {
    match m {
        Method::Isolated => 2,
        Method::Saturation | Method::Bottleneck => 1,
        Method::LowerBound | Method::Unobserved => 0,
    }
}

/// Runs the solver over all hops in `universe` (hops no observation crossed are `unobserved`).
pub fn solve(o: &Observations, universe: &[Hop]) -> Solution {
    let lb = lower_bounds(o);
    let groups_m = series_groups(o);
    let group_of: BTreeMap<Hop, usize> = groups_m.iter().enumerate().flat_map(|(g, m)| m.iter().map(move |h| (*h, g))).collect();
    let mut claims = saturation_claims(o, &lb);
    claims.extend(solo_claims(o));
    let mut ident: BTreeMap<Hop, (Rate, Method)> = BTreeMap::new();
    let mut group_ident: BTreeMap<usize, (Rate, Method)> = BTreeMap::new();
    for _round in 0..8 {
        let mut changed = false;
        for c in &claims {
            // An aggregate under contention runs a little below the capacity it hit (TCP
            // loses a few percent sharing a link): a hop is ruled out of a saturation claim
            // only when shown faster by SAT_MARGIN, else a nearly full neighbour could be
            // credited with the shortfall.
            let margin = if c.method == Method::Saturation { SAT_MARGIN } else { TOL };
            let v = c.rate.value * (1.0 + margin);
            let faster = |h: &Hop| lb.get(h).is_some_and(|r| r.value > v) || ident.get(h).is_some_and(|(r, _)| r.value > v);
            let binding: Vec<Hop> = c.hops.iter().copied().filter(|h| !faster(h)).collect();
            let better = |cur: Option<&(Rate, Method)>| {
                cur.is_none_or(|(r, m)| {
                    rank(c.method) > rank(*m) || (rank(c.method) == rank(*m) && c.rate.value > r.value * (1.0 + 1e-9))
                })
            };
            match binding.as_slice() {
                [h] => {
                    if better(ident.get(h)) {
                        ident.insert(*h, (c.rate.clone(), c.method));
                        changed = true;
                    }
                }
                [h, rest @ ..] => {
                    if let Some(&g) = group_of.get(h) {
                        if rest.iter().all(|x| group_of.get(x) == Some(&g)) && better(group_ident.get(&g)) {
                            group_ident.insert(g, (c.rate.clone(), c.method));
                            changed = true;
                        }
                    }
                }
                [] => {}
            }
        }
        if !changed {
            break;
        }
    }
    let mut hops = BTreeMap::new();
    for h in universe.iter().chain(lb.keys()) {
        if hops.contains_key(h) {
            continue;
        }
        let group = group_of.get(h).copied();
        let bound = lb.get(h).cloned();
        let est = match (ident.get(h), bound) {
            // An identification contradicted by a larger carried rate is withdrawn.
            (Some((r, m)), b) if b.as_ref().is_none_or(|b| b.value <= r.value * (1.0 + TOL)) => {
                let mut r = r.clone();
                // A larger carried rate (within TOL) is the better estimate of the same capacity.
                if let Some(b) = b.filter(|b| b.value > r.value) {
                    r.value = b.value;
                    r.high = r.high.max(b.high);
                    r.evidence = b.evidence;
                }
                Estimate { method: *m, rate: Some(r), group }
            }
            (_, Some(b)) => Estimate { method: Method::LowerBound, rate: Some(b), group },
            (_, None) => Estimate { method: Method::Unobserved, rate: None, group },
        };
        hops.insert(*h, est);
    }
    let groups = groups_m
        .into_iter()
        .enumerate()
        .map(|(g, members)| Group { members, rate: group_ident.get(&g).map(|(r, _)| r.clone()) })
        .collect();
    Solution { hops, groups }
}
