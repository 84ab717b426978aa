//! The pieces of a discovery result (`linkcal.topology/2`, see [`mod@super::report`]): where it
//! came from, the PCI tree's nodes, the GPUs, NICs, NVLink/xGMI links and PCIe switches found
//! in it. The ground of `topology`: it imports no other file of it.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the topology came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// `live` (this machine), `xml` (an hwloc export), `nccl` (an NCCL/RCCL topology XML),
    /// `nvidia_smi` (an `nvidia-smi topo -m` matrix) or `merged` (hwloc export + NCCL dump).
    pub kind: SourceKind,
    /// The file read (the hwloc export, for `merged`).
    pub file: Option<String>,
    /// Which reader read it and what it recognised, e.g. `NCCL topology XML <system version="2">`.
    #[serde(default)]
    pub reader: Option<String>,
    /// The NCCL dump merged into the hwloc export (`merged` only).
    #[serde(default)]
    pub merged_with: Option<String>,
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
    /// Loaded from an NCCL/RCCL topology XML (`<system version=...>`: a dump or a hint file).
    Nccl,
    /// Loaded from the text of `nvidia-smi topo -m`.
    NvidiaSmi,
    /// An hwloc export with the NVLink/xGMI and NIC facts of an NCCL dump of the same server.
    Merged,
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
    /// True for nodes the source does not list but its structure implies: an NCCL `<cpu>`
    /// (as host bridge) and the switch ports NCCL folds away, or the host bridges, root ports
    /// and switches rebuilt from an `nvidia-smi topo -m` matrix.
    #[serde(default)]
    pub synthetic: bool,
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
    /// The source names no vendor (an NCCL hint file without vendor ids or `<gpu>` element).
    Unknown,
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
    /// Port line rate, bytes/s SI (NCCL's `speed` in Mb/s / 8; `null` when the source has none).
    #[serde(default)]
    pub line_rate_Bps: Option<f64>,
    /// Port number on the device (NCCL's `port`).
    #[serde(default)]
    pub port: Option<u32>,
    /// GPUDirect RDMA support as NCCL found it (`gdr`).
    #[serde(default)]
    pub gdr: Option<bool>,
    /// Index of the node in `tree`.
    pub node: usize,
}

/// The fabric of a direct GPU-GPU link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerFabric {
    /// NVIDIA NVLink (direct or through NVSwitch).
    Nvlink,
    /// AMD xGMI / Infinity Fabric.
    Xgmi,
}

/// A GPU pair joined by NVLink or xGMI: peer copies between them bypass PCIe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GpuLink {
    /// First GPU (PCI bus id; `GPUn` for `nvidia-smi` input), the lower of the two.
    pub a: String,
    /// Second GPU.
    pub b: String,
    /// NVLink or xGMI.
    pub fabric: PeerFabric,
    /// Number of links (`NV#` of `nvidia-smi`; through NVSwitch the fewer of the two GPUs' links
    /// to the NVSwitches).
    pub links: u32,
    /// True through NVSwitch, false for a direct link, `null` when the source does not say.
    pub via_nvswitch: Option<bool>,
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
