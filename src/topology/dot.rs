//! Graphviz drawing of the PCI fabric: host bridges, root ports, switches (one node each,
//! ports folded in), GPUs and NICs; edges carry link speeds and, with a role, the spec's
//! segment names (`GPU_P[0]_PCI`, `IB_NIC_P[1]_PCI`, `Uplink_P_PCI`, ...); NVLink/xGMI GPU
//! pairs are dashed edges.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::conformance::{common_switch, Role};
use super::inventory::{ancestors, bridge_unit, link_above};
use super::model::NodeKind;
use super::report::TopologyReport;
use crate::spec::{SegmentId, SegmentKind};

/// Spec segment names of the links above tree nodes, from the role mapping.
fn segment_names(r: &TopologyReport) -> BTreeMap<usize, SegmentId> {
    let mut out = BTreeMap::new();
    let Some(c) = &r.conformance else {
        return out;
    };
    let gpu_node = |pci: &String| r.gpus.iter().find(|g| &g.pci == pci).map(|g| g.node);
    let nic_node = |name: &String| r.nics.iter().find(|n| &n.name == name).map(|n| n.node);
    let (gk, nk, ek) = match c.role {
        Role::Prefill => (SegmentKind::GpuP, SegmentKind::IbNicP, None),
        Role::Decode => (SegmentKind::GpuD, SegmentKind::IbNicD, Some(SegmentKind::EthNicD)),
    };
    let j = c.decode_index.unwrap_or(0);
    for (i, g) in c.gpus.iter().enumerate() {
        if let Some(n) = gpu_node(g) {
            out.insert(n, SegmentId::new(gk, if c.role == Role::Decode { j } else { i }));
        }
    }
    for (k, name) in c.rdma_nics.iter().enumerate() {
        if let Some(n) = nic_node(name) {
            out.insert(n, SegmentId::new(nk, if c.role == Role::Decode { j } else { k }));
        }
    }
    if let (Some(ek), Some(e)) = (ek, c.ethernet_nic.as_ref().and_then(nic_node)) {
        out.insert(e, SegmentId::new(ek, j));
    }
    let members: Vec<usize> = match c.role {
        Role::Prefill => c.gpus.iter().filter_map(gpu_node).chain(c.rdma_nics.iter().filter_map(nic_node)).collect(),
        Role::Decode => c.gpus.iter().filter_map(gpu_node).chain(c.ethernet_nic.as_ref().and_then(nic_node)).collect(),
    };
    if let Some(s) = common_switch(&r.tree, &members).filter(|_| members.len() > 1) {
        let up = match c.role {
            Role::Prefill => SegmentId::new(SegmentKind::UplinkP, 0),
            Role::Decode => SegmentId::new(SegmentKind::UplinkD, j),
        };
        out.insert(s, up);
    }
    out
}

/// Renders the drawing.
pub fn render(r: &TopologyReport) -> String {
    let nodes = &r.tree;
    let names = segment_names(r);
    // Keep GPUs, NICs and every bridge on their way up.
    let mut keep = BTreeSet::new();
    for leaf in r.gpus.iter().map(|g| g.node).chain(r.nics.iter().map(|n| n.node)) {
        keep.insert(leaf);
        keep.extend(ancestors(nodes, leaf));
    }
    // Downstream ports fold into their switch node.
    let shown = |i: usize| if nodes[i].kind == NodeKind::SwitchDownstream { bridge_unit(nodes, i) } else { i };
    let mut s = String::from("digraph pci {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for &i in &keep {
        let n = &nodes[i];
        let vd = n.vendor_device.as_deref().unwrap_or("");
        let (label, shape) = match n.kind {
            NodeKind::HostBridge => (format!("host bridge {}\\nNUMA {:?}", n.pci, n.numa_nodes), "box3d"),
            NodeKind::RootPort => (format!("root port {}", n.pci), "box"),
            NodeKind::SwitchUpstream => (format!("PCIe switch {}\\n{vd}", n.pci), "hexagon"),
            NodeKind::SwitchDownstream => continue,
            NodeKind::Bridge => (format!("bridge {}", n.pci), "box"),
            NodeKind::Device => match (r.gpus.iter().position(|g| g.node == i), r.nics.iter().find(|k| k.node == i)) {
                (Some(g), _) => (format!("GPU{g} {}\\n{vd}", n.pci), "component"),
                (None, Some(k)) => (format!("{} ({:?})\\n{}", k.name, k.kind, n.pci), "cds"),
                _ => (n.pci.clone(), "ellipse"),
            },
        };
        let _ = writeln!(s, "  n{i} [label=\"{label}\", shape={shape}];");
    }
    for &i in &keep {
        let Some(p) = nodes[i].parent else { continue };
        let (from, to) = (shown(p), shown(i));
        if from == to {
            continue;
        }
        let speed = link_above(nodes, i).map(|g| format!("{g:.2} GB/s")).unwrap_or_default();
        let label = match names.get(&i) {
            Some(seg) if seg.outside_spec() => format!("{seg} (outside spec)\\n{speed}"),
            Some(seg) => format!("{seg}\\n{speed}"),
            None => speed,
        };
        let style = if names.contains_key(&i) { ", penwidth=2" } else { "" };
        let _ = writeln!(s, "  n{from} -> n{to} [label=\"{label}\", dir=none{style}];");
    }
    for l in &r.gpu_links {
        let at = |pci: &str| r.gpus.iter().find(|g| g.pci == pci).map(|g| g.node);
        if let (Some(a), Some(b)) = (at(&l.a), at(&l.b)) {
            let what = match l.fabric {
                super::model::PeerFabric::Nvlink => "NVLink",
                super::model::PeerFabric::Xgmi => "xGMI",
            };
            let _ = writeln!(
                s,
                "  n{a} -> n{b} [label=\"{what} x{}\", dir=none, style=dashed, color=darkgreen, constraint=false];",
                l.links
            );
        }
    }
    s.push_str("}\n");
    s
}
