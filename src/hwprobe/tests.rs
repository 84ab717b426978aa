use super::*;

fn dev(ordinal: usize, bus: &str, dmabuf: bool) -> CudaDevice {
    CudaDevice { ordinal, name: "NVIDIA H100".into(), pci: bus.parse().unwrap(), total_mem_bytes: 80 << 30, dmabuf }
}

fn nic(name: &str, node: u32) -> Nic {
    Nic { name: name.into(), numa_node: Some(node), active: Some(true), link_layer: Some(rdma::LinkLayer::Infiniband) }
}

fn bare() -> Inventory {
    Inventory {
        cuda: Err(gpu::Unavailable::NoLibrary),
        peers: vec![],
        amd: vec![],
        hip: crate::hwprobe::hip::HipInventory::absent(),
        rdma: Err(rdma::Unavailable::NoDevice(None)),
        peermem: false,
        cuda_links: Default::default(),
    }
}

/// NVML's answer for GPUs that meet inside one PCIe switch: every pair of `buses` is PIX.
pub(crate) fn switch_local(buses: &[&str]) -> peer::CudaLinks {
    let addrs: Vec<PciAddr> = buses.iter().map(|b| b.parse().unwrap()).collect();
    let mut links = peer::CudaLinks::default();
    for (i, &x) in addrs.iter().enumerate() {
        for &y in &addrs[i + 1..] {
            let facts = crate::gpu::nvml::PairFacts { p2p_nvlink: Some(false), links_a: vec![], ancestor: Some(10) };
            links.nvml.insert((x.min(y), x.max(y)), Ok(facts));
        }
    }
    links
}

fn reasons(c: &[Probe]) -> Vec<String> {
    c.iter().filter_map(|p| p.waiver()).map(|w| format!("{}: {}", w.probe, w.reason)).collect()
}

#[test]
fn a_machine_without_devices_waives_everything_with_reasons() {
    let c = catalogue(&bare(), Role::Prefill, None, None);
    assert!(c.iter().all(|p| p.status != Status::Applies));
    let r = reasons(&c);
    assert!(r.contains(&"cuda_p2p all GPUs: libcuda.so not found".to_string()), "{r:?}");
    assert!(r.contains(&"host_rdma all NICs: no RDMA device".to_string()), "{r:?}");
    // GPUDirect is waived once, for the first missing piece (CUDA), not twice.
    assert_eq!(c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).count(), 1);
}

#[test]
fn a_host_without_libibverbs_waives_rdma_naming_what_to_install() {
    // What rdma::list_devices gives when libibverbs.so.1 is not installed (rdma::loader).
    let missing = rdma::Unavailable::Library { library: "libibverbs.so.1".into(), detail: None };
    let inv = Inventory { rdma: Err(missing), ..bare() };
    let r = reasons(&catalogue(&inv, Role::Prefill, None, None));
    assert!(r.contains(&"host_rdma all NICs: libibverbs.so.1 not found: install rdma-core / libibverbs1".to_string()), "{r:?}");
}

#[test]
fn without_rocm_hip_probes_are_waived_naming_the_amd_gpus_found() {
    let inv =
        Inventory { amd: vec!["0000:c1:00.0".parse().unwrap()], hip: crate::hwprobe::hip::HipInventory::absent(), ..bare() };
    let c = catalogue(&inv, Role::Prefill, None, None);
    for kind in [ProbeKind::HipP2p, ProbeKind::HipD2h, ProbeKind::HipH2d, ProbeKind::HipStagedTcp] {
        let p: Vec<_> = c.iter().filter(|p| p.kind == kind).collect();
        assert_eq!(p.len(), 1, "{kind:?}");
        assert_eq!(
            p[0].status,
            Status::Waived { reason: "libamdhip64.so not found (AMD GPUs at 0000:c1:00.0: install the ROCm runtime)".into() }
        );
    }
    let bare_c = catalogue(&bare(), Role::Prefill, None, None);
    let r = reasons(&bare_c);
    assert!(r.contains(&"hip_p2p all GPUs: libamdhip64.so not found".to_string()), "{r:?}");
}

