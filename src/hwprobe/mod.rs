//! The hardware probes of one host: what it offers (CUDA GPUs matched by PCI bus id, AMD GPUs,
//! RDMA NICs with their NUMA node, which GPU pairs are peers, whether GPU memory can be
//! registered with a NIC) and, for every probe that could measure a route here, whether it
//! applies or is waived with a reason. Probing the host never panics: a machine with no
//! `libcuda.so` and no RDMA device yields a catalogue of waivers.

pub mod hip;
pub mod nics;
pub mod peer;
pub mod routes;
pub mod run;

use serde::{Deserialize, Serialize};

use crate::gpu::{self, pci, CudaDevice, PciAddr};
use crate::model::results::Waiver;
use crate::rdma;
use crate::spec::{PathRef, RouteKind};
pub use crate::topology::Role;

/// An RDMA NIC of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// Device name, e.g. `mlx5_0`.
    pub name: String,
    /// NUMA node from sysfs, when the platform reports one.
    pub numa_node: Option<u32>,
    /// Whether port 1 is active (`None`: sysfs does not say).
    #[serde(default)]
    pub active: Option<bool>,
    /// Port 1's link layer (`None`: neither InfiniBand nor Ethernet, or unknown).
    #[serde(default)]
    pub link_layer: Option<rdma::LinkLayer>,
}

/// What this host offers to the hardware probes.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// CUDA devices, or why there are none.
    pub cuda: Result<Vec<CudaDevice>, gpu::Unavailable>,
    /// For each CUDA pair (a, b) with a < b: whether both can access each other as peers.
    pub peers: Vec<(usize, usize, bool)>,
    /// AMD GPUs found on the PCI bus (named in the waiver when the HIP runtime is missing).
    pub amd: Vec<PciAddr>,
    /// HIP devices, peers, xGMI links and GPU memory registration.
    pub hip: hip::HipInventory,
    /// RDMA NICs in PCI bus order (NIC k of the spec), or why there are none.
    pub rdma: Result<Vec<Nic>, rdma::Unavailable>,
    /// Whether the nvidia-peermem module is loaded (GPU memory via plain `ibv_reg_mr`).
    pub peermem: bool,
    /// How CUDA peer copies travel (NVML, or a topology file the operator gives).
    pub cuda_links: peer::CudaLinks,
}

/// Looks at this host: CUDA (only after checking the library exists), PCI sysfs for AMD
/// GPUs, verbs for RDMA NICs, sysfs for NUMA nodes and nvidia-peermem.
pub fn inventory() -> Inventory {
    let cuda = gpu::guard_symbols(|| match gpu::enumerate() {
        Ok(d) => Ok(d),
        Err(gpu::GpuError::Unavailable(u)) => Err(u),
        Err(e) => Err(gpu::Unavailable::InitFailed(e.to_string())),
    });
    let mut peers = Vec::new();
    if let Ok(devs) = &cuda {
        for a in 0..devs.len() {
            for b in a + 1..devs.len() {
                let ok = matches!((gpu::device::can_access_peer(a, b), gpu::device::can_access_peer(b, a)), (Ok(true), Ok(true)));
                peers.push((a, b, ok));
            }
        }
    }
    let amd = pci::scan_sysfs_gpus(std::path::Path::new("/sys/bus/pci/devices"))
        .into_iter()
        .filter(|g| g.vendor == pci::GpuVendor::Amd)
        .map(|g| g.addr)
        .collect();
    // NICs in PCI bus order: NIC k is the k-th by bus id, as discovery and the NIC map number them.
    let rdma = rdma::list_devices().map(|names| {
        rdma::select::by_bus_order(std::path::Path::new("/sys"), &names)
            .into_iter()
            .map(|name| nics::describe(std::path::Path::new("/sys"), &name))
            .collect()
    });
    let peermem = ["/sys/kernel/mm/memory_peers/nv_mem/version", "/sys/module/nvidia_peermem"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let addrs: Vec<PciAddr> = cuda.as_ref().map(|d| d.iter().map(|x| x.pci).collect()).unwrap_or_default();
    let cuda_links = if addrs.len() < 2 { peer::CudaLinks::default() } else { peer::CudaLinks::probe(&addrs) };
    Inventory { cuda, peers, amd, hip: hip::HipInventory::probe(), rdma, peermem, cuda_links }
}

/// The kinds of hardware probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// GPU i -> GPU i+1 copy-engine peer copy (Path 1).
    CudaP2p,
    /// GPU -> pinned host memory (isolates the GPU's PCIe link, upstream).
    CudaD2h,
    /// Pinned host memory -> GPU (the GPU's PCIe link, downstream).
    CudaH2d,
    /// GPU -> pinned host -> TCP -> pinned host -> GPU (Path 3).
    GpuStagedTcp,
    /// GPU memory -> NIC -> IB -> NIC -> GPU memory (Path 2).
    GpudirectRdma,
    /// Host memory -> NIC -> IB -> NIC -> host memory (isolates NIC and cable).
    HostRdma,
    /// AMD GPU i -> GPU i+1 SDMA peer copy (Path 1, or xGMI outside the spec).
    HipP2p,
    /// AMD GPU -> pinned host memory.
    HipD2h,
    /// Pinned host memory -> AMD GPU.
    HipH2d,
    /// AMD GPU -> pinned host -> TCP -> pinned host -> AMD GPU (Path 3).
    HipStagedTcp,
}

