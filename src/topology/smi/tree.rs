//! Rebuilds a PCI tree from an `nvidia-smi topo -m` matrix. Devices closer than each class
//! are grouped (union of all pairs at PIX or nearer, at PXB or nearer, ...): one host bridge
//! per PHB group (NUMA from its GPUs' affinity), one root port per PXB group, a leaf switch
//! per PIX group of two or more devices, and, when a PXB group holds several PIX groups, a
//! top switch above a leaf switch for each. Every class the matrix gives is then checked
//! against the rebuilt tree: a matrix no PCI tree can produce is bad input.

use std::path::Path;

use super::{Cell, Matrix};
use crate::topology::locality::{between, LocalityClass};
use crate::topology::model::{GpuLink, GpuVendor, NodeKind, OsDevice, OsDeviceKind, PciNode, PeerFabric, Source, SourceKind};
use crate::topology::{Inventory, Loaded, TopologyError};

/// Placeholder NUMA ids count down from here for groups the matrix gives no NUMA affinity for;
/// devices in them report `numa: null`.
pub const UNKNOWN_NUMA: u32 = u32::MAX;

/// Union-find over device indexes.
struct Groups(Vec<usize>);

impl Groups {
    fn new(m: &Matrix, level: LocalityClass) -> Self {
        let n = m.labels.len();
        let mut g = Groups((0..n).collect());
        for i in 0..n {
            for j in i + 1..n {
                if let Some(Cell::Pcie(c)) = m.cell(i, j) {
                    if c <= level {
                        g.join(i, j);
                    }
                }
            }
        }
        g
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        self.0[a.max(b)] = a.min(b);
    }

    /// Splits `members` (in order) into groups, each in order of first member.
    fn split(&mut self, members: &[usize]) -> Vec<Vec<usize>> {
        let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
        for &d in members {
            let r = self.find(d);
            match out.iter_mut().find(|(root, _)| *root == r) {
                Some((_, v)) => v.push(d),
                None => out.push((r, vec![d])),
            }
        }
        out.into_iter().map(|(_, v)| v).collect()
    }
}

struct Build {
    nodes: Vec<PciNode>,
    device_node: Vec<usize>,
}

impl Build {
    fn push(&mut self, parent: Option<usize>, kind: NodeKind, pci: String, numa: &[u32]) -> usize {
        let id = self.nodes.len();
        self.nodes.push(PciNode {
            id,
            parent,
            kind,
            pci,
            vendor_device: None,
            class_id: (kind != NodeKind::HostBridge).then_some(0x0604),
            name: None,
            link_GBps: None,
            numa_nodes: numa.to_vec(),
            os_devices: Vec::new(),
            synthetic: true,
        });
        id
    }

    fn device(&mut self, m: &Matrix, d: usize, parent: usize, numa: &[u32]) {
        let id = self.push(Some(parent), NodeKind::Device, m.names[d].clone(), numa);
        let node = &mut self.nodes[id];
        node.synthetic = false;
        if m.is_gpu(d) {
            node.class_id = Some(0x0302);
        } else {
            node.class_id = Some(0x0200);
            node.os_devices.push(OsDevice { name: m.names[d].clone(), kind: OsDeviceKind::OpenFabrics, subtype: None });
        }
        self.device_node[d] = id;
    }

    /// A switch with one downstream port per member group; returns the port ids.
    fn switch(&mut self, parent: usize, count: usize, numa: &[u32]) -> Vec<usize> {
        let k = self.nodes.len();
        let up = self.push(Some(parent), NodeKind::SwitchUpstream, format!("switch{k:03}"), numa);
        (0..count).map(|p| self.push(Some(up), NodeKind::SwitchDownstream, format!("switch{k:03}.port{p}"), numa)).collect()
    }

    /// Devices of one PIX group below `parent`: alone, or behind a leaf switch.
    fn pix_group(&mut self, m: &Matrix, group: &[usize], parent: usize, numa: &[u32], force_switch: bool) {
        if group.len() == 1 && !force_switch {
            self.device(m, group[0], parent, numa);
            return;
        }
        let ports = self.switch(parent, group.len(), numa);
        for (&d, port) in group.iter().zip(ports) {
            self.device(m, d, port, numa);
        }
    }
}

