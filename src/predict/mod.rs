//! The planner's question answered from a calibration: for a model and workload (N, T, M),
//! the communication time of one pipeline step (Path 1: the chunk activation from stage i to
//! i+1), the KV handoff of each prefill stage alone and of all stages at once (Path 2), and one
//! decode step (Path 3), each with the segment direction that limits it; and how the KV burst
//! and the decode step scale with N and T ([`scaling`]).
//!
//! Works on a calibration and a model's payloads only. Times come from the flow-level
//! simulator ([`crate::sim`]): each flow pays its route's fixed cost (alpha) and moves at its
//! max-min share, capped at the route's measured sustained rate; a segment direction two or
//! more flows share offers the calibration's `sharing_efficiency` of its capacity.
//!
//! Payloads are the model's real bytes divided by the calibration's `origin.payload_scale`
//! (as `linkcal run --model` does): on an emulated rack the times are those of the scaled
//! payloads on the emulated rack, not of the real payloads on hardware.
#![allow(non_snake_case)]

mod check;
pub mod engine;
mod scale;

pub use check::{check_shape, check_values, load_calibration, parse_calibration};
pub use scale::{scaling, ScalePoint, SCALE_N, SCALE_T};

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::InputError;
use crate::model::calibration::Method;
use crate::model::Calibration;
use crate::payload::{Payloads, ServingSummary};
use crate::sim::{capacities, flows_for, makespan, simulate_shared, Capacities, SimFlow};
use crate::spec::{Hop, HopOptions, PathRef, RackShape, Route, RouteKind, RouteSet, Workload};

/// Why a prediction could not be made; every variant is bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The calibration file or a flag is wrong.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The model config or the workload does not give payloads for this rack.
    #[error(transparent)]
    Payload(#[from] crate::payload::PayloadError),
}

impl crate::error::Classified for PredictError {
    /// Every PredictError is about the user's input.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

/// How far the calibration identifies what limits a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The slowest hop's capacity is identified (isolated, saturation or bottleneck).
    Identified,
    /// The slowest hop belongs to a series group whose minimum is identified: the group's
    /// capacity is known, not which member sets it.
    SeriesGroup,
    /// The route's own measured sustained rate is below every hop's value: the time is
    /// measured, the segment that sets it is not separated.
    RouteMeasured,
    /// The slowest hop is known only by a lower bound: not a capacity; the time is an upper
    /// bound (the route may be faster).
    LowerBoundOnly,
}

/// What limits one route (solo) or a burst (its most loaded shared hop).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Bottleneck {
    /// The limiting segment direction (None when the route's measured rate limits it).
    pub hop: Option<Hop>,
    /// Its value as simulated, B/s (for a burst: the hop's capacity, before sharing).
    pub rate_Bps: f64,
    /// How far it is identified.
    pub limit: Limit,
    /// Series group of the hop, if any.
    pub series_group: Option<String>,
    /// The slowest hop of the route whose capacity is identified, with that capacity in B/s
    /// (given beside a lower bound, so a planner sees what is known).
    pub slowest_identified: Option<(Hop, f64)>,
}

impl Bottleneck {
    /// In words; a lower bound is never shown as a capacity.
    pub fn describe(&self) -> String {
        let hop = self.hop.map(|h| h.to_string()).unwrap_or_default();
        let rate = crate::units::fmt_rate(self.rate_Bps);
        match self.limit {
            Limit::Identified => format!("{hop} {rate} (identified)"),
            Limit::SeriesGroup => format!(
                "{hop} {rate} (series group {}: the group's minimum is identified, not which member sets it)",
                self.series_group.as_deref().unwrap_or("?")
            ),
            Limit::RouteMeasured => format!("the route's measured rate {rate} (segment not separated)"),
            Limit::LowerBoundOnly => {
                let known = self
                    .slowest_identified
                    .map(|(h, c)| format!("; slowest identified: {h} {}", crate::units::fmt_rate(c)))
                    .unwrap_or_default();
                format!("LOWER BOUND ONLY: {hop} >= {rate}, not a capacity (time is an upper bound){known}")
            }
        }
    }
}

