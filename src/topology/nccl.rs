//! NCCL / RCCL topology XML (`<system version="1|2">`: what `NCCL_TOPO_DUMP_FILE` writes, and
//! the hand-written hint files cloud images ship for `NCCL_TOPO_FILE`) -> the same PCI tree
//! model as hwloc's, plus what hwloc cannot see: NVLink / xGMI links and the NIC facts NCCL
//! records (line rate, port, GPUDirect RDMA support).
//!
//! The format follows NCCL's reader (`src/graph/topo.cc`, `ncclTopoAddCpu` / `ncclTopoAddPci`
//! / `ncclTopoAddNvLinks`): `<cpu numaid>` holds `<pci busid class link_speed link_width>`
//! elements; a `<pci>` with a `<gpu>` child is a GPU, with a `<nic>` child (holding `<net name
//! dev speed port gdr>`) a NIC, and any other `<pci>` with `<pci>` children (class 0x0604xx) a
//! PCIe switch. NCCL records switches, not their ports (its XML skips the downstream port), so
//! each switch gets a synthetic downstream port per child here, and each `<cpu>` becomes one
//! synthetic host bridge: devices under one CPU but different root complexes are PHB, never
//! NODE, exactly as NCCL sees them.
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::path::Path;

use roxmltree::{Document, Node};

use super::model::{NodeKind, OsDevice, OsDeviceKind, PciNode, PeerFabric, Source, SourceKind};
use super::{Loaded, TopologyError};

pub mod links;

/// Versions of `<system version=...>` this reader knows (NCCL writes 1, RCCL 1 or 2).
const VERSIONS: [&str; 2] = ["1", "2"];

/// Bytes/s per direction of one PCIe lane at `gts` GT/s, after line encoding: 8b/10b for
/// 2.5 and 5 GT/s (Gen1/2), 128b/130b for 8, 16 and 32 GT/s (Gen3-5); for 64 GT/s (Gen6,
/// PAM4, 1b/1b) the FLIT overhead: 242 of every 256 FLIT bytes carry TLP/DLLP data (8 B CRC,
/// 6 B FEC), so 64e9 / 8 * 242/256 = 7.5625e9 B/s per lane. `None` for other rates.
pub fn pcie_lane_Bps(gts: f64) -> Option<f64> {
    let eff = match gts {
        g if (g - 2.5).abs() < 0.01 || (g - 5.0).abs() < 0.01 => 8.0 / 10.0,
        g if [8.0, 16.0, 32.0].iter().any(|x| (g - x).abs() < 0.01) => 128.0 / 130.0,
        g if (g - 64.0).abs() < 0.01 => 242.0 / 256.0,
        _ => return None,
    };
    Some(gts * 1e9 * eff / 8.0)
}

/// Bytes/s per direction of a link from NCCL's `link_speed` ("16 GT/s", "32.0 GT/s PCIe") and
/// `link_width` (lanes). `None` when either is absent, zero or unknown.
pub fn link_Bps(speed: Option<&str>, width: Option<&str>) -> Option<f64> {
    let gts: f64 = speed?.split_whitespace().next()?.parse().ok()?;
    let lanes: u32 = width?.trim().parse().ok()?;
    (lanes > 0).then_some(())?;
    Some(pcie_lane_Bps(gts)? * f64::from(lanes))
}

/// A `<net>` of a `<nic>`: what NCCL knows of one NIC port.
#[derive(Debug, Clone, PartialEq)]
pub struct NetFact {
    /// PCI bus id of the NIC function (empty for a NIC NCCL placed under a CPU, off PCI).
    pub pci: String,
    /// NCCL's device name (`mlx5_0`, or a socket interface name).
    pub name: String,
    /// Line rate, bytes/s (NCCL's `speed` is Mb/s).
    pub line_rate_Bps: Option<f64>,
    /// Port number.
    pub port: Option<u32>,
    /// GPUDirect RDMA support.
    pub gdr: Option<bool>,
    /// Line of the `<net>` element.
    pub line: u32,
}

