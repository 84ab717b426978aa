//! An hwloc export and an NCCL/RCCL dump of one server, merged: hwloc's PCI tree (real ports,
//! host bridges, NUMA) with what only NCCL knows (NVLink/xGMI links, NIC line rate, port and
//! GPUDirect RDMA support). Every fact both sources give is compared, and each difference is
//! reported in `disagreements` (hwloc's value is the one used).

use std::collections::BTreeMap;
use std::path::Path;

use super::locality::{all_pairs, LocalityClass};
use super::model::{Source, SourceKind};
use super::nccl::{self, links};
use super::{discover, Inventory, Loaded, TopologyError};

/// Reads both files and merges them.
pub fn read(hwloc: &Path, dump: &Path) -> Result<Loaded, TopologyError> {
    let (tree, hw_source) = discover::from_xml(hwloc)?;
    let mut inv = Inventory::from_tree(tree);
    let text = std::fs::read_to_string(dump).map_err(|e| TopologyError::input(dump, format!("cannot read: {e}")))?;
    let parsed = nccl::parse(dump, &text)?;
    let version = parsed.version.clone();
    let nets = parsed.nets.clone();
    let (other, _) = links::inventory(dump, parsed)?;
    let mut disagreements = devices(&inv, &other);
    disagreements.extend(classes(&inv, &other));
    links::apply_nets(&mut inv.nics, &nets);
    for l in &other.gpu_links {
        if inv.gpus.iter().any(|g| g.pci == l.a) && inv.gpus.iter().any(|g| g.pci == l.b) {
            inv.gpu_links.push(l.clone());
        } else {
            disagreements
                .push(format!("the NCCL dump links GPUs {} and {}, not both in the hwloc export: link dropped", l.a, l.b));
        }
    }
    let source = Source {
        kind: SourceKind::Merged,
        file: hw_source.file,
        reader: Some(format!("hwloc XML export (<topology>) merged with NCCL/RCCL topology XML <system version=\"{version}\">")),
        merged_with: Some(dump.display().to_string()),
        hostname: hw_source.hostname,
    };
    let notes =
        vec!["merged: PCI tree, link speeds and NUMA nodes from hwloc; NVLink/xGMI links and NIC line rate, port and GDR \
         support from the NCCL dump"
            .to_string()];
    Ok(Loaded { inv, source, notes, disagreements })
}

fn differs(a: Option<f64>, b: Option<f64>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if (x - y).abs() > 0.01 * x.max(y))
}

/// GPUs and NICs present in one source only, or with another NUMA node or link speed.
fn devices(hw: &Inventory, nc: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    for g in &nc.gpus {
        let Some(h) = hw.gpus.iter().find(|h| h.pci == g.pci) else {
            out.push(format!("GPU {} is in the NCCL dump but not in the hwloc export", g.pci));
            continue;
        };
        if h.numa != g.numa {
            out.push(format!("GPU {}: NUMA node {:?} in hwloc, {:?} in the NCCL dump", g.pci, h.numa, g.numa));
        }
        if differs(h.link_GBps, g.link_GBps) {
            out.push(format!(
                "GPU {}: PCIe link {:?} GB/s in hwloc, {:?} GB/s in the NCCL dump",
                g.pci, h.link_GBps, g.link_GBps
            ));
        }
    }
    for h in hw.gpus.iter().filter(|h| !nc.gpus.iter().any(|g| g.pci == h.pci)) {
        out.push(format!("GPU {} is in the hwloc export but not in the NCCL dump", h.pci));
    }
    for n in &nc.nics {
        let by_name = hw.nics.iter().find(|h| h.name == n.name);
        let Some(h) = by_name.or_else(|| hw.nics.iter().find(|h| h.pci == n.pci)) else {
            out.push(format!("NIC {} ({}) is in the NCCL dump but not in the hwloc export", n.name, n.pci));
            continue;
        };
        if h.pci != n.pci {
            out.push(format!("NIC {}: PCI {} in hwloc, {} in the NCCL dump", n.name, h.pci, n.pci));
        }
        if h.numa != n.numa {
            out.push(format!("NIC {}: NUMA node {:?} in hwloc, {:?} in the NCCL dump", n.name, h.numa, n.numa));
        }
        if differs(h.link_GBps, n.link_GBps) {
            out.push(format!(
                "NIC {}: PCIe link {:?} GB/s in hwloc, {:?} GB/s in the NCCL dump",
                n.name, h.link_GBps, n.link_GBps
            ));
        }
    }
    out
}

/// Locality classes of pairs both sources have. NCCL has no NODE class (its CPU node spans
/// host bridges), so hwloc's NODE against NCCL's PHB agrees.
fn classes(hw: &Inventory, nc: &Inventory) -> Vec<String> {
    let theirs: BTreeMap<(String, String), LocalityClass> =
        all_pairs(&nc.tree, &nc.gpus, &nc.nics).into_iter().map(|l| ((l.a, l.b), l.class)).collect();
    let mut out = Vec::new();
    for l in all_pairs(&hw.tree, &hw.gpus, &hw.nics) {
        let other = theirs.get(&(l.a.clone(), l.b.clone())).or_else(|| theirs.get(&(l.b.clone(), l.a.clone())));
        match other {
            Some(&c) if c == l.class || (l.class == LocalityClass::NODE && c == LocalityClass::PHB) => {}
            Some(&c) => out.push(format!("{} - {}: {} in hwloc, {c} in the NCCL dump", l.a, l.b, l.class)),
            None => {}
        }
    }
    out
}
