//! NCCL / `nvidia-smi topo -m` locality classes between two PCI functions, computed on the
//! plain PCI tree (so the same-object trap of hwloc's `first_common_ancestor(x, x)`, which
//! returns the parent, cannot arise).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::inventory::{ancestors, bridge_unit};
use super::model::{Gpu, Nic, NodeKind, PciNode};

/// How far apart two devices are, nearest first (NCCL's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum LocalityClass {
    /// At most one PCIe bridge/switch between them (same immediate switch).
    PIX,
    /// Several PCIe switches/bridges, without the CPU's host bridge.
    PXB,
    /// Through a PCIe host bridge (the CPU's root complex).
    PHB,
    /// Across host bridges within one NUMA node.
    NODE,
    /// Across NUMA nodes (the SMP interconnect: UPI, xGMI, X-Bus).
    SYS,
}

impl LocalityClass {
    /// The class name.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalityClass::PIX => "PIX",
            LocalityClass::PXB => "PXB",
            LocalityClass::PHB => "PHB",
            LocalityClass::NODE => "NODE",
            LocalityClass::SYS => "SYS",
        }
    }

    /// True when traffic stays inside the PCIe switch fabric (what GPUDirect and P2P need).
    pub fn in_switch_fabric(self) -> bool {
        matches!(self, LocalityClass::PIX | LocalityClass::PXB)
    }
}

impl fmt::Display for LocalityClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The locality of one pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Locality {
    /// First device: a GPU's PCI bus id.
    pub a: String,
    /// Second device: a GPU's PCI bus id or a NIC's name.
    pub b: String,
    /// The class.
    pub class: LocalityClass,
    /// PCIe switches and bridges crossed inside the fabric (a switch counts once; 0 beyond PXB).
    pub bridges: usize,
    /// Edges of the PCI tree between the two (through the host side when not in one tree).
    pub hops: usize,
}

/// Class, bridges crossed and tree hops between nodes `x` and `y`, or `None` for the same node.
pub fn between(nodes: &[PciNode], x: usize, y: usize) -> Option<(LocalityClass, usize, usize)> {
    if x == y {
        return None;
    }
    let ax = ancestors(nodes, x);
    let ay = ancestors(nodes, y);
    let Some((ix, common)) = ax.iter().enumerate().find(|(_, a)| ay.contains(a)) else {
        // Different host bridges: same NUMA node or not.
        let hops = ax.len() + ay.len() + 2;
        let class = if nodes[x].numa_nodes == nodes[y].numa_nodes { LocalityClass::NODE } else { LocalityClass::SYS };
        return Some((class, 0, hops));
    };
    let iy = ay.iter().position(|a| a == common).expect("common ancestor is in both chains");
    let hops = ix + iy + 2;
    if nodes[*common].kind == NodeKind::HostBridge {
        return Some((LocalityClass::PHB, 0, hops));
    }
    let mut units: Vec<usize> = ax[..=ix].iter().chain(&ay[..=iy]).map(|&b| bridge_unit(nodes, b)).collect();
    units.sort_unstable();
    units.dedup();
    let class = if units.len() <= 1 { LocalityClass::PIX } else { LocalityClass::PXB };
    Some((class, units.len(), hops))
}

/// Locality of every GPU-GPU pair (a < b by bus id) and every GPU-NIC pair.
pub fn all_pairs(nodes: &[PciNode], gpus: &[Gpu], nics: &[Nic]) -> Vec<Locality> {
    let mut out = Vec::new();
    for (i, g) in gpus.iter().enumerate() {
        for h in &gpus[i + 1..] {
            if let Some((class, bridges, hops)) = between(nodes, g.node, h.node) {
                out.push(Locality { a: g.pci.clone(), b: h.pci.clone(), class, bridges, hops });
            }
        }
        for n in nics {
            if let Some((class, bridges, hops)) = between(nodes, g.node, n.node) {
                out.push(Locality { a: g.pci.clone(), b: n.name.clone(), class, bridges, hops });
            }
        }
    }
    out
}
