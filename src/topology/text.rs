//! The readable form of a discovery: the PCI tree with GPUs, NICs and switches marked, the
//! locality matrix, and the conformance report.

use std::fmt::Write;

use super::model::{NodeKind, PeerFabric, SourceKind};
use super::report::TopologyReport;

fn speed(v: Option<f64>) -> String {
    v.map(|g| format!("{g:.2} GB/s")).unwrap_or_else(|| "speed unknown".into())
}

/// Renders the whole report as text.
pub fn render(r: &TopologyReport) -> String {
    let mut s = String::new();
    let src = match (&r.source.kind, &r.source.file) {
        (SourceKind::Live, _) | (_, None) => "this machine (live hwloc discovery)".to_string(),
        (SourceKind::Xml, Some(f)) => format!("hwloc XML {f}"),
        (SourceKind::Nccl, Some(f)) => format!("NCCL topology {f}"),
        (SourceKind::NvidiaSmi, Some(f)) => format!("nvidia-smi topo -m output {f}"),
        (SourceKind::Merged, Some(f)) => format!("hwloc XML {f} + NCCL dump {}", r.source.merged_with.as_deref().unwrap_or("?")),
    };
    let host = r.source.hostname.as_deref().map(|h| format!(", host {h}")).unwrap_or_default();
    let _ = writeln!(s, "topology of {src}{host}");
    if let Some(reader) = &r.source.reader {
        let _ = writeln!(s, "read as: {reader}");
    }
    let _ = writeln!(
        s,
        "{} GPUs, {} NICs, {} PCIe switches, {} NVLink/xGMI GPU pairs",
        r.gpus.len(),
        r.nics.len(),
        r.switches.len(),
        r.gpu_links.len()
    );
    for n in &r.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    for d in &r.disagreements {
        let _ = writeln!(s, "  DISAGREEMENT: {d}");
    }
    tree(r, &mut s);
    devices(r, &mut s);
    links(r, &mut s);
    matrix(r, &mut s);
    if let Some(c) = &r.conformance {
        conformance(c, &mut s);
    }
    s
}

fn tree(r: &TopologyReport, s: &mut String) {
    let _ = writeln!(s, "\nPCI tree (link speeds per direction):");
    let mut depth = vec![0usize; r.tree.len()];
    for n in &r.tree {
        depth[n.id] = n.parent.map(|p| depth[p] + 1).unwrap_or(0);
        let pad = "  ".repeat(depth[n.id] + 1);
        let vd = n.vendor_device.as_deref().map(|v| format!(" [{v}]")).unwrap_or_default();
        let name = n.name.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
        let label = match n.kind {
            NodeKind::HostBridge => format!("host bridge {} (NUMA {:?})", n.pci, n.numa_nodes),
            NodeKind::RootPort => format!("root port {}{vd} {}", n.pci, speed(n.link_GBps)),
            NodeKind::SwitchUpstream => {
                let lvl = r.switches.iter().find(|w| w.node == n.id).map(|w| w.level).unwrap_or(0);
                format!("SWITCH {}{vd}{name} level {lvl}, uplink {}", n.pci, speed(super::inventory::link_above(&r.tree, n.id)))
            }
            NodeKind::SwitchDownstream => format!("port {} {}", n.pci, speed(n.link_GBps)),
            NodeKind::Bridge => format!("bridge {}{vd}", n.pci),
            NodeKind::Device => {
                let what = if r.gpus.iter().any(|g| g.node == n.id) {
                    "GPU "
                } else if r.nics.iter().any(|k| k.node == n.id) {
                    "NIC "
                } else {
                    ""
                };
                let os: Vec<&str> = n.os_devices.iter().map(|d| d.name.as_str()).collect();
                let os = if os.is_empty() { String::new() } else { format!(" ({})", os.join(", ")) };
                format!("{what}{}{vd}{name}{os} {}", n.pci, speed(n.link_GBps))
            }
        };
        let _ = writeln!(s, "{pad}{label}");
    }
}

fn devices(r: &TopologyReport, s: &mut String) {
    let _ = writeln!(s, "\nGPUs:");
    for (i, g) in r.gpus.iter().enumerate() {
        let os = if g.os_devices.is_empty() { "no OS device".into() } else { g.os_devices.join(",") };
        let _ = writeln!(
            s,
            "  {i:>2} {} {:?} [{}] NUMA {} link {} ({os}) {}",
            g.pci,
            g.vendor,
            g.vendor_device,
            opt(g.numa),
            speed(g.link_GBps),
            g.name.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s, "NICs:");
    for n in &r.nics {
        let nd = n.netdev.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        let kind = format!("{:?}", n.kind).to_lowercase();
        let mut extra = String::new();
        if let Some(b) = n.line_rate_Bps {
            let _ = write!(extra, " line {:.0} Gb/s ({:.2} GB/s)", b * 8.0 / 1e9, b / 1e9);
        }
        if let Some(p) = n.port {
            let _ = write!(extra, " port {p}");
        }
        if let Some(g) = n.gdr {
            extra.push_str(if g { " GDR" } else { " no GDR" });
        }
        let _ = writeln!(s, "  {}{nd} {kind} {} NUMA {} link {}{extra}", n.name, n.pci, opt(n.numa), speed(n.link_GBps));
    }
    let _ = writeln!(s, "Switches:");
    for w in &r.switches {
        let ports: Vec<String> = w.children.iter().map(|p| format!("{} -> [{}]", p.pci, p.attached.join(","))).collect();
        let _ = writeln!(
            s,
            "  {} [{}] level {} uplink {}: {}",
            w.pci,
            w.vendor_device,
            w.level,
            speed(w.uplink_GBps),
            ports.join("; ")
        );
        let _ = writeln!(s, "      GPUs below: {:?}, NICs below: {:?}", w.gpus, w.nics);
    }
}

fn fabric(f: PeerFabric) -> &'static str {
    match f {
        PeerFabric::Nvlink => "NV",
        PeerFabric::Xgmi => "XGMI",
    }
}