/// An `<nvlink>` / `<xgmi>` element as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLink {
    /// Bus id of the GPU whose `<gpu>` holds the element.
    pub gpu: String,
    /// NVLink or xGMI.
    pub fabric: PeerFabric,
    /// `target` bus id (lower case).
    pub target: String,
    /// `count`.
    pub count: u32,
    /// `tclass` (24-bit PCI class of the target: 0x03xxxx/0x12xxxx GPU, 0x068000 NVSwitch, 0x068001 CPU).
    pub tclass: u32,
    /// Line of the element.
    pub line: u32,
}

/// Everything read from one NCCL file before it becomes an inventory.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The PCI tree (CPUs as synthetic host bridges).
    pub tree: Vec<PciNode>,
    /// NIC ports.
    pub nets: Vec<NetFact>,
    /// NVLink / xGMI elements.
    pub links: Vec<RawLink>,
    /// GPU vendor hints from `<gpu sm=...>` (NVIDIA) or `<gpu gcn=...>` (AMD), by bus id.
    pub gpu_vendor_hints: BTreeMap<String, super::GpuVendor>,
    /// The `version` of `<system>`.
    pub version: String,
    /// Plain statements about what the file does not tell.
    pub notes: Vec<String>,
}

/// Reads an NCCL/RCCL topology file into the discovery model.
pub fn read(path: &Path) -> Result<Loaded, TopologyError> {
    let text = std::fs::read(path).map_err(|e| TopologyError::input(path, format!("cannot read: {e}")))?;
    let text =
        String::from_utf8(text).map_err(|_| TopologyError::input(path, "is not UTF-8 text, so not an NCCL topology file"))?;
    let parsed = parse(path, &text)?;
    let version = parsed.version.clone();
    let (inv, notes) = links::inventory(path, parsed)?;
    let source = Source {
        kind: SourceKind::Nccl,
        file: Some(path.display().to_string()),
        reader: Some(format!("NCCL/RCCL topology XML <system version=\"{version}\">")),
        merged_with: None,
        hostname: None,
    };
    Ok(Loaded { inv, source, notes, disagreements: Vec::new() })
}

/// Parses the XML text (well-formedness, root, version, elements) into a [`Parsed`].
pub fn parse(path: &Path, text: &str) -> Result<Parsed, TopologyError> {
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = Document::parse_with_options(text, opts).map_err(|e| {
        let at = match e {
            roxmltree::Error::UnexpectedEndOfStream => {
                format!("the text ends at line {} before the XML does", text.lines().count())
            }
            _ => format!("line {}, column {}: {e}", e.pos().row, e.pos().col),
        };
        TopologyError::input(path, format!("is not well-formed XML ({at}); the file may be truncated: dump it again"))
    })?;
    let root = doc.root_element();
    let line = |n: Node| doc.text_pos_at(n.range().start).row;
    if root.tag_name().name() != "system" {
        return Err(TopologyError::input(
            path,
            format!(
                "has root element <{}> at line {}, not an NCCL topology (<system version=...>)",
                root.tag_name().name(),
                line(root)
            ),
        ));
    }
    let version = match root.attribute("version") {
        Some(v) if VERSIONS.contains(&v) => v.to_string(),
        Some(v) => {
            return Err(TopologyError::input(
                path,
                format!(
                    "<system version=\"{v}\"> at line {}: unknown NCCL topology version (this reader knows 1 and 2)",
                    line(root)
                ),
            ))
        }
        None => return Err(TopologyError::input(path, format!("<system> at line {} has no version attribute", line(root)))),
    };
    let mut b = Builder { path, doc: &doc, out: Parsed { version, ..Default::default() }, ignored: BTreeMap::new() };
    for child in root.children().filter(|c| c.is_element()) {
        match child.tag_name().name() {
            "cpu" => b.cpu(child)?,
            other => *b.ignored.entry(other.to_string()).or_default() += 1,
        }
    }
    let mut out = b.out;
    if !b.ignored.is_empty() {
        let list: Vec<String> = b.ignored.iter().map(|(k, n)| format!("<{k}> x{n}")).collect();
        out.notes.push(format!("elements this reader does not use were skipped: {}", list.join(", ")));
    }
    if out.tree.is_empty() {
        out.notes.push("the file has no <cpu> element: no device at all".into());
    }
    Ok(out)
}

