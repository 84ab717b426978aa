//! Topology discovery: hwloc (live, or an XML export) -> the PCI tree -> GPUs, NICs and PCIe
//! switches with link speeds and NUMA nodes, NCCL-style locality classes, and the mapping onto
//! the spec's roles with conformance checks, a proposed NIC map and nominal segment capacities.
//! Uses only `spec` and `model`-level types of ours.

pub mod assign;
pub mod conformance;
pub mod discover;
pub mod dot;
pub mod inventory;
mod isolate;
pub mod locality;
pub mod model;
pub mod text;
mod xmlcheck;

use std::path::{Path, PathBuf};

pub use conformance::{Check, Conformance, Role, RoleRequest, SegmentCapacity};
pub use locality::{Locality, LocalityClass};
pub use model::{Gpu, GpuVendor, Nic, NicKind, NodeKind, PciNode, Source, SourceKind, Switch, TopologyReport, TOPOLOGY_SCHEMA};

/// Errors of discovery. `Input` and `Selection` are bad input (exit 2); `Hwloc` is a run-time
/// failure of hwloc itself.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The XML file is missing, unreadable, malformed or not an hwloc export.
    #[error("{}: {message}", file.display())]
    Input {
        /// The file at fault.
        file: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A `--gpus` / `--nics` entry names no device of this server.
    #[error("{0}")]
    Selection(String),
    /// hwloc failed on a valid request (live discovery, export).
    #[error("hwloc: {0}")]
    Hwloc(String),
}

impl TopologyError {
    /// An error about `file`.
    pub fn input(file: &Path, message: impl Into<String>) -> Self {
        TopologyError::Input { file: file.to_path_buf(), message: message.into() }
    }

    /// True for errors caused by the user's input.
    pub fn is_bad_input(&self) -> bool {
        match self {
            TopologyError::Input { .. } | TopologyError::Selection(_) => true,
            TopologyError::Hwloc(_) => false,
        }
    }
}

/// The PCI tree with the devices found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The PCI tree.
    pub tree: Vec<PciNode>,
    /// GPUs by PCI bus id.
    pub gpus: Vec<Gpu>,
    /// NICs by PCI bus id, then name.
    pub nics: Vec<Nic>,
    /// PCIe switches by upstream port bus id.
    pub switches: Vec<Switch>,
}

impl Inventory {
    /// Finds GPUs, NICs and switches in a PCI tree.
    pub fn from_tree(tree: Vec<PciNode>) -> Self {
        let gpus = inventory::gpus(&tree);
        let nics = inventory::nics(&tree);
        let switches = inventory::switches(&tree, &gpus, &nics);
        Inventory { tree, gpus, nics, switches }
    }
}

/// Where to read the topology from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// This machine.
    Live,
    /// An hwloc XML export (v1 or v2).
    Xml(PathBuf),
}

/// Discovers the topology and, when `role` is given, maps it onto that spec role.
pub fn discover(input: &Input, role: Option<(Role, &RoleRequest)>) -> Result<TopologyReport, TopologyError> {
    let (tree, source) = match input {
        Input::Live => discover::live()?,
        Input::Xml(p) => discover::from_xml(p)?,
    };
    report(Inventory::from_tree(tree), source, role)
}

/// Builds the report of an inventory.
pub fn report(inv: Inventory, source: Source, role: Option<(Role, &RoleRequest)>) -> Result<TopologyReport, TopologyError> {
    let conformance = match role {
        Some((Role::Prefill, req)) => Some(conformance::prefill(&inv, req)?),
        Some((Role::Decode, req)) => Some(conformance::decode(&inv, req)?),
        None => None,
    };
    let mut notes = Vec::new();
    if inv.tree.is_empty() {
        notes.push(
            "no PCI objects at all: hwloc saw no PCI bus (a container without /sys/bus/pci, or an XML exported without I/O)"
                .into(),
        );
    }
    if inv.gpus.is_empty() {
        notes.push("no GPU found (no PCI function of vendor 0x10de/0x1002 with class 0x03xx/0x12xx)".into());
    }
    let rdma = inv.nics.iter().filter(|n| n.kind == NicKind::Rdma).count();
    if rdma == 0 {
        notes.push("no RDMA NIC found (no OpenFabrics OS device, no InfiniBand-class function)".into());
    }
    if inv.nics.len() == rdma {
        notes.push("no Ethernet NIC on a PCI function found".into());
    }
    if source.kind == SourceKind::Live && inv.gpus.is_empty() && rdma == 0 {
        notes.push(
            "this machine has no GPU and no RDMA NIC: the GPU and GPUDirect RDMA probes will be waived here; \
             host TCP and the emulated rack still run"
                .into(),
        );
    }
    if inv.switches.is_empty() {
        notes.push("no PCIe switch found: every device hangs off a root port".into());
    }
    let locality = locality::all_pairs(&inv.tree, &inv.gpus, &inv.nics);
    Ok(TopologyReport {
        schema: TOPOLOGY_SCHEMA.to_string(),
        source,
        gpus: inv.gpus,
        nics: inv.nics,
        switches: inv.switches,
        locality,
        conformance,
        notes,
        tree: inv.tree,
    })
}
#[cfg(test)]
mod tests;
