//! The spec's three paths for any rack shape, the outside-spec isolation routes, and the
//! contention structure between routes.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Dir, Hop, RackShape, SegmentKind, SpecError};

/// What a route carries. The first three are the spec's paths; the rest are isolation probes
/// real hardware offers (and the emulated rack mirrors), crossing outside-spec links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Path 1: prefill GPU i -> prefill GPU i+1 through the PCIe switch (activations).
    PrefillInterRank,
    /// Path 2: prefill GPU i -> NIC k -> IB -> decode GPU j (KV handoff).
    PrefillToDecode,
    /// Path 3: decode GPU j -> Ethernet -> decode GPU j+1 (decode activations).
    DecodeInterRank,
    /// Prefill GPU i -> host memory behind the prefill switch's uplink (copy-engine D2H).
    PrefillGpuToHost,
    /// Host memory -> prefill GPU i (copy-engine H2D).
    PrefillHostToGpu,
    /// Decode GPU j -> its host memory (D2H).
    DecodeGpuToHost,
    /// Decode host memory -> decode GPU j (H2D).
    DecodeHostToGpu,
    /// Prefill host memory -> NIC k -> IB -> decode server j's host memory (RDMA, no GPU link).
    HostRdma,
}

impl RouteKind {
    /// All kinds, spec paths first.
    pub const ALL: [RouteKind; 8] = [
        RouteKind::PrefillInterRank,
        RouteKind::PrefillToDecode,
        RouteKind::DecodeInterRank,
        RouteKind::PrefillGpuToHost,
        RouteKind::PrefillHostToGpu,
        RouteKind::DecodeGpuToHost,
        RouteKind::DecodeHostToGpu,
        RouteKind::HostRdma,
    ];

    /// The snake_case name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::PrefillInterRank => "prefill_inter_rank",
            RouteKind::PrefillToDecode => "prefill_to_decode",
            RouteKind::DecodeInterRank => "decode_inter_rank",
            RouteKind::PrefillGpuToHost => "prefill_gpu_to_host",
            RouteKind::PrefillHostToGpu => "prefill_host_to_gpu",
            RouteKind::DecodeGpuToHost => "decode_gpu_to_host",
            RouteKind::DecodeHostToGpu => "decode_host_to_gpu",
            RouteKind::HostRdma => "host_rdma",
        }
    }

    /// True for the spec's three paths.
    pub fn is_spec_path(self) -> bool {
        match self {
            RouteKind::PrefillInterRank | RouteKind::PrefillToDecode | RouteKind::DecodeInterRank => true,
            RouteKind::PrefillGpuToHost
            | RouteKind::PrefillHostToGpu
            | RouteKind::DecodeGpuToHost
            | RouteKind::DecodeHostToGpu
            | RouteKind::HostRdma => false,
        }
    }

    /// The spec's path number (1, 2, 3), if this is a spec path.
    pub fn spec_number(self) -> Option<u8> {
        match self {
            RouteKind::PrefillInterRank => Some(1),
            RouteKind::PrefillToDecode => Some(2),
            RouteKind::DecodeInterRank => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one route: its kind, source and destination index. For `prefill_to_decode` src is the
/// prefill stage i and dst the decode server j; for `host_rdma` src is the prefill NIC k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct PathRef {
    /// Route kind.
    pub kind: RouteKind,
    /// Source index (GPU, stage or NIC, by kind).
    pub src: usize,
    /// Destination index (GPU or decode server, by kind).
    pub dst: usize,
}

impl fmt::Display for PathRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}->{}", self.kind, self.src, self.dst)
    }
}

/// Which outside-spec links a route's hop list includes. The spec's own lists have none; real
/// hardware crosses the decode IB NIC's PCIe link, and staging in host memory crosses the
/// PCIe switch's uplink twice (down into memory, up out of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HopOptions {
    /// Include `IB_NIC_D[j]_PCI up` on routes that arrive over IB.
    pub decode_ib_nic: bool,
    /// Data is staged in host memory at each end (no P2P / no GPUDirect).
    pub staged_in_host: bool,
}