struct Builder<'a, 'd> {
    path: &'a Path,
    doc: &'a Document<'d>,
    out: Parsed,
    ignored: BTreeMap<String, usize>,
}

impl<'a, 'd> Builder<'a, 'd> {
    fn line(&self, n: Node) -> u32 {
        self.doc.text_pos_at(n.range().start).row
    }

    fn bad(&self, n: Node, what: impl std::fmt::Display) -> TopologyError {
        TopologyError::input(self.path, format!("<{}> at line {}: {what}", n.tag_name().name(), self.line(n)))
    }

    fn push(&mut self, parent: Option<usize>, kind: NodeKind, pci: String, numa: Option<u32>) -> usize {
        let id = self.out.tree.len();
        self.out.tree.push(PciNode {
            id,
            parent,
            kind,
            pci,
            vendor_device: None,
            class_id: None,
            name: None,
            link_GBps: None,
            numa_nodes: numa.into_iter().collect(),
            os_devices: Vec::new(),
            synthetic: false,
        });
        id
    }

    fn cpu(&mut self, el: Node) -> Result<(), TopologyError> {
        let numa: u32 = match el.attribute("numaid").map(str::parse) {
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(self.bad(el, "numaid is not a number")),
            None => return Err(self.bad(el, "has no numaid: the NUMA node of its devices is unknown")),
        };
        let hb = self.push(None, NodeKind::HostBridge, format!("cpu{numa}"), Some(numa));
        self.out.tree[hb].synthetic = true;
        for child in el.children().filter(|c| c.is_element()) {
            match child.tag_name().name() {
                "pci" => self.pci(child, hb, numa)?,
                "nic" => self.nic_off_pci(child, hb, numa)?,
                other => *self.ignored.entry(other.to_string()).or_default() += 1,
            }
        }
        Ok(())
    }

    fn busid(&self, el: Node) -> Result<String, TopologyError> {
        let Some(b) = el.attribute("busid") else {
            return Err(self.bad(el, "has no busid: a PCI device without a bus id cannot be placed"));
        };
        let b = b.trim().to_ascii_lowercase();
        // By bytes: a multi-byte character where a separator goes is no char boundary to slice.
        let ok = b.len() == 12
            && b.bytes().enumerate().all(|(i, c)| match i {
                4 | 7 => c == b':',
                10 => c == b'.',
                _ => c.is_ascii_hexdigit(),
            });
        if !ok {
            return Err(self.bad(el, format!("busid \"{b}\" is not a PCI bus id dddd:bb:dd.f")));
        }
        Ok(b)
    }

    fn pci(&mut self, el: Node, parent: usize, numa: u32) -> Result<(), TopologyError> {
        let busid = self.busid(el)?;
        let Some(class_str) = el.attribute("class") else {
            return Err(self.bad(el, format!("{busid} has no class")));
        };
        let class24 = u32::from_str_radix(class_str.trim().trim_start_matches("0x"), 16)
            .map_err(|_| self.bad(el, format!("{busid}: class \"{class_str}\" is not hex")))?;
        let class_id = if class_str.trim().trim_start_matches("0x").len() > 4 { (class24 >> 8) as u16 } else { class24 as u16 };
        let sub = |name: &str| el.children().find(|c| c.is_element() && c.tag_name().name() == name);
        let (gpu, nic) = (sub("gpu"), sub("nic"));
        let kids: Vec<Node> = el.children().filter(|c| c.is_element() && c.tag_name().name() == "pci").collect();
        let switch = gpu.is_none() && nic.is_none() && (class_id == 0x0604 || !kids.is_empty());
        let kind = if switch { NodeKind::SwitchUpstream } else { NodeKind::Device };
        let id = self.push(Some(parent), kind, busid.clone(), Some(numa));
        let node = &mut self.out.tree[id];
        node.class_id = Some(class_id);
        node.link_GBps = link_Bps(el.attribute("link_speed"), el.attribute("link_width")).map(|b| b / 1e9);
        if let (Some(v), Some(d)) = (el.attribute("vendor"), el.attribute("device")) {
            let hex = |s: &str| u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
            node.vendor_device = hex(v).zip(hex(d)).map(|(v, d)| format!("{v:04x}:{d:04x}"));
        }
        if switch {
            for kid in kids {
                let name = kid.attribute("busid").unwrap_or("?").to_ascii_lowercase();
                let port = self.push(Some(id), NodeKind::SwitchDownstream, format!("{busid}>{name}"), Some(numa));
                self.out.tree[port].synthetic = true;
                self.pci(kid, port, numa)?;
            }
            return Ok(());
        }
        if let Some(g) = gpu {
            self.gpu(g, &busid)?;
        }
        if let Some(n) = nic {
            self.nets(n, id, &busid, class_id)?;
        }
        Ok(())
    }

