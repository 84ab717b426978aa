//! Experiments: which routes run together. The runner executes a list of these; the spec's
//! contention sets and the calibration plan both produce them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PathRef, RouteKind, RouteSet};

/// A set of routes measured together (one route = solo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Experiment {
    /// Name, unique within a plan, e.g. `solo/prefill_to_decode:0->0`, `nic_share:IB_NIC_P[0]_PCI`,
    /// `kv_burst`, `decode_all`.
    pub name: String,
    /// Routes started together on one barrier.
    pub flows: Vec<PathRef>,
    /// Why this experiment is in the plan (what it identifies).
    pub purpose: String,
}

impl Experiment {
    /// True when it runs a single route.
    pub fn is_solo(&self) -> bool {
        self.flows.len() == 1
    }

    /// A solo experiment of one route.
    pub fn solo(path: PathRef) -> Experiment {
        Experiment { name: format!("solo/{path}"), flows: vec![path], purpose: "solo payload sweep".into() }
    }
}

/// The spec's experiments for a route set: every spec path solo, then (with `contention`) the
/// contention sets the spec implies:
/// - `nic_share:IB_NIC_P[k]_PCI`: the Path-2 flows that share NIC k (when two or more do);
/// - `gpu_share:GPU_P[i]_PCI`: Path 1 and Path 2 leaving prefill GPU i together;
/// - `kv_burst`: every Path-2 flow at once (the KV handoff burst);
/// - `decode_all`: every Path-3 flow at once.
///
/// Sets with fewer than two flows are left out.
pub fn spec_experiments(routes: &RouteSet, contention: bool) -> Vec<Experiment> {
    let spec: Vec<_> = routes.routes.iter().filter(|r| r.path.kind.is_spec_path()).collect();
    let mut out: Vec<Experiment> = spec.iter().map(|r| Experiment::solo(r.path)).collect();
    if !contention {
        return out;
    }
    let mut sets: Vec<Experiment> = Vec::new();
    let path2: Vec<_> = spec.iter().filter(|r| r.path.kind == RouteKind::PrefillToDecode).collect();
    for k in 0..routes.shape.ib_cards {
        let flows: Vec<PathRef> = path2.iter().filter(|r| r.nic == Some(k)).map(|r| r.path).collect();
        sets.push(Experiment {
            name: format!("nic_share:IB_NIC_P[{k}]_PCI"),
            flows,
            purpose: format!("Path-2 flows sharing NIC {k}: saturates IB_NIC_P[{k}]_PCI down / IB_Cable_P[{k}] up"),
        });
    }
    for i in 0..routes.shape.pp_prefill {
        let flows: Vec<PathRef> = spec
            .iter()
            .filter(|r| r.path.src == i && matches!(r.path.kind, RouteKind::PrefillInterRank | RouteKind::PrefillToDecode))
            .map(|r| r.path)
            .collect();
        sets.push(Experiment {
            name: format!("gpu_share:GPU_P[{i}]_PCI"),
            flows,
            purpose: format!("Path 1 and Path 2 leaving prefill GPU {i}: saturates GPU_P[{i}]_PCI up"),
        });
    }
    sets.push(Experiment {
        name: "kv_burst".into(),
        flows: path2.iter().map(|r| r.path).collect(),
        purpose: "every Path-2 flow at once: the KV handoff burst".into(),
    });
    sets.push(Experiment {
        name: "decode_all".into(),
        flows: spec.iter().filter(|r| r.path.kind == RouteKind::DecodeInterRank).map(|r| r.path).collect(),
        purpose: "every Path-3 flow at once".into(),
    });
    out.extend(sets.into_iter().filter(|e| e.flows.len() >= 2));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RackShape;

    #[test]
    fn spec_sets_of_small_and_large_racks() {
        let set = RouteSet::spec(&RackShape::new(2, 2, 1).unwrap(), None).unwrap();
        let names: Vec<String> = spec_experiments(&set, true).into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "solo/prefill_inter_rank:0->1",
                "solo/prefill_to_decode:0->0",
                "solo/prefill_to_decode:1->1",
                "solo/decode_inter_rank:0->1",
                "nic_share:IB_NIC_P[0]_PCI",
                "gpu_share:GPU_P[0]_PCI",
                "kv_burst"
            ]
        );
        let set = RouteSet::spec(&RackShape::new(8, 8, 4).unwrap(), None).unwrap();
        let e = spec_experiments(&set, true);
        assert_eq!(e.iter().filter(|e| e.is_solo()).count(), 7 + 8 + 7);
        let nic1 = e.iter().find(|e| e.name == "nic_share:IB_NIC_P[1]_PCI").unwrap();
        assert_eq!(nic1.flows.iter().map(|p| p.src).collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(e.iter().find(|e| e.name == "kv_burst").unwrap().flows.len(), 8);
        assert_eq!(e.iter().find(|e| e.name == "decode_all").unwrap().flows.len(), 7);
        assert_eq!(e.iter().filter(|e| e.name.starts_with("gpu_share")).count(), 7);
        assert_eq!(spec_experiments(&set, false).len(), 22);
    }
}
