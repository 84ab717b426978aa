//! From a calibration to simulator inputs: capacities per segment direction, flows of the
//! spec's scenarios, and user flow files.
#![allow(non_snake_case)]

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Capacities, SimError, SimFlow};
use crate::error::InputError;
use crate::model::calibration::{Method, PathModel};
use crate::model::Calibration;
use crate::spec::{handoff_pairs, Hop, PathRef, RouteKind, RouteSet};

/// The capacities a simulation uses: identified values; for `lower_bound` segments their bound
/// (the only value known; the true capacity may be higher), raised to their series group's
/// capacity when they belong to an identified group. Unobserved ones are left out
/// (unconstrained).
pub fn capacities(cal: &Calibration) -> Capacities {
    let mut out = Capacities::new();
    let group = |id: &Option<String>| -> Option<f64> {
        let id = id.as_ref()?;
        cal.series_groups.iter().find(|g| &g.id == id)?.capacity_Bps
    };
    for s in &cal.segments {
        let v = match s.method {
            Method::Isolated | Method::Saturation | Method::Bottleneck => s.capacity_Bps,
            // A series group's members carry the group's flows at the group's capacity.
            Method::LowerBound => match (s.lower_bound_Bps, group(&s.series_group)) {
                (Some(b), Some(g)) => Some(b.max(g)),
                (b, g) => b.or(g),
            },
            Method::Unobserved => None,
        };
        if let Some(v) = v.filter(|v| *v > 0.0) {
            out.insert(Hop { id: s.segment, dir: s.dir }, v);
        }
    }
    out
}

/// The spec's scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The KV handoff burst: every Path-2 flow at once, each carrying its share of the KV.
    KvBurst,
    /// One pipeline step: every Path-1 flow at once, without concurrent handoff.
    PipelineStep,
    /// One pipeline step while the KV handoff burst runs (Path 1 + Path 2).
    PipelineWithHandoff,
    /// One decode step: every Path-3 flow at once.
    DecodeStep,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] =
        [Scenario::KvBurst, Scenario::PipelineStep, Scenario::PipelineWithHandoff, Scenario::DecodeStep];

    /// Its name in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::KvBurst => "kv_burst",
            Scenario::PipelineStep => "pipeline_step",
            Scenario::PipelineWithHandoff => "pipeline_with_handoff",
            Scenario::DecodeStep => "decode_step",
        }
    }
}

/// The path model of `path` in the calibration, if it was measured.
fn model<'a>(cal: &'a Calibration, path: &PathRef) -> Option<&'a PathModel> {
    cal.paths.iter().find(|p| p.path == *path)
}

/// The largest payload measured on any route of `kind`, bytes.
fn largest_payload(cal: &Calibration, kind: RouteKind) -> Option<u64> {
    cal.paths.iter().filter(|p| p.path.kind == kind).flat_map(|p| p.raw.iter().map(|r| r.payload_bytes)).max()
}

/// A flow along `path` moving `bytes`. Its hops are the ones measured on that route when the
/// calibration has it (outside-spec links included), else the spec's. With `ideal`, the path's
/// fixed cost and rate cap are left out (segments only).
pub fn flows_for(cal: &Calibration, path: PathRef, hops: Vec<Hop>, bytes: u64, ideal: bool) -> SimFlow {
    let m = model(cal, &path);
    let hops = m.map(|m| m.segments.clone()).filter(|h| !h.is_empty()).unwrap_or(hops);
    let piece = m.and_then(|m| {
        m.pieces.iter().find(|p| bytes >= p.min_bytes && bytes <= p.max_bytes).or_else(|| {
            if bytes < m.pieces.first()?.min_bytes {
                m.pieces.first()
            } else {
                m.pieces.last()
            }
        })
    });
    let (alpha_s, cap_Bps) = match (ideal, piece) {
        (false, Some(p)) => (p.alpha_s, Some(p.beta_Bps)),
        _ => (0.0, None),
    };
    SimFlow { name: path.to_string(), hops, bytes, start_s: 0.0, alpha_s, cap_Bps }
}

