use super::*;
use crate::calibrate::{calibrate, Inputs};
use crate::sim::synth::{random_truth, solo_experiments, synthesize, SynthConfig};
use crate::spec::{HopOptions, RackShape, RouteSet};

fn cal() -> Calibration {
    let shape = RackShape::new(4, 4, 2).unwrap();
    let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: random_truth(&shape, 5, 1e8, 1e9),
        hops: HopOptions::default(),
        sizes: vec![1 << 16, 1 << 18, 1 << 20, 4 << 20],
        alpha_s: 2e-5,
        noise: 0.002,
        samples: 5,
        seed: 5,
    };
    let res = synthesize(&cfg, &solo_experiments(&set)).unwrap();
    calibrate(&Inputs { results: vec![("x".into(), res)], ..Default::default() }).unwrap()
}

fn field(text: &str, key: &str) -> f64 {
    let line = text.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
    let v = line.split(':').nth(1).unwrap().split('#').next().unwrap().trim().trim_matches(['[', ']', ' ']);
    v.parse().unwrap()
}

fn slowest(c: &Calibration, kind: RouteKind) -> f64 {
    c.paths.iter().filter(|p| p.path.kind == kind).filter_map(|p| p.capacity_Bps).fold(f64::INFINITY, f64::min)
}

#[test]
fn astra_carries_the_sustained_rate_in_gib_and_half_alpha() {
    // Path-1 models with known rates and fixed costs: the slowest rate is 3e8 B/s, and the
    // median fixed cost is 4 us (one outlier of 1 ms does not move it).
    let mut c = cal();
    let path1: Vec<&mut PathModel> = c.paths.iter_mut().filter(|p| p.path.kind == RouteKind::PrefillInterRank).collect();
    assert!(path1.len() >= 3, "a median needs three Path-1 routes");
    for (k, p) in path1.into_iter().enumerate() {
        p.capacity_Bps = Some(if k == 1 { 3e8 } else { 5e8 });
        p.alpha_s = Some(if k == 0 { 1e-3 } else { 4e-6 });
    }
    let a = astra_sim(&c).unwrap();
    assert!(a.contains("backend: congestion_unaware") && a.contains("Dropped:") && a.contains("npus_count: [ 4 ]"));
    let gib = (1u64 << 30) as f64;
    assert!((field(&a, "bandwidth") - 3e8 / gib).abs() < 1e-6, "{a}");
    assert!((field(&a, "latency") - 2000.0).abs() < 1e-3, "Switch latency is charged twice: {a}");
    let mut one = c.clone();
    one.shape = RackShape::new(1, 4, 1).unwrap();
    assert!(astra_sim(&one).unwrap_err().to_string().contains("at least 2 NPUs"));
}

#[test]
fn yaml_floats_have_a_dot_and_a_signed_exponent() {
    assert_eq!(yaml_float(1.07606e8), "1.076060e+08");
    assert_eq!(yaml_float(2.5e-5), "2.500000e-05");
    assert_eq!(yaml_float(0.0), "0.000000e+00");
}

#[test]
fn aiconfigurator_replaces_only_the_node_block() {
    let c = cal();
    let base =
        "# c\ndata_dir: data/x\ngpu:\n  mem_bw: 1\nnode:\n  num_gpus_per_node: 8\n  inter_node_bw: 5\nmisc:\n  other_mem: 3\n";
    let files = aiconfigurator(&c, "x.yaml", base).unwrap();
    assert_eq!(files.len(), 2);
    let p = &files[0].text;
    assert!(p.contains("data_dir: data/x") && p.contains("  mem_bw: 1") && p.contains("  other_mem: 3"));
    assert_eq!(p.lines().filter(|l| l.starts_with("node:")).count(), 1, "one node block");
    assert!(!p.contains("num_gpus_per_node: 8") && p.contains("num_gpus_per_node: 4"));
    assert!((field(p, "inter_node_bw") / slowest(&c, RouteKind::PrefillToDecode) - 1.0).abs() < 1e-5);
    assert!((field(p, "intra_node_bw") / slowest(&c, RouteKind::PrefillInterRank) - 1.0).abs() < 1e-5);
    let d = &files[1].text;
    assert!((field(d, "inter_node_bw") / slowest(&c, RouteKind::DecodeInterRank) - 1.0).abs() < 1e-5);
    assert!(d.contains("num_gpus_per_node: 1") && d.contains("Dropped:"));
}

#[test]
fn vidur_writes_a_dense_sweep_without_comments() {
    let c = cal();
    let files = vidur_send_recv(&c, VidurNode::Decode).unwrap();
    let csv = &files[0].text;
    assert!(!csv.contains('#'));
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), SWEEP_SIZES);
    assert!(rows.iter().all(|r| r.len() == 12 && r[10] == "1" && r[9] == "send_recv"));
    let sizes: Vec<u64> = rows.iter().map(|r| r[8].parse().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!((sizes[0], *sizes.last().unwrap()), (1 << 16, 4 << 20), "the measured range");
    // The median at the largest size is the median over Path-3 routes of alpha + size / beta.
    let mut t: Vec<f64> = c
        .paths
        .iter()
        .filter(|p| p.path.kind == RouteKind::DecodeInterRank)
        .map(|p| {
            let q = p.pieces.last().unwrap();
            (q.alpha_s + (4u64 << 20) as f64 / q.beta_Bps) * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    let med = if t.len() % 2 == 1 { t[t.len() / 2] } else { 0.5 * (t[t.len() / 2 - 1] + t[t.len() / 2]) };
    let got: f64 = rows.last().unwrap()[4].parse().unwrap();
    assert!((got / med - 1.0).abs() < 1e-9, "{got} vs {med}");
    assert!(files[1].text.contains("Dropped:"));
    let p = vidur_send_recv(&c, VidurNode::Prefill).unwrap();
    assert!(p[0].text.lines().skip(1).all(|l| l.split(',').nth(10) == Some("2")));
}

#[test]
fn simgrid_has_every_route_both_ways() {
    let c = cal();
    let rs = routes(&c).unwrap();
    for r in &rs {
        let back = rs.iter().find(|b| b.src == r.dst && b.dst == r.src).expect("reverse route");
        let flipped: Vec<Hop> = r.hops.iter().rev().map(|h| Hop { id: h.id, dir: h.dir.reverse() }).collect();
        if back.model_of == r.model_of {
            assert_eq!(back.hops, flipped);
        }
    }
    let x = simgrid_platform(&c).unwrap();
    assert!(x.contains("Dropped:") && x.contains("<link id=\"GPU_P[0]_PCI:up\"") && x.contains("linkcal_sharing_efficiency"));
    assert!(x.contains("route:gpu_p1->gpu_p0"));
}
