//! Topology discovery: hwloc (live, or an XML export), an NCCL/RCCL topology XML, or an
//! `nvidia-smi topo -m` matrix -> the PCI tree -> GPUs, NICs and PCIe switches with link speeds
//! and NUMA nodes, NVLink/xGMI links, NCCL-style locality classes, and the mapping onto the
//! spec's roles with conformance checks, a proposed NIC map and nominal segment capacities.
//! Uses only `spec` and `model`-level types of ours.

pub mod assign;
pub mod conformance;
pub mod discover;
pub mod dot;
pub mod hwloc;
pub mod hwlocxml;
pub mod inventory;
pub mod locality;
pub mod merge;
pub mod model;
pub mod nccl;
pub mod report;
pub mod smi;
pub mod text;
pub mod xmlcheck;

use std::path::{Path, PathBuf};

pub use conformance::{Check, Conformance, Role, RoleRequest, SegmentCapacity};
pub use locality::{Locality, LocalityClass};
pub use model::{Gpu, GpuLink, GpuVendor, Nic, NicKind, NodeKind, PciNode, PeerFabric, Source, SourceKind, Switch};
pub use report::{TopologyReport, TOPOLOGY_SCHEMA};

/// Errors of discovery. `Input` and `Selection` are bad input (exit 2); `Hwloc` (a run-time
/// failure of hwloc itself) and `NoHwloc` (no hwloc 2.x library for live discovery) are not.
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
    /// hwloc 2.x cannot be loaded here (live discovery only: exports are read without it).
    #[error(transparent)]
    NoHwloc(#[from] hwloc::Unavailable),
}

impl TopologyError {
    /// An error about `file`.
    pub fn input(file: &Path, message: impl Into<String>) -> Self {
        TopologyError::Input { file: file.to_path_buf(), message: message.into() }
    }
}

impl crate::error::Classified for TopologyError {
    /// A file or a device selection is bad input; hwloc failing on a valid request is not.
    fn exit_class(&self) -> crate::error::ExitClass {
        match self {
            TopologyError::Input { .. } | TopologyError::Selection(_) => crate::error::ExitClass::BadInput,
            TopologyError::Hwloc(_) | TopologyError::NoHwloc(_) => crate::error::ExitClass::Runtime,
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
    /// NVLink / xGMI links between GPUs (empty for hwloc, which does not see them).
    pub gpu_links: Vec<GpuLink>,
}

impl Inventory {
    /// Finds GPUs, NICs and switches in a PCI tree.
    pub fn from_tree(tree: Vec<PciNode>) -> Self {
        let gpus = inventory::gpus(&tree);
        let nics = inventory::nics(&tree);
        let switches = inventory::switches(&tree, &gpus, &nics);
        Inventory { tree, gpus, nics, switches, gpu_links: Vec::new() }
    }

    /// The NVLink/xGMI link between two GPUs (by name), when any.
    pub fn gpu_link(&self, a: &str, b: &str) -> Option<&GpuLink> {
        self.gpu_links.iter().find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    }
}

/// What a reader produced: the inventory, its source, and what the source cannot tell.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Devices and tree.
    pub inv: Inventory,
    /// Where it came from and which reader read it.
    pub source: Source,
    /// Plain statements of the reader (what the format does not say).
    pub notes: Vec<String>,
    /// Disagreements between merged sources.
    pub disagreements: Vec<String>,
}

/// Where to read the topology from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// This machine.
    Live,
    /// An XML file: an hwloc export (v1 or v2, root `<topology>`) or an NCCL/RCCL topology
    /// (root `<system>`), told apart by the root element.
    Xml(PathBuf),
    /// An NCCL/RCCL topology XML.
    Nccl(PathBuf),
    /// The text of `nvidia-smi topo -m`.
    NvidiaSmi(PathBuf),
    /// An hwloc export and an NCCL dump of the same server.
    Merged {
        /// The hwloc export.
        hwloc: PathBuf,
        /// The NCCL/RCCL dump.
        nccl: PathBuf,
    },
}

/// Reads an input into an inventory.
pub fn load(input: &Input) -> Result<Loaded, TopologyError> {
    let hwloc = |(tree, source): (Vec<PciNode>, Source)| Loaded {
        inv: Inventory::from_tree(tree),
        source,
        notes: Vec::new(),
        disagreements: Vec::new(),
    };
    match input {
        Input::Live => Ok(hwloc(discover::live()?)),
        Input::Xml(p) => {
            let bytes = std::fs::read(p).map_err(|e| TopologyError::input(p, format!("cannot read: {e}")))?;
            if xmlcheck::root(p, &bytes)? == "system" {
                let mut l = nccl::read(p)?;
                if let Some(r) = &mut l.source.reader {
                    r.push_str(", recognised by its root element");
                }
                Ok(l)
            } else {
                Ok(hwloc(discover::from_xml(p)?))
            }
        }
        Input::Nccl(p) => nccl::read(p),
        Input::NvidiaSmi(p) => smi::read(p),
        Input::Merged { hwloc: h, nccl: n } => merge::read(h, n),
    }
}

/// Discovers the topology and, when `role` is given, maps it onto that spec role.
pub fn discover(input: &Input, role: Option<(Role, &RoleRequest)>) -> Result<TopologyReport, TopologyError> {
    report(load(input)?, role)
}

/// Builds the report of a loaded inventory.
pub fn report(loaded: Loaded, role: Option<(Role, &RoleRequest)>) -> Result<TopologyReport, TopologyError> {
    let Loaded { inv, source, notes: reader_notes, disagreements } = loaded;
    let conformance = match role {
        Some((Role::Prefill, req)) => Some(conformance::prefill(&inv, req)?),
        Some((Role::Decode, req)) => Some(conformance::decode(&inv, req)?),
        None => None,
    };
    let mut notes = reader_notes;
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
        gpu_links: inv.gpu_links,
        disagreements,
        conformance,
        notes,
        tree: inv.tree,
    })
}
#[cfg(test)]
mod tests;
