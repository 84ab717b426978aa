//! The discovery result (`linkcal.topology/1`): the PCI tree as hwloc reports it, the GPUs,
//! NICs and PCIe switches found in it, locality classes between them and, when a role was
//! asked for, the conformance report against the rack spec.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conformance::Conformance;
use super::locality::Locality;

/// Schema id of discovery results.
pub const TOPOLOGY_SCHEMA: &str = "linkcal.topology/1";

/// Everything `linkcal discover` found on one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyReport {
    /// Always `linkcal.topology/1`.
    pub schema: String,
    /// Where the topology came from.
    pub source: Source,
    /// GPUs (NVIDIA 0x10de, AMD 0x1002; PCI class 0x03xx or 0x12xx), ordered by PCI bus id.
    pub gpus: Vec<Gpu>,
    /// NICs with an RDMA (OpenFabrics) or network OS device, ordered by PCI bus id, then name.
    pub nics: Vec<Nic>,
    /// PCIe switches, each reported once by its upstream port, ordered by PCI bus id.
    pub switches: Vec<Switch>,
    /// Locality class of every GPU-GPU and GPU-NIC pair.
    pub locality: Vec<Locality>,
    /// Role mapping and conformance with the spec (only with `--as`).
    pub conformance: Option<Conformance>,
    /// Plain statements about what was (not) found, e.g. "no GPU found".
    pub notes: Vec<String>,
    /// The PCI tree: host bridges, ports, bridges and devices, parents before children.
    pub tree: Vec<PciNode>,
}

/// Where the topology came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// `live` (this machine) or `xml` (an hwloc export).
    pub kind: SourceKind,
    /// The XML file, for `xml`.
    pub file: Option<String>,
    /// Host name recorded in the topology (hwloc's `HostName` info), when present.
    pub hostname: Option<String>,
}

/// Kind of topology source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Discovered on the machine running linkcal.
    Live,
    /// Loaded from an hwloc XML export (v1 or v2 format).
    Xml,
}

/// What a node of the PCI tree is. PCIe links alternate a downstream-facing port (root port,
/// switch downstream port) and an upstream-facing one (switch upstream port, endpoint), which
/// is how ports are told apart: hwloc itself only says "PCI bridge".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A PCIe host bridge (root complex side of one root bus).
    HostBridge,
    /// A root port: a PCI bridge directly under a host bridge.
    RootPort,
    /// The upstream port of a PCIe switch (it has downstream ports below it).
    SwitchUpstream,
    /// A downstream port of a PCIe switch.
    SwitchDownstream,
    /// Any other bridge (e.g. a PCIe-to-PCI bridge with devices directly below it).
    Bridge,
    /// A PCI function (endpoint).
    Device,
}

/// One node of the PCI tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PciNode {
    /// Index of this node in `tree`.
    pub id: usize,
    /// Index of the parent node in `tree` (`null` for host bridges).
    pub parent: Option<usize>,
    /// What the node is.
    pub kind: NodeKind,
    /// PCI bus id `dddd:bb:dd.f`; for a host bridge `dddd:bb` of its root bus.
    pub pci: String,
    /// PCI `vendor:device` in hex, e.g. `10b5:8796` (`null` for host bridges).
    pub vendor_device: Option<String>,
    /// PCI class code, e.g. 0x0302 (3D controller), 0x0207 (InfiniBand), 0x0604 (PCI bridge).
    pub class_id: Option<u16>,
    /// Vendor and device names from hwloc's PCI database, when present.
    pub name: Option<String>,
    /// PCIe link speed hwloc reports for this function, GB/s per direction (`null` when 0 or absent).
    pub link_GBps: Option<f64>,
    /// NUMA nodes (OS indexes) local to this node's CPU-side ancestor.
    pub numa_nodes: Vec<u32>,
    /// OS devices attached to this PCI function.
    pub os_devices: Vec<OsDevice>,
}

impl PciNode {
    /// The single local NUMA node, when exactly one.
    pub fn numa(&self) -> Option<u32> {
        match self.numa_nodes.as_slice() {
            [n] => Some(*n),
            _ => None,
        }
    }

    /// PCI vendor id parsed from `vendor_device`.
    pub fn vendor_id(&self) -> Option<u16> {
        self.vendor_device.as_deref().and_then(|v| u16::from_str_radix(v.split(':').next()?, 16).ok())
    }

    /// True for bridges of any kind (not devices).
    pub fn is_bridge(&self) -> bool {
        !matches!(self.kind, NodeKind::Device)
    }
}

