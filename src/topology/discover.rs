//! hwloc -> PCI tree: builds an hwloc topology (live, or from an XML export checked first) with
//! every I/O object kept, and copies its bridges, PCI functions and OS devices into
//! [`PciNode`]s. Everything after this step works on the plain tree, not on hwloc.

use std::path::Path;

use hwlocality::object::attributes::{DownstreamAttributes, ObjectAttributes};
use hwlocality::object::types::{BridgeType, OSDeviceType, ObjectType};
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::TypeFilter;
use hwlocality::Topology;

use super::isolate::hwloc_lock;
use super::model::{NodeKind, OsDevice, OsDeviceKind, PciNode, Source, SourceKind};
use super::xmlcheck;
use super::TopologyError;

/// Builds the PCI tree of this machine.
pub fn live() -> Result<(Vec<PciNode>, Source), TopologyError> {
    let _hwloc = hwloc_lock();
    let topo = builder()?.build().map_err(|e| TopologyError::Hwloc(format!("live discovery failed: {e}")))?;
    let source = Source {
        kind: SourceKind::Live,
        file: None,
        reader: Some("hwloc, live discovery".into()),
        merged_with: None,
        hostname: hostname(&topo),
    };
    Ok((tree(&topo), source))
}

/// Builds the PCI tree of an hwloc XML export (v1 or v2 format). The file is checked before
/// hwloc sees it (hwloc's XML readers may print to stderr or abort on malformed input), and
/// hwloc then runs in a child process, so that a crash on an inconsistent file is an error.
pub fn from_xml(path: &Path) -> Result<(Vec<PciNode>, Source), TopologyError> {
    let text = std::fs::read(path).map_err(|e| TopologyError::input(path, format!("cannot read: {e}")))?;
    xmlcheck::check(path, &text)?;
    let text =
        String::from_utf8(text).map_err(|_| TopologyError::input(path, "is not UTF-8 text: an hwloc XML export is UTF-8"))?;
    super::isolate::run(path, || load_xml(path, &text))
}

fn load_xml(path: &Path, text: &str) -> Result<(Vec<PciNode>, Source), TopologyError> {
    let topo = builder()?
        .from_xml(text)
        .map_err(|_| TopologyError::input(path, REJECTED))?
        .build()
        .map_err(|_| TopologyError::input(path, REJECTED))?;
    let source = Source {
        kind: SourceKind::Xml,
        file: Some(path.display().to_string()),
        reader: Some("hwloc XML export (<topology>)".into()),
        merged_with: None,
        hostname: hostname(&topo),
    };
    Ok((tree(&topo), source))
}

const REJECTED: &str = "is well-formed XML with a <topology> root, but hwloc could not load a topology from it \
     (objects or attributes it does not know): export it again with `lstopo-no-graphics --whole-io --of xml FILE`";

/// Exports an XML file in hwloc's v1 format (for tests of the v1 reader and for old tools).
pub fn export_v1(input: &Path, output: &Path) -> Result<(), TopologyError> {
    use hwlocality::topology::export::xml::XMLExportFlags;
    let _hwloc = hwloc_lock();
    let text = std::fs::read_to_string(input).map_err(|e| TopologyError::input(input, format!("cannot read: {e}")))?;
    xmlcheck::check(input, text.as_bytes())?;
    let topo = builder()?
        .from_xml(&text)
        .map_err(|e| TopologyError::input(input, format!("hwloc refused the XML: {e}")))?
        .build()
        .map_err(|e| TopologyError::input(input, format!("hwloc could not load the topology: {e}")))?;
    topo.export_xml_file(Some(output), XMLExportFlags::V1)
        .map_err(|e| TopologyError::Hwloc(format!("exporting {} failed: {e}", output.display())))
}

/// The builder every discovery uses: all I/O objects kept, no OpenCL / GL components (they
/// would start GPU drivers). A component whose plugin is not installed (Debian ships them in
/// libhwloc-plugins) cannot be blacklisted (EINVAL) and has nothing to disable: skip it.
fn builder() -> Result<hwlocality::topology::builder::TopologyBuilder, TopologyError> {
    let hw = |e: &dyn std::fmt::Display| TopologyError::Hwloc(format!("configuring hwloc: {e}"));
    let base = || Topology::builder().with_io_type_filter(TypeFilter::KeepAll).map_err(|e| hw(&e));
    let mut disabled: Vec<&str> = Vec::new();
    let mut builder = base()?;
    for component in ["opencl", "gl"] {
        builder = match builder.without_component(component) {
            Ok(b) => {
                disabled.push(component);
                b
            }
            Err(_) => {
                let mut b = base()?;
                for done in &disabled {
                    b = b.without_component(done).map_err(|e| hw(&e))?;
                }
                b
            }
        };
    }
    Ok(builder)
}