fn links(r: &TopologyReport, s: &mut String) {
    if r.gpu_links.is_empty() {
        return;
    }
    let _ = writeln!(s, "GPU links (peer copies between these GPUs bypass PCIe):");
    for l in &r.gpu_links {
        let via = match l.via_nvswitch {
            Some(true) => " via NVSwitch",
            Some(false) => " direct",
            None => "",
        };
        let _ = writeln!(s, "  {} <-> {}: {}{}{via}", l.a, l.b, fabric(l.fabric), l.links);
    }
}

fn opt(v: Option<u32>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
}

fn matrix(r: &TopologyReport, s: &mut String) {
    if r.gpus.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nLocality (NV#/XGMI# links, PIX same switch, PXB several switches, PHB host bridge, NODE same NUMA, SYS across NUMA):"
    );
    let cols: Vec<String> = (0..r.gpus.len()).map(|i| format!("GPU{i}")).chain(r.nics.iter().map(|n| n.name.clone())).collect();
    let w = cols.iter().map(|c| c.len()).max().unwrap_or(4).max(4) + 1;
    let _ = write!(s, "{:>6}", "");
    for c in &cols {
        let _ = write!(s, "{c:>w$}");
    }
    let _ = writeln!(s);
    for (i, g) in r.gpus.iter().enumerate() {
        let _ = write!(s, "{:>6}", format!("GPU{i}"));
        for (j, c) in cols.iter().enumerate() {
            let other = if j < r.gpus.len() { r.gpus[j].pci.as_str() } else { c.as_str() };
            let link = (j < r.gpus.len())
                .then(|| r.gpu_links.iter().find(|l| (l.a == g.pci && l.b == other) || (l.b == g.pci && l.a == other)))
                .flatten();
            let cell = if j == i {
                "X".to_string()
            } else if let Some(l) = link {
                format!("{}{}", fabric(l.fabric), l.links)
            } else {
                r.locality
                    .iter()
                    .find(|l| (l.a == g.pci && l.b == other) || (l.b == g.pci && l.a == other))
                    .map(|l| l.class.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let _ = write!(s, "{cell:>w$}");
        }
        let _ = writeln!(s);
    }
}

fn conformance(c: &super::Conformance, s: &mut String) {
    let role = format!("{:?}", c.role).to_lowercase();
    let verdict = if c.conforms { "CONFORMS to the spec" } else { "DOES NOT CONFORM to the spec" };
    let _ = writeln!(s, "\nAs {role} server: {verdict}");
    let _ = writeln!(s, "  GPU i: {:?}", c.gpus);
    let _ = writeln!(s, "  RDMA NIC k: {:?}", c.rdma_nics);
    if let Some(e) = &c.ethernet_nic {
        let _ = writeln!(s, "  Ethernet NIC: {e}");
    }
    for n in &c.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    for ch in &c.checks {
        let mark = if ch.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(s, "  [{mark}] {}: {}", ch.check, ch.detail);
        if let Some(q) = &ch.consequence {
            let _ = writeln!(s, "         consequence: {q}");
        }
    }
    match &c.proposed_nic_map_arg {
        Some(arg) => {
            let pairs: Vec<String> = c.proposed_pairs.iter().map(|p| format!("GPU{}->NIC{} {}", p.gpu, p.nic, p.class)).collect();
            let _ = writeln!(s, "  proposed NIC map: --nic-map {arg}  ({})", pairs.join(", "));
        }
        None if c.role == super::Role::Prefill => {
            let _ = writeln!(s, "  proposed NIC map: none (no RDMA NIC)");
        }
        None => {}
    }
    let _ = writeln!(s, "  nominal PCIe capacities (per direction, slower end of each link):");
    for cap in &c.capacities {
        let v = cap.nominal_Bps.map(|b| format!("{:.3e} B/s ({:.2} GB/s)", b, b / 1e9)).unwrap_or_else(|| "unknown".into());
        let out = if cap.outside_spec { " (outside spec)" } else { "" };
        let _ = writeln!(s, "    {:<18} {v}{out}  [{}]", cap.segment.to_string(), cap.link);
    }
}
