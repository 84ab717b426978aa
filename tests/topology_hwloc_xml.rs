//! The Rust hwloc XML reader against every hwloc export in ../shared/topo-fixtures: each PCI
//! object, its parent, ids, class, link speed, NUMA nodes and OS devices as read off the
//! file's own lines (hwloc indents each object two spaces under its parent: a line scan, no
//! XML parser), and the same report from hwloc's own v1 export of each file (hwloc loaded at
//! run time; CI has it, so there a missing hwloc fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use linkcal::topology::{self, discover, Input, NodeKind, PciNode, Role, RoleRequest};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/topo-fixtures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (../shared must sit beside the checkout)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("<topology"))
        .collect();
    out.sort();
    assert!(out.len() >= 6, "expected the six hwloc exports, found {out:?}");
    out
}

/// One PCI object as the file's lines say.
#[derive(Debug, PartialEq)]
struct Want {
    parent: Option<String>,
    /// "host", "bridge" or "device".
    what: &'static str,
    vendor_device: Option<String>,
    class: Option<u16>,
    link: f64,
    numa: Vec<u32>,
    os_devices: Vec<(String, u32)>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    Some(&line[start..start + line[start..].find('"')?])
}

/// Set bits of an hwloc bitmap string (comma-separated 32-bit words, most significant first).
fn bits(v: &str) -> Vec<u32> {
    let words: Vec<u32> = v.split(',').map(|w| u32::from_str_radix(w.trim_start_matches("0x"), 16).unwrap()).collect();
    let n = words.len();
    (0..32 * n as u32).filter(|b| words[n - 1 - (*b / 32) as usize] >> (b % 32) & 1 == 1).collect()
}

/// Every PCI object of an export, keyed by bus id (`dddd:ss` for host bridges).
fn read_lines(text: &str) -> BTreeMap<String, Want> {
    // The open objects above the current line: (indent, PCI key when a PCI object, nodeset when
    // a non-I/O object has one).
    let mut stack: Vec<(usize, Option<String>, Option<Vec<u32>>)> = Vec::new();
    let mut out: BTreeMap<String, Want> = BTreeMap::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("<object ") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(i, _, _)| *i >= indent) {
            stack.pop();
        }
        let ty = attr(line, "type").unwrap();
        let parent = stack.iter().rev().find_map(|(_, k, _)| k.clone());
        let numa = || stack.iter().rev().find_map(|(_, _, n)| n.clone()).unwrap_or_default();
        let mut key = None;
        match ty {
            "Bridge" | "PCIDev" => {
                let host = attr(line, "bridge_type").is_some_and(|b| b.starts_with('0'));
                let k = if host {
                    let b = attr(line, "bridge_pci").unwrap();
                    format!("{}:{}", &b[..4], &b[6..8])
                } else {
                    attr(line, "pci_busid").unwrap().to_string()
                };
                let pci_type = attr(line, "pci_type");
                let ids = pci_type.map(|t| t[t.find('[').unwrap() + 1..t.find(']').unwrap()].to_string());
                let w = Want {
                    parent,
                    what: if host {
                        "host"
                    } else if ty == "Bridge" {
                        "bridge"
                    } else {
                        "device"
                    },
                    vendor_device: ids,
                    class: pci_type.map(|t| u16::from_str_radix(&t[..4], 16).unwrap()),
                    link: attr(line, "pci_link_speed").map_or(0.0, |s| s.parse().unwrap()),
                    numa: numa(),
                    os_devices: Vec::new(),
                };
                assert!(out.insert(k.clone(), w).is_none(), "{k} twice");
                key = Some(k);
            }
            // An OS device belongs to the PCI function it sits in (others, e.g. under a
            // package or a bridge, are no device's).
            "OSDev" if stack.last().is_some_and(|(_, k, _)| k.as_ref().is_some_and(|k| out[k].what == "device")) => {
                let dev = (attr(line, "name").unwrap().to_string(), attr(line, "osdev_type").unwrap().parse().unwrap());
                out.get_mut(parent.as_ref().unwrap()).unwrap().os_devices.push(dev);
            }
            _ => {}
        }
        let io = matches!(ty, "Bridge" | "PCIDev" | "OSDev");
        let nodeset = if io { None } else { attr(line, "nodeset").map(bits) };
        stack.push((indent, key, nodeset));
    }
    out
}

fn os_type(k: topology::model::OsDeviceKind) -> u32 {
    use topology::model::OsDeviceKind::*;
    match k {
        Storage => 0,
        Gpu => 1,
        Network => 2,
        OpenFabrics => 3,
        Dma => 4,
        CoProcessor => 5,
        Other => 99,
    }
}

fn got(tree: &[PciNode]) -> BTreeMap<String, Want> {
    tree.iter()
        .map(|n| {
            assert!(n.parent.is_none_or(|p| p < n.id), "{}: parent after child", n.pci);
            let what = match n.kind {
                NodeKind::HostBridge => "host",
                NodeKind::Device => "device",
                _ => "bridge",
            };
            let w = Want {
                parent: n.parent.map(|p| tree[p].pci.clone()),
                what,
                vendor_device: n.vendor_device.clone(),
                class: n.class_id,
                link: n.link_GBps.unwrap_or(0.0),
                numa: n.numa_nodes.clone(),
                os_devices: n.os_devices.iter().map(|d| (d.name.clone(), os_type(d.kind))).collect(),
            };
            (n.pci.clone(), w)
        })
        .collect()
}

#[test]
fn every_pci_object_of_every_export_as_its_lines_say() {
    for f in fixtures() {
        let text = std::fs::read_to_string(&f).unwrap();
        let want = read_lines(&text);
        let (tree, source) = discover::from_xml(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut have = got(&tree);
        assert_eq!(have.len(), want.len(), "{}: PCI objects", f.display());
        for (k, w) in &want {
            let mut h = have.remove(k).unwrap_or_else(|| panic!("{}: {k} not read", f.display()));
            assert!((h.link - w.link).abs() <= 1e-6 * w.link.max(1.0), "{}: {k} link {} vs {}", f.display(), h.link, w.link);
            h.link = w.link;
            assert_eq!(&h, w, "{}: {k}", f.display());
        }
        let host =
            text.lines().find_map(|l| l.contains("<info name=\"HostName\"").then(|| attr(l, "value").unwrap().to_string()));
        assert_eq!(source.hostname, host, "{}", f.display());
    }
}

/// The whole report (tree, devices, switches, locality, conformance) of hwloc's own v1 export
/// of each file equals that of the v2 file.
#[test]
fn hwloc_v1_exports_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let v1 = dir.path().join(f.file_name().unwrap());
        match discover::export_v1(&f, &v1) {
            Ok(()) => {}
            Err(e @ topology::TopologyError::NoHwloc(_)) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipped (no hwloc here, and not CI): {e}");
                return;
            }
            Err(e) => panic!("{}: {e}", f.display()),
        }
        assert!(!std::fs::read_to_string(&v1).unwrap().contains("version=\"2.0\""), "not a v1 export");
        for role in [None, Some(Role::Prefill), Some(Role::Decode)] {
            let req = RoleRequest::default();
            let report = |p: &Path| {
                let mut r = topology::discover(&Input::Xml(p.to_path_buf()), role.map(|r| (r, &req))).unwrap();
                r.source.file = None;
                serde_json::to_value(&r).unwrap()
            };
            assert_eq!(report(&f), report(&v1), "{} as {role:?}", f.display());
        }
    }
}