fn hostname(topo: &Topology) -> Option<String> {
    topo.root_object().info("HostName").map(|s| s.to_string_lossy().into_owned())
}

/// Copies hwloc's I/O tree into plain nodes (parents before children), then names the ports.
fn tree(topo: &Topology) -> Vec<PciNode> {
    let mut nodes = Vec::new();
    walk(topo.root_object(), None, &mut nodes);
    classify_ports(&mut nodes);
    nodes
}

fn walk(obj: &TopologyObject, parent: Option<usize>, nodes: &mut Vec<PciNode>) {
    let mut here = parent;
    match obj.object_type() {
        ObjectType::Bridge | ObjectType::PCIDevice => {
            if let Some(node) = pci_node(obj, parent, nodes.len()) {
                nodes.push(node);
                here = Some(nodes.len() - 1);
            }
        }
        ObjectType::OSDevice => {
            if let (Some(p), Some(dev)) = (parent, os_device(obj)) {
                if nodes[p].kind == NodeKind::Device {
                    nodes[p].os_devices.push(dev);
                }
            }
            return;
        }
        _ => {}
    }
    for child in obj.all_children() {
        walk(child, here, nodes);
    }
}

fn pci_node(obj: &TopologyObject, parent: Option<usize>, id: usize) -> Option<PciNode> {
    let (kind, pci_attr, host) = match obj.attributes()? {
        ObjectAttributes::PCIDevice(p) => (NodeKind::Device, Some(p), None),
        ObjectAttributes::Bridge(b) => match b.upstream_type() {
            BridgeType::Host => {
                let bus = match b.downstream_attributes() {
                    Some(DownstreamAttributes::PCI(d)) => format!("{:04x}:{:02x}", d.domain(), d.secondary_bus()),
                    _ => "host".to_string(),
                };
                (NodeKind::HostBridge, None, Some(bus))
            }
            _ => {
                let p = match b.upstream_attributes() {
                    Some(hwlocality::object::attributes::UpstreamAttributes::PCI(p)) => Some(p),
                    _ => None,
                };
                // Provisional: ports are named once the whole tree is known.
                (NodeKind::Bridge, p, None)
            }
        },
        _ => return None,
    };
    let pci = match (pci_attr, host) {
        (Some(p), _) => {
            format!("{:04x}:{:02x}:{:02x}.{:x}", p.domain(), p.bus_id(), p.bus_device(), p.function())
        }
        (None, Some(h)) => h,
        (None, None) => return None,
    };
    let info = |k: &str| obj.info(k).map(|s| s.to_string_lossy().into_owned());
    let name = match (info("PCIVendor"), info("PCIDevice")) {
        (Some(v), Some(d)) => Some(format!("{v} {d}")),
        (v, d) => v.or(d),
    };
    let numa_nodes = obj
        .first_non_io_ancestor()
        .and_then(|a| a.nodeset())
        .map(|ns| ns.iter_set().map(|i| usize::from(i) as u32).collect())
        .unwrap_or_default();
    Some(PciNode {
        id,
        parent,
        kind,
        pci,
        vendor_device: pci_attr.map(|p| format!("{:04x}:{:04x}", p.vendor_id(), p.device_id())),
        class_id: pci_attr.map(|p| p.class_id()),
        name,
        link_GBps: pci_attr.and_then(|p| round_speed(p.link_speed())),
        numa_nodes,
        os_devices: Vec::new(),
        synthetic: false,
    })
}

/// hwloc's f32 GB/s as the decimal hwloc prints (15.753846, not 15.753846168518066); 0 = unknown.
pub(crate) fn round_speed(v: f32) -> Option<f64> {
    (v.is_finite() && v > 0.0).then(|| v.to_string().parse().unwrap_or(f64::from(v)))
}

fn os_device(obj: &TopologyObject) -> Option<OsDevice> {
    let ObjectAttributes::OSDevice(a) = obj.attributes()? else {
        return None;
    };
    let kind = match a.device_type() {
        OSDeviceType::Storage => OsDeviceKind::Storage,
        OSDeviceType::GPU => OsDeviceKind::Gpu,
        OSDeviceType::Network => OsDeviceKind::Network,
        OSDeviceType::OpenFabrics => OsDeviceKind::OpenFabrics,
        OSDeviceType::DMA => OsDeviceKind::Dma,
        OSDeviceType::CoProcessor => OsDeviceKind::CoProcessor,
        _ => OsDeviceKind::Other,
    };
    Some(OsDevice {
        name: obj.name()?.to_string_lossy().into_owned(),
        kind,
        subtype: obj.subtype().map(|s| s.to_string_lossy().into_owned()),
    })
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