/// An OS device hwloc attached to a PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OsDevice {
    /// OS name, e.g. `mlx5_0`, `ib0`, `cuda0`, `nvml0`, `rsmi0`, `nvme0n1`.
    pub name: String,
    /// hwloc OS device type.
    pub kind: OsDeviceKind,
    /// hwloc subtype when present, e.g. `CUDA`, `OpenCL`, `Disk`.
    pub subtype: Option<String>,
}

/// hwloc OS device types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OsDeviceKind {
    /// Block / storage device.
    Storage,
    /// Display GPU (e.g. DRM card).
    Gpu,
    /// Network interface (Ethernet, IPoIB).
    Network,
    /// OpenFabrics (RDMA) device, e.g. `mlx5_0`.
    OpenFabrics,
    /// DMA engine.
    Dma,
    /// Co-processor (CUDA, NVML, RSMI, OpenCL, LevelZero).
    CoProcessor,
    /// A type this hwloc build does not name.
    Other,
}

/// GPU vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    /// PCI vendor 0x10de.
    Nvidia,
    /// PCI vendor 0x1002.
    Amd,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gpu {
    /// PCI bus id, the GPU's name everywhere in linkcal (match CUDA ordinals by it).
    pub pci: String,
    /// Vendor.
    pub vendor: GpuVendor,
    /// PCI `vendor:device`.
    pub vendor_device: String,
    /// Model name from hwloc's PCI database, when present.
    pub name: Option<String>,
    /// cuda/nvml/rsmi/opencl OS devices, when hwloc found them (Debian's hwloc has no CUDA/NVML plugin).
    pub os_devices: Vec<String>,
    /// Local NUMA node (`null` when not a single node).
    pub numa: Option<u32>,
    /// PCIe link speed of the GPU's link (slower end), GB/s per direction.
    pub link_GBps: Option<f64>,
    /// Index of the node in `tree`.
    pub node: usize,
}

/// NIC kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NicKind {
    /// Has an OpenFabrics OS device (InfiniBand, RoCE, iWARP).
    Rdma,
    /// Network OS device only.
    Ethernet,
}

/// One NIC port (one PCI function).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Nic {
    /// OS device name: the OpenFabrics name for RDMA NICs (`mlx5_0`), the interface otherwise
    /// (`eth0`); the PCI bus id when hwloc recorded no OS device.
    pub name: String,
    /// RDMA or Ethernet.
    pub kind: NicKind,
    /// Network interface on the same function (e.g. `ib0` of `mlx5_0`), when present.
    pub netdev: Option<String>,
    /// PCI bus id.
    pub pci: String,
    /// PCI `vendor:device`.
    pub vendor_device: String,
    /// Model name from hwloc's PCI database, when present.
    pub model: Option<String>,
    /// Local NUMA node (`null` when not a single node).
    pub numa: Option<u32>,
    /// PCIe link speed of the NIC's link (slower end), GB/s per direction.
    pub link_GBps: Option<f64>,
    /// Index of the node in `tree`.
    pub node: usize,
}

/// One PCIe switch: its upstream port and downstream ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Switch {
    /// PCI bus id of the upstream port.
    pub pci: String,
    /// PCI `vendor:device` of the upstream port (e.g. `10b5:8796` PLX PEX8796, `1000:c010` Broadcom PEX880xx).
    pub vendor_device: String,
    /// Vendor and device names, when present.
    pub name: Option<String>,
    /// Switch level: 1 directly below a root port, 2 below a level-1 switch, ...
    pub level: usize,
    /// Upstream port of the switch above, when this switch hangs off another switch.
    pub parent_switch: Option<String>,
    /// The upstream link (slower end), GB/s per direction.
    pub uplink_GBps: Option<f64>,
    /// Downstream ports.
    pub children: Vec<SwitchPort>,
    /// GPUs anywhere below this switch (PCI bus ids).
    pub gpus: Vec<String>,
    /// NICs anywhere below this switch (names).
    pub nics: Vec<String>,
    /// Index of the upstream port in `tree`.
    pub node: usize,
}

/// A downstream port of a switch and what hangs off it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SwitchPort {
    /// PCI bus id of the port.
    pub pci: String,
    /// Link below the port (slower end with what is attached), GB/s per direction.
    pub link_GBps: Option<f64>,
    /// PCI bus ids of the functions or switch upstream ports directly below.
    pub attached: Vec<String>,
}
