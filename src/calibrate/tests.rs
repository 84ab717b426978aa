//! Loading results directories (bad input included) and the solver on hand-built cases.

use super::*;
use crate::model::RESULTS_SCHEMA;
use crate::sim::synth::{solo_experiments, synthesize, SynthConfig};
use crate::sim::Capacities;
use crate::spec::{Experiment, HopOptions, RackShape, RouteKind, RouteSet};

fn hop(s: &str) -> Hop {
    s.parse().unwrap()
}

/// A (2,2,1) rack where every capacity is 5e8 except the ones given.
fn truth(over: &[(&str, f64)]) -> (RackShape, Capacities) {
    let shape = RackShape::new(2, 2, 1).unwrap();
    let mut t = crate::sim::synth::random_truth(&shape, 1, 5e8, 5e8 + 1.0);
    for (h, v) in over {
        t.insert(hop(h), *v);
    }
    (shape, t)
}

fn results(shape: &RackShape, t: &Capacities, exps: &[Experiment]) -> Results {
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: t.clone(),
        hops: HopOptions::default(),
        sizes: vec![1 << 20, 8 << 20],
        alpha_s: 1e-5,
        noise: 0.002,
        samples: 5,
        seed: 3,
    };
    synthesize(&cfg, exps).unwrap()
}

fn est<'a>(c: &'a Calibration, h: &str) -> &'a SegmentEstimate {
    let h = hop(h);
    c.segments.iter().find(|s| s.segment == h.id && s.dir == h.dir).unwrap()
}

#[test]
fn shared_nic_saturates_and_forms_a_series_group() {
    // NIC 0 (down) at 3e8 is the only slow link: each Path-2 flow alone sees 3e8 (a lower
    // bound for every hop of it); together they still sum to 3e8, which pins the NIC group.
    let (shape, t) = truth(&[("IB_NIC_P[0]_PCI down", 3e8)]);
    let set = RouteSet::spec(&shape, None).unwrap();
    let mut exps = solo_experiments(&set);
    let p2: Vec<_> = set.of_kind(RouteKind::PrefillToDecode).map(|(_, r)| r.path).filter(|p| p.src == p.dst).collect();
    exps.push(Experiment { name: "pair".into(), flows: p2, purpose: "test".into() });
    let inp = Inputs { results: vec![("x".into(), results(&shape, &t, &exps))], ..Default::default() };
    let c = calibrate(&inp).unwrap();
    let nic = est(&c, "IB_NIC_P[0]_PCI down");
    assert_eq!(nic.method, Method::LowerBound, "in a series group with the cable");
    let g = c.series_groups.iter().find(|g| g.members.contains(&hop("IB_NIC_P[0]_PCI down"))).unwrap();
    assert!(g.members.contains(&hop("IB_Cable_P[0] up")));
    assert!((g.capacity_Bps.unwrap() / 3e8 - 1.0).abs() < 0.01, "{:?}", g.capacity_Bps);
    assert_eq!(nic.series_group.as_deref(), Some(g.id.as_str()));
    // Path 1 0->1 alone identifies nothing (both its hops are 5e8, neither shown faster).
    assert_eq!(est(&c, "GPU_P[1]_PCI down").method, Method::LowerBound);
    assert_eq!(est(&c, "GPU_P[0]_PCI down").method, Method::Unobserved);
    assert!(c.notes.iter().any(|n| n.contains("GPU_P[0]_PCI down: never")));
}

