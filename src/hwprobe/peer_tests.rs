use super::*;
use crate::topology::{Input, PeerFabric};

fn a(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn pair(link: Result<PeerLink, String>, peer_ok: bool) -> Probe {
    pair_probe(Pair {
        kind: ProbeKind::CudaP2p,
        index: 2,
        labels: ("gpu2 (cuda2, 0000:5b:00.0)".into(), "gpu3 (cuda3, 0000:9b:00.0)".into()),
        ordinals: (2, 3),
        peer_ok,
        link,
    })
}

#[test]
fn only_switch_local_pcie_is_booked_to_path_1() {
    assert_eq!(booking(PeerLink::Pcie(Some(LocalityClass::PIX))), Booking::Spec);
    assert_eq!(booking(PeerLink::Pcie(Some(LocalityClass::PXB))), Booking::Spec);
    assert_eq!(booking(PeerLink::Pcie(None)), Booking::Spec, "no tree: the spec's assumption stands");
    assert_eq!(booking(PeerLink::Fabric(PeerFabric::Nvlink)), Booking::Outside("NVLink, outside the spec".into()));
    assert_eq!(booking(PeerLink::Fabric(PeerFabric::Xgmi)), Booking::Outside("xGMI, outside the spec".into()));
    for c in [LocalityClass::PHB, LocalityClass::NODE, LocalityClass::SYS] {
        assert_eq!(
            booking(PeerLink::Pcie(Some(c))),
            Booking::Outside(format!("PCIe across the root complex ({c}), outside the spec"))
        );
    }
}

#[test]
fn nvml_levels_map_as_nvidia_smi_prints_them() {
    let levels = [(0, "PIX"), (10, "PIX"), (20, "PXB"), (30, "PHB"), (40, "NODE"), (50, "SYS")];
    for (level, class) in levels {
        assert_eq!(nvml_class(level).map(|c| c.as_str()), Some(class), "level {level}");
    }
    assert_eq!(nvml_class(35), None);
}

#[test]
fn nvml_facts_decide_nvlink_direct_or_through_nvswitch_else_the_pcie_class() {
    let b = a("0000:9b:00.0");
    // HGX H100: every link ends at an NVSwitch; NVML reports NVLink P2P OK.
    let hgx = PairFacts { p2p_nvlink: Some(true), links_a: vec![RemoteEnd::Switch; 18], ancestor: Some(50) };
    assert_eq!(from_nvml(b, &hgx), Ok(PeerLink::Fabric(PeerFabric::Nvlink)), "SYS over PCIe, but the copy takes NVLink");
    // A bridged pair (NVLink bridge): a link ends at b even where the P2P status call failed.
    let bridge = PairFacts { p2p_nvlink: None, links_a: vec![RemoteEnd::Device(b); 4], ancestor: Some(30) };
    assert_eq!(from_nvml(b, &bridge), Ok(PeerLink::Fabric(PeerFabric::Nvlink)));
    // The same GPU's bridge goes to another GPU: this pair is PCIe, in one switch.
    let other = PairFacts { p2p_nvlink: Some(false), links_a: vec![RemoteEnd::Device(a("0000:1b:00.0"))], ancestor: Some(10) };
    assert_eq!(from_nvml(b, &other), Ok(PeerLink::Pcie(Some(LocalityClass::PIX))));
    // A two-switch PCIe server: the pair meets at the host bridge.
    let two = PairFacts { p2p_nvlink: Some(false), links_a: vec![], ancestor: Some(30) };
    assert_eq!(from_nvml(b, &two), Ok(PeerLink::Pcie(Some(LocalityClass::PHB))));
    // Links up, P2P status unknown, no link to b: no guess.
    let unsure = PairFacts { p2p_nvlink: None, links_a: vec![RemoteEnd::Switch], ancestor: Some(10) };
    assert!(from_nvml(b, &unsure).unwrap_err().contains("active NVLinks"));
    let blank = PairFacts { p2p_nvlink: Some(false), links_a: vec![], ancestor: None };
    assert!(from_nvml(b, &blank).unwrap_err().contains("no common PCIe ancestor"));
}

#[test]
fn pair_probes_book_label_or_waive() {
    let spec = pair(Ok(PeerLink::Pcie(Some(LocalityClass::PXB))), true);
    assert_eq!(spec.status, Status::Applies);
    assert_eq!(spec.path, path(RouteKind::PrefillInterRank, 2, 3));
    assert_eq!(spec.target, "gpu2 (cuda2, 0000:5b:00.0) -> gpu3 (cuda3, 0000:9b:00.0)");
    let nv = pair(Ok(PeerLink::Fabric(PeerFabric::Nvlink)), true);
    assert_eq!((nv.status.clone(), nv.path), (Status::Applies, None), "measured, filed outside the spec");
    assert_eq!(nv.target, "gpu2 (cuda2, 0000:5b:00.0) -> gpu3 (cuda3, 0000:9b:00.0) (NVLink, outside the spec)");
    let phb = pair(Ok(PeerLink::Pcie(Some(LocalityClass::PHB))), true);
    assert!(phb.target.ends_with("(PCIe across the root complex (PHB), outside the spec)") && phb.path.is_none());
    let no_peer = pair(Ok(PeerLink::Fabric(PeerFabric::Nvlink)), false);
    assert_eq!(no_peer.status, Status::Waived { reason: "GPU 2 and 3 cannot access each other as peers".into() });
    let unknown = pair(Err("why".into()), true);
    assert_eq!(unknown.status, Status::Waived { reason: "why".into() });
}

#[test]
fn without_nvml_or_a_topology_file_the_pair_is_waived_saying_what_to_give() {
    let missing = nvml::NvmlError::Library { library: nvml::CANDIDATES[0] }.to_string();
    let links = CudaLinks { nvml_missing: Some(missing), ..CudaLinks::default() };
    let why = links.link(a("1b:00.0"), a("3b:00.0")).unwrap_err();
    assert_eq!(
        why,
        "cannot tell NVLink from PCIe for this pair (libnvidia-ml.so.1 not found (NVML ships with the NVIDIA driver)); give \
         --nvidia-smi-topo with the saved output of `nvidia-smi topo -m`, or --nccl-topo with an NCCL topology dump of this host"
    );
    // A topology file fills in; NVML, when it answers, wins over the file.
    let mut links = links;
    links.topology.insert((a("1b:00.0"), a("3b:00.0")), PeerLink::Fabric(PeerFabric::Nvlink));
    assert_eq!(links.link(a("3b:00.0"), a("1b:00.0")), Ok(PeerLink::Fabric(PeerFabric::Nvlink)), "either order");
    let facts = PairFacts { p2p_nvlink: Some(false), links_a: vec![], ancestor: Some(20) };
    links.nvml_missing = None;
    links.nvml.insert((a("1b:00.0"), a("3b:00.0")), Ok(facts));
    assert_eq!(links.link(a("1b:00.0"), a("3b:00.0")), Ok(PeerLink::Pcie(Some(LocalityClass::PXB))));
    // NVML up but failing on this pair: its error is named, then the file answers.
    links.nvml.insert((a("1b:00.0"), a("3b:00.0")), Err("nvmlDeviceGetHandleByPciBusId_v2 failed: Not Found".into()));
    assert_eq!(links.link(a("1b:00.0"), a("3b:00.0")), Ok(PeerLink::Fabric(PeerFabric::Nvlink)));
    links.topology.clear();
    assert!(links.link(a("1b:00.0"), a("3b:00.0")).unwrap_err().contains("Not Found"));
}

const LEGEND: &str = "\nLegend:\n\n  X    = Self\n  NV#  = Connection traversing a bonded set of # NVLinks\n";

fn smi(text: &str) -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("topo.txt");
    std::fs::write(&f, text).unwrap();
    crate::topology::load(&Input::NvidiaSmi(f)).unwrap().inv
}

