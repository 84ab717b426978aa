//! Unit tests of the tree logic on hand-built PCI trees (no hwloc).

use super::hwlocxml::classify_ports;
use super::locality::{between, LocalityClass};
use super::model::{NodeKind, OsDevice, OsDeviceKind, PciNode};
use super::*;
use crate::error::Classified;

/// A node; `kind` Bridge for any PCI bridge (ports are named by `classify_ports`).
fn node(nodes: &mut Vec<PciNode>, parent: Option<usize>, kind: NodeKind, pci: &str, vd: &str, class: u16, numa: u32) -> usize {
    let id = nodes.len();
    nodes.push(PciNode {
        id,
        parent,
        kind,
        pci: pci.into(),
        vendor_device: (!vd.is_empty()).then(|| vd.to_string()),
        class_id: (class != 0).then_some(class),
        name: None,
        link_GBps: Some(31.507692),
        numa_nodes: vec![numa],
        os_devices: Vec::new(),
        synthetic: false,
    });
    id
}

/// Two sockets; socket 0 has host bridges A (root port -> switch -> 2 GPUs + NIC) and B (a
/// NIC on a root port, an Ethernet NIC); socket 1 has one GPU on a root port.
fn machine() -> Vec<PciNode> {
    let mut n = Vec::new();
    let hb_a = node(&mut n, None, NodeKind::HostBridge, "0000:00", "", 0, 0);
    let rp = node(&mut n, Some(hb_a), NodeKind::Bridge, "0000:00:01.0", "8086:2030", 0x0604, 0);
    let up = node(&mut n, Some(rp), NodeKind::Bridge, "0000:01:00.0", "10b5:8796", 0x0604, 0);
    let dev_under = |n: &mut Vec<PciNode>, port: &str, dev: &str, vd: &str, class: u16| {
        let d = node(n, Some(up), NodeKind::Bridge, port, "10b5:8796", 0x0604, 0);
        node(n, Some(d), NodeKind::Device, dev, vd, class, 0)
    };
    dev_under(&mut n, "0000:02:04.0", "0000:03:00.0", "10de:20b0", 0x0302);
    dev_under(&mut n, "0000:02:08.0", "0000:04:00.0", "1002:740f", 0x1200);
    let nic = dev_under(&mut n, "0000:02:0c.0", "0000:05:00.0", "15b3:101b", 0x0207);
    n[nic].os_devices.push(OsDevice { name: "mlx5_0".into(), kind: OsDeviceKind::OpenFabrics, subtype: None });
    n[nic].os_devices.push(OsDevice { name: "ib0".into(), kind: OsDeviceKind::Network, subtype: None });
    let hb_b = node(&mut n, None, NodeKind::HostBridge, "0000:40", "", 0, 0);
    let rp_b = node(&mut n, Some(hb_b), NodeKind::Bridge, "0000:40:01.0", "8086:2030", 0x0604, 0);
    let nic_b = node(&mut n, Some(rp_b), NodeKind::Device, "0000:41:00.0", "15b3:101b", 0x0207, 0);
    n[nic_b].os_devices.push(OsDevice { name: "mlx5_1".into(), kind: OsDeviceKind::OpenFabrics, subtype: None });
    let eth = node(&mut n, Some(hb_b), NodeKind::Device, "0000:40:03.0", "8086:1521", 0x0200, 0);
    n[eth].os_devices.push(OsDevice { name: "eno1".into(), kind: OsDeviceKind::Network, subtype: None });
    let hb_c = node(&mut n, None, NodeKind::HostBridge, "0000:80", "", 0, 1);
    let rp_c = node(&mut n, Some(hb_c), NodeKind::Bridge, "0000:80:01.0", "8086:2030", 0x0604, 1);
    node(&mut n, Some(rp_c), NodeKind::Device, "0000:81:00.0", "10de:20b0", 0x0302, 1);
    // Not GPUs: an NVSwitch (class 0x0680) and a BMC VGA chip.
    node(&mut n, Some(rp_c), NodeKind::Device, "0000:81:00.1", "10de:1ac2", 0x0680, 1);
    node(&mut n, Some(hb_c), NodeKind::Device, "0000:80:05.0", "1a03:2000", 0x0300, 1);
    classify_ports(&mut n);
    n
}

#[test]
fn ports_are_named_by_tree_position() {
    let n = machine();
    let kind = |pci: &str| n.iter().find(|x| x.pci == pci).unwrap().kind;
    assert_eq!(kind("0000:00:01.0"), NodeKind::RootPort);
    assert_eq!(kind("0000:01:00.0"), NodeKind::SwitchUpstream);
    assert_eq!(kind("0000:02:04.0"), NodeKind::SwitchDownstream);
    assert_eq!(kind("0000:40:01.0"), NodeKind::RootPort);
}

#[test]
fn finds_gpus_nics_and_switches() {
    let inv = Inventory::from_tree(machine());
    let gpus: Vec<(&str, GpuVendor)> = inv.gpus.iter().map(|g| (g.pci.as_str(), g.vendor)).collect();
    assert_eq!(
        gpus,
        vec![("0000:03:00.0", GpuVendor::Nvidia), ("0000:04:00.0", GpuVendor::Amd), ("0000:81:00.0", GpuVendor::Nvidia)]
    );
    let nics: Vec<(&str, NicKind)> = inv.nics.iter().map(|k| (k.name.as_str(), k.kind)).collect();
    assert_eq!(nics, vec![("mlx5_0", NicKind::Rdma), ("eno1", NicKind::Ethernet), ("mlx5_1", NicKind::Rdma)]);
    assert_eq!(inv.nics[0].netdev.as_deref(), Some("ib0"));
    assert_eq!(inv.switches.len(), 1);
    let s = &inv.switches[0];
    assert_eq!((s.pci.as_str(), s.level, s.children.len()), ("0000:01:00.0", 1, 3));
    assert_eq!(s.nics, vec!["mlx5_0".to_string()]);
}

