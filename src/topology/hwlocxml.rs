//! hwloc XML (v1 and v2 exports) -> PCI tree, in Rust: no hwloc is needed to read an export,
//! and live discovery reads the XML hwloc exports of this machine ([`super::hwloc`]) the same
//! way. What is read is what hwloc itself would make of the file's objects, as its XML
//! importer does (hwloc 2.9 `topology-xml.c`):
//!
//! - children are walked normal first, then memory, I/O and Misc ones (hwloc's order once
//!   loaded; a v2 export writes memory children first, a v1 file mixes them);
//! - `Bridge` with `bridge_type="U-D"` (0 host, 1 PCI): a host bridge names its root bus from
//!   `bridge_pci="dddd:[ss-ee]"`; a PCI bridge, like a `PCIDev`, has `pci_busid`
//!   (`dddd:bb:dd.f`), `pci_type` (`class [vendor:device] [subvendor:subdevice] rev`) and
//!   `pci_link_speed` (GB/s per direction, a C float);
//! - `OSDev` with `name`, `osdev_type` (0 storage, 1 GPU, 2 network, 3 OpenFabrics, 4 DMA,
//!   5 co-processor) and `subtype` (v1: the `Type` / `CoProcType` info);
//! - a PCI object's NUMA nodes: the `nodeset` of its first non-I/O ancestor (the nearest one
//!   that has the attribute); the host name: the root's `HostName` info.
//!
//! Bad input is an error naming the file and the line (an unknown object type, a malformed
//! attribute), never a panic. Entity declarations are refused before parsing (hwloc never
//! writes one; they are how "billion laughs" and external-entity attacks start), and the
//! document size is bounded.

use std::path::Path;

use roxmltree::{Document, Node};

use super::model::{NodeKind, OsDevice, OsDeviceKind, PciNode};
use super::TopologyError;

/// Most XML nodes a document may have (a 2-socket GPU server's full export has ~5,000).
const MAX_NODES: u32 = 2_000_000;
/// Most 32-bit words of one bitmap (hwloc's cpusets and nodesets; 4096 words = 131072 bits).
const MAX_BITMAP_WORDS: usize = 4096;

/// What an hwloc export yields: the PCI tree and the root's `HostName` info.
pub struct Parsed {
    /// The PCI tree, parents before children, ports named.
    pub tree: Vec<PciNode>,
    /// The `HostName` info of the root object.
    pub hostname: Option<String>,
}

/// The category of an object type, as hwloc sorts children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Normal,
    Memory,
    Io,
    Misc,
}

/// Parses the text of an hwloc XML export (checked well-formed by `xmlcheck` first).
pub fn parse(path: &Path, text: &str) -> Result<Parsed, TopologyError> {
    if text.contains("<!ENTITY") {
        return Err(TopologyError::input(
            path,
            "declares XML entities (<!ENTITY ...>), which hwloc exports never do: refused (entity expansion)",
        ));
    }
    let opts = roxmltree::ParsingOptions { allow_dtd: true, nodes_limit: MAX_NODES, ..Default::default() };
    let doc = Document::parse_with_options(text, opts).map_err(|e| {
        TopologyError::input(path, format!("is not well-formed XML (line {}, column {}: {e})", e.pos().row, e.pos().col))
    })?;
    let top = doc.root_element();
    let major = match top.attribute("version") {
        None => 1,
        Some(v) => match v.split('.').next().and_then(|m| m.parse::<u32>().ok()) {
            Some(m @ 1..=2) => m,
            _ => {
                return Err(TopologyError::input(
                    path,
                    format!("<topology version=\"{v}\">: this reader knows hwloc's v1 and v2 exports (export it with hwloc 2.x)"),
                ))
            }
        },
    };
    let r = Reader { path, doc: &doc, major };
    let Some(root) = objects(top).next() else {
        return Err(TopologyError::input(path, "has no <object> under <topology>: not an hwloc export"));
    };
    let hostname = infos(root, "HostName").next().map(str::to_string);
    let mut tree = Vec::new();
    r.walk(root, None, &mut tree)?;
    classify_ports(&mut tree);
    Ok(Parsed { tree, hostname })
}

/// The `<object>` children of an element, in file order.
fn objects<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element() && c.tag_name().name() == "object")
}

/// The values of an object's `<info name=NAME value=...>` children, in order.
fn infos<'a>(n: Node<'a, 'a>, name: &'a str) -> impl Iterator<Item = &'a str> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == "info" && c.attribute("name") == Some(name))
        .filter_map(|c| c.attribute("value"))
}

