//! From the PCI tree to the devices the spec cares about: GPUs (by PCI vendor and class),
//! NICs (by OS device), PCIe switches (each once, by its upstream port), and link speeds
//! taken at the slower end of each link.

use super::model::{Gpu, GpuVendor, Nic, NicKind, NodeKind, OsDeviceKind, PciNode, Switch, SwitchPort};

/// PCI vendor id of NVIDIA.
pub const VENDOR_NVIDIA: u16 = 0x10de;
/// PCI vendor id of AMD/ATI.
pub const VENDOR_AMD: u16 = 0x1002;

/// The GPU vendor of a PCI function: NVIDIA or AMD vendor id with class 0x03xx (display) or
/// 0x12xx (processing accelerator); `Unknown` for such a class without a vendor id. NVSwitches
/// (0x0680) and BMC VGA chips are not GPUs.
pub fn gpu_vendor(n: &PciNode) -> Option<GpuVendor> {
    if n.kind != NodeKind::Device {
        return None;
    }
    let class_ok = matches!(n.class_id.map(|c| c >> 8), Some(0x03 | 0x12));
    match (n.vendor_id(), class_ok) {
        (Some(VENDOR_NVIDIA), true) => Some(GpuVendor::Nvidia),
        (Some(VENDOR_AMD), true) => Some(GpuVendor::Amd),
        // Sources without vendor ids (NCCL hint files, nvidia-smi): the class alone.
        (None, true) => Some(GpuVendor::Unknown),
        _ => None,
    }
}

/// The speed of the link above node `i`: the slower of its own link and that of the port it
/// hangs off (each end reports the negotiated speed; a disagreement means one end is degraded).
pub fn link_above(nodes: &[PciNode], i: usize) -> Option<f64> {
    let own = nodes[i].link_GBps;
    let port = nodes[i].parent.filter(|&p| nodes[p].kind != NodeKind::HostBridge).and_then(|p| nodes[p].link_GBps);
    match (own, port) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// GPUs ordered by PCI bus id.
pub fn gpus(nodes: &[PciNode]) -> Vec<Gpu> {
    let mut out: Vec<Gpu> = nodes
        .iter()
        .filter_map(|n| {
            let vendor = gpu_vendor(n)?;
            Some(Gpu {
                pci: n.pci.clone(),
                vendor,
                vendor_device: n.vendor_device.clone().unwrap_or_default(),
                name: n.name.clone(),
                os_devices: n
                    .os_devices
                    .iter()
                    .filter(|d| matches!(d.kind, OsDeviceKind::CoProcessor | OsDeviceKind::Gpu))
                    .map(|d| d.name.clone())
                    .collect(),
                numa: n.numa(),
                link_GBps: link_above(nodes, n.id),
                node: n.id,
            })
        })
        .collect();
    out.sort_by(|a, b| a.pci.cmp(&b.pci));
    out
}

/// NICs ordered by PCI bus id, then name: one per OpenFabrics OS device (RDMA), else one per
/// network interface (Ethernet); a network-class function without OS devices is named by its
/// PCI bus id (InfiniBand class 0x0207 = RDMA).
pub fn nics(nodes: &[PciNode]) -> Vec<Nic> {
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.kind == NodeKind::Device) {
        let of = |k: OsDeviceKind| n.os_devices.iter().filter(move |d| d.kind == k).map(|d| d.name.clone());
        let rdma: Vec<String> = of(OsDeviceKind::OpenFabrics).collect();
        let net: Vec<String> = of(OsDeviceKind::Network).collect();
        let mut push = |name: String, kind: NicKind, netdev: Option<String>| {
            out.push(Nic {
                name,
                kind,
                netdev,
                pci: n.pci.clone(),
                vendor_device: n.vendor_device.clone().unwrap_or_default(),
                model: n.name.clone(),
                numa: n.numa(),
                link_GBps: link_above(nodes, n.id),
                line_rate_Bps: None,
                port: None,
                gdr: None,
                node: n.id,
            })
        };
        if !rdma.is_empty() {
            for name in rdma {
                push(name, NicKind::Rdma, net.first().cloned());
            }
        } else if !net.is_empty() {
            for name in net {
                push(name, NicKind::Ethernet, None);
            }
        } else if n.os_devices.is_empty() && n.class_id.map(|c| c >> 8) == Some(0x02) {
            let kind = if n.class_id == Some(0x0207) { NicKind::Rdma } else { NicKind::Ethernet };
            push(n.pci.clone(), kind, None);
        }
    }
    out.sort_by(|a, b| (&a.pci, &a.name).cmp(&(&b.pci, &b.name)));
    out
}

/// Ancestors of node `i`, nearest first (not including `i`).
pub fn ancestors(nodes: &[PciNode], i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur = nodes[i].parent;
    while let Some(p) = cur {
        out.push(p);
        cur = nodes[p].parent;
    }
    out
}

/// The switch (upstream port) a bridge belongs to: a downstream port belongs to its parent;
/// any other bridge is its own unit (a root port or a plain bridge counts as one bridge).
pub fn bridge_unit(nodes: &[PciNode], i: usize) -> usize {
    match (nodes[i].kind, nodes[i].parent) {
        (NodeKind::SwitchDownstream, Some(p)) => p,
        _ => i,
    }
}

/// The switches (upstream ports) above node `i`, nearest first.
pub fn switches_above(nodes: &[PciNode], i: usize) -> Vec<usize> {
    ancestors(nodes, i).into_iter().filter(|&a| nodes[a].kind == NodeKind::SwitchUpstream).collect()
}

/// PCIe switches ordered by the bus id of their upstream port.
pub fn switches(nodes: &[PciNode], gpus: &[Gpu], nics: &[Nic]) -> Vec<Switch> {
    let mut out: Vec<Switch> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::SwitchUpstream)
        .map(|n| {
            let above = switches_above(nodes, n.id);
            let children = nodes
                .iter()
                .filter(|c| c.parent == Some(n.id))
                .map(|port| {
                    let below: Vec<&PciNode> = nodes.iter().filter(|d| d.parent == Some(port.id)).collect();
                    let link = below.iter().filter_map(|d| link_above(nodes, d.id)).reduce(f64::min).or(port.link_GBps);
                    SwitchPort { pci: port.pci.clone(), link_GBps: link, attached: below.iter().map(|d| d.pci.clone()).collect() }
                })
                .collect();
            let under = |node: usize| ancestors(nodes, node).contains(&n.id);
            Switch {
                pci: n.pci.clone(),
                vendor_device: n.vendor_device.clone().unwrap_or_default(),
                name: n.name.clone(),
                level: above.len() + 1,
                parent_switch: above.first().map(|&a| nodes[a].pci.clone()),
                uplink_GBps: link_above(nodes, n.id),
                children,
                gpus: gpus.iter().filter(|g| under(g.node)).map(|g| g.pci.clone()).collect(),
                nics: nics.iter().filter(|k| under(k.node)).map(|k| k.name.clone()).collect(),
                node: n.id,
            }
        })
        .collect();
    out.sort_by(|a, b| a.pci.cmp(&b.pci));
    out
}
