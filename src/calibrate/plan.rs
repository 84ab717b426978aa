//! Experiment design for `linkcal run --plan calibrate`: the contention experiments that
//! identify segment directions the solo runs leave as lower bounds, and the segment directions
//! the spec's paths can never identify, with the reason. A pure function of the routes (and,
//! when given, a calibration of the solo runs).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::calibration::Method;
use crate::model::Calibration;
use crate::spec::{Dir, Experiment, Hop, PathRef, RackShape, RouteSet};

/// Most experiments the plan spends on one segment direction.
pub const MAX_PER_SEGMENT: usize = 3;

/// A plan: experiments to add to the solo runs, and what stays out of reach.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Extra contention experiments, each naming what it identifies in `purpose`.
    pub experiments: Vec<Experiment>,
    /// Target segment directions with the names of the experiments aimed at them.
    pub targets: BTreeMap<String, Vec<String>>,
    /// Targets no set of concurrent routes can saturate, with the reason.
    pub unreachable: Vec<(String, String)>,
}

/// Routes crossing each hop, in route order.
fn crossings(set: &RouteSet) -> BTreeMap<Hop, Vec<PathRef>> {
    let mut by: BTreeMap<Hop, Vec<PathRef>> = BTreeMap::new();
    for r in &set.routes {
        for h in &r.segments {
            let v = by.entry(*h).or_default();
            if !v.contains(&r.path) {
                v.push(r.path);
            }
        }
    }
    by
}

/// Chooses experiments. Targets are the calibration's `lower_bound` segment directions when
/// `solo` is given, else every hop two or more routes cross. For each target: (1) routes
/// through it that share no other hop with each other (so only the target, or its series
/// partners, can saturate), then (2) every route through it when that set differs.
pub fn plan(set: &RouteSet, solo: Option<&Calibration>) -> Plan {
    let by = crossings(set);
    let route_hops: BTreeMap<PathRef, BTreeSet<Hop>> =
        set.routes.iter().map(|r| (r.path, r.segments.iter().copied().collect())).collect();
    let targets: Vec<Hop> = match solo {
        Some(cal) => cal
            .segments
            .iter()
            .filter(|s| s.method == Method::LowerBound)
            .map(|s| Hop { id: s.segment, dir: s.dir })
            .filter(|h| by.contains_key(h))
            .collect(),
        None => by.iter().filter(|(_, r)| r.len() >= 2).map(|(h, _)| *h).collect(),
    };
    let mut out = Plan { experiments: Vec::new(), targets: BTreeMap::new(), unreachable: Vec::new() };
    let mut seen: BTreeMap<BTreeSet<PathRef>, String> = BTreeMap::new();
    for h in targets {
        let through = &by[&h];
        if through.len() < 2 {
            out.unreachable
                .push((h.to_string(), format!("only {} crosses it: identified only when it limits that route", through[0])));
            continue;
        }
        // Hops crossed by exactly the same routes are the target's partners (not conflicts).
        let partners: BTreeSet<Hop> = by.iter().filter(|(_, r)| *r == through).map(|(x, _)| *x).collect();
        let mut disjoint: Vec<PathRef> = Vec::new();
        for p in through {
            let mine = &route_hops[p];
            let clash = disjoint.iter().any(|q| route_hops[q].intersection(mine).any(|x| !partners.contains(x)));
            if !clash {
                disjoint.push(*p);
            }
        }
        let mut names = Vec::new();
        let candidates = [disjoint, through.clone()];
        for (n, flows) in candidates.iter().enumerate() {
            if flows.len() < 2 || names.len() >= MAX_PER_SEGMENT {
                continue;
            }
            let key: BTreeSet<PathRef> = flows.iter().copied().collect();
            if let Some(name) = seen.get(&key) {
                if !names.contains(name) {
                    names.push(name.clone());
                }
                continue;
            }
            let name = format!("calib/{}/{}", if n == 0 { "sat" } else { "all" }, h.to_string().replace(' ', ":"));
            let purpose = format!(
                "saturate {h} with {} concurrent routes{}: their aggregate identifies its capacity (or its series group's)",
                flows.len(),
                if n == 0 { " that share nothing else" } else { "" }
            );
            out.experiments.push(Experiment { name: name.clone(), flows: flows.clone(), purpose });
            seen.insert(key, name.clone());
            names.push(name);
        }
        out.targets.insert(h.to_string(), names);
    }
    out
}