/// One route's transfer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RouteTime {
    /// The route.
    pub route: PathRef,
    /// Bytes the model moves on it (real payload).
    pub real_bytes: u64,
    /// Bytes on the calibrated rack: real / payload_scale, rounded, at least 1.
    pub scaled_bytes: u64,
    /// Time of the transfer alone, seconds (on the calibrated rack).
    pub alone_s: f64,
    /// Completion time when every route of its path moves at once, seconds.
    pub all_at_once_s: f64,
    /// What limits it alone.
    pub bottleneck: Bottleneck,
}

/// The KV handoff of one prefill stage (to one or more decode servers).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StageTime {
    /// Prefill stage i.
    pub stage: usize,
    /// KV bytes the stage hands off (real payload).
    pub real_bytes: u64,
    /// The same on the calibrated rack.
    pub scaled_bytes: u64,
    /// The stage's handoff alone (its routes at once, no other stage), seconds.
    pub alone_s: f64,
    /// Completion of its last route when every stage hands off at once, seconds.
    pub all_at_once_s: f64,
}

/// One spec path's transfers.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PathTimes {
    /// One entry per route.
    pub routes: Vec<RouteTime>,
    /// Makespan when every route moves at once, seconds (0 when the rack has none).
    pub all_at_once_s: f64,
    /// The most loaded segment direction two or more routes share (None when none is shared).
    pub shared_bottleneck: Option<Bottleneck>,
}

/// The prediction for one model, workload and calibrated rack.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Prediction {
    /// Model name.
    pub model: String,
    /// N, T, M.
    pub workload: Workload,
    /// The calibrated rack.
    pub shape: RackShape,
    /// How the payloads were sized.
    pub serving: Option<ServingSummary>,
    /// True when the calibration comes from the emulated rack.
    pub emulated: bool,
    /// Real payloads were divided by this before simulating (1 on a real rack).
    pub payload_scale: f64,
    /// Sharing efficiency applied to shared segment directions (1 when the calibration has none).
    pub sharing_efficiency: f64,
    /// Path 1: one pipeline step, the chunk activation from stage i to i+1.
    pub path1: PathTimes,
    /// Path 2: the KV handoff, per route.
    pub path2: PathTimes,
    /// Path 2 per prefill stage: alone and all stages at once.
    pub stages: Vec<StageTime>,
    /// Path 3: one decode step, the decode activation from server j to j+1.
    pub path3: PathTimes,
    /// What the figures mean (scaled rack, lower bounds).
    pub notes: Vec<String>,
    /// The KV-transfer engine Path 2's times were scaled for ([`engine::apply`]); null: link
    /// times (host TCP).
    pub kv_engine: Option<engine::EngineApplied>,
}

/// Real bytes on the calibrated rack: divided by `scale`, rounded, at least 1 (as `run --model`).
pub fn scaled(real: u64, scale: f64) -> u64 {
    ((real as f64 / scale.max(1e-9)).round() as u64).max(1)
}

/// The flow of `path` moving `bytes` (scaled), with the calibration's hops and path model.
fn flow(cal: &Calibration, set: &RouteSet, path: PathRef, bytes: u64) -> SimFlow {
    let spec_hops = match set.find(&path) {
        Some(r) => r.segments.clone(),
        None => Route::prefill_to_decode(path.src, cal.shape.nic_of(path.src), path.dst, HopOptions::default()).segments,
    };
    flows_for(cal, path, spec_hops, bytes, false)
}

/// The simulated value of every segment direction, and whether each is identified.
struct Known<'a> {
    cal: &'a Calibration,
    cap: Capacities,
}

