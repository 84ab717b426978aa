//! The HPE Cray EX235a node in ../shared/topo-fixtures (8 MI250X GCDs, 4 Slingshot Cassini
//! NICs, hwloc 2.8): discovery's AMD role mapping, locality classes and NIC map against facts
//! read here from the XML itself (roxmltree over the raw export, not linkcal's reader):
//! which PCI functions are GCDs and NICs, their host bridges and NUMA nodes.

use std::path::PathBuf;

use linkcal::topology::{self, GpuVendor, Input, LocalityClass, NicKind, Role, RoleRequest};

fn fixture() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/topo-fixtures/LLNL_mpibind_eas-tioga.xml");
    assert!(p.exists(), "fixture {} missing: ../shared must sit beside the checkout", p.display());
    p
}

/// A PCI function of the raw XML: bus id, host bridge (its depth-0 bridge's gp_index), NUMA
/// node (the os_index of the NUMANode child of its nearest ancestor that has one) and, for
/// NICs, the network OS device's name.
#[derive(Debug, Clone)]
struct Raw {
    pci: String,
    host_bridge: String,
    numa: u32,
    osdev: Option<String>,
}

fn raw(ids: &str) -> Vec<Raw> {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let opt = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&text, opt).unwrap();
    let mut out: Vec<Raw> = doc
        .descendants()
        .filter(|n| n.attribute("type") == Some("PCIDev") && n.attribute("pci_type").is_some_and(|t| t.contains(ids)))
        .map(|n| {
            let hb = n.ancestors().find(|a| a.attribute("type") == Some("Bridge") && a.attribute("depth") == Some("0")).unwrap();
            let numa = n
                .ancestors()
                .find_map(|a| a.children().find(|c| c.attribute("type") == Some("NUMANode")))
                .and_then(|m| m.attribute("os_index")?.parse().ok())
                .unwrap();
            let osdev =
                n.children().find(|c| c.attribute("type") == Some("OSDev")).and_then(|c| c.attribute("name")).map(str::to_string);
            Raw {
                pci: n.attribute("pci_busid").unwrap().to_string(),
                host_bridge: hb.attribute("gp_index").unwrap().into(),
                numa,
                osdev,
            }
        })
        .collect();
    out.sort_by(|a, b| a.pci.cmp(&b.pci));
    out
}

/// The class the XML implies for a GCD and a NIC with no switch between them.
fn expected_class(g: &Raw, n: &Raw) -> LocalityClass {
    if g.host_bridge == n.host_bridge {
        LocalityClass::PHB
    } else if g.numa == n.numa {
        LocalityClass::NODE
    } else {
        LocalityClass::SYS
    }
}

#[test]
fn mi250x_gcds_map_onto_the_prefill_role_in_bus_order() {
    let gcds = raw("[1002:7408]");
    let nics = raw("[17db:0501]");
    assert_eq!((gcds.len(), nics.len()), (8, 4), "the README's 8 GCDs and 4 Cassini NICs");
    let r = topology::discover(&Input::Xml(fixture()), Some((Role::Prefill, &RoleRequest::default()))).unwrap();
    // Every GCD is an AMD GPU, in bus order, with the XML's NUMA node.
    assert_eq!(r.gpus.iter().map(|g| g.pci.clone()).collect::<Vec<_>>(), gcds.iter().map(|g| g.pci.clone()).collect::<Vec<_>>());
    for (g, x) in r.gpus.iter().zip(&gcds) {
        assert_eq!(g.vendor, GpuVendor::Amd, "{}", g.pci);
        assert_eq!(g.numa, Some(x.numa), "NUMA of {}", g.pci);
        assert!(g.os_devices.contains(x.osdev.as_ref().unwrap()), "{} lacks its RSMI device", g.pci);
    }
    let c = r.conformance.as_ref().unwrap();
    assert_eq!(c.gpus, gcds.iter().map(|g| g.pci.clone()).collect::<Vec<_>>(), "GPU i = the i-th GCD by bus id");
    // Cassini exposes a netdev (hsiN) and no verbs device: an Ethernet NIC to linkcal, so the
    // prefill role has no RDMA NIC and no NIC map to propose.
    for n in &nics {
        let found = r.nics.iter().find(|k| k.pci == n.pci).unwrap();
        assert_eq!((found.kind, Some(found.name.clone())), (NicKind::Ethernet, n.osdev.clone()));
    }
    assert!(c.rdma_nics.is_empty());
    assert_eq!(c.proposed_nic_map_arg, None);
    assert!(!c.conforms);
    // Neighbouring GCDs share no switch: Path 1 crosses the CPU, as the XML's bridges say.
    for i in 0..gcds.len() - 1 {
        let (a, b) = (&gcds[i], &gcds[i + 1]);
        let want = if a.numa == b.numa { LocalityClass::NODE } else { LocalityClass::SYS };
        let check = c.checks.iter().find(|ch| ch.check == format!("p2p_locality[{i}]")).unwrap();
        assert!(!check.ok && check.detail.ends_with(want.as_str()), "{i}: {}", check.detail);
    }
}

#[test]
fn mi250x_gcd_nic_locality_follows_the_host_bridges() {
    let (gcds, nics) = (raw("[1002:7408]"), raw("[17db:0501]"));
    let r = topology::discover(&Input::Xml(fixture()), None).unwrap();
    let class = |a: &str, b: &str| r.locality.iter().find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a)).map(|l| l.class);
    let mut beside = 0;
    for g in &gcds {
        for n in &nics {
            let name = n.osdev.as_deref().unwrap();
            assert_eq!(class(&g.pci, name), Some(expected_class(g, n)), "{} - {name}", g.pci);
            beside += usize::from(g.host_bridge == n.host_bridge);
        }
    }
    // Each NIC sits on its own root port beside exactly one GCD (the README's description).
    assert_eq!(beside, nics.len());
    // And the switches the XML holds carry no GCD and no Cassini NIC.
    for s in &r.switches {
        assert!(s.gpus.is_empty(), "switch {} has GPUs", s.pci);
        assert!(!s.nics.iter().any(|n| n.starts_with("hsi")), "switch {} has a Cassini NIC", s.pci);
    }
}
