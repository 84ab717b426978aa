//! Rack files (hosts, roles, addresses: what the runner reads) and the emulated rack's ground
//! truth (what only tests read; calibration never does).
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{Dir, Hop, PathRef, RackShape, SegmentId};

/// Schema id of rack files.
pub const RACK_SCHEMA: &str = "linkcal.rack/2";
/// Older rack schemas read as [`RACK_SCHEMA`]: `linkcal.rack/1` lacks `tcp_congestion_control`
/// and `emulation`, which read as null (the hosts' default TCP, shaping not recorded).
pub const RACK_SCHEMA_COMPAT: &[&str] = &["linkcal.rack/1"];
/// Schema id of ground-truth files.
pub const GROUND_TRUTH_SCHEMA: &str = "linkcal.ground-truth/1";

/// The rack the runner drives: one entry per agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RackFile {
    /// `linkcal.rack/2` (`/1` reads too: see [`RACK_SCHEMA_COMPAT`]).
    pub schema: String,
    /// Spec shape and NIC map.
    pub shape: RackShape,
    /// True for the emulated rack.
    pub emulated: bool,
    /// TCP congestion control every TCP flow sets on its sockets (`TCP_CONGESTION`, which root
    /// agents may set even where `net.ipv4.tcp_allowed_congestion_control` lacks it); null: the
    /// hosts' default.
    #[serde(default)]
    pub tcp_congestion_control: Option<String>,
    /// How the emulated rack shapes its links; null on hardware.
    #[serde(default)]
    pub emulation: Option<Emulation>,
    /// Model payloads are divided by this (about 500 on the default emulated rack, 1 on hardware).
    pub payload_scale: f64,
    /// MTU of the data links, bytes.
    pub mtu_bytes: Option<u64>,
    /// File holding the run's shared token (agents refuse connections without it).
    pub token_file: String,
    /// Agents.
    pub hosts: Vec<HostEntry>,
    /// Network namespace the coordinator joins to reach the control addresses (the emulated
    /// rack's management network); null on hardware.
    #[serde(default)]
    pub control_netns: Option<String>,
    /// Per-route data endpoints and the hops each route actually crosses. Empty: routes are
    /// resolved from host roles and `data_addr`, with the spec's hop lists.
    #[serde(default)]
    pub routes: Vec<RouteEndpoints>,
    /// How `linkcal rack init` composed this file from an inventory (null for files written by
    /// hand or by the emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composed: Option<Composition>,
}

/// Provenance of a rack file composed by `linkcal rack init`: every choice it made and why,
/// what each host said about itself, and the route checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Composition {
    /// The inventory file read.
    pub inventory: String,
    /// When, RFC 3339 UTC.
    pub composed_at: String,
    /// linkcal version that composed it.
    pub tool_version: String,
    /// Every choice, in the order made.
    pub choices: Vec<Choice>,
    /// What each host's agent reported.
    pub hosts: Vec<HostFacts>,
    /// The reachability check of every route.
    pub route_checks: Vec<RouteCheck>,
}

/// One choice `rack init` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Choice {
    /// Host it concerns (null: the rack).
    pub host: Option<String>,
    /// What was chosen, e.g. `data_addr`, `pp_prefill`.
    pub what: String,
    /// The value chosen.
    pub value: String,
    /// Why (what was found), or `inventory` when the inventory set it.
    pub why: String,
    /// The inventory field that overrides it.
    pub override_field: String,
}

/// What one host's agent reported, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostFacts {
    /// Host name (the agent's name).
    pub name: String,
    /// The OS host name.
    pub hostname: String,
    /// GPUs used, by PCI bus id.
    pub gpus: Vec<String>,
    /// RDMA NICs used, with port, link layer, state, LID and GID.
    pub rdma_nics: Vec<String>,
    /// The Ethernet NIC used, when any.
    pub ethernet_nic: Option<String>,
    /// Failed conformance checks, `check: detail`.
    pub deviations: Vec<String>,
}

/// One route's reachability check: a tiny timed transfer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteCheck {
    /// The route.
    pub path: PathRef,
    /// Transport used.
    pub transport: String,
    /// Median goodput of the check, B/s (null when waived).
    pub goodput_Bps: Option<f64>,
    /// Waiver reason when the transport does not apply on a host.
    pub waived: Option<String>,
}

/// Where one route's flows start and end, and what they cross.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteEndpoints {
    /// The route.
    pub path: PathRef,
    /// Sending host (a `hosts[].name`).
    pub src_host: String,
    /// Receiving host (a `hosts[].name`).
    pub dst_host: String,
    /// Source address the sender binds, if any.
    pub src_addr: Option<String>,
    /// Address the receiver listens on.
    pub dst_addr: String,
    /// Segment traversals the route crosses, spec hops plus outside-spec links, in order.
    pub segments: Vec<Hop>,
}

/// How the emulated rack shapes every segment direction, recorded in the rack file and in
/// every results file measured on it (what its ground truth rests on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Emulation {
    /// The queueing discipline on every segment direction (`tbf`).
    pub shaper: String,
    /// Token bucket of each segment direction: the larger of this many frames (MTU + 14
    /// bytes each) ...
    pub bucket_frames: u64,
    /// ... and this many seconds at the segment's rate.
    pub bucket_s: f64,
    /// TSO, GSO and GRO of every data link (`off`: every frame is shaped and forwarded as
    /// itself, so tbf accounts each one exactly).
    pub offloads: String,
    /// How the TCP congestion control is applied: `namespace default` or `per socket` (the
    /// algorithm is not in the host's allowed list, so agents set it on each socket).
    pub tcp_congestion_control_applied: String,
    /// Scheduling niceness of the agents (below 0: they win the CPU from other work on a busy
    /// host, so a sender never leaves a shaped link idle).
    pub agent_nice: i32,
}

/// What an agent stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    /// One prefill GPU endpoint (emulated rack: one namespace per GPU), `index` = i.
    PrefillGpu,
    /// The prefill server's host memory behind the switch uplink.
    PrefillHost,
    /// A decode GPU endpoint, `index` = j.
    DecodeGpu,
    /// Decode server j's host memory.
    DecodeHost,
    /// A whole prefill server on real hardware (all prefill GPUs and NICs, one agent).
    PrefillServer,
    /// A whole decode server j on real hardware.
    DecodeServer,
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostEntry {
    /// Unique name, e.g. `gpu_p0`.
    pub name: String,
    /// What it stands for.
    pub role: HostRole,
    /// GPU / server index for indexed roles (0 otherwise).
    pub index: usize,
    /// Control-plane address, `IP:port`.
    pub control_addr: String,
    /// Data-plane IP address flows to this host use.
    pub data_addr: String,
    /// Network namespace the agent runs in (emulated rack).
    pub netns: Option<String>,
}

/// The emulated rack's configured truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroundTruth {
    /// Always `linkcal.ground-truth/1`.
    pub schema: String,
    /// MTU, bytes.
    pub mtu_bytes: u64,
    /// Per segment direction.
    pub segments: Vec<TrueSegment>,
}

/// One shaped segment direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrueSegment {
    /// Segment.
    pub segment: SegmentId,
    /// Direction.
    pub dir: Dir,
    /// tbf line rate, B/s.
    pub rate_Bps: f64,
    /// Expected TCP goodput = rate x (MTU-52)/(MTU+14), B/s.
    pub goodput_Bps: f64,
}
