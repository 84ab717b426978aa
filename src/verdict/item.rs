//! The vocabulary of a verdict, shared by acceptance and the items inferred for it: what is
//! judged ([`AcceptInputs`]), what an item is, one check against one threshold, one item's
//! verdict.
#![allow(non_snake_case)]

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::rules::Style;
use super::Outcome;
use crate::model::calibration::Method;
use crate::model::results::Results;
use crate::model::Calibration;
use crate::spec::{Hop, PathRef};

/// What acceptance judges.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptInputs<'a> {
    /// A calibration file (segments, series groups) and where it came from.
    pub calibration: Option<(&'a Path, &'a Calibration)>,
    /// A results file (paths) and where it came from.
    pub results: Option<(&'a Path, &'a Results)>,
    /// The fleet baseline for deviation rules.
    pub baseline: Option<&'a Baseline>,
}

/// What an acceptance item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// One segment direction (from a calibration).
    Segment,
    /// A series group of segment directions (only their minimum is identified).
    Group,
    /// One route at one payload size (from results).
    Path,
    /// The unidentified bottleneck of a solo route: one of several segment directions.
    RouteBottleneck,
}

/// One threshold checked against one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// Rule name.
    pub rule: String,
    /// Threshold style.
    pub style: Style,
    /// The item fails below this, B/s (null when the rule gives none or it cannot be computed).
    pub fail_below_Bps: Option<f64>,
    /// The item warns below this, B/s.
    pub warn_below_Bps: Option<f64>,
    /// This check's outcome.
    pub outcome: Outcome,
    /// Human-readable reason, with units.
    pub detail: String,
}

/// The verdict on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemVerdict {
    /// Display name, e.g. `GPU_P[0]_PCI up`, `prefill_to_decode:0->0 @ 4 MiB`, `series group G1 (...)`.
    pub item: String,
    /// Segment direction, group or path.
    pub kind: ItemKind,
    /// The segment direction (segments) or the members (groups).
    pub hops: Vec<Hop>,
    /// The route (paths).
    pub path: Option<PathRef>,
    /// Payload judged (paths), bytes.
    pub payload_bytes: Option<u64>,
    /// The value judged, B/s: identified capacity, lower bound, or median solo goodput.
    pub value_Bps: Option<f64>,
    /// True when `value_Bps` is only a lower bound.
    pub lower_bound: bool,
    /// How the calibration obtained it (segments).
    pub method: Option<Method>,
    /// Nominal rate per direction used by fraction-of-nominal checks, B/s.
    pub nominal_Bps: Option<f64>,
    /// Baseline value used by deviation checks, B/s.
    pub baseline_Bps: Option<f64>,
    /// The item's outcome: waived, else the worst of its checks.
    pub outcome: Outcome,
    /// Why it was waived or not measured.
    pub reason: Option<String>,
    /// Every check made.
    pub checks: Vec<CheckResult>,
}