impl ProbeKind {
    /// Every kind, in catalogue order.
    pub const ALL: [ProbeKind; 10] = [
        ProbeKind::CudaP2p,
        ProbeKind::CudaD2h,
        ProbeKind::CudaH2d,
        ProbeKind::GpuStagedTcp,
        ProbeKind::GpudirectRdma,
        ProbeKind::HostRdma,
        ProbeKind::HipP2p,
        ProbeKind::HipD2h,
        ProbeKind::HipH2d,
        ProbeKind::HipStagedTcp,
    ];

    /// The snake_case name (also the transport name in results).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::CudaP2p => "cuda_p2p",
            ProbeKind::CudaD2h => "cuda_d2h",
            ProbeKind::CudaH2d => "cuda_h2d",
            ProbeKind::GpuStagedTcp => "gpu_staged_tcp",
            ProbeKind::GpudirectRdma => "gpudirect_rdma",
            ProbeKind::HostRdma => "host_rdma",
            ProbeKind::HipP2p => "hip_p2p",
            ProbeKind::HipD2h => "hip_d2h",
            ProbeKind::HipH2d => "hip_h2d",
            ProbeKind::HipStagedTcp => "hip_staged_tcp",
        }
    }
}

/// Applies, or waived with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Can run here.
    Applies,
    /// Cannot run here, and why.
    Waived {
        /// Why.
        reason: String,
    },
}

/// One concrete probe on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Kind.
    pub kind: ProbeKind,
    /// What it measures here, e.g. `gpu0 -> gpu1`, `gpu2 via mlx5_1`, `mlx5_0`.
    pub target: String,
    /// The route it measures, for this host's role.
    pub path: Option<PathRef>,
    /// GPU ordinals involved (source first).
    pub gpus: Vec<usize>,
    /// NIC involved.
    pub nic: Option<String>,
    /// The receiving end of a local RDMA run (NIC, and GPU or host memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<nics::LocalPeer>,
    /// Applies or waived.
    pub status: Status,
}

impl Probe {
    /// The waiver record for results files, if waived.
    pub fn waiver(&self) -> Option<Waiver> {
        match &self.status {
            Status::Applies => None,
            Status::Waived { reason } => {
                Some(Waiver { probe: format!("{} {}", self.kind.as_str(), self.target), path: self.path, reason: reason.clone() })
            }
        }
    }
}

fn path(kind: RouteKind, src: usize, dst: usize) -> Option<PathRef> {
    Some(PathRef { kind, src, dst })
}

fn probe(kind: ProbeKind, target: String, path: Option<PathRef>, gpus: Vec<usize>, nic: Option<String>, status: Status) -> Probe {
    Probe { kind, target, path, gpus, nic, peer: None, status }
}

fn waived(reason: impl ToString) -> Status {
    Status::Waived { reason: reason.to_string() }
}

/// The CUDA devices in spec order: spec GPU i is the i-th device of `order` (PCI addresses,
/// as `linkcal discover --gpus` takes them), or the i-th by PCI address when `order` is
/// `None` (discovery's default). CUDA's own ordinals follow a different order.
pub fn spec_order(devs: &[CudaDevice], order: Option<&[PciAddr]>) -> Result<Vec<CudaDevice>, String> {
    match order {
        None => {
            let mut v = devs.to_vec();
            v.sort_by_key(|d| d.pci);
            Ok(v)
        }
        Some(addrs) => addrs
            .iter()
            .map(|a| {
                devs.iter()
                    .find(|d| d.pci == *a)
                    .cloned()
                    .ok_or_else(|| format!("no CUDA GPU at {a} (CUDA sees: {})", list_pci(devs)))
            })
            .collect(),
    }
}

fn list_pci(devs: &[CudaDevice]) -> String {
    devs.iter().map(|d| d.pci.to_string()).collect::<Vec<_>>().join(", ")
}