    fn gpu(&mut self, el: Node, busid: &str) -> Result<(), TopologyError> {
        let hint = if el.attribute("gcn").is_some() {
            Some(super::GpuVendor::Amd)
        } else if el.attribute("sm").is_some() {
            Some(super::GpuVendor::Nvidia)
        } else {
            None
        };
        if let Some(h) = hint {
            self.out.gpu_vendor_hints.insert(busid.to_string(), h);
        }
        for l in el.children().filter(|c| c.is_element()) {
            let fabric = match l.tag_name().name() {
                "nvlink" => PeerFabric::Nvlink,
                "xgmi" => PeerFabric::Xgmi,
                other => {
                    *self.ignored.entry(other.to_string()).or_default() += 1;
                    continue;
                }
            };
            let target = l.attribute("target").ok_or_else(|| self.bad(l, "has no target"))?.trim().to_ascii_lowercase();
            let count =
                l.attribute("count").and_then(|c| c.trim().parse().ok()).ok_or_else(|| self.bad(l, "has no numeric count"))?;
            let tclass = l
                .attribute("tclass")
                .and_then(|c| u32::from_str_radix(c.trim().trim_start_matches("0x"), 16).ok())
                .ok_or_else(|| self.bad(l, "has no hex tclass"))?;
            let line = self.line(l);
            self.out.links.push(RawLink { gpu: busid.to_string(), fabric, target, count, tclass, line });
        }
        Ok(())
    }

    /// The `<net>` ports of a `<nic>` become OS devices of its PCI function (node `id`).
    fn nets(&mut self, el: Node, id: usize, busid: &str, class_id: u16) -> Result<(), TopologyError> {
        for net in el.children().filter(|c| c.is_element() && c.tag_name().name() == "net") {
            let name = net.attribute("name").ok_or_else(|| self.bad(net, "has no name"))?.to_string();
            let num = |k: &str| net.attribute(k).and_then(|v| v.trim().parse::<f64>().ok());
            let gdr = num("gdr").map(|g| g != 0.0);
            let fact = NetFact {
                pci: busid.to_string(),
                name: name.clone(),
                line_rate_Bps: num("speed").filter(|s| *s > 0.0).map(|mbps| mbps * 1e6 / 8.0),
                port: num("port").map(|p| p as u32),
                gdr,
                line: self.line(net),
            };
            let kind = if is_rdma(class_id, gdr, &name) { OsDeviceKind::OpenFabrics } else { OsDeviceKind::Network };
            self.out.tree[id].os_devices.push(OsDevice { name, kind, subtype: Some("NCCL net".into()) });
            self.out.nets.push(fact);
        }
        Ok(())
    }