#[test]
fn nvidia_smi_topo_names_gpus_in_bus_order_with_nvlink_and_pcie_classes() {
    // GPU0-1 bridged by NVLink, GPU2-3 in one switch, the halves across the sockets.
    let m = smi(&format!(
        "\tGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\tNUMA Affinity\n\
         GPU0\t X \tNV4\tSYS\tSYS\t0-31\t0\nGPU1\tNV4\t X \tSYS\tSYS\t0-31\t0\n\
         GPU2\tSYS\tSYS\t X \tPIX\t32-63\t1\nGPU3\tSYS\tSYS\tPIX\t X \t32-63\t1\n{LEGEND}"
    ));
    // CUDA's addresses, given out of bus order: GPUn is the n-th by bus id.
    let gpus = [a("0000:b1:00.0"), a("0000:1b:00.0"), a("0000:3b:00.0"), a("0000:86:00.0")];
    let links = from_topology(&m, &gpus);
    assert_eq!(links.len(), 6, "{links:?}");
    assert_eq!(links[&(a("1b:00.0"), a("3b:00.0"))], PeerLink::Fabric(PeerFabric::Nvlink));
    assert_eq!(links[&(a("86:00.0"), a("b1:00.0"))], PeerLink::Pcie(Some(LocalityClass::PIX)));
    assert_eq!(links[&(a("3b:00.0"), a("86:00.0"))], PeerLink::Pcie(Some(LocalityClass::SYS)));
    // Fewer CUDA GPUs than the file names: unmatched names are skipped, not misassigned.
    assert_eq!(from_topology(&m, &gpus[..2]).len(), 1);
}

#[test]
fn a_dgx2_pcie_tree_books_only_pairs_under_one_switch() {
    let f = std::path::Path::new("../shared/topo-fixtures/open-mpi_hwloc_nvidiaDGX2.xml");
    let topo = crate::topology::load(&Input::Xml(f.into())).unwrap().inv;
    let gpus: Vec<PciAddr> = topo.gpus.iter().map(|g| g.pci.parse().unwrap()).collect();
    let links = from_topology(&topo, &gpus);
    let mut by_bus = gpus.clone();
    by_bus.sort();
    // Two GPUs per leaf switch, four per top switch: i -> i+1 in bus order alternates
    // switch-local pairs with pairs whose class the tree decides; every pair is known.
    let bookings: Vec<Booking> = by_bus.windows(2).map(|w| booking(links[&(w[0], w[1])])).collect();
    assert_eq!(bookings.len(), 15);
    assert_eq!(bookings[0], Booking::Spec, "GPUs 0 and 1 share a leaf switch");
    let across: Vec<usize> = bookings.iter().enumerate().filter(|(_, b)| **b != Booking::Spec).map(|(i, _)| i).collect();
    assert!(!across.is_empty(), "pairs across the root complex are not switch-local: {bookings:?}");
    for i in &across {
        let (x, y) = (by_bus[*i], by_bus[*i + 1]);
        let (gx, gy) = (
            topo.gpus.iter().find(|g| g.pci.parse::<PciAddr>().unwrap() == x).unwrap(),
            topo.gpus.iter().find(|g| g.pci.parse::<PciAddr>().unwrap() == y).unwrap(),
        );
        let class = locality::between(&topo.tree, gx.node, gy.node).unwrap().0;
        assert!(!class.in_switch_fabric(), "pair {i} booked outside only when the tree says so ({class})");
    }
}