/// The category of a type name as hwloc's `hwloc_type_sscanf` (and the v1 aliases the XML
/// importer accepts) reads it; `None` for a type hwloc does not know.
fn category(ty: &str) -> Option<Category> {
    let t = ty.to_ascii_lowercase();
    let normal = ["machine", "package", "socket", "die", "core", "pu", "group", "cache", "system", "tile", "module"];
    let cache = t.len() >= 2 && t.starts_with('l') && t[1..].starts_with(|c: char| c.is_ascii_digit()) && t.ends_with("cache");
    Some(match t.as_str() {
        _ if normal.contains(&t.as_str()) || cache => Category::Normal,
        "numanode" | "memcache" => Category::Memory,
        "bridge" | "pcidev" | "osdev" => Category::Io,
        "misc" => Category::Misc,
        _ => return None,
    })
}

struct Reader<'a, 'i> {
    path: &'a Path,
    doc: &'a Document<'i>,
    /// The export's major version (1: no `version` attribute).
    major: u32,
}

impl<'a, 'i> Reader<'a, 'i> {
    fn bad(&self, n: Node, what: String) -> TopologyError {
        let line = self.doc.text_pos_at(n.range().start).row;
        TopologyError::input(
            self.path,
            format!("line {line}: {what}; export it again with `lstopo-no-graphics --whole-io --of xml FILE`"),
        )
    }