    /// A `<nic>` straight under `<cpu>` (a network device NCCL found no PCI path for).
    fn nic_off_pci(&mut self, el: Node, hb: usize, numa: u32) -> Result<(), TopologyError> {
        let name = format!("cpu{numa}-nic{}", self.out.tree.len());
        let id = self.push(Some(hb), NodeKind::Device, name.clone(), Some(numa));
        self.out.tree[id].class_id = Some(0x0200);
        self.out.tree[id].synthetic = true;
        self.nets(el, id, &name, 0x0200)
    }
}

/// An RDMA port: InfiniBand class, GPUDirect RDMA support, or a verbs device name.
fn is_rdma(class_id: u16, gdr: Option<bool>, name: &str) -> bool {
    const VERBS: [&str; 8] = ["mlx", "rdmap", "bnxt_re", "irdma", "efa", "ionic", "qedr", "erdma"];
    class_id == 0x0207 || gdr == Some(true) || VERBS.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_rates_follow_each_generations_encoding() {
        // Gen1 2.5 GT/s 8b/10b = 2 Gb/s = 0.25 GB/s; Gen3 8 GT/s 128b/130b; Gen6 FLIT 242/256.
        assert_eq!(pcie_lane_Bps(2.5), Some(2.5e9 * 0.8 / 8.0));
        assert_eq!(pcie_lane_Bps(5.0), Some(0.5e9));
        assert!((pcie_lane_Bps(8.0).unwrap() - 8e9 * 128.0 / 130.0 / 8.0).abs() < 1.0);
        assert!((link_Bps(Some("16 GT/s"), Some("16")).unwrap() - 31.507_692e9).abs() < 1e3);
        assert!((link_Bps(Some("32.0 GT/s PCIe"), Some("16")).unwrap() - 63.015_385e9).abs() < 1e3);
        assert_eq!(link_Bps(Some("64.0 GT/s PCIe"), Some("16")), Some(121e9));
        assert_eq!(link_Bps(Some("Unknown"), Some("16")), None);
        assert_eq!(link_Bps(Some("16 GT/s"), Some("0")), None);
        assert_eq!(link_Bps(None, Some("16")), None);
        assert_eq!(pcie_lane_Bps(20.0), None);
    }

    fn err(text: &str) -> String {
        parse(Path::new("t.xml"), text).unwrap_err().to_string()
    }

    #[test]
    fn a_bus_id_with_a_multibyte_separator_is_refused_not_a_panic() {
        // 12 bytes: "0000", U+3099 (3 bytes), ":00.0" (found by the topology fuzz target).
        let text = "<system version=\"1\">\n<cpu numaid=\"0\">\n<pci busid=\"0000\u{3099}:00.0\" class=\"0x060400\"/>\n</cpu>\n</system>";
        let e = err(text);
        assert!(e.contains("is not a PCI bus id") && e.contains('\u{3099}'), "{e}");
        let ok =
            "<system version=\"1\">\n<cpu numaid=\"0\">\n<pci busid=\"0000:00:01.0\" class=\"0x060400\"/>\n</cpu>\n</system>";
        assert!(parse(Path::new("t.xml"), ok).is_ok());
    }

    #[test]
    fn bad_files_name_element_and_line() {
        assert!(err("<system version=\"1\">\n<cpu numaid=\"0\">\n<pci busid=\"0000:01:00.0\"").contains("t.xml"));
        assert!(err("<system version=\"9\"/>").contains("unknown NCCL topology version"));
        assert!(err("<system/>").contains("no version"));
        assert!(err("<topology/>").contains("root element <topology>"));
        let e = err("<system version=\"1\">\n <cpu numaid=\"0\">\n  <pci class=\"0x030200\"/>\n </cpu>\n</system>");
        assert!(e.contains("<pci> at line 3") && e.contains("no busid"), "{e}");
        let e = err("<system version=\"1\">\n <cpu>\n </cpu>\n</system>");
        assert!(e.contains("<cpu> at line 2") && e.contains("numaid"), "{e}");
        let e = err("<system version=\"1\"><cpu numaid=\"0\"><pci busid=\"zz\" class=\"0x0302\"/></cpu></system>");
        assert!(e.contains("not a PCI bus id"), "{e}");
    }
}
