//! From a parsed NCCL file to an inventory: GPU vendors from `<gpu>` hints, NIC facts onto the
//! NICs, and `<nvlink>` / `<xgmi>` elements resolved into GPU pairs (direct, or through
//! NVSwitch: two GPUs that both reach the NVSwitches talk over NVLink, with the fewer links).

use std::collections::BTreeMap;
use std::path::Path;

use super::{NetFact, Parsed, RawLink};
use crate::topology::model::{GpuLink, GpuVendor, Nic, PeerFabric};
use crate::topology::{Inventory, TopologyError};

/// NCCL's PCI class of an NVSwitch as an NVLink target.
const NVSWITCH: u32 = 0x068000;
/// NCCL's class for an NVLink to the CPU (NVLink-C2C, POWER9).
const CPU: u32 = 0x068001;

/// True for a GPU target class (0x03xxxx display, 0x12xxxx processing accelerator).
fn gpu_class(tclass: u32) -> bool {
    matches!(tclass >> 16, 0x03 | 0x12)
}

/// The inventory of a parsed file, with notes on what the file cannot tell.
pub fn inventory(path: &Path, parsed: Parsed) -> Result<(Inventory, Vec<String>), TopologyError> {
    let mut notes = parsed.notes.clone();
    let mut inv = Inventory::from_tree(parsed.tree.clone());
    for g in inv.gpus.iter_mut().filter(|g| g.vendor == GpuVendor::Unknown) {
        if let Some(h) = parsed.gpu_vendor_hints.get(&g.pci) {
            g.vendor = *h;
        }
    }
    apply_nets(&mut inv.nics, &parsed.nets);
    let (links, link_notes) = resolve(path, &inv, &parsed.links)?;
    inv.gpu_links = links;
    notes.extend(link_notes);
    notes.extend(gaps(&inv, &parsed));
    Ok((inv, notes))
}

/// Copies line rate, port and GDR of each `<net>` onto the NIC of that name and function.
pub fn apply_nets(nics: &mut [Nic], nets: &[NetFact]) {
    for n in nics.iter_mut() {
        if let Some(f) = nets.iter().find(|f| f.name == n.name && (f.pci == n.pci || f.pci.is_empty())) {
            n.line_rate_Bps = f.line_rate_Bps;
            n.port = f.port;
            n.gdr = f.gdr;
        }
    }
}

/// A direct GPU pair (a < b): fabric, link count listed by a, listed by b.
type Listed = (PeerFabric, Option<u32>, Option<u32>);

/// Resolves the link elements into one [`GpuLink`] per GPU pair.
pub fn resolve(path: &Path, inv: &Inventory, raw: &[RawLink]) -> Result<(Vec<GpuLink>, Vec<String>), TopologyError> {
    let is_gpu = |b: &str| inv.gpus.iter().any(|g| g.pci == b);
    let mut notes = Vec::new();
    let mut direct: BTreeMap<(String, String), Listed> = BTreeMap::new();
    let mut to_switch: BTreeMap<String, u32> = BTreeMap::new();
    for l in raw {
        if !is_gpu(&l.gpu) {
            return Err(TopologyError::input(path, format!("line {}: a link of {} which is not a GPU", l.line, l.gpu)));
        }
        if gpu_class(l.tclass) {
            if !is_gpu(&l.target) {
                let tag = match l.fabric {
                    PeerFabric::Nvlink => "nvlink",
                    PeerFabric::Xgmi => "xgmi",
                };
                return Err(TopologyError::input(
                    path,
                    format!(
                        "<{tag}> at line {} of GPU {} targets {}, which the file does not define as a GPU",
                        l.line, l.gpu, l.target
                    ),
                ));
            }
            let key = if l.gpu < l.target { (l.gpu.clone(), l.target.clone()) } else { (l.target.clone(), l.gpu.clone()) };
            let e = direct.entry(key.clone()).or_insert((l.fabric, None, None));
            if l.gpu == key.0 {
                e.1 = Some(l.count);
            } else {
                e.2 = Some(l.count);
            }
        } else if l.tclass == NVSWITCH {
            *to_switch.entry(l.gpu.clone()).or_default() += l.count;
        } else if l.tclass == CPU {
            notes.push(format!("GPU {} has {} NVLinks to its CPU (NVLink-C2C): host copies do not cross PCIe", l.gpu, l.count));
        } else {
            notes.push(format!("line {}: link of GPU {} to class 0x{:06x} skipped", l.line, l.gpu, l.tclass));
        }
    }
    let mut out = Vec::new();
    for ((a, b), (fabric, ca, cb)) in &direct {
        if let (Some(x), Some(y)) = (ca, cb) {
            if x != y {
                notes.push(format!("GPU {a} lists {x} links to {b} but {b} lists {y} to {a}: using {}", x.max(y)));
            }
        }
        let links = ca.unwrap_or(0).max(cb.unwrap_or(0));
        out.push(GpuLink { a: a.clone(), b: b.clone(), fabric: *fabric, links, via_nvswitch: Some(false) });
    }
    let switched: Vec<(&String, &u32)> = to_switch.iter().collect();
    for (i, (a, ca)) in switched.iter().enumerate() {
        for (b, cb) in &switched[i + 1..] {
            if !direct.contains_key(&((*a).clone(), (*b).clone())) {
                let fabric = PeerFabric::Nvlink;
                out.push(GpuLink { a: (*a).clone(), b: (*b).clone(), fabric, links: **ca.min(cb), via_nvswitch: Some(true) });
            }
        }
    }
    out.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    Ok((out, notes))
}

/// What the file does not say, in plain words.
fn gaps(inv: &Inventory, parsed: &Parsed) -> Vec<String> {
    let mut out =
        vec!["NCCL topology XML: one synthetic host bridge per <cpu> (NUMA node), so devices under one CPU are PHB (NCCL \
         does not tell root complexes apart: no NODE class); switch ports are synthetic (NCCL records switches only)"
            .to_string()];
    let no_speed: Vec<&str> = inv
        .gpus
        .iter()
        .map(|g| (g.pci.as_str(), g.link_GBps))
        .chain(inv.nics.iter().map(|n| (n.pci.as_str(), n.link_GBps)))
        .filter(|(_, s)| s.is_none())
        .map(|(p, _)| p)
        .collect();
    if !no_speed.is_empty() {
        out.push(format!("no PCIe link speed/width for {}: their capacities are unknown", no_speed.join(", ")));
    }
    let unknown: Vec<&str> = inv.gpus.iter().filter(|g| g.vendor == GpuVendor::Unknown).map(|g| g.pci.as_str()).collect();
    if !unknown.is_empty() {
        out.push(format!(
            "no vendor id and no <gpu> element for GPUs {} (a hint file): vendor unknown, no NVLink facts",
            unknown.join(", ")
        ));
    }
    let bare: Vec<&str> =
        inv.nics.iter().filter(|n| !parsed.nets.iter().any(|f| f.name == n.name)).map(|n| n.pci.as_str()).collect();
    if !bare.is_empty() {
        out.push(format!(
            "NIC functions {} have no <nic>/<net> element (a hint file: NCCL fills them in at run time): named by bus id, \
             no device name, line rate, port or GDR support",
            bare.join(", ")
        ));
    }
    out
}