    fn ty<'n>(&self, n: Node<'n, 'i>) -> Result<(&'n str, Category), TopologyError> {
        let ty = n.attribute("type").ok_or_else(|| self.bad(n, "an <object> without a type".into()))?;
        let cat = category(ty).ok_or_else(|| self.bad(n, format!("unknown hwloc object type \"{ty}\"")))?;
        Ok((ty, cat))
    }

    /// Copies the I/O tree below `n` into `nodes` (as hwlocality's walk over a loaded
    /// topology did): PCI objects become nodes, OS devices attach to their PCI function.
    fn walk(&self, n: Node<'a, 'i>, parent: Option<usize>, nodes: &mut Vec<PciNode>) -> Result<(), TopologyError> {
        let (ty, _) = self.ty(n)?;
        let mut here = parent;
        match ty.to_ascii_lowercase().as_str() {
            "bridge" | "pcidev" => {
                if let Some(node) = self.pci_node(n, parent, nodes.len())? {
                    nodes.push(node);
                    here = Some(nodes.len() - 1);
                }
            }
            "osdev" => {
                if let (Some(p), Some(dev)) = (parent, self.os_device(n)?) {
                    if nodes[p].kind == NodeKind::Device {
                        nodes[p].os_devices.push(dev);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let mut children = Vec::new();
        for c in objects(n) {
            children.push((self.ty(c)?.1, c));
        }
        children.sort_by_key(|(cat, _)| *cat);
        for (_, c) in children {
            self.walk(c, here, nodes)?;
        }
        Ok(())
    }

    fn pci_node(&self, n: Node<'a, 'i>, parent: Option<usize>, id: usize) -> Result<Option<PciNode>, TopologyError> {
        let is_bridge = n.attribute("type").is_some_and(|t| t.eq_ignore_ascii_case("bridge"));
        let (up, down) = match (is_bridge, n.attribute("bridge_type")) {
            (false, _) => (1, 1),
            // hwloc leaves a bridge without the attribute zeroed: host upstream and downstream.
            (true, None) => (0, 0),
            (true, Some(v)) => {
                parse_pair(v).ok_or_else(|| self.bad(n, format!("bridge_type=\"{v}\" is not UP-DOWN (0 host, 1 PCI)")))?
            }
        };
        if up > 1 || down > 1 {
            return Err(self.bad(n, format!("bridge_type=\"{up}-{down}\": hwloc bridge types are 0 (host) and 1 (PCI)")));
        }
        let (kind, pci_attr) = match (is_bridge, up) {
            (false, _) => (NodeKind::Device, Some(self.pci_attrs(n)?)),
            (true, 0) => (NodeKind::HostBridge, None),
            // Provisional: ports are named once the whole tree is known.
            (true, _) => (NodeKind::Bridge, Some(self.pci_attrs(n)?)),
        };
        let pci = match &pci_attr {
            Some(p) => format!("{:04x}:{:02x}:{:02x}.{:x}", p.domain, p.bus, p.dev, p.func),
            None => match (down, n.attribute("bridge_pci")) {
                (1, Some(v)) => {
                    let (domain, secondary) = parse_bridge_pci(v)
                        .ok_or_else(|| self.bad(n, format!("bridge_pci=\"{v}\" is not DOMAIN:[SECONDARY-SUBORDINATE]")))?;
                    format!("{domain:04x}:{secondary:02x}")
                }
                (1, None) => format!("{:04x}:{:02x}", 0, 0),
                _ => "host".to_string(),
            },
        };
        let info = |k: &str| infos(n, k).next().map(str::to_string);
        let name = match (info("PCIVendor"), info("PCIDevice")) {
            (Some(v), Some(d)) => Some(format!("{v} {d}")),
            (v, d) => v.or(d),
        };
        Ok(Some(PciNode {
            id,
            parent,
            kind,
            pci,
            vendor_device: pci_attr.as_ref().map(|p| format!("{:04x}:{:04x}", p.vendor, p.device)),
            class_id: pci_attr.as_ref().map(|p| p.class),
            name,
            link_GBps: pci_attr.as_ref().and_then(|p| round_speed(p.link_speed)),
            numa_nodes: self.numa_nodes(n)?,
            os_devices: Vec::new(),
            synthetic: false,
        }))
    }

    fn pci_attrs(&self, n: Node) -> Result<PciAttrs, TopologyError> {
        let mut a = PciAttrs::default();
        // hwloc leaves a missing attribute zeroed (a bus id of 0000:00:00.0, class 0).
        if let Some(v) = n.attribute("pci_busid") {
            (a.domain, a.bus, a.dev, a.func) =
                parse_busid(v).ok_or_else(|| self.bad(n, format!("pci_busid=\"{v}\" is not DOMAIN:BUS:DEV.FN (hex)")))?;
        }
        if let Some(v) = n.attribute("pci_type") {
            (a.class, a.vendor, a.device) = parse_pci_type(v).ok_or_else(|| {
                self.bad(n, format!("pci_type=\"{v}\" is not CLASS [VENDOR:DEVICE] [SUBVENDOR:SUBDEVICE] REV (hex)"))
            })?;
        }
        if let Some(v) = n.attribute("pci_link_speed") {
            let speed: f64 =
                v.trim().parse().map_err(|_| self.bad(n, format!("pci_link_speed=\"{v}\" is not a number (GB/s)")))?;
            a.link_speed = speed as f32;
        }
        Ok(a)
    }

    /// NUMA nodes of the first non-I/O ancestor of `n` that has a `nodeset`.
    fn numa_nodes(&self, n: Node) -> Result<Vec<u32>, TopologyError> {
        for a in n.ancestors().skip(1).filter(|a| a.is_element() && a.tag_name().name() == "object") {
            if self.ty(a)?.1 == Category::Io {
                continue;
            }
            if let Some(v) = a.attribute("nodeset") {
                return parse_bitmap(v)
                    .ok_or_else(|| self.bad(a, format!("nodeset=\"{v}\" is not an hwloc bitmap (0x...,0x...)")));
            }
        }
        Ok(Vec::new())
    }

    fn os_device(&self, n: Node) -> Result<Option<OsDevice>, TopologyError> {
        let kind = match n.attribute("osdev_type") {
            None => OsDeviceKind::Storage,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(0) => OsDeviceKind::Storage,
                Ok(1) => OsDeviceKind::Gpu,
                Ok(2) => OsDeviceKind::Network,
                Ok(3) => OsDeviceKind::OpenFabrics,
                Ok(4) => OsDeviceKind::Dma,
                Ok(5) => OsDeviceKind::CoProcessor,
                Ok(_) => OsDeviceKind::Other,
                Err(_) => return Err(self.bad(n, format!("osdev_type=\"{v}\" is not a number"))),
            },
        };
        let Some(name) = n.attribute("name") else { return Ok(None) };
        let mut subtype = n.attribute("subtype").map(str::to_string);
        if self.major < 2 {
            // hwloc 1.x stored the subtype in a `Type` or `CoProcType` info (the last one wins).
            let v1 = n
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "info")
                .filter(|c| matches!(c.attribute("name"), Some("Type" | "CoProcType")));
            if let Some(v) = v1.filter_map(|c| c.attribute("value")).next_back() {
                subtype = Some(v.to_string());
            }
        }
        Ok(Some(OsDevice { name: name.to_string(), kind, subtype }))
    }
}

/// The PCI attributes hwloc keeps for a PCI function or a PCI-upstream bridge.
#[derive(Default)]
struct PciAttrs {
    domain: u32,
    bus: u8,
    dev: u8,
    func: u8,
    class: u16,
    vendor: u16,
    device: u16,
    link_speed: f32,
}

fn hex<T: TryFrom<u64>>(s: &str, max_digits: usize) -> Option<T> {
    let s = s.trim();
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    T::try_from(u64::from_str_radix(s, 16).ok()?).ok()
}

/// `U-D` of `bridge_type`.
fn parse_pair(v: &str) -> Option<(u32, u32)> {
    let (u, d) = v.split_once('-')?;
    Some((u.trim().parse().ok()?, d.trim().parse().ok()?))
}

/// `dddd:bb:dd.f` (hex).
fn parse_busid(v: &str) -> Option<(u32, u8, u8, u8)> {
    let (domain, rest) = v.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    Some((hex(domain, 8)?, hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?))
}

/// `class [vendor:device] [subvendor:subdevice] rev` (hex); returns class, vendor, device.
fn parse_pci_type(v: &str) -> Option<(u16, u16, u16)> {
    let mut it = v.split_whitespace();
    let class = hex(it.next()?, 4)?;
    let ids = |s: &str| -> Option<(u16, u16)> {
        let (a, b) = s.strip_prefix('[')?.strip_suffix(']')?.split_once(':')?;
        Some((hex(a, 4)?, hex(b, 4)?))
    };
    let (vendor, device) = ids(it.next()?)?;
    ids(it.next()?)?;
    let _rev: u8 = hex(it.next()?, 2)?;
    it.next().is_none().then_some((class, vendor, device))
}

/// `dddd:[ss-ee]` of a bridge's downstream PCI bus range; returns domain and secondary bus.
fn parse_bridge_pci(v: &str) -> Option<(u32, u8)> {
    let (domain, range) = v.split_once(':')?;
    let (sec, sub) = range.trim().strip_prefix('[')?.strip_suffix(']')?.split_once('-')?;
    let _sub: u8 = hex(sub, 2)?;
    Some((hex(domain, 8)?, hex(sec, 2)?))
}

/// The set indexes of an hwloc bitmap string: comma-separated 32-bit words, most significant
/// first, each `0x` hex; a leading `0xf...f` (infinitely many set bits above) is dropped.
fn parse_bitmap(v: &str) -> Option<Vec<u32>> {
    let v = v.trim();
    let v = v.strip_prefix("0xf...f").map(|r| r.trim_start_matches(',')).unwrap_or(v);
    if v.is_empty() {
        return Some(Vec::new());
    }
    let words: Vec<&str> = v.split(',').collect();
    if words.len() > MAX_BITMAP_WORDS {
        return None;
    }
    let mut out = Vec::new();
    for (i, w) in words.iter().rev().enumerate() {
        let w: u32 = hex(w.trim().strip_prefix("0x")?, 8)?;
        out.extend((0..32).filter(|b| w >> b & 1 == 1).map(|b| i as u32 * 32 + b));
    }
    Some(out)
}

#[cfg(test)]
#[path = "hwlocxml_tests.rs"]
mod tests;

/// hwloc's f32 GB/s as the decimal hwloc prints (15.753846, not 15.753846168518066); 0 = unknown.
pub(crate) fn round_speed(v: f32) -> Option<f64> {
    (v.is_finite() && v > 0.0).then(|| v.to_string().parse().unwrap_or(f64::from(v)))
}

/// Names PCI bridges by their place in the tree. A PCIe link joins a downstream-facing port
/// (root port, switch downstream port) to an upstream-facing one (switch upstream port,
/// endpoint): a bridge under a host bridge is a root port; a bridge under a downstream-facing
/// port is a switch upstream port when bridges hang below it (else a plain bridge, e.g.
/// PCIe-to-PCI); a bridge under a switch upstream port is a downstream port.
pub(crate) fn classify_ports(nodes: &mut [PciNode]) {
    let has_bridge_child: Vec<bool> = {
        let mut v = vec![false; nodes.len()];
        for n in nodes.iter() {
            if let (Some(p), true) = (n.parent, n.kind != NodeKind::Device) {
                v[p] = true;
            }
        }
        v
    };
    for i in 0..nodes.len() {
        if nodes[i].kind != NodeKind::Bridge {
            continue;
        }
        let parent_kind = nodes[i].parent.map(|p| nodes[p].kind);
        nodes[i].kind = match parent_kind {
            None | Some(NodeKind::HostBridge) => NodeKind::RootPort,
            Some(NodeKind::RootPort) | Some(NodeKind::SwitchDownstream) if has_bridge_child[i] => NodeKind::SwitchUpstream,
            Some(NodeKind::SwitchUpstream) => NodeKind::SwitchDownstream,
            Some(_) => NodeKind::Bridge,
        };
    }
}
