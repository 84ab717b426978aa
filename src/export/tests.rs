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

#[test]
fn planner_exports_carry_the_calibrated_numbers_and_say_what_they_lose() {
    let c = cal();
    let slowest_p1 = c
        .paths
        .iter()
        .filter(|p| p.path.kind == RouteKind::PrefillInterRank)
        .filter_map(|p| p.peak_Bps)
        .fold(f64::INFINITY, f64::min);
    let a = astra_sim(&c).unwrap();
    assert!(a.contains("Loses:") && a.contains("topology: [ Switch ]") && a.contains("npus_count: [ 4 ]"));
    assert!((field(&a, "bandwidth") * (1u64 << 30) as f64 / slowest_p1 - 1.0).abs() < 1e-5, "GiB/s unit");
    let alpha = typical_alpha(&c, RouteKind::PrefillInterRank).unwrap();
    assert!((field(&a, "latency") - alpha * 1e9 / 2.0).abs() < 1e-2, "Switch latency is charged twice");
    let n = aiconfigurator(&c).unwrap();
    assert!(n.contains("Loses:") && n.contains("node:"));
    assert!((field(&n, "intra_node_bw") / slowest_p1 - 1.0).abs() < 1e-5);
    assert!(field(&n, "inter_node_bw") > 0.0 && field(&n, "p2p_latency") >= 0.0);
    let v = vidur_send_recv(&c).unwrap();
    assert!(v.lines().next().unwrap().starts_with('#') && v.contains("Loses:"));
    let rows: Vec<&str> = v.lines().filter(|l| !l.starts_with('#')).skip(1).collect();
    assert_eq!(rows.len(), 8, "4 sizes x (Path 1, Path 3)");
    let cols: Vec<&str> = rows[3].split(',').collect();
    assert_eq!(cols[8], (4u64 << 20).to_string());
    let median_ms: f64 = cols[4].parse().unwrap();
    assert!(median_ms > 0.0 && median_ms < 1e3);
    let x = simgrid_platform(&c).unwrap();
    assert!(x.contains("What this loses") && x.contains("<link id=\"GPU_P[0]_PCI:up\""));
}
