//! How a Path-1 peer copy between two GPUs travels, and what it may be booked to: the one
//! decision behind both vendors' peer probes (`cuda_p2p`, `hip_p2p`).
//!
//! The spec draws Path 1 as GPU i -> PCIe switch -> GPU i+1 and books it to `GPU_P[i]_PCI`
//! and `GPU_P[i+1]_PCI`. That holds only when the copy stays inside one switch fabric (PIX or
//! PXB). A pair joined by NVLink (directly or through NVSwitch) or xGMI never touches those
//! links, and a pair across the CPU's root complex (PHB, NODE, SYS) also crosses the switch
//! uplinks and the host bridge. Such copies are still measured, labelled with the reason
//! ("NVLink, outside the spec"), and carry no spec path, so the local run files them as
//! loopback figures; the GPUs' PCIe links are then calibrated from the D2H/H2D isolation
//! copies alone.
//!
//! Evidence, best first: NVML on this host ([`crate::gpu::nvml`]), then a topology file the
//! operator gives (`nvidia-smi topo -m`, an NCCL topology dump, or both merged with hwloc),
//! read by [`crate::topology`]. Without either, a CUDA pair is waived: an NVLink figure
//! booked to PCIe would silently be 5-10x too high.

use std::collections::BTreeMap;

use super::{path, probe, waived, Probe, ProbeKind, Status};
use crate::gpu::nvml::{self, PairFacts, RemoteEnd};
use crate::gpu::{self, PciAddr};
use crate::spec::RouteKind;
use crate::topology::locality::{self, LocalityClass};
use crate::topology::{Inventory as Topology, PeerFabric};

/// How a peer copy between two GPUs travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLink {
    /// NVLink or xGMI, direct or through a switch of that fabric: PCIe is not used.
    Fabric(PeerFabric),
    /// PCIe, with the locality class when the source gives one (`None`: only known not to be
    /// NVLink/xGMI, e.g. the KFD topology says no xGMI).
    Pcie(Option<LocalityClass>),
}

/// What a peer copy may be booked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booking {
    /// Path 1 of the spec: `GPU_P[i]_PCI` up, `GPU_P[i+1]_PCI` down.
    Spec,
    /// Measured, labelled with this text, filed outside the spec.
    Outside(String),
}

/// The booking of a copy over `link`.
pub fn booking(link: PeerLink) -> Booking {
    match link {
        PeerLink::Fabric(PeerFabric::Nvlink) => Booking::Outside("NVLink, outside the spec".into()),
        PeerLink::Fabric(PeerFabric::Xgmi) => Booking::Outside("xGMI, outside the spec".into()),
        // The spec assumes one switch; without the tree there is nothing to contradict it.
        PeerLink::Pcie(None) => Booking::Spec,
        PeerLink::Pcie(Some(c)) if c.in_switch_fabric() => Booking::Spec,
        PeerLink::Pcie(Some(c)) => Booking::Outside(format!("PCIe across the root complex ({c}), outside the spec")),
    }
}

/// `nvmlGpuTopologyLevel_t` as a locality class (the same mapping `nvidia-smi topo -m` prints).
pub fn nvml_class(level: i32) -> Option<LocalityClass> {
    Some(match level {
        nvml::NVML_TOPOLOGY_INTERNAL | nvml::NVML_TOPOLOGY_SINGLE => LocalityClass::PIX,
        nvml::NVML_TOPOLOGY_MULTIPLE => LocalityClass::PXB,
        nvml::NVML_TOPOLOGY_HOSTBRIDGE => LocalityClass::PHB,
        nvml::NVML_TOPOLOGY_NODE => LocalityClass::NODE,
        nvml::NVML_TOPOLOGY_SYSTEM => LocalityClass::SYS,
        _ => return None,
    })
}

/// The link of pair (a, b) from NVML's answers: an active NVLink of `a` ending at `b`, or
/// NVLink P2P reported OK (the NVSwitch case: a's links end at switches), is NVLink;
/// otherwise PCIe with the common ancestor's class. Neither answer: an error naming why.
pub fn from_nvml(b: PciAddr, f: &PairFacts) -> Result<PeerLink, String> {
    let direct = f.links_a.iter().any(|e| matches!(e, RemoteEnd::Device(p) if *p == b));
    if direct || f.p2p_nvlink == Some(true) {
        return Ok(PeerLink::Fabric(PeerFabric::Nvlink));
    }
    if f.p2p_nvlink.is_none() && f.links_a.iter().any(|e| *e != RemoteEnd::Unknown) {
        // NVLinks up but NVML would not say whether P2P uses them: do not guess PCIe.
        return Err("NVML shows active NVLinks but not whether this pair's P2P uses them".into());
    }
    match f.ancestor {
        Some(level) => nvml_class(level)
            .map(|c| PeerLink::Pcie(Some(c)))
            .ok_or_else(|| format!("NVML gave an unknown topology level {level}")),
        None => Err("NVML gave no common PCIe ancestor for the pair".into()),
    }
}