/// The tree of a matrix, with the tree node of each device.
fn build(m: &Matrix) -> (Vec<PciNode>, Vec<usize>) {
    let n = m.labels.len();
    let all: Vec<usize> = (0..n).collect();
    let [mut pix, mut pxb, mut phb, mut node] =
        [LocalityClass::PIX, LocalityClass::PXB, LocalityClass::PHB, LocalityClass::NODE].map(|c| Groups::new(m, c));
    let mut b = Build { nodes: Vec::new(), device_node: vec![0; n] };
    for (k, numa_group) in node.split(&all).into_iter().enumerate() {
        // Without a NUMA affinity, a placeholder keeps NUMA groups apart (SYS between them).
        let numa = vec![numa_group.iter().find_map(|&d| m.numa[d]).unwrap_or(UNKNOWN_NUMA - k as u32)];
        for hb_group in phb.split(&numa_group) {
            let hb = b.push(None, NodeKind::HostBridge, format!("hostbridge{:03}", b.nodes.len()), &numa);
            for rp_group in pxb.split(&hb_group) {
                let rp = b.push(Some(hb), NodeKind::RootPort, format!("rootport{:03}", b.nodes.len()), &numa);
                let leaves = pix.split(&rp_group);
                if leaves.len() == 1 {
                    b.pix_group(m, &leaves[0], rp, &numa, false);
                    continue;
                }
                let ports = b.switch(rp, leaves.len(), &numa);
                for (leaf, port) in leaves.iter().zip(ports) {
                    b.pix_group(m, leaf, port, &numa, true);
                }
            }
        }
    }
    (b.nodes, b.device_node)
}

/// Checks every class of the matrix against the rebuilt tree.
fn verify(path: &Path, m: &Matrix, nodes: &[PciNode], at: &[usize]) -> Result<(), TopologyError> {
    let n = m.labels.len();
    for i in 0..n {
        for j in i + 1..n {
            let Some(Cell::Pcie(want)) = m.cell(i, j) else { continue };
            let got = between(nodes, at[i], at[j]).map(|x| x.0);
            if got != Some(want) {
                let line = if m.cells[i][j].is_some() { m.lines[i] } else { m.lines[j] };
                return Err(TopologyError::input(
                    path,
                    format!(
                        "line {line}: {} / {} is {want}, which no PCI tree agreeing with the other cells gives \
                         (the rest of the matrix makes it {}): the matrix is inconsistent",
                        m.labels[i],
                        m.labels[j],
                        got.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// NV# cells as GPU links.
fn links(m: &Matrix) -> Vec<GpuLink> {
    let n = m.labels.len();
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if let Some(Cell::Nv(k)) = m.cell(i, j) {
                let (a, b) = (m.names[i].clone(), m.names[j].clone());
                out.push(GpuLink { a, b, fabric: PeerFabric::Nvlink, links: k, via_nvswitch: None });
            }
        }
    }
    out
}

/// The loaded inventory of a parsed matrix.
pub fn loaded(path: &Path, m: &Matrix) -> Result<Loaded, TopologyError> {
    let (nodes, at) = build(m);
    verify(path, m, &nodes, &at)?;
    let mut inv = Inventory::from_tree(nodes);
    let placeholder = |n: Option<u32>| n.filter(|&x| x < UNKNOWN_NUMA - m.labels.len() as u32);
    for g in &mut inv.gpus {
        g.vendor = GpuVendor::Nvidia;
        g.numa = placeholder(g.numa);
    }
    for n in &mut inv.nics {
        n.numa = placeholder(n.numa);
    }
    inv.gpu_links = links(m);
    let mut notes = vec![
        "nvidia-smi topo -m gives no PCI bus ids (GPUs are named GPU0.. in nvidia-smi's order, NICs by their legend \
         name), no link speeds (capacities unknown), no vendor ids and no switches: host bridges, root ports and \
         switches are rebuilt from the locality classes (synthetic)"
            .to_string(),
        "nvidia-smi lists RDMA devices only: Ethernet NICs cannot be seen".to_string(),
    ];
    if !inv.gpu_links.is_empty() {
        notes.push("the PCIe class between NVLink-joined GPUs is not shown (NV#): it is inferred from the other cells".into());
    }
    let no_numa: Vec<&str> = inv
        .gpus
        .iter()
        .map(|g| (&g.pci, g.numa))
        .chain(inv.nics.iter().map(|n| (&n.name, n.numa)))
        .filter(|x| x.1.is_none())
        .map(|x| x.0.as_str())
        .collect();
    if !no_numa.is_empty() {
        notes.push(format!(
            "no NUMA node known for {} (no single NUMA affinity in the matrix): numa is null, and the rebuilt tree \
             keeps such groups apart with placeholder NUMA ids counting down from {UNKNOWN_NUMA}",
            no_numa.join(", ")
        ));
    }
    let source = Source {
        kind: SourceKind::NvidiaSmi,
        file: Some(path.display().to_string()),
        reader: Some(format!(
            "nvidia-smi topo -m matrix ({} GPUs, {} NICs)",
            (0..m.labels.len()).filter(|&i| m.is_gpu(i)).count(),
            (0..m.labels.len()).filter(|&i| !m.is_gpu(i)).count()
        )),
        merged_with: None,
        hostname: None,
    };
    Ok(Loaded { inv, source, notes, disagreements: Vec::new() })
}