fn hip_dev(ordinal: usize, bus: &str) -> crate::gpu::hip::HipDevice {
    crate::gpu::hip::HipDevice { ordinal, name: "AMD Instinct MI250X".into(), pci: bus.parse().unwrap(), stream_wait_value: true }
}

/// Four GCDs: c1/c6 are the two GCDs of one package (xGMI), c9 and ce sit on PCIe only.
fn amd_host() -> Inventory {
    let a = |s: &str| s.parse::<PciAddr>().unwrap();
    let hip = crate::hwprobe::hip::HipInventory {
        // HIP's ordinals differ from the bus order.
        devices: Ok(vec![
            hip_dev(0, "0000:c9:00.0"),
            hip_dev(1, "0000:c1:00.0"),
            hip_dev(2, "0000:c6:00.0"),
            hip_dev(3, "0000:ce:00.0"),
        ]),
        peers: vec![(0, 1, true), (0, 2, true), (0, 3, true), (1, 2, true), (1, 3, true), (2, 3, true)],
        xgmi: [(a("0000:c1:00.0"), a("0000:c6:00.0"))].into_iter().collect(),
        registration: Ok(()),
    };
    Inventory { hip, rdma: Ok(vec![nic("mlx5_0", 0), nic("mlx5_1", 1)]), ..bare() }
}

#[test]
fn hip_peer_copies_over_xgmi_are_labelled_and_never_booked_to_pcie() {
    let c = catalogue(&amd_host(), Role::Prefill, None, None);
    let p2p: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::HipP2p).collect();
    assert_eq!(p2p.len(), 3, "GPU i -> i+1 over 4 GPUs in bus order");
    // Bus order c1, c6, c9, ce = HIP ordinals 1, 2, 0, 3.
    assert_eq!(p2p.iter().map(|p| p.gpus.clone()).collect::<Vec<_>>(), [vec![1, 2], vec![2, 0], vec![0, 3]]);
    assert!(p2p[0].target.contains("xGMI, outside the spec"), "{}", p2p[0].target);
    assert_eq!(p2p[0].path, None, "an xGMI copy measures no spec route");
    assert_eq!(p2p[1].path, Some(PathRef { kind: RouteKind::PrefillInterRank, src: 1, dst: 2 }));
    assert!(!p2p[1].target.contains("xGMI"));
    // The local run files the xGMI copy as a labelled loopback figure, the PCIe ones as routes.
    let plans = super::run::plans(&c);
    let solo: Vec<_> = plans.solo.iter().filter(|f| f.kind == crate::transport::TransportKind::HipP2p).collect();
    assert_eq!(solo.len(), 2);
    assert!(plans.loopback.iter().any(|f| f.label.contains("xGMI") && f.path.is_none()));
    // Every GPU gets its isolation copies, which calibrate GPU_P[i]_PCI.
    let d2h: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::HipD2h).collect();
    assert_eq!(d2h.len(), 4);
    assert_eq!(d2h[0].path, Some(PathRef { kind: RouteKind::PrefillGpuToHost, src: 0, dst: 0 }));
    assert_eq!(d2h[0].target, "gpu0 (hip1, 0000:c1:00.0) -> host");
    assert!(plans.sets.iter().any(|(n, g)| n == "all_hip_h2d" && g.len() == 4));
    // GPUDirect runs on the AMD GPUs when CUDA has none.
    let gdr: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).collect();
    assert_eq!(gdr.len(), 4, "{gdr:?}");
    assert!(gdr.iter().all(|p| p.status == Status::Applies && p.target.contains("(hip")));
    assert_eq!(gdr[0].gpus, vec![1]);
}

#[test]
fn hip_gpudirect_is_waived_when_memory_cannot_be_registered() {
    let mut inv = amd_host();
    inv.hip.registration = Err("GPU memory cannot be registered: libhsa-runtime64.so not found".into());
    let c = catalogue(&inv, Role::Prefill, None, None);
    let gdr: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).collect();
    assert!(gdr.iter().all(|p| matches!(&p.status, Status::Waived { reason } if reason.contains("libhsa-runtime64.so"))));
    assert!(!c.iter().any(|p| p.kind == ProbeKind::GpudirectRdma && p.target == "all GPUs"), "not waived for a missing libcuda");
}

