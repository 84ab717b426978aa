//! Hand-derived path lists for the shapes the foundation issue names.

use super::*;

fn show(r: &Route) -> String {
    let hops: Vec<String> = r.segments.iter().map(|h| h.to_string()).collect();
    format!("{} {}->{}: {}", r.path.kind, r.path.src, r.path.dst, hops.join(", "))
}

fn spec(p: usize, d: usize, k: usize) -> RouteSet {
    RouteSet::spec(&RackShape::new(p, d, k).unwrap(), None).unwrap()
}

#[test]
fn shape_3_2_1_full_list() {
    let got: Vec<String> = spec(3, 2, 1).routes.iter().map(show).collect();
    let want = [
        "prefill_inter_rank 0->1: GPU_P[0]_PCI up, GPU_P[1]_PCI down",
        "prefill_inter_rank 1->2: GPU_P[1]_PCI up, GPU_P[2]_PCI down",
        "prefill_to_decode 0->0: GPU_P[0]_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[0] down, GPU_D[0]_PCI down",
        "prefill_to_decode 1->0: GPU_P[1]_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[0] down, GPU_D[0]_PCI down",
        "prefill_to_decode 1->1: GPU_P[1]_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[1] down, GPU_D[1]_PCI down",
        "prefill_to_decode 2->1: GPU_P[2]_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[1] down, GPU_D[1]_PCI down",
        "decode_inter_rank 0->1: GPU_D[0]_PCI up, Eth_NIC_D[0]_PCI down, Eth_Cable_D[0] up, Eth_Cable_D[1] down, Eth_NIC_D[1]_PCI up, GPU_D[1]_PCI down",
    ];
    assert_eq!(got, want);
    let shares: Vec<f64> = spec(3, 2, 1).of_kind(RouteKind::PrefillToDecode).map(|(_, r)| r.kv_share.unwrap()).collect();
    assert_eq!(shares, vec![1.0, 0.5, 0.5, 1.0]);
}

#[test]
fn shape_1_1_1_is_one_handoff() {
    let got: Vec<String> = spec(1, 1, 1).routes.iter().map(show).collect();
    assert_eq!(
        got,
        ["prefill_to_decode 0->0: GPU_P[0]_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[0] down, GPU_D[0]_PCI down"]
    );
    assert!(contention(&spec(1, 1, 1).routes).is_empty());
}

#[test]
fn shape_4_4_4_one_nic_each() {
    let rs = spec(4, 4, 4);
    assert_eq!(rs.of_kind(RouteKind::PrefillInterRank).count(), 3);
    assert_eq!(rs.of_kind(RouteKind::DecodeInterRank).count(), 3);
    let p2: Vec<String> = rs.of_kind(RouteKind::PrefillToDecode).map(|(_, r)| show(r)).collect();
    assert_eq!(
        p2[3],
        "prefill_to_decode 3->3: GPU_P[3]_PCI up, IB_NIC_P[3]_PCI down, IB_Cable_P[3] up, IB_Cable_D[3] down, GPU_D[3]_PCI down"
    );
    assert_eq!(show(&rs.routes[2]), "prefill_inter_rank 2->3: GPU_P[2]_PCI up, GPU_P[3]_PCI down");
    // No NIC is shared: contention only where Path 1 and Path 2 leave the same GPU and where
    // Path 2 and Path 3 enter the same decode GPU.
    let c = contention(&rs.routes);
    let names: Vec<String> = c.iter().map(|c| format!("{} {} {:?}", c.segment, c.dir, c.paths)).collect();
    assert_eq!(
        names,
        [
            "GPU_P[0]_PCI up [0, 3]",
            "GPU_P[1]_PCI up [1, 4]",
            "GPU_P[2]_PCI up [2, 5]",
            "GPU_D[1]_PCI down [4, 7]",
            "GPU_D[2]_PCI down [5, 8]",
            "GPU_D[3]_PCI down [6, 9]",
        ]
    );
}

