//! `linkcal.calibration/3`: per-segment, per-direction capacities and latencies with how each
//! was obtained, series groups with intervals, per-path size-dependent models with their fixed
//! cost (alpha) and sustained rate, and where the data came from (emulated or real rack, payload
//! scale, runs), and the KV-transfer engines' efficiency per route, payload and KV block
//! beside host TCP. What simulators and planners load.
//!
//! Migration from `linkcal.calibration/2`: /3 adds `engine_efficiency` (a list, empty when no
//! engine run was calibrated), and its segments and path models come from host transports only
//! (a /2 calibration of NIXL runs fed them into the segment solver). /2 files still load, with
//! `engine_efficiency` empty: calibrate again with the host TCP and engine runs to get it.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Provenance;
use crate::spec::{Dir, Hop, PathRef, RackShape, SegmentId};

/// Schema id of calibration files.
pub const CALIBRATION_SCHEMA: &str = "linkcal.calibration/3";
/// Older calibration schemas read as [`CALIBRATION_SCHEMA`]: `/2` lacks `engine_efficiency`.
pub const CALIBRATION_SCHEMA_COMPAT: &[&str] = &["linkcal.calibration/2"];

/// A calibration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Calibration {
    /// `linkcal.calibration/3` (`/2` reads too: see [`CALIBRATION_SCHEMA_COMPAT`]).
    pub schema: String,
    /// Where it came from (tool, git sha, hosts, time, argv).
    pub provenance: Provenance,
    /// The rack and runs measured: emulated or real, payload scale, run ids, hosts.
    pub origin: Origin,
    /// Spec parameters of the calibrated rack.
    pub shape: RackShape,
    /// Results files it was computed from.
    pub sources: Vec<String>,
    /// SHA-256 of the topology file given with --topology, if any.
    pub topology_digest: Option<String>,
    /// One entry per segment and direction, spec segments first.
    pub segments: Vec<SegmentEstimate>,
    /// Segment directions that every experiment crossed together (only their minimum is identified).
    pub series_groups: Vec<SeriesGroup>,
    /// Per-route size-dependent models.
    pub paths: Vec<PathModel>,
    /// Free-form notes (e.g. segments the spec's paths can never identify, and why).
    pub notes: Vec<String>,
    /// Burst efficiency of shared links: the max-min prediction of the contended bursts'
    /// makespans over the measured ones (median, in (0, 1]); simulators scale a segment
    /// direction's capacity by it while two or more flows share it (TCP flows sharing a queue
    /// lose a few percent). Null when no contended burst was measured.
    #[serde(default)]
    pub sharing_efficiency: Option<f64>,
    /// KV-transfer engines (NIXL) beside host TCP: one curve per engine, route and KV block,
    /// from solo runs of both transports on the same route and payloads (`linkcal calibrate
    /// --results HOST_TCP_RUN --results ENGINE_RUN`). Empty when no engine run was given.
    #[serde(default)]
    pub engine_efficiency: Vec<EngineCurve>,
}

/// A KV-transfer engine's efficiency on one route at one KV block size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EngineCurve {
    /// Engine, as the results name its transport (e.g. `nixl`).
    pub engine: String,
    /// The route (Path 2: prefill_to_decode).
    pub path: PathRef,
    /// KV block (one descriptor) the engine moved the payloads in, bytes.
    pub kv_block_bytes: u64,
    /// Tokens per KV block behind `kv_block_bytes` (null when the run gave the block in bytes).
    pub kv_block_tokens: Option<u64>,
    /// One point per payload both transports measured on the route, by payload.
    pub points: Vec<EnginePoint>,
}

/// The engine beside host TCP at one payload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnginePoint {
    /// Payload, bytes.
    pub payload_bytes: u64,
    /// Host TCP's mean transfer time on the route, seconds (mean over its runs).
    pub host_tcp_time_s: f64,
    /// The engine's mean transfer time on the route, seconds (mean over its runs).
    pub engine_time_s: f64,
    /// `host_tcp_time_s / engine_time_s`: the engine's goodput as a fraction of host TCP's
    /// (below 1 when the engine costs time); a planner divides a host-TCP time by it.
    pub ratio: f64,
}

/// The rack and runs a calibration rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Origin {
    /// True when every run was on the emulated rack (network namespaces and shapers): its
    /// capacities are the emulator's rates, not hardware figures.
    pub emulated: bool,
    /// Payload scale of the runs (model payloads were divided by it; 1 on a real rack).
    pub payload_scale: f64,
    /// MTU of the measured links, bytes.
    pub mtu_bytes: Option<u64>,
    /// One id per run: `<results directory>@<run start time>`.
    pub run_ids: Vec<String>,
    /// Hosts (agents) that took part in the runs.
    pub hosts: Vec<String>,
    /// linkcal versions that wrote the runs' results.
    pub run_tool_versions: Vec<String>,
}