#[test]
fn peer_pairs_and_single_gpus() {
    let inv = Inventory {
        cuda: Ok(vec![dev(0, "0000:1b:00.0", true), dev(1, "0000:3b:00.0", true), dev(2, "0000:5b:00.0", true)]),
        peers: vec![(0, 1, true), (0, 2, true), (1, 2, false)],
        cuda_links: switch_local(&["0000:1b:00.0", "0000:3b:00.0", "0000:5b:00.0"]),
        ..bare()
    };
    let c = catalogue(&inv, Role::Prefill, None, None);
    let p2p: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::CudaP2p).collect();
    assert_eq!(p2p.len(), 2);
    assert_eq!(p2p[0].status, Status::Applies);
    assert_eq!(p2p[0].path, Some(PathRef { kind: RouteKind::PrefillInterRank, src: 0, dst: 1 }));
    assert_eq!(p2p[1].status, Status::Waived { reason: "GPU 1 and 2 cannot access each other as peers".into() });
    assert_eq!(c.iter().filter(|p| p.kind == ProbeKind::CudaD2h && p.status == Status::Applies).count(), 3);
    let h2d = c.iter().find(|p| p.kind == ProbeKind::CudaH2d && p.gpus == [2]).unwrap();
    assert_eq!(h2d.path, Some(PathRef { kind: RouteKind::PrefillHostToGpu, src: 0, dst: 2 }));
    assert!(h2d.target.contains("0000:5b:00.0"));

    let one = Inventory { cuda: Ok(vec![dev(0, "0000:1b:00.0", true)]), ..bare() };
    let c = catalogue(&one, Role::Decode, None, None);
    let r = reasons(&c);
    assert!(r.iter().any(|s| s == "cuda_p2p gpu0 -> gpu1: needs 2 CUDA GPUs, found 1"), "{r:?}");
    assert_eq!(c.iter().find(|p| p.kind == ProbeKind::CudaD2h).unwrap().target, "gpu0 (cuda0, 0000:1b:00.0) -> host");
    let d2h = c.iter().find(|p| p.kind == ProbeKind::CudaD2h).unwrap();
    assert_eq!(d2h.path.unwrap().kind, RouteKind::DecodeGpuToHost);
}

#[test]
fn gpudirect_follows_the_nic_mapping_and_registration_support() {
    let nics = vec![nic("mlx5_0", 0), nic("mlx5_1", 1)];
    let inv = Inventory {
        cuda: Ok(vec![dev(0, "1b:00.0", true), dev(1, "3b:00.0", false), dev(2, "5b:00.0", true)]),
        peers: vec![(0, 1, true), (0, 2, true), (1, 2, true)],
        rdma: Ok(nics),
        ..bare()
    };
    let c = catalogue(&inv, Role::Prefill, None, None);
    let gd: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).collect();
    assert_eq!(gd.iter().map(|p| p.nic.clone().unwrap()).collect::<Vec<_>>(), ["mlx5_0", "mlx5_1", "mlx5_0"], "k = i mod 2");
    assert_eq!(gd[0].status, Status::Applies);
    assert!(matches!(&gd[1].status, Status::Waived { reason } if reason.contains("nvidia-peermem")));
    assert_eq!(gd[2].path, Some(PathRef { kind: RouteKind::PrefillToDecode, src: 2, dst: 0 }));
    // With peermem loaded the dmabuf-less GPU applies too.
    let c = catalogue(&Inventory { peermem: true, ..inv.clone() }, Role::Prefill, None, None);
    assert!(c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).all(|p| p.status == Status::Applies));
    // An explicit NIC map overrides the default; one naming a missing NIC is waived, not a crash.
    let c = catalogue(&inv, Role::Prefill, None, Some(&[1, 1, 5]));
    let gd: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).collect();
    assert_eq!(gd[0].nic.as_deref(), Some("mlx5_1"));
    assert!(matches!(&gd[2].status, Status::Waived { reason } if reason.contains("NIC 5")));
    assert_eq!(c.iter().filter(|p| p.kind == ProbeKind::HostRdma && p.status == Status::Applies).count(), 2);
}

