//! The AMD side of the catalogue: HIP devices matched by PCI bus id, peer pairs, xGMI links
//! from the KFD topology, and the HIP probes (`hip_p2p`, `hip_d2h`, `hip_h2d`,
//! `hip_staged_tcp`) with their waivers. A peer pair joined by xGMI is measured and labelled
//! as such, outside the spec: its probe carries no spec path, so the local run files it
//! with the loopback figures and it is never booked to `GPU_P[i]_PCI` (those links are
//! calibrated from the D2H/H2D isolation copies instead).

use std::collections::BTreeSet;

use super::peer::{self, PeerLink};
use super::{path, probe, waived, GpuEnd, Probe, ProbeKind, Role, Status};
use crate::gpu::hip::{self, kfd, HipDevice};
use crate::gpu::{self, PciAddr};
use crate::spec::RouteKind;
use crate::topology::PeerFabric;

/// What this host offers the HIP probes.
#[derive(Debug, Clone, PartialEq)]
pub struct HipInventory {
    /// HIP devices, or why there are none.
    pub devices: Result<Vec<HipDevice>, gpu::Unavailable>,
    /// For each HIP pair (a, b) with a < b: whether both can access each other as peers.
    pub peers: Vec<(usize, usize, bool)>,
    /// GPU pairs joined by xGMI (KFD topology), lower address first.
    pub xgmi: BTreeSet<(PciAddr, PciAddr)>,
    /// Whether GPU memory can be registered with a NIC: dmabuf export (`libhsa-runtime64.so`)
    /// or a peer-memory client, else why not.
    pub registration: Result<(), String>,
}

impl HipInventory {
    /// A host without ROCm.
    pub fn absent() -> HipInventory {
        HipInventory {
            devices: Err(gpu::Unavailable::HipLibrary { library: "libamdhip64.so" }),
            peers: vec![],
            xgmi: BTreeSet::new(),
            registration: Err("no HIP runtime".into()),
        }
    }

    /// Looks at this host: HIP (library first), peers, KFD xGMI links, registration paths.
    pub fn probe() -> HipInventory {
        let devices = match hip::enumerate() {
            Ok(d) => Ok(d),
            Err(gpu::GpuError::Unavailable(u)) => Err(u),
            Err(e) => Err(gpu::Unavailable::HipInit(e.to_string())),
        };
        let mut peers = Vec::new();
        if let Ok(devs) = &devices {
            for a in 0..devs.len() {
                for b in a + 1..devs.len() {
                    let ok = matches!((hip::can_access_peer(a, b), hip::can_access_peer(b, a)), (Ok(true), Ok(true)));
                    peers.push((a, b, ok));
                }
            }
        }
        // The ROCK driver's peer-memory client registers itself as `amdkfd`.
        let peer_client = std::path::Path::new("/sys/kernel/mm/memory_peers/amdkfd/version").exists();
        let registration = match hip::ffi::hsa() {
            Ok(_) => Ok(()),
            Err(_) if peer_client => Ok(()),
            Err(u) => Err(format!("GPU memory cannot be registered: {u} (no dmabuf export) and no amdkfd peer-memory client")),
        };
        HipInventory { devices, peers, xgmi: kfd::xgmi_pairs(std::path::Path::new("/sys")), registration }
    }
}

/// `gpuI (hipN, bus)`: spec index, HIP ordinal, PCI address.
pub fn label(i: usize, d: &HipDevice) -> String {
    format!("gpu{i} (hip{}, {})", d.ordinal, d.pci)
}

/// HIP devices in spec order (bus order, or `order`), or why not.
pub fn spec_order(devs: &[HipDevice], order: Option<&[PciAddr]>) -> Result<Vec<HipDevice>, String> {
    let mut v = devs.to_vec();
    match order {
        None => {
            v.sort_by_key(|d| d.pci);
            Ok(v)
        }
        Some(addrs) => {
            addrs.iter().map(|a| devs.iter().find(|d| d.pci == *a).cloned().ok_or_else(|| format!("no HIP GPU at {a}"))).collect()
        }
    }
}

