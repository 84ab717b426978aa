//! The discovery result (`linkcal.topology/2`): the PCI tree (as hwloc reports it, or as an
//! NCCL/RCCL topology dump or an `nvidia-smi topo -m` matrix implies it), the GPUs, NICs and
//! PCIe switches found in it, NVLink/xGMI links between GPUs, locality classes and, when a role
//! was asked for, the conformance report against the rack spec.
//!
//! Migration from `linkcal.topology/1`: /2 only adds fields. A /1 file loads with `gpu_links`
//! and `disagreements` empty, `source.reader` / `source.merged_with` null, `synthetic` false on
//! every tree node, and `line_rate_Bps` / `port` / `gdr` null on every NIC; `source.kind` gains
//! `nccl`, `nvidia_smi` and `merged`, and `gpus[].vendor` gains `unknown`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conformance::Conformance;
use super::locality::Locality;
use super::model::{Gpu, GpuLink, Nic, PciNode, Source, Switch};

/// Schema id of discovery results.
pub const TOPOLOGY_SCHEMA: &str = "linkcal.topology/2";

/// Everything `linkcal discover` found on one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyReport {
    /// Always `linkcal.topology/2`.
    pub schema: String,
    /// Where the topology came from.
    pub source: Source,
    /// GPUs (NVIDIA 0x10de, AMD 0x1002; PCI class 0x03xx or 0x12xx), ordered by PCI bus id.
    pub gpus: Vec<Gpu>,
    /// NICs with an RDMA (OpenFabrics) or network OS device, ordered by PCI bus id, then name.
    pub nics: Vec<Nic>,
    /// PCIe switches, each reported once by its upstream port, ordered by PCI bus id.
    pub switches: Vec<Switch>,
    /// Locality class of every GPU-GPU and GPU-NIC pair (PCIe path, whatever NVLink exists).
    pub locality: Vec<Locality>,
    /// NVLink / xGMI links between GPUs (NCCL/RCCL dumps and `nvidia-smi topo -m` only: hwloc
    /// does not see them), one per GPU pair.
    #[serde(default)]
    pub gpu_links: Vec<GpuLink>,
    /// Where two sources of one server disagree (hwloc export merged with an NCCL dump).
    #[serde(default)]
    pub disagreements: Vec<String>,
    /// Role mapping and conformance with the spec (only with `--as`).
    pub conformance: Option<Conformance>,
    /// Plain statements about what was (not) found, e.g. "no GPU found".
    pub notes: Vec<String>,
    /// The PCI tree: host bridges, ports, bridges and devices, parents before children.
    pub tree: Vec<PciNode>,
}