/// Every probe that could run on a host with `inv`, each applying or waived with a reason.
/// GPUs are numbered in spec order (see [`spec_order`]). GPUs map onto the compute NICs
/// ([`nics::compute_nics`]: active, one link layer, bus order): GPU i uses compute NIC
/// `nic_map[i]` (the CLI passes discovery's proposal by default), else i mod their count.
pub fn catalogue(inv: &Inventory, role: Role, order: Option<&[PciAddr]>, nic_map: Option<&[usize]>) -> Vec<Probe> {
    let mut out = Vec::new();
    let hip_ok = matches!(&inv.hip.devices, Ok(d) if !d.is_empty());
    let devs = match inv.cuda.as_ref().map_err(|e| e.to_string()).and_then(|d| spec_order(d, order)) {
        Ok(d) => d,
        Err(why) => {
            let kinds = [ProbeKind::CudaP2p, ProbeKind::CudaD2h, ProbeKind::CudaH2d, ProbeKind::GpuStagedTcp];
            for kind in kinds.into_iter().chain((!hip_ok).then_some(ProbeKind::GpudirectRdma)) {
                out.push(probe(kind, "all GPUs".into(), None, vec![], None, waived(&why)));
            }
            Vec::new()
        }
    };
    if inv.cuda.is_ok() && !devs.is_empty() {
        gpu_probes(&mut out, inv, &devs, role);
    }
    // HIP devices in spec order only matter when `order` names AMD GPUs or CUDA has none.
    let hip_order = if devs.is_empty() { order } else { None };
    let hip_ends = hip::probes(&mut out, &inv.hip, &inv.amd, role, hip_order);
    // GPUDirect uses the vendor whose GPUs are here (CUDA first), as the transport does.
    let ends: Vec<GpuEnd> = if devs.is_empty() {
        hip_ends
    } else {
        devs.iter()
            .enumerate()
            .map(|(i, d)| GpuEnd {
                ordinal: d.ordinal,
                label: label(i, d),
                registration: if d.dmabuf || inv.peermem {
                    Ok(())
                } else {
                    Err("GPU memory cannot be registered: the driver offers no dmabuf and nvidia-peermem is not loaded".into())
                },
            })
            .collect()
    };
    rdma_probes(&mut out, inv, &ends, role, nic_map, inv.cuda.is_ok() || hip_ok);
    out
}

/// A GPU as the GPUDirect probes see it, of either vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuEnd {
    /// Runtime ordinal (CUDA or HIP).
    pub ordinal: usize,
    /// `gpuI (cudaN, bus)` or `gpuI (hipN, bus)`.
    pub label: String,
    /// Whether its memory can be registered with a NIC, else why not.
    pub registration: Result<(), String>,
}

/// `gpuI (cudaN, bus)`: the spec index, the CUDA ordinal and the PCI address.
fn label(i: usize, d: &CudaDevice) -> String {
    format!("gpu{i} (cuda{}, {})", d.ordinal, d.pci)
}

fn gpu_probes(out: &mut Vec<Probe>, inv: &Inventory, devs: &[CudaDevice], role: Role) {
    let (d2h, h2d) = match role {
        Role::Prefill => (RouteKind::PrefillGpuToHost, RouteKind::PrefillHostToGpu),
        Role::Decode => (RouteKind::DecodeGpuToHost, RouteKind::DecodeHostToGpu),
    };
    if devs.len() < 2 {
        out.push(probe(
            ProbeKind::CudaP2p,
            "gpu0 -> gpu1".into(),
            path(RouteKind::PrefillInterRank, 0, 1),
            vec![],
            None,
            waived(gpu::Unavailable::TooFewGpus { need: 2, have: devs.len() }),
        ));
    }
    for (i, w) in devs.windows(2).enumerate() {
        let (a, b) = (w[0].ordinal.min(w[1].ordinal), w[0].ordinal.max(w[1].ordinal));
        out.push(peer::pair_probe(peer::Pair {
            kind: ProbeKind::CudaP2p,
            index: i,
            labels: (label(i, &w[0]), label(i + 1, &w[1])),
            ordinals: (w[0].ordinal, w[1].ordinal),
            peer_ok: inv.peers.iter().any(|&(x, y, ok)| x == a && y == b && ok),
            link: inv.cuda_links.link(w[0].pci, w[1].pci),
        }));
    }
    for (i, d) in devs.iter().enumerate() {
        out.push(probe(
            ProbeKind::CudaD2h,
            format!("{} -> host", label(i, d)),
            path(d2h, i, 0),
            vec![d.ordinal],
            None,
            Status::Applies,
        ));
        out.push(probe(
            ProbeKind::CudaH2d,
            format!("host -> {}", label(i, d)),
            path(h2d, 0, i),
            vec![d.ordinal],
            None,
            Status::Applies,
        ));
    }
    // Path 3 runs between decode servers; on one host it stages GPU i -> GPU i+1 through a
    // local socket, which exercises both staging ends but not an Ethernet link.
    if devs.len() < 2 {
        out.push(probe(
            ProbeKind::GpuStagedTcp,
            "gpu0 -> gpu1".into(),
            None,
            vec![],
            None,
            waived("a local staged run needs 2 CUDA GPUs; across hosts it runs through the agents"),
        ));
    }
    for (i, w) in devs.windows(2).enumerate() {
        let target = format!("{} -> {} (local socket)", label(i, &w[0]), label(i + 1, &w[1]));
        out.push(probe(ProbeKind::GpuStagedTcp, target, None, vec![w[0].ordinal, w[1].ordinal], None, Status::Applies));
    }
}