#[test]
fn isolation_probe_identifies_and_bottleneck_follows() {
    // GPU_P[0] up is slow (2e8): D2H from GPU 0 isolates it; every path from GPU 0 then
    // shows 2e8, and GPU 1's faster links stay lower bounds.
    let (shape, t) = truth(&[("GPU_P[0]_PCI up", 2e8), ("Uplink_P_PCI down", 9e8)]);
    let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
    let exps = solo_experiments(&set);
    let inp = Inputs { results: vec![("x".into(), results(&shape, &t, &exps))], ..Default::default() };
    let c = calibrate(&inp).unwrap();
    let g = est(&c, "GPU_P[0]_PCI up");
    assert_eq!(g.method, Method::Isolated);
    assert!((g.capacity_Bps.unwrap() / 2e8 - 1.0).abs() < 0.01);
    assert!(g.ci95_low_Bps.unwrap() <= g.capacity_Bps.unwrap() && g.capacity_Bps.unwrap() <= g.ci95_high_Bps.unwrap());
    let p = c.paths.iter().find(|p| p.path.kind == RouteKind::PrefillInterRank).unwrap();
    assert_eq!(p.raw.len(), 2);
    assert!(!p.pieces.is_empty() && (p.pieces[0].beta_Bps / 2e8 - 1.0).abs() < 0.02, "{:?}", p.pieces);
    assert!(p.efficiency.iter().all(|e| e.efficiency > 0.0 && e.efficiency <= 1.0));
}

fn write_dir(res: &Results) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    crate::model::write_json(&d.path().join("results.json"), res).unwrap();
    d
}

#[test]
fn results_dir_errors_name_file_and_field() {
    let (shape, t) = truth(&[]);
    let set = RouteSet::spec(&shape, None).unwrap();
    let mut res = results(&shape, &t, &solo_experiments(&set)[..1]);
    // The journal adds measurements that results.json lacks (the merge rule itself is
    // model::rundir's, tested there).
    let extra = results(&shape, &t, &solo_experiments(&set)[1..2]).measurements;
    let d = write_dir(&res);
    let line = serde_json::to_string(&extra[0]).unwrap();
    std::fs::write(d.path().join("journal.jsonl"), format!("{line}\n")).unwrap();
    let (loaded, rec) = load_results_dir(d.path()).unwrap();
    assert_eq!(loaded.measurements.len(), res.measurements.len() + 1);
    assert_eq!(rec.from_journal, 1);
    // A journal line that is not a measurement.
    std::fs::write(d.path().join("journal.jsonl"), "{\"id\": \"x\"}\n").unwrap();
    let e = load_results_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("journal.jsonl") && e.contains("line 1"), "{e}");
    std::fs::remove_file(d.path().join("journal.jsonl")).unwrap();
    // No measurements.
    res.measurements.clear();
    let d = write_dir(&res);
    let e = load_results_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("results.json") && e.contains("measurements") && e.contains("nothing to calibrate"), "{e}");
    // Unknown schema version and a missing field.
    let mut v = serde_json::to_value(&res).unwrap();
    v["schema"] = "linkcal.results/9".into();
    std::fs::write(d.path().join("results.json"), v.to_string()).unwrap();
    let e = load_results_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("'schema'") && e.contains("linkcal.results/9"), "{e}");
    v["schema"] = RESULTS_SCHEMA.into();
    v.as_object_mut().unwrap().remove("rack");
    std::fs::write(d.path().join("results.json"), v.to_string()).unwrap();
    let e = load_results_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("results.json") && e.contains("'rack'"), "{e}");
    let e = load_results_dir(&d.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn csv_matches_json() {
    let (shape, t) = truth(&[("GPU_P[0]_PCI up", 2e8)]);
    let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
    let inp = Inputs { results: vec![("x".into(), results(&shape, &t, &solo_experiments(&set)))], ..Default::default() };
    let c = calibrate(&inp).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.csv");
    write_csv(&c, &p).unwrap();
    let mut r = csv::Reader::from_path(&p).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), c.segments.len());
    let row = rows.iter().find(|r| &r[0] == "GPU_P[0]_PCI" && &r[1] == "up").unwrap();
    assert_eq!(&row[3], "isolated");
    let v: f64 = row[4].parse().unwrap();
    assert!((v / est(&c, "GPU_P[0]_PCI up").capacity_Bps.unwrap() - 1.0).abs() < 1e-6);
    let unobserved = rows.iter().find(|r| &r[3] == "unobserved").unwrap();
    assert_eq!(&unobserved[4], "", "null, never 0");
}