/// Peer links between the GPUs named in a topology file, keyed by PCI address (lower first).
/// `gpus` are this host's GPU addresses: they resolve `GPUn` names of `nvidia-smi topo -m`
/// (which numbers GPUs by PCI bus id, as [`super::spec_order`] does by default).
pub fn from_topology(topo: &Topology, gpus: &[PciAddr]) -> BTreeMap<(PciAddr, PciAddr), PeerLink> {
    let mut by_bus = gpus.to_vec();
    by_bus.sort();
    let resolve = |name: &str| -> Option<PciAddr> {
        name.parse::<PciAddr>().ok().or_else(|| by_bus.get(name.strip_prefix("GPU")?.parse::<usize>().ok()?).copied())
    };
    let mut out = BTreeMap::new();
    for (i, g) in topo.gpus.iter().enumerate() {
        for h in &topo.gpus[i + 1..] {
            let (Some(a), Some(b)) = (resolve(&g.pci), resolve(&h.pci)) else { continue };
            let link = match topo.gpu_link(&g.pci, &h.pci) {
                Some(l) => PeerLink::Fabric(l.fabric),
                None => PeerLink::Pcie(locality::between(&topo.tree, g.node, h.node).map(|(c, _, _)| c)),
            };
            out.insert((a.min(b), a.max(b)), link);
        }
    }
    out
}

/// Where the CUDA peer links of this host come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CudaLinks {
    /// NVML's facts per pair (lower address first), or why NVML gave none.
    pub nvml: BTreeMap<(PciAddr, PciAddr), Result<PairFacts, String>>,
    /// Why NVML could not be asked at all (library missing, init failed).
    pub nvml_missing: Option<String>,
    /// Links read from an operator-supplied topology file.
    pub topology: BTreeMap<(PciAddr, PciAddr), PeerLink>,
}

impl CudaLinks {
    /// Asks NVML about every pair of `gpus`.
    pub fn probe(gpus: &[PciAddr]) -> CudaLinks {
        if let Err(e) = nvml::nvml() {
            return CudaLinks { nvml_missing: Some(e.to_string()), ..CudaLinks::default() };
        }
        let mut facts = BTreeMap::new();
        for (i, &a) in gpus.iter().enumerate() {
            for &b in &gpus[i + 1..] {
                let (lo, hi) = (a.min(b), a.max(b));
                facts.insert((lo, hi), nvml::pair_facts(lo, hi).map_err(|e| e.to_string()));
            }
        }
        CudaLinks { nvml: facts, ..CudaLinks::default() }
    }

    /// The link of pair (a, b): NVML first, then the topology file, else why neither knows.
    pub fn link(&self, a: PciAddr, b: PciAddr) -> Result<PeerLink, String> {
        let key = (a.min(b), a.max(b));
        let from_nvml = match (self.nvml.get(&key), &self.nvml_missing) {
            (Some(Ok(f)), _) => from_nvml(key.1, f),
            (Some(Err(e)), _) => Err(e.clone()),
            (None, Some(why)) => Err(why.clone()),
            (None, None) => Err("NVML was not asked about this pair".into()),
        };
        from_nvml.or_else(|why| {
            self.topology.get(&key).copied().ok_or_else(|| {
                format!(
                    "cannot tell NVLink from PCIe for this pair ({why}); give --nvidia-smi-topo with the saved output of \
                     `nvidia-smi topo -m`, or --nccl-topo with an NCCL topology dump of this host"
                )
            })
        })
    }
}

/// One peer pair, as either vendor's catalogue sees it.
pub struct Pair {
    /// The probe kind (`cuda_p2p` or `hip_p2p`).
    pub kind: ProbeKind,
    /// Spec index of the source GPU (the destination is `index + 1`).
    pub index: usize,
    /// Labels of source and destination (`gpuI (cudaN, bus)`).
    pub labels: (String, String),
    /// Runtime ordinals of source and destination.
    pub ordinals: (usize, usize),
    /// Whether both can access each other as peers.
    pub peer_ok: bool,
    /// How the copy travels, or why that is unknown.
    pub link: Result<PeerLink, String>,
}

/// The probe of one pair: waived without peer access or without knowing the link; else
/// booked to Path 1 or labelled and filed outside the spec (see [`booking`]).
pub fn pair_probe(p: Pair) -> Probe {
    let (a, b) = p.ordinals;
    let gpus = vec![a, b];
    let plain = format!("{} -> {}", p.labels.0, p.labels.1);
    let spec_path = path(RouteKind::PrefillInterRank, p.index, p.index + 1);
    if !p.peer_ok {
        return probe(p.kind, plain, spec_path, gpus, None, waived(gpu::Unavailable::NoPeerAccess { a, b }));
    }
    match p.link.map(booking) {
        Ok(Booking::Spec) => probe(p.kind, plain, spec_path, gpus, None, Status::Applies),
        Ok(Booking::Outside(why)) => probe(p.kind, format!("{plain} ({why})"), None, gpus, None, Status::Applies),
        Err(why) => probe(p.kind, plain, spec_path, gpus, None, waived(why)),
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