#[test]
fn this_host_inventory_never_panics() {
    let inv = inventory();
    let c = catalogue(&inv, Role::Prefill, None, None);
    assert!(!c.is_empty());
    if let Err(why) = &inv.cuda {
        assert!(c.iter().any(|p| p.kind == ProbeKind::CudaP2p && p.status == Status::Waived { reason: why.to_string() }));
    }
}

#[test]
fn spec_order_follows_the_bus_not_cuda_ordinals() {
    // CUDA enumerates fastest-first; the spec numbers GPUs by bus (or an explicit order).
    let devs = vec![dev(0, "0000:b1:00.0", true), dev(1, "0000:1b:00.0", true)];
    let inv = Inventory { cuda: Ok(devs.clone()), peers: vec![(0, 1, true)], ..bare() };
    let c = catalogue(&inv, Role::Prefill, None, None);
    let p2p = c.iter().find(|p| p.kind == ProbeKind::CudaP2p).unwrap();
    assert_eq!(p2p.gpus, vec![1, 0], "spec GPU 0 is the one on bus 1b, CUDA ordinal 1");
    assert_eq!(p2p.target, "gpu0 (cuda1, 0000:1b:00.0) -> gpu1 (cuda0, 0000:b1:00.0)");
    let order: Vec<PciAddr> = vec!["b1:00.0".parse().unwrap(), "1b:00.0".parse().unwrap()];
    assert_eq!(spec_order(&devs, Some(&order)).unwrap()[0].ordinal, 0);
    let missing: Vec<PciAddr> = vec!["3b:00.0".parse().unwrap()];
    let e = spec_order(&devs, Some(&missing)).unwrap_err();
    assert!(e.contains("no CUDA GPU at 0000:3b:00.0"), "{e}");
    let c = catalogue(&inv, Role::Prefill, Some(&missing), None);
    assert!(c
        .iter()
        .filter(|p| p.kind != ProbeKind::HostRdma)
        .all(|p| matches!(&p.status, Status::Waived { reason } if reason.contains("no CUDA GPU at") || reason.contains("RDMA")
            || (p.kind.as_str().starts_with("hip") && reason == "libamdhip64.so not found"))));
}

#[test]
fn rdma_runs_stay_within_one_link_layer_and_receive_near_the_far_nic() {
    let roce = Nic { link_layer: Some(rdma::LinkLayer::Ethernet), ..nic("mlx5_1", 0) };
    let down = Nic { active: Some(false), ..nic("mlx5_3", 1) };
    let inv = Inventory {
        cuda: Ok(vec![dev(0, "1b:00.0", true), dev(1, "3b:00.0", true)]),
        peers: vec![(0, 1, true)],
        rdma: Ok(vec![nic("mlx5_0", 0), roce, nic("mlx5_2", 1), down]),
        ..bare()
    };
    let c = catalogue(&inv, Role::Prefill, None, None);
    let host: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::HostRdma).collect();
    let peer = |p: &Probe| p.peer.as_ref().map(|x| x.nic.clone());
    assert_eq!(peer(host[0]).as_deref(), Some("mlx5_2"), "IB pairs with IB, skipping the RoCE port");
    assert_eq!(peer(host[1]).as_deref(), Some("mlx5_1"), "the lone RoCE port loops back");
    assert_eq!(peer(host[2]).as_deref(), Some("mlx5_0"));
    assert!(matches!(&host[3].status, Status::Waived { reason } if reason.contains("not active")));
    // GPUs use the compute NICs (IB: mlx5_0, mlx5_2); each receives into the GPU nearest the far NIC.
    let gd: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).collect();
    assert_eq!(gd.iter().map(|p| p.nic.clone().unwrap()).collect::<Vec<_>>(), ["mlx5_0", "mlx5_2"]);
    assert_eq!(gd[0].peer, Some(nics::LocalPeer { nic: "mlx5_2".into(), gpu: Some(1) }));
    assert_eq!(gd[1].peer, Some(nics::LocalPeer { nic: "mlx5_0".into(), gpu: Some(0) }));
    // With one GPU, nothing maps onto the far NIC: receive into host memory.
    let one = Inventory { cuda: Ok(vec![dev(0, "1b:00.0", true)]), peers: vec![], ..inv };
    let c = catalogue(&one, Role::Prefill, None, None);
    let gd = c.iter().find(|p| p.kind == ProbeKind::GpudirectRdma).unwrap();
    assert_eq!(gd.peer, Some(nics::LocalPeer { nic: "mlx5_2".into(), gpu: None }));
}