impl Known<'_> {
    /// (identified, series group) of a hop as the simulator uses it.
    fn status(&self, h: &Hop) -> (Limit, Option<String>) {
        let Some(s) = self.cal.segments.iter().find(|s| s.segment == h.id && s.dir == h.dir) else {
            return (Limit::LowerBoundOnly, None);
        };
        let group = s.series_group.as_ref().and_then(|g| self.cal.series_groups.iter().find(|x| &x.id == g));
        match (s.method, group.and_then(|g| g.capacity_Bps)) {
            (m, _) if m.identified() => (Limit::Identified, s.series_group.clone()),
            (Method::LowerBound, Some(g)) if s.lower_bound_Bps.is_none_or(|b| g >= b) => {
                (Limit::SeriesGroup, s.series_group.clone())
            }
            _ => (Limit::LowerBoundOnly, s.series_group.clone()),
        }
    }

    fn slowest_identified(&self, hops: &[Hop]) -> Option<(Hop, f64)> {
        hops.iter()
            .filter(|h| self.status(h).0 != Limit::LowerBoundOnly)
            .filter_map(|h| self.cap.get(h).map(|c| (*h, *c)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// What limits `f` alone: its slowest hop, or its measured rate when that is lower.
    fn solo(&self, f: &SimFlow) -> Option<Bottleneck> {
        let slowest = f.hops.iter().filter_map(|h| self.cap.get(h).map(|c| (*h, *c))).min_by(|a, b| a.1.total_cmp(&b.1));
        let slowest_identified = self.slowest_identified(&f.hops);
        match (slowest, f.cap_Bps) {
            (Some((h, c)), cap) if cap.is_none_or(|r| c <= r) => {
                let (limit, series_group) = self.status(&h);
                Some(Bottleneck { hop: Some(h), rate_Bps: c, limit, series_group, slowest_identified })
            }
            (_, Some(r)) => {
                Some(Bottleneck { hop: None, rate_Bps: r, limit: Limit::RouteMeasured, series_group: None, slowest_identified })
            }
            _ => None,
        }
    }

    /// The shared hop with the smallest fair share (capacity x sharing / flows crossing it).
    fn shared(&self, flows: &[SimFlow], sharing: f64) -> Option<Bottleneck> {
        let mut best: Option<(Hop, f64, f64)> = None;
        for (h, c) in &self.cap {
            let k = flows.iter().filter(|f| f.hops.contains(h)).count();
            let share = c * sharing / k as f64;
            if k >= 2 && best.is_none_or(|b| share < b.2) {
                best = Some((*h, *c, share));
            }
        }
        let (h, c, _) = best?;
        let (limit, series_group) = self.status(&h);
        let hops: Vec<Hop> = flows.iter().flat_map(|f| f.hops.iter().copied()).collect();
        Some(Bottleneck { hop: Some(h), rate_Bps: c, limit, series_group, slowest_identified: self.slowest_identified(&hops) })
    }
}

/// One transfer to predict: its route, simulator flow (scaled bytes) and real bytes.
type Transfer = (PathRef, SimFlow, u64);

/// Every route of one path kind: alone, all at once, and what limits them; also each route's
/// completion time in the all-at-once run, seconds.
fn path_times(
    cal_file: &Path,
    known: &Known<'_>,
    transfers: &[Transfer],
    sharing: f64,
) -> Result<(PathTimes, Vec<f64>), InputError> {
    let all: Vec<SimFlow> = transfers.iter().map(|t| t.1.clone()).collect();
    let together = simulate_shared(&all, &known.cap, sharing);
    let mut routes = Vec::new();
    for ((route, f, real), out) in transfers.iter().zip(&together) {
        let bottleneck = known.solo(f).ok_or_else(|| {
            InputError::field(
                cal_file,
                "paths",
                format!("route {route} has no path model and no capacity on any of its hops: measure it (`linkcal run`) and calibrate again"),
            )
        })?;
        routes.push(RouteTime {
            route: *route,
            real_bytes: *real,
            scaled_bytes: f.bytes,
            alone_s: makespan(&simulate_shared(std::slice::from_ref(f), &known.cap, sharing)),
            all_at_once_s: out.finish_s - out.start_s,
            bottleneck,
        });
    }
    let finishes = together.iter().map(|o| o.finish_s - o.start_s).collect();
    let shared_bottleneck = known.shared(&all, sharing);
    Ok((PathTimes { routes, all_at_once_s: makespan(&together), shared_bottleneck }, finishes))
}

/// Predicts Paths 1-3 for `payloads` (sized for `w` on the calibration's rack shape).
/// `cal_file` names the calibration in errors.
pub fn predict(cal: &Calibration, cal_file: &Path, payloads: &Payloads, w: Workload) -> Result<Prediction, PredictError> {
    if payloads.stages.len() != cal.shape.pp_prefill {
        return Err(InputError::field(
            cal_file,
            "shape.pp_prefill",
            format!(
                "is {} but the payloads have {} prefill stages: size them for the calibrated rack",
                cal.shape.pp_prefill,
                payloads.stages.len()
            ),
        )
        .into());
    }
    let set = RouteSet::spec(&cal.shape, None).map_err(|e| InputError::field(cal_file, "shape", e.to_string()))?;
    let scale = cal.origin.payload_scale;
    let sharing = cal.sharing_efficiency.unwrap_or(1.0);
    let known = Known { cal, cap: capacities(cal) };
    let one = |kind: RouteKind, real: u64| -> Vec<Transfer> {
        set.of_kind(kind).map(|(_, r)| (r.path, flow(cal, &set, r.path, scaled(real, scale)), real)).collect()
    };
    let (path1, _) = path_times(cal_file, &known, &one(RouteKind::PrefillInterRank, payloads.chunk_activation_bytes), sharing)?;
    let (path3, _) = path_times(cal_file, &known, &one(RouteKind::DecodeInterRank, payloads.decode_activation_bytes), sharing)?;
    let mut kv: Vec<Transfer> = Vec::new();
    for st in &payloads.stages {
        for h in &st.handoffs {
            let path = PathRef { kind: RouteKind::PrefillToDecode, src: st.stage, dst: h.decode };
            kv.push((path, flow(cal, &set, path, scaled(h.bytes, scale)), h.bytes));
        }
    }
    let (path2, finishes) = path_times(cal_file, &known, &kv, sharing)?;
    let stages = stage_times(&known, payloads, &kv, &finishes, scale, sharing);
    Ok(Prediction {
        model: payloads.model.clone(),
        workload: w,
        shape: cal.shape.clone(),
        serving: payloads.serving,
        emulated: cal.origin.emulated,
        payload_scale: scale,
        sharing_efficiency: sharing,
        notes: notes(cal, [&path1, &path2, &path3]),
        path1,
        path2,
        stages,
        path3,
        kv_engine: None,
    })
}

/// Each prefill stage's handoff alone (its routes together) and under the all-stage burst.
fn stage_times(known: &Known<'_>, p: &Payloads, kv: &[Transfer], finishes: &[f64], scale: f64, sharing: f64) -> Vec<StageTime> {
    p.stages
        .iter()
        .map(|st| {
            let mine: Vec<usize> = (0..kv.len()).filter(|&k| kv[k].0.src == st.stage).collect();
            let flows: Vec<SimFlow> = mine.iter().map(|&k| kv[k].1.clone()).collect();
            StageTime {
                stage: st.stage,
                real_bytes: st.kv_handoff_bytes,
                scaled_bytes: scaled(st.kv_handoff_bytes, scale),
                alone_s: makespan(&simulate_shared(&flows, &known.cap, sharing)),
                all_at_once_s: mine.iter().map(|&k| finishes[k]).fold(0.0, f64::max),
            }
        })
        .collect()
}

/// What the figures mean for this calibration.
fn notes(cal: &Calibration, paths: [&PathTimes; 3]) -> Vec<String> {
    let mut out = Vec::new();
    if cal.origin.emulated || cal.origin.payload_scale != 1.0 {
        out.push(format!(
            "times are for the {} rack the calibration measured, moving the model's payloads divided by {} (scaled bytes); they are not hardware times for the real bytes",
            if cal.origin.emulated { "emulated" } else { "calibrated" },
            cal.origin.payload_scale
        ));
    }
    let lb = paths.iter().flat_map(|p| p.routes.iter()).filter(|r| r.bottleneck.limit == Limit::LowerBoundOnly).count();
    if lb > 0 {
        out.push(format!(
            "{lb} route(s) are limited by a segment known only by a lower bound: a lower bound is not a capacity; their times are upper bounds (the route may be faster); `linkcal run --plan calibrate` identifies more segments"
        ));
    }
    if cal.sharing_efficiency.is_none() {
        out.push("the calibration has no sharing efficiency (no contended burst measured): shared links are simulated at full capacity".into());
    }
    out
}

#[cfg(test)]
mod tests;