/// The HIP probes; returns the GPUs (spec order) for the GPUDirect probes, empty when none.
pub fn probes(out: &mut Vec<Probe>, inv: &HipInventory, amd: &[PciAddr], role: Role, order: Option<&[PciAddr]>) -> Vec<GpuEnd> {
    let kinds = [ProbeKind::HipP2p, ProbeKind::HipD2h, ProbeKind::HipH2d, ProbeKind::HipStagedTcp];
    let devs = match inv.devices.as_ref().map_err(|u| reason_with_bus(u, amd)).and_then(|d| spec_order(d, order)) {
        Ok(d) if !d.is_empty() => d,
        Ok(_) => Vec::new(),
        Err(why) => {
            for kind in kinds {
                out.push(probe(kind, "all GPUs".into(), None, vec![], None, waived(&why)));
            }
            return Vec::new();
        }
    };
    peer_probes(out, inv, &devs);
    let (d2h, h2d) = match role {
        Role::Prefill => (RouteKind::PrefillGpuToHost, RouteKind::PrefillHostToGpu),
        Role::Decode => (RouteKind::DecodeGpuToHost, RouteKind::DecodeHostToGpu),
    };
    for (i, d) in devs.iter().enumerate() {
        let g = vec![d.ordinal];
        out.push(probe(ProbeKind::HipD2h, format!("{} -> host", label(i, d)), path(d2h, i, 0), g.clone(), None, Status::Applies));
        out.push(probe(ProbeKind::HipH2d, format!("host -> {}", label(i, d)), path(h2d, 0, i), g, None, Status::Applies));
    }
    for (i, w) in devs.windows(2).enumerate() {
        let target = format!("{} -> {} (local socket)", label(i, &w[0]), label(i + 1, &w[1]));
        out.push(probe(ProbeKind::HipStagedTcp, target, None, vec![w[0].ordinal, w[1].ordinal], None, Status::Applies));
    }
    if devs.len() < 2 {
        let why = "a local staged run needs 2 HIP GPUs; across hosts it runs through the agents";
        out.push(probe(ProbeKind::HipStagedTcp, "gpu0 -> gpu1".into(), None, vec![], None, waived(why)));
    }
    devs.iter()
        .enumerate()
        .map(|(i, d)| GpuEnd { ordinal: d.ordinal, label: label(i, d), registration: inv.registration.clone() })
        .collect()
}

/// The waiver for a missing HIP runtime, naming the AMD GPUs the PCI bus shows.
fn reason_with_bus(u: &gpu::Unavailable, amd: &[PciAddr]) -> String {
    if amd.is_empty() || !matches!(u, gpu::Unavailable::HipLibrary { .. }) {
        return u.to_string();
    }
    let list: Vec<String> = amd.iter().map(|a| a.to_string()).collect();
    format!("{u} (AMD GPUs at {}: install the ROCm runtime)", list.join(", "))
}

/// GPU i -> i+1: over PCIe it measures Path 1 (booked to GPU_P[i]_PCI and GPU_P[i+1]_PCI);
/// over xGMI it is labelled so and carries no spec path (the decision of [`peer::booking`],
/// shared with the CUDA probes).
fn peer_probes(out: &mut Vec<Probe>, inv: &HipInventory, devs: &[HipDevice]) {
    if devs.len() < 2 {
        let why = gpu::Unavailable::HipTooFew { need: 2, have: devs.len() };
        out.push(probe(
            ProbeKind::HipP2p,
            "gpu0 -> gpu1".into(),
            path(RouteKind::PrefillInterRank, 0, 1),
            vec![],
            None,
            waived(why),
        ));
    }
    for (i, w) in devs.windows(2).enumerate() {
        let (a, b) = (w[0].ordinal.min(w[1].ordinal), w[0].ordinal.max(w[1].ordinal));
        // KFD knows xGMI but not the PCIe tree: a pair without xGMI is booked as the spec draws it.
        let link =
            if kfd::linked(&inv.xgmi, w[0].pci, w[1].pci) { PeerLink::Fabric(PeerFabric::Xgmi) } else { PeerLink::Pcie(None) };
        out.push(peer::pair_probe(peer::Pair {
            kind: ProbeKind::HipP2p,
            index: i,
            labels: (label(i, &w[0]), label(i + 1, &w[1])),
            ordinals: (w[0].ordinal, w[1].ordinal),
            peer_ok: inv.peers.iter().any(|&(x, y, ok)| x == a && y == b && ok),
            link: Ok(link),
        }));
    }
}