#[test]
fn shape_8_8_4_nic_sharing() {
    let rs = spec(8, 8, 4);
    assert_eq!(rs.routes.len(), 7 + 8 + 7);
    let p2: Vec<&Route> = rs.of_kind(RouteKind::PrefillToDecode).map(|(_, r)| r).collect();
    assert_eq!(
        show(p2[5]),
        "prefill_to_decode 5->5: GPU_P[5]_PCI up, IB_NIC_P[1]_PCI down, IB_Cable_P[1] up, IB_Cable_D[5] down, GPU_D[5]_PCI down"
    );
    assert_eq!(p2.iter().map(|r| r.nic.unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(
        show(&rs.routes[7 + 8 + 6]),
        "decode_inter_rank 6->7: GPU_D[6]_PCI up, Eth_NIC_D[6]_PCI down, Eth_Cable_D[6] up, Eth_Cable_D[7] down, Eth_NIC_D[7]_PCI up, GPU_D[7]_PCI down"
    );
    let c = contention(&rs.routes);
    assert_eq!(c.len(), 7 + 8 + 7);
    let nic1 = c.iter().find(|c| c.segment.to_string() == "IB_NIC_P[1]_PCI").unwrap();
    assert_eq!((nic1.dir, nic1.paths.clone()), (Dir::Down, vec![8, 12]));
    let cable1 = c.iter().find(|c| c.segment.to_string() == "IB_Cable_P[1]").unwrap();
    assert_eq!((cable1.dir, cable1.paths.clone()), (Dir::Up, vec![8, 12]));
}

#[test]
fn explicit_nic_map_replaces_modulo() {
    let shape = RackShape::with_nic_map(4, 4, 2, Some(vec![1, 1, 0, 0])).unwrap();
    let rs = RouteSet::spec(&shape, None).unwrap();
    let nics: Vec<usize> = rs.of_kind(RouteKind::PrefillToDecode).map(|(_, r)| r.nic.unwrap()).collect();
    assert_eq!(nics, vec![1, 1, 0, 0]);
}

#[test]
fn layer_split_and_handoff_shares() {
    assert_eq!(stage_ranges(61, 4), vec![(0, 16), (16, 31), (31, 46), (46, 61)]);
    assert_eq!(stage_ranges(32, 3), vec![(0, 11), (11, 22), (22, 32)]);
    // 32 layers: prefill 3 stages [0,11) [11,22) [22,32); decode 2 stages [0,16) [16,32).
    let shape = RackShape::new(3, 2, 1).unwrap();
    let pairs = handoff_pairs(&shape, Some(32)).unwrap();
    assert_eq!(pairs, vec![(0, 0, 1.0), (1, 0, 5.0 / 11.0), (1, 1, 6.0 / 11.0), (2, 1, 1.0)]);
    assert!(handoff_pairs(&RackShape::new(4, 1, 1).unwrap(), Some(3)).is_err());
}

#[test]
fn hardware_hops_mark_outside_spec_links() {
    let opt = HopOptions { decode_ib_nic: true, staged_in_host: true };
    let r = Route::prefill_to_decode(1, 0, 1, opt);
    assert_eq!(
        show(&r),
        "prefill_to_decode 1->1: GPU_P[1]_PCI up, Uplink_P_PCI down, Uplink_P_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[1] down, IB_NIC_D[1]_PCI up, Uplink_D[1]_PCI down, Uplink_D[1]_PCI up, GPU_D[1]_PCI down"
    );
    let outside: Vec<bool> = r.segments.iter().map(|h| h.id.outside_spec()).collect();
    assert_eq!(outside.iter().filter(|&&o| o).count(), 5);
    let rs = RouteSet::build(&RackShape::new(2, 2, 1).unwrap(), None, HopOptions::default(), true).unwrap();
    let iso: Vec<String> = rs.routes.iter().filter(|r| !r.path.kind.is_spec_path()).map(show).collect();
    assert_eq!(iso.len(), 4 + 4 + 2);
    assert_eq!(iso[0], "prefill_gpu_to_host 0->0: GPU_P[0]_PCI up, Uplink_P_PCI down");
    assert_eq!(
        iso.last().unwrap(),
        "host_rdma 0->1: Uplink_P_PCI up, IB_NIC_P[0]_PCI down, IB_Cable_P[0] up, IB_Cable_D[1] down, Uplink_D[1]_PCI down"
    );
}
