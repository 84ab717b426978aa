//! The solver against known truths: random rate files (a different bottleneck each seed),
//! measured through the max-min simulator with noise, must give identified values within
//! +-2% of the truth and lower bounds that never exceed it.

use linkcal::calibrate::{calibrate, plan::plan, Inputs};
use linkcal::model::calibration::Method;
use linkcal::model::Calibration;
use linkcal::sim::synth::{random_truth, solo_experiments, synthesize, SynthConfig};
use linkcal::sim::Capacities;
use linkcal::spec::{Hop, HopOptions, RackShape, RouteSet};

struct Score {
    identified: usize,
    bounds: usize,
    worst_rel: f64,
}

fn run(shape: &RackShape, truth: &Capacities, seed: u64, with_plan: bool) -> Calibration {
    let set = RouteSet::build(shape, None, HopOptions::default(), true).unwrap();
    let mut exps = solo_experiments(&set);
    if with_plan {
        exps.extend(plan(&set, None).experiments);
    }
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: truth.clone(),
        hops: HopOptions::default(),
        sizes: vec![1 << 16, 1 << 20, 16 << 20],
        alpha_s: 2e-5,
        noise: 0.01,
        samples: 9,
        seed,
    };
    let res = synthesize(&cfg, &exps).unwrap();
    let inp = Inputs { results: vec![("synthetic".into(), res)], ..Default::default() };
    calibrate(&inp).unwrap()
}

fn score(cal: &Calibration, truth: &Capacities) -> Score {
    let mut s = Score { identified: 0, bounds: 0, worst_rel: 0.0 };
    for e in &cal.segments {
        let t = truth[&Hop { id: e.segment, dir: e.dir }];
        match e.method {
            Method::Isolated | Method::Saturation | Method::Bottleneck => {
                let v = e.capacity_Bps.unwrap();
                let rel = (v / t - 1.0).abs();
                assert!(
                    rel <= 0.02,
                    "{} {} {:?}: {v:.4e} vs truth {t:.4e} ({:+.2}%)",
                    e.segment,
                    e.dir,
                    e.method,
                    (v / t - 1.0) * 100.0
                );
                s.worst_rel = s.worst_rel.max(rel);
                s.identified += 1;
            }
            Method::LowerBound => {
                let v = e.lower_bound_Bps.unwrap();
                assert!(v <= t * (1.0 + 1e-9), "{} {}: lower bound {v:.4e} above truth {t:.4e}", e.segment, e.dir);
                s.bounds += 1;
            }
            Method::Unobserved => assert!(e.capacity_Bps.is_none() && e.lower_bound_Bps.is_none()),
        }
    }
    for g in &cal.series_groups {
        if let Some(v) = g.capacity_Bps {
            let min = g.members.iter().map(|h| truth[h]).fold(f64::INFINITY, f64::min);
            if (v / min - 1.0).abs() > 0.02 {
                for h in &g.members {
                    let e = cal.segments.iter().find(|e| e.segment == h.id && e.dir == h.dir).unwrap();
                    eprintln!("{h} truth {:.4e} {:?} ev {:?}", truth[h], e.method, e.evidence);
                }
            }
            if (v / min - 1.0).abs() > 0.02 {
                for h in &g.members {
                    let e = cal.segments.iter().find(|e| e.segment == h.id && e.dir == h.dir).unwrap();
                    eprintln!("{h} truth {:.4e} {:?} ev {:?}", truth[h], e.method, e.evidence);
                }
            }
            assert!((v / min - 1.0).abs() <= 0.02, "group {}: {v:.4e} vs member minimum {min:.4e}", g.id);
        }
    }
    s
}

#[test]
fn random_rate_files_identify_within_two_percent() {
    for (n, (p, d, k)) in [(2, 2, 1), (3, 2, 1), (4, 4, 2), (8, 8, 4), (5, 3, 2)].into_iter().enumerate() {
        let shape = RackShape::new(p, d, k).unwrap();
        for seed in 0..4u64 {
            let seed = seed * 7919 + n as u64;
            let truth = random_truth(&shape, seed, 1e8, 1e9);
            let solo = score(&run(&shape, &truth, seed, false), &truth);
            let planned = score(&run(&shape, &truth, seed, true), &truth);
            eprintln!(
                "({p},{d},{k}) seed {seed}: solo {} identified / {} bounds; planned {} / {} (worst {:.2}%)",
                solo.identified,
                solo.bounds,
                planned.identified,
                planned.bounds,
                planned.worst_rel * 100.0
            );
            assert!(planned.identified >= solo.identified, "the plan never loses identifications");
        }
    }
}