/// The flows of a scenario. `bytes` is the per-flow payload (Path 2: the whole stage's KV,
/// scaled by each route's share); when None, the largest payload measured on that path kind.
pub fn scenario_flows(cal: &Calibration, sc: Scenario, bytes: Option<u64>, ideal: bool) -> Result<Vec<SimFlow>, SimError> {
    let set = RouteSet::spec(&cal.shape, None)?;
    let size = |kind: RouteKind| bytes.or_else(|| largest_payload(cal, kind)).ok_or(SimError::NoPayload { kind });
    let mut out = Vec::new();
    let kinds: &[RouteKind] = match sc {
        Scenario::KvBurst => &[RouteKind::PrefillToDecode],
        Scenario::PipelineStep => &[RouteKind::PrefillInterRank],
        Scenario::PipelineWithHandoff => &[RouteKind::PrefillInterRank, RouteKind::PrefillToDecode],
        Scenario::DecodeStep => &[RouteKind::DecodeInterRank],
    };
    let shares = handoff_pairs(&cal.shape, None)?;
    for &kind in kinds {
        let b = size(kind)?;
        for (_, r) in set.of_kind(kind) {
            let share = if kind == RouteKind::PrefillToDecode {
                shares.iter().find(|(i, j, _)| *i == r.path.src && *j == r.path.dst).map(|s| s.2).unwrap_or(1.0)
            } else {
                1.0
            };
            let b = ((b as f64) * share).round() as u64;
            out.push(flows_for(cal, r.path, r.segments.clone(), b, ideal));
        }
    }
    if out.is_empty() {
        return Err(SimError::NoFlows { scenario: sc.as_str() });
    }
    Ok(out)
}

/// A user flow file for `linkcal sim --flows FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowFile {
    /// The flows.
    pub flows: Vec<FlowSpec>,
}

/// One flow of a flow file: a spec route (`path`) or an explicit hop list (`hops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowSpec {
    /// Name (default: the route).
    #[serde(default)]
    pub name: Option<String>,
    /// A route by kind, source and destination.
    #[serde(default)]
    pub path: Option<PathRef>,
    /// Explicit segment directions (instead of `path`).
    #[serde(default)]
    pub hops: Option<Vec<Hop>>,
    /// Bytes to move.
    pub bytes: u64,
    /// Release time, seconds (default 0).
    #[serde(default)]
    pub start_s: f64,
}

/// Reads a flow file and turns it into simulator flows, naming file and field on error.
pub fn load_flows(file: &Path, cal: &Calibration, ideal: bool) -> Result<Vec<SimFlow>, InputError> {
    parse_flows(file, &crate::error::read_input(file)?, cal, ideal)
}

/// [`load_flows`] on a flow file's text already read from `file` (named in errors only).
pub fn parse_flows(file: &Path, text: &str, cal: &Calibration, ideal: bool) -> Result<Vec<SimFlow>, InputError> {
    let ff: FlowFile = crate::error::parse_json(file, text)?;
    if ff.flows.is_empty() {
        return Err(InputError::field(file, "flows", "is empty: give at least one flow"));
    }
    let set = RouteSet::build(&cal.shape, None, Default::default(), true)
        .map_err(|e| InputError::file(file, format!("calibration shape: {e}")))?;
    let mut out = Vec::new();
    for (n, f) in ff.flows.iter().enumerate() {
        let mut flow = match (&f.path, &f.hops) {
            (Some(p), None) => {
                let route = set.find(p).ok_or_else(|| {
                    InputError::field(file, format!("flows[{n}].path"), format!("route {p} does not exist in this rack shape"))
                })?;
                flows_for(cal, *p, route.segments.clone(), f.bytes, ideal)
            }
            (None, Some(h)) if !h.is_empty() => {
                for (k, hop) in h.iter().enumerate() {
                    cal.shape.check_segment(hop.id).map_err(|e| {
                        InputError::field(file, format!("flows[{n}].hops[{k}]"), format!("{e}: name a segment of this rack"))
                    })?;
                }
                SimFlow { name: format!("flow{n}"), hops: h.clone(), bytes: f.bytes, start_s: 0.0, alpha_s: 0.0, cap_Bps: None }
            }
            _ => {
                return Err(InputError::field(file, format!("flows[{n}]"), "give exactly one of 'path' or a non-empty 'hops'"));
            }
        };
        let max_s = crate::model::check::MAX_TIME_S;
        if !(f.start_s.is_finite() && (0.0..=max_s).contains(&f.start_s)) {
            let msg = format!("is {}: must be a release time in [0, {max_s:e}] seconds", f.start_s);
            return Err(InputError::field(file, format!("flows[{n}].start_s"), msg));
        }
        if f.bytes == 0 {
            return Err(InputError::field(file, format!("flows[{n}].bytes"), "is 0: a flow moves at least 1 byte"));
        }
        flow.start_s = f.start_s;
        if let Some(name) = &f.name {
            flow.name = name.clone();
        }
        out.push(flow);
    }
    Ok(out)
}