/// One route: what it is, which NIC it uses, what share of the source stage's KV it carries,
/// and its ordered hops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    /// Kind, source and destination.
    #[serde(flatten)]
    pub path: PathRef,
    /// Prefill NIC k used (Path 2 and host RDMA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nic: Option<usize>,
    /// Fraction of prefill stage `src`'s KV this route carries (Path 2; 1 when PP_prefill = PP_decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_share: Option<f64>,
    /// Ordered segment traversals.
    pub segments: Vec<Hop>,
}

/// The routes of one rack shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteSet {
    /// The rack shape.
    pub shape: RackShape,
    /// Routes in order: Path 1 by i, Path 2 by (i, j), Path 3 by j, then isolation routes.
    pub routes: Vec<Route>,
}

/// Contiguous split of `layers` over `stages`, earlier stages taking the remainder:
/// returns `[start, end)` per stage.
pub fn stage_ranges(layers: u32, stages: usize) -> Vec<(u32, u32)> {
    let stages_u = stages as u32;
    let (base, rem) = (layers / stages_u, layers % stages_u);
    let mut start = 0;
    (0..stages_u)
        .map(|s| {
            let len = base + u32::from(s < rem);
            let r = (start, start + len);
            start += len;
            r
        })
        .collect()
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> u64 {
    a.1.min(b.1).saturating_sub(a.0.max(b.0))
}

/// The (prefill stage i, decode server j, share of stage i's KV) pairs of Path 2. With the
/// model's layer count, layers are split contiguously; without it, both clusters split the
/// model evenly (exact rationals). PP_prefill = PP_decode gives i -> i with share 1.
pub fn handoff_pairs(shape: &RackShape, layers: Option<u32>) -> Result<Vec<(usize, usize, f64)>, SpecError> {
    let (p, d) = (shape.pp_prefill, shape.pp_decode);
    type Ranges = Vec<(u64, u64)>;
    let (pre, dec): (Ranges, Ranges) = match layers {
        Some(l) => {
            for (stages, flag) in [(p, "--pp-prefill"), (d, "--pp-decode")] {
                if (l as usize) < stages {
                    return Err(SpecError::TooFewLayers { layers: l, stages, flag });
                }
            }
            let conv = |v: Vec<(u32, u32)>| v.into_iter().map(|(a, b)| (a as u64, b as u64)).collect();
            (conv(stage_ranges(l, p)), conv(stage_ranges(l, d)))
        }
        // In units of 1/(p*d) of the model: stage i = [i*d, (i+1)*d), server j = [j*p, (j+1)*p).
        None => (
            (0..p as u64).map(|i| (i * d as u64, (i + 1) * d as u64)).collect(),
            (0..d as u64).map(|j| (j * p as u64, (j + 1) * p as u64)).collect(),
        ),
    };
    let mut out = Vec::new();
    for (i, a) in pre.iter().enumerate() {
        for (j, b) in dec.iter().enumerate() {
            let ov = overlap(*a, *b);
            if ov > 0 {
                out.push((i, j, ov as f64 / (a.1 - a.0) as f64));
            }
        }
    }
    Ok(out)
}

/// Host staging at one end: into host memory and back out through the switch uplink.
fn staging(kind: SegmentKind, index: usize) -> [Hop; 2] {
    [Hop::new(kind, index, Dir::Down), Hop::new(kind, index, Dir::Up)]
}

impl Route {
    fn new(kind: RouteKind, src: usize, dst: usize, segments: Vec<Hop>) -> Route {
        Route { path: PathRef { kind, src, dst }, nic: None, kv_share: None, segments }
    }

    /// Path 1, GPU i -> i+1.
    pub fn prefill_inter_rank(i: usize, opt: HopOptions) -> Route {
        let mut s = vec![Hop::new(SegmentKind::GpuP, i, Dir::Up)];
        if opt.staged_in_host {
            s.extend(staging(SegmentKind::UplinkP, 0));
        }
        s.push(Hop::new(SegmentKind::GpuP, i + 1, Dir::Down));
        Route::new(RouteKind::PrefillInterRank, i, i + 1, s)
    }

    /// Path 2, prefill GPU i through NIC k into decode server j.
    pub fn prefill_to_decode(i: usize, k: usize, j: usize, opt: HopOptions) -> Route {
        let mut s = vec![Hop::new(SegmentKind::GpuP, i, Dir::Up)];
        if opt.staged_in_host {
            s.extend(staging(SegmentKind::UplinkP, 0));
        }
        s.push(Hop::new(SegmentKind::IbNicP, k, Dir::Down));
        s.push(Hop::new(SegmentKind::IbCableP, k, Dir::Up));
        s.push(Hop::new(SegmentKind::IbCableD, j, Dir::Down));
        if opt.decode_ib_nic {
            s.push(Hop::new(SegmentKind::IbNicD, j, Dir::Up));
        }
        if opt.staged_in_host {
            s.extend(staging(SegmentKind::UplinkD, j));
        }
        s.push(Hop::new(SegmentKind::GpuD, j, Dir::Down));
        let mut r = Route::new(RouteKind::PrefillToDecode, i, j, s);
        r.nic = Some(k);
        r
    }

    /// Path 3, decode GPU j -> j+1 over Ethernet.
    pub fn decode_inter_rank(j: usize, opt: HopOptions) -> Route {
        let mut s = vec![Hop::new(SegmentKind::GpuD, j, Dir::Up)];
        if opt.staged_in_host {
            s.extend(staging(SegmentKind::UplinkD, j));
        }
        s.push(Hop::new(SegmentKind::EthNicD, j, Dir::Down));
        s.push(Hop::new(SegmentKind::EthCableD, j, Dir::Up));
        s.push(Hop::new(SegmentKind::EthCableD, j + 1, Dir::Down));
        s.push(Hop::new(SegmentKind::EthNicD, j + 1, Dir::Up));
        if opt.staged_in_host {
            s.extend(staging(SegmentKind::UplinkD, j + 1));
        }
        s.push(Hop::new(SegmentKind::GpuD, j + 1, Dir::Down));
        Route::new(RouteKind::DecodeInterRank, j, j + 1, s)
    }

    /// An isolation route (`kind` must not be a spec path).
    pub fn isolation(kind: RouteKind, src: usize, dst: usize, opt: HopOptions) -> Route {
        use SegmentKind::*;
        let s = match kind {
            RouteKind::PrefillGpuToHost => vec![Hop::new(GpuP, src, Dir::Up), Hop::new(UplinkP, 0, Dir::Down)],
            RouteKind::PrefillHostToGpu => vec![Hop::new(UplinkP, 0, Dir::Up), Hop::new(GpuP, dst, Dir::Down)],
            RouteKind::DecodeGpuToHost => vec![Hop::new(GpuD, src, Dir::Up), Hop::new(UplinkD, src, Dir::Down)],
            RouteKind::DecodeHostToGpu => vec![Hop::new(UplinkD, dst, Dir::Up), Hop::new(GpuD, dst, Dir::Down)],
            RouteKind::HostRdma => {
                let mut s = vec![
                    Hop::new(UplinkP, 0, Dir::Up),
                    Hop::new(IbNicP, src, Dir::Down),
                    Hop::new(IbCableP, src, Dir::Up),
                    Hop::new(IbCableD, dst, Dir::Down),
                ];
                if opt.decode_ib_nic {
                    s.push(Hop::new(IbNicD, dst, Dir::Up));
                }
                s.push(Hop::new(UplinkD, dst, Dir::Down));
                s
            }
            RouteKind::PrefillInterRank => return Route::prefill_inter_rank(src, opt),
            RouteKind::PrefillToDecode => return Route::prefill_to_decode(src, src, dst, opt),
            RouteKind::DecodeInterRank => return Route::decode_inter_rank(src, opt),
        };
        let mut r = Route::new(kind, src, dst, s);
        if kind == RouteKind::HostRdma {
            r.nic = Some(src);
        }
        r
    }

    /// True when the route crosses `hop`.
    pub fn crosses(&self, hop: &Hop) -> bool {
        self.segments.contains(hop)
    }
}

impl RouteSet {
    /// The spec's three paths with the spec's own hop lists (no outside-spec links).
    pub fn spec(shape: &RackShape, layers: Option<u32>) -> Result<RouteSet, SpecError> {
        Self::build(shape, layers, HopOptions::default(), false)
    }

    /// Spec paths with the given outside-spec hops, optionally followed by isolation routes:
    /// D2H and H2D for every GPU, and host RDMA for every (NIC k, decode server j) pair Path 2 uses.
    pub fn build(shape: &RackShape, layers: Option<u32>, opt: HopOptions, isolation: bool) -> Result<RouteSet, SpecError> {
        let mut routes = Vec::new();
        for i in 0..shape.pp_prefill.saturating_sub(1) {
            routes.push(Route::prefill_inter_rank(i, opt));
        }
        let pairs = handoff_pairs(shape, layers)?;
        for &(i, j, share) in &pairs {
            let mut r = Route::prefill_to_decode(i, shape.nic_of(i), j, opt);
            r.kv_share = Some(share);
            routes.push(r);
        }
        for j in 0..shape.pp_decode.saturating_sub(1) {
            routes.push(Route::decode_inter_rank(j, opt));
        }
        if isolation {
            for i in 0..shape.pp_prefill {
                routes.push(Route::isolation(RouteKind::PrefillGpuToHost, i, 0, opt));
                routes.push(Route::isolation(RouteKind::PrefillHostToGpu, 0, i, opt));
            }
            for j in 0..shape.pp_decode {
                routes.push(Route::isolation(RouteKind::DecodeGpuToHost, j, 0, opt));
                routes.push(Route::isolation(RouteKind::DecodeHostToGpu, 0, j, opt));
            }
            let mut seen = std::collections::BTreeSet::new();
            for &(i, j, _) in &pairs {
                let k = shape.nic_of(i);
                if seen.insert((k, j)) {
                    routes.push(Route::isolation(RouteKind::HostRdma, k, j, opt));
                }
            }
        }
        Ok(RouteSet { shape: shape.clone(), routes })
    }

    /// Routes of one kind.
    pub fn of_kind(&self, kind: RouteKind) -> impl Iterator<Item = (usize, &Route)> {
        self.routes.iter().enumerate().filter(move |(_, r)| r.path.kind == kind)
    }

    /// Finds a route by reference.
    pub fn find(&self, path: &PathRef) -> Option<&Route> {
        self.routes.iter().find(|r| r.path == *path)
    }
}

/// One segment direction crossed by two or more routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Contention {
    /// The shared segment.
    pub segment: super::SegmentId,
    /// The direction in which they share it.
    pub dir: Dir,
    /// Indexes (into the route list) of the routes crossing it.
    pub paths: Vec<usize>,
}

/// Which routes cross the same segment in the same direction, in segment order.
pub fn contention(routes: &[Route]) -> Vec<Contention> {
    let mut by_hop: BTreeMap<Hop, Vec<usize>> = BTreeMap::new();
    for (idx, r) in routes.iter().enumerate() {
        for h in &r.segments {
            let v = by_hop.entry(*h).or_default();
            if v.last() != Some(&idx) {
                v.push(idx);
            }
        }
    }
    by_hop.into_iter().filter(|(_, v)| v.len() >= 2).map(|(h, paths)| Contention { segment: h.id, dir: h.dir, paths }).collect()
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
