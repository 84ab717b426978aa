//! Experiments: which routes run together. The runner executes a list of these; the spec's
//! contention sets and the calibration plan both produce them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PathRef;

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
}