/// How a capacity was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A probe crossed only this segment direction (or only it and links known to be faster).
    Isolated,
    /// Concurrent flows through it plateaued at its capacity.
    Saturation,
    /// It was the limiting segment of a solo path.
    Bottleneck,
    /// Never the limiting segment: capacity >= `lower_bound_Bps`.
    LowerBound,
    /// No measurement crossed it.
    Unobserved,
}

impl Method {
    /// True when the value is an identified capacity (not a bound, not missing).
    pub fn identified(self) -> bool {
        match self {
            Method::Isolated | Method::Saturation | Method::Bottleneck => true,
            Method::LowerBound | Method::Unobserved => false,
        }
    }
}

/// One segment direction's calibrated figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentEstimate {
    /// Segment name.
    pub segment: SegmentId,
    /// Direction.
    pub dir: Dir,
    /// True for links the spec does not name (switch uplink, decode NIC PCIe).
    pub outside_spec: bool,
    /// How the value was obtained.
    pub method: Method,
    /// Identified capacity (goodput), B/s; null unless `method` identifies it.
    pub capacity_Bps: Option<f64>,
    /// Lower end of the capacity's 95% interval, B/s.
    pub ci95_low_Bps: Option<f64>,
    /// Upper end of the capacity's 95% interval, B/s.
    pub ci95_high_Bps: Option<f64>,
    /// For `lower_bound`: the capacity is at least this, B/s.
    pub lower_bound_Bps: Option<f64>,
    /// One-way latency attributed to this segment, seconds (null where paths do not determine it).
    pub latency_s: Option<f64>,
    /// Nominal capacity from discovery (link speed), B/s per direction, when a topology was given.
    pub nominal_Bps: Option<f64>,
    /// Series group this belongs to, if any.
    pub series_group: Option<String>,
    /// Measurement ids the value rests on.
    pub evidence: Vec<String>,
}

/// Segment directions that are always crossed together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeriesGroup {
    /// Group id, e.g. `G1`.
    pub id: String,
    /// Members.
    pub members: Vec<Hop>,
    /// The group's identified capacity (the minimum of its members), B/s.
    pub capacity_Bps: Option<f64>,
    /// Lower end of the capacity's 95% interval, B/s.
    pub ci95_low_Bps: Option<f64>,
    /// Upper end of the capacity's 95% interval, B/s.
    pub ci95_high_Bps: Option<f64>,
    /// Why the members cannot be told apart.
    pub reason: String,
}

/// Size-dependent model of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PathModel {
    /// The route.
    pub path: PathRef,
    /// Its hops.
    pub segments: Vec<Hop>,
    /// Sustained rate at large payloads: the asymptotic rate (beta) of the piece covering the
    /// largest measured payload, B/s. What planners should use per flow.
    pub capacity_Bps: Option<f64>,
    /// Largest median goodput over all sizes, B/s. Small transfers can outrun a shaper's
    /// sustained rate (burst allowance), so this is not a capacity.
    pub raw_peak_Bps: Option<f64>,
    /// Fixed cost per transfer (alpha of the smallest-size piece), seconds; null with fewer than
    /// two sizes.
    pub alpha_s: Option<f64>,
    /// Lower end of alpha's 95% interval (2.5% quantile of the per-size intercepts), seconds.
    pub alpha_ci95_low_s: Option<f64>,
    /// Upper end of alpha's 95% interval (97.5% quantile of the per-size intercepts), seconds.
    pub alpha_ci95_high_s: Option<f64>,
    /// Piecewise alpha-beta model: time = alpha_s + bytes / beta_Bps on each size range.
    pub pieces: Vec<AlphaBeta>,
    /// Efficiency curve: payload size -> achieved / peak.
    pub efficiency: Vec<EfficiencyPoint>,
    /// The measured percentiles the fit came from.
    pub raw: Vec<RawPoint>,
}

/// One piece of an alpha-beta model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlphaBeta {
    /// Smallest payload of the range, bytes (inclusive).
    pub min_bytes: u64,
    /// Largest payload of the range, bytes (inclusive).
    pub max_bytes: u64,
    /// Fixed cost per transfer, seconds.
    pub alpha_s: f64,
    /// Asymptotic rate, B/s.
    pub beta_Bps: f64,
}

/// Achieved over peak at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EfficiencyPoint {
    /// Payload, bytes.
    pub payload_bytes: u64,
    /// Achieved goodput / peak goodput (0..1].
    pub efficiency: f64,
}

/// Measured percentiles at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RawPoint {
    /// Payload, bytes.
    pub payload_bytes: u64,
    /// Median goodput, B/s.
    pub p50_Bps: f64,
    /// 95% interval of the mean goodput, low end, B/s.
    pub ci95_low_Bps: Option<f64>,
    /// 95% interval of the mean goodput, high end, B/s.
    pub ci95_high_Bps: Option<f64>,
    /// Median transfer time, seconds.
    pub time_p50_s: f64,
}