#[test]
fn locality_classes() {
    let n = machine();
    let at = |pci: &str| n.iter().position(|x| x.pci == pci).unwrap();
    let class = |a: &str, b: &str| between(&n, at(a), at(b)).unwrap().0;
    assert_eq!(class("0000:03:00.0", "0000:04:00.0"), LocalityClass::PIX);
    assert_eq!(class("0000:03:00.0", "0000:05:00.0"), LocalityClass::PIX);
    assert_eq!(class("0000:41:00.0", "0000:40:03.0"), LocalityClass::PHB);
    assert_eq!(class("0000:03:00.0", "0000:41:00.0"), LocalityClass::NODE);
    assert_eq!(class("0000:03:00.0", "0000:81:00.0"), LocalityClass::SYS);
    // Symmetric, and the same device is no pair (hwloc's first_common_ancestor(x, x) trap).
    assert_eq!(class("0000:81:00.0", "0000:03:00.0"), LocalityClass::SYS);
    assert!(between(&n, at("0000:03:00.0"), at("0000:03:00.0")).is_none());
}

#[test]
fn pxb_through_two_switch_levels() {
    let mut n = Vec::new();
    let hb = node(&mut n, None, NodeKind::HostBridge, "0000:00", "", 0, 0);
    let rp = node(&mut n, Some(hb), NodeKind::Bridge, "0000:00:01.0", "8086:2030", 0x0604, 0);
    let top = node(&mut n, Some(rp), NodeKind::Bridge, "0000:01:00.0", "10b5:9797", 0x0604, 0);
    let mut gpus = Vec::new();
    for leaf in 0..2 {
        let d = node(&mut n, Some(top), NodeKind::Bridge, &format!("0000:02:0{leaf}.0"), "10b5:9797", 0x0604, 0);
        let up = node(&mut n, Some(d), NodeKind::Bridge, &format!("0000:1{leaf}:00.0"), "10b5:9781", 0x0604, 0);
        for g in 0..2 {
            let dd = node(&mut n, Some(up), NodeKind::Bridge, &format!("0000:2{leaf}:0{g}.0"), "10b5:9781", 0x0604, 0);
            gpus.push(node(&mut n, Some(dd), NodeKind::Device, &format!("0000:3{leaf}:0{g}.0"), "10de:1db8", 0x0302, 0));
        }
    }
    classify_ports(&mut n);
    assert_eq!(between(&n, gpus[0], gpus[1]).unwrap(), (LocalityClass::PIX, 1, 4));
    assert_eq!(between(&n, gpus[0], gpus[2]).unwrap(), (LocalityClass::PXB, 3, 8));
    let inv = Inventory::from_tree(n);
    let levels: Vec<usize> = inv.switches.iter().map(|s| s.level).collect();
    assert_eq!(levels, vec![1, 2, 2]);
}

#[test]
fn prefill_mapping_on_a_synthetic_server() {
    let inv = Inventory::from_tree(machine());
    // GPUs 0,1 and mlx5_0 share the switch: conforming with P=2, K=1.
    let req = RoleRequest { pp_prefill: Some(2), ib_cards: Some(1), ..Default::default() };
    let c = conformance::prefill(&inv, &req).unwrap();
    assert!(c.conforms, "{:?}", c.deviations().collect::<Vec<_>>());
    assert_eq!(c.proposed_nic_map, Some(vec![0, 0]));
    // All three GPUs and both RDMA NICs: GPU 2 is on the other socket; the spec map would pair
    // GPU 1 with mlx5_1 (NODE), the proposal keeps GPUs 0 and 1 on mlx5_0.
    let req = RoleRequest { pp_prefill: Some(3), ib_cards: Some(2), ..Default::default() };
    let c = conformance::prefill(&inv, &req).unwrap();
    assert!(!c.conforms);
    let failed: Vec<&str> = c.deviations().map(|d| d.check.as_str()).collect();
    assert!(
        failed.contains(&"one_switch_fabric") && failed.contains(&"gdr_locality[1]") && failed.contains(&"spec_nic_map_closest"),
        "{failed:?}"
    );
    assert_eq!(c.proposed_nic_map_arg.as_deref(), Some("0,0,1"));
    let e =
        conformance::prefill(&inv, &RoleRequest { gpus: Some(vec!["0000:99:00.0".into()]), ..Default::default() }).unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("0000:99:00.0"));
}

#[test]
fn decode_mapping_and_capacities() {
    let inv = Inventory::from_tree(machine());
    let req = RoleRequest { decode_index: 2, ..Default::default() };
    let c = conformance::decode(&inv, &req).unwrap();
    assert_eq!(c.ethernet_nic.as_deref(), Some("eno1"));
    let names: Vec<String> = c.capacities.iter().map(|x| x.segment.to_string()).collect();
    assert_eq!(names, vec!["GPU_D[2]_PCI", "Eth_NIC_D[2]_PCI", "IB_NIC_D[2]_PCI", "Uplink_D[2]_PCI"]);
    assert_eq!(c.capacities[0].nominal_Bps, Some(31_507_692_000.0));
    assert!(c.capacities[2].outside_spec && !c.capacities[0].outside_spec);
}