fn rdma_probes(out: &mut Vec<Probe>, inv: &Inventory, devs: &[GpuEnd], role: Role, nic_map: Option<&[usize]>, gpus: bool) {
    let nics = match &inv.rdma {
        Ok(n) => n.clone(),
        Err(why) => {
            if gpus {
                out.push(probe(ProbeKind::GpudirectRdma, "all GPUs".into(), None, vec![], None, waived(why)));
            }
            out.push(probe(ProbeKind::HostRdma, "all NICs".into(), None, vec![], None, waived(why)));
            return;
        }
    };
    let partners = nics::partners(&nics);
    let compute = nics::compute_nics(&nics);
    let nic_of_gpu: Vec<Option<usize>> = (0..devs.len())
        .map(|i| {
            let c = nic_map.and_then(|m| m.get(i).copied()).or((!compute.is_empty()).then(|| i % compute.len().max(1)))?;
            compute.get(c).copied()
        })
        .collect();
    // The GPU nearest a receiving NIC: the first GPU mapped onto it (none: host memory).
    let gpu_near = |k: usize| nic_of_gpu.iter().position(|&n| n == Some(k)).map(|i| devs[i].ordinal);
    for (k, nic) in nics.iter().enumerate() {
        let (status, peer) = match &partners[k] {
            Ok(j) => (Status::Applies, Some(nics::LocalPeer { nic: nics[*j].name.clone(), gpu: None })),
            Err(why) => (waived(why), None),
        };
        let mut p =
            probe(ProbeKind::HostRdma, nic.name.clone(), path(RouteKind::HostRdma, k, 0), vec![], Some(nic.name.clone()), status);
        p.peer = peer;
        out.push(p);
    }
    for (i, d) in devs.iter().enumerate() {
        let Some(k) = nic_of_gpu[i] else {
            let why = if compute.is_empty() {
                "no usable RDMA NIC (active InfiniBand or RoCE port)".to_string()
            } else {
                format!(
                    "NIC map names compute NIC {}, but only {} exist",
                    nic_map.and_then(|m| m.get(i)).map(|k| k.to_string()).unwrap_or_default(),
                    compute.len()
                )
            };
            out.push(probe(ProbeKind::GpudirectRdma, d.label.clone(), None, vec![d.ordinal], None, waived(why)));
            continue;
        };
        let status = match &d.registration {
            Ok(()) => Status::Applies,
            Err(why) => waived(why),
        };
        let p = match role {
            Role::Prefill => path(RouteKind::PrefillToDecode, i, 0),
            Role::Decode => None,
        };
        let nic = &nics[k];
        let mut pr = probe(
            ProbeKind::GpudirectRdma,
            format!("{} via {}", d.label, nic.name),
            p,
            vec![d.ordinal],
            Some(nic.name.clone()),
            status,
        );
        pr.peer = partners[k].as_ref().ok().map(|&j| nics::LocalPeer { nic: nics[j].name.clone(), gpu: gpu_near(j) });
        out.push(pr);
    }
}

#[cfg(test)]
mod tests;

/// The NIC map discovery proposes for this prefill server over its compute NICs (see
/// [`nics::discovered_map`]), when the live topology yields one.
pub fn discovered_nic_map(inv: &Inventory) -> Result<Vec<usize>, String> {
    let all = inv.rdma.as_ref().map_err(|e| e.to_string())?;
    let compute: Vec<String> = nics::compute_nics(all).iter().map(|&k| all[k].name.clone()).collect();
    nics::discovered_map(&crate::topology::Input::Live, &compute)
}