/// What the spec's own paths can never identify (or only conditionally), per segment
/// direction of the spec, with the reason.
pub fn never_identifiable(shape: &RackShape) -> Vec<(Hop, String)> {
    let Ok(set) = RouteSet::spec(shape, None) else {
        return Vec::new();
    };
    let by = crossings(&set);
    let mut out = Vec::new();
    for id in shape.segments().into_iter().filter(|s| !s.outside_spec()) {
        for dir in [Dir::Up, Dir::Down] {
            let h = Hop { id, dir };
            match by.get(&h) {
                None => out.push((h, "never: no spec path crosses it in this direction".to_string())),
                Some(r) => {
                    let partners: Vec<String> =
                        by.iter().filter(|(x, q)| **x != h && *q == r).map(|(x, _)| x.to_string()).collect();
                    if !partners.is_empty() {
                        out.push((
                            h,
                            format!(
                                "never alone: every spec path crossing it also crosses {} (a series group: only the minimum is identified; an isolation probe splits them)",
                                partners.join(", ")
                            ),
                        ));
                    } else if r.len() == 1 {
                        out.push((h, format!("only if it limits {}: no other spec path crosses it", r[0])));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::HopOptions;

    #[test]
    fn plan_for_8_8_4_saturates_nics_and_gpu_links_within_budget() {
        let shape = RackShape::new(8, 8, 4).unwrap();
        let set = RouteSet::build(&shape, None, HopOptions::default(), false).unwrap();
        let p = plan(&set, None);
        let nic = "IB_NIC_P[1]_PCI down";
        let names = &p.targets[nic];
        assert!(!names.is_empty() && names.len() <= MAX_PER_SEGMENT);
        let e = p.experiments.iter().find(|e| e.name == names[0]).unwrap();
        let srcs: Vec<usize> = e.flows.iter().map(|f| f.src).collect();
        assert_eq!(srcs, vec![1, 5], "GPUs 1 and 5 share NIC 1");
        // GPU_P[2] up: Path 1 out of 2 plus Path 2 out of 2.
        assert!(p.targets.contains_key("GPU_P[2]_PCI up"));
        assert!(p.targets.values().all(|v| v.len() <= MAX_PER_SEGMENT));
        let names: BTreeSet<&str> = p.experiments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), p.experiments.len(), "names are unique");
    }

    #[test]
    fn spec_limits_name_the_notes_series_groups() {
        let shape = RackShape::new(8, 8, 4).unwrap();
        let n = never_identifiable(&shape);
        let find = |s: &str| n.iter().find(|(h, _)| h.to_string() == s).map(|(_, w)| w.clone()).unwrap_or_default();
        assert!(find("IB_NIC_P[0]_PCI down").contains("IB_Cable_P[0] up"));
        assert!(find("Eth_NIC_D[0]_PCI down").contains("Eth_Cable_D[0] up"));
        assert!(find("GPU_D[0]_PCI down").contains("IB_Cable_D[0] down"), "no Path 3 enters server 0");
        assert!(find("GPU_D[3]_PCI down").is_empty(), "Path 3 into 3 separates it from IB_Cable_D[3]");
        assert!(find("GPU_P[0]_PCI down").starts_with("never: no spec path"));
        assert!(find("GPU_P[3]_PCI down").starts_with("only if it limits prefill_inter_rank:2->3"));
    }
}