/// An HGX-like host: GPUs 0-1 on NVSwitch, 1-2 across the root complex, 2-3 in one switch.
fn nvidia_host(links: peer::CudaLinks) -> Inventory {
    let buses = ["0000:19:00.0", "0000:3b:00.0", "0000:9b:00.0", "0000:bb:00.0"];
    Inventory {
        cuda: Ok(buses.iter().enumerate().map(|(i, b)| dev(i, b, true)).collect()),
        peers: vec![(0, 1, true), (0, 2, true), (0, 3, true), (1, 2, true), (1, 3, true), (2, 3, true)],
        cuda_links: links,
        ..bare()
    }
}

#[test]
fn cuda_peer_copies_over_nvlink_or_across_the_root_complex_are_labelled_and_never_booked_to_pcie() {
    use crate::gpu::nvml::{PairFacts, RemoteEnd};
    let a = |s: &str| s.parse::<PciAddr>().unwrap();
    let mut links = switch_local(&["0000:9b:00.0", "0000:bb:00.0"]);
    let nvswitch = PairFacts { p2p_nvlink: Some(true), links_a: vec![RemoteEnd::Switch; 18], ancestor: Some(40) };
    links.nvml.insert((a("19:00.0"), a("3b:00.0")), Ok(nvswitch));
    let phb = PairFacts { p2p_nvlink: Some(false), links_a: vec![], ancestor: Some(30) };
    links.nvml.insert((a("3b:00.0"), a("9b:00.0")), Ok(phb));
    let c = catalogue(&nvidia_host(links), Role::Prefill, None, None);
    let p2p: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::CudaP2p).collect();
    assert_eq!(p2p.len(), 3);
    assert!(p2p.iter().all(|p| p.status == Status::Applies), "all three are measured");
    assert!(p2p[0].target.ends_with("(NVLink, outside the spec)"), "{}", p2p[0].target);
    assert!(p2p[1].target.ends_with("(PCIe across the root complex (PHB), outside the spec)"), "{}", p2p[1].target);
    assert_eq!(p2p.iter().map(|p| p.path).collect::<Vec<_>>(), [None, None, path(RouteKind::PrefillInterRank, 2, 3)]);
    // The local run files the two as labelled loopback figures; only 2 -> 3 (and its reverse) books GPU_P.
    let plans = super::run::plans(&c);
    let solo: Vec<_> = plans.solo.iter().filter(|f| f.kind == crate::transport::TransportKind::CudaP2p).collect();
    assert_eq!(solo.len(), 1);
    assert_eq!(solo[0].path, path(RouteKind::PrefillInterRank, 2, 3));
    assert!(plans.loopback.iter().any(|f| f.label.contains("NVLink, outside the spec") && f.path.is_none()));
    assert!(plans.loopback.iter().any(|f| f.label.contains("root complex") && f.path.is_none()));
    // Every GPU's PCIe link is still calibrated from its isolation copies.
    for kind in [ProbeKind::CudaD2h, ProbeKind::CudaH2d] {
        assert_eq!(c.iter().filter(|p| p.kind == kind && p.status == Status::Applies && p.path.is_some()).count(), 4);
    }
}

#[test]
fn a_cuda_host_without_nvml_waives_path_1_unless_a_topology_file_says() {
    let missing = crate::gpu::nvml::NvmlError::Library { library: "libnvidia-ml.so.1" }.to_string();
    let c =
        catalogue(&nvidia_host(peer::CudaLinks { nvml_missing: Some(missing), ..Default::default() }), Role::Prefill, None, None);
    let p2p: Vec<_> = c.iter().filter(|p| p.kind == ProbeKind::CudaP2p).collect();
    assert!(p2p.iter().all(|p| matches!(&p.status, Status::Waived { reason }
        if reason.contains("libnvidia-ml.so.1 not found") && reason.contains("--nvidia-smi-topo"))));
    // The isolation copies still run: they need no NVML.
    assert_eq!(c.iter().filter(|p| p.kind == ProbeKind::CudaD2h && p.status == Status::Applies).count(), 4);
}
