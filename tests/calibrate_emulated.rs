//! Calibration on a real emulated rack (needs root: network namespaces, veth, tbf): a random
//! rates file (a different bottleneck each run; the seed is printed, LINKCAL_CALIB_SEED
//! repeats one, LINKCAL_CALIB_KEEP=1 keeps the files) is brought up, measured with `linkcal
//! run --plan calibrate`, calibrated, and checked against the rack's ground truth: every
//! identified segment direction within +-2% of its true goodput, every lower bound at most the
//! truth (the ground-truth goodput model is itself good to about 0.2%: 0.5% is allowed), at
//! least as many identifications (give or take one) as a noise-free replay of the same
//! experiments on the true capacities gives, and the simulator predicting the measured
//! contended bursts' makespans within +-5% (median within 2%; one burst of the run may miss,
//! as a single burst on a shared 2-core machine can stall). Under `CI=true` a missing
//! capability fails the test instead of skipping it.

use std::collections::BTreeMap;
use std::path::Path;

mod rack_support;

use linkcal::calibrate::{calibrate, Inputs};
use linkcal::model::calibration::Method;
use linkcal::model::rack::GroundTruth;
use linkcal::model::{Calibration, Results};
use linkcal::sim::synth::{replay, SynthConfig};
use linkcal::spec::{Hop, HopOptions, RackShape};
use linkcal::stats::rng::SplitMix64;
use rack_support::{can_emulate, emulate_up_221, linkcal as bin, unique_prefix, RackGuard};

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Random line rates for the spec's segments, each direction uniform in 30..120 MB/s.
fn rates(shape: &RackShape, seed: u64) -> serde_json::Value {
    let mut rng = SplitMix64::new(seed);
    let mut segs = serde_json::Map::new();
    for id in shape.segments().into_iter().filter(|s| !s.outside_spec()) {
        let (up, down) = (rng.range(30e6, 120e6).round(), rng.range(30e6, 120e6).round());
        segs.insert(id.to_string(), serde_json::json!({"up_Bps": up, "down_Bps": down}));
    }
    serde_json::json!({"mtu": 9000, "segments": segs})
}

#[test]
fn emulated_rack_calibrates_within_bounds() {
    if !can_emulate("the emulated calibration test") {
        return;
    }
    let seed = std::env::var("LINKCAL_CALIB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
    });
    eprintln!("rates seed {seed} (LINKCAL_CALIB_SEED={seed} repeats this run)");
    // The contended streaming windows of one run can all land on a stalled moment of a busy
    // 2-core host (a series group then read +3-4% on a fresh root with a busy core beside it):
    // the same rates are measured once more before the test fails, and both outcomes are shown.
    let first = measure_and_check(seed);
    if first.is_empty() {
        return;
    }
    eprintln!("seed {seed}: first run outside the bounds: {first:#?}; measuring the same rates once more");
    let second = measure_and_check(seed);
    assert!(second.is_empty(), "seed {seed}: outside the bounds twice: first {first:#?}, then {second:#?}");
}

/// Brings up the rack with the rates of `seed`, measures, calibrates and checks; returns what
/// is outside the bounds.
fn measure_and_check(seed: u64) -> Vec<String> {
    let shape = RackShape::new(2, 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // LINKCAL_CALIB_KEEP=1 keeps the rates, rack files, results and calibration for inspection.
    let d = &if std::env::var_os("LINKCAL_CALIB_KEEP").is_some() { dir.keep() } else { dir.path().to_path_buf() };
    eprintln!("files under {}", d.display());
    std::fs::write(d.join("rates.json"), rates(&shape, seed).to_string()).unwrap();
    let rack = RackGuard(unique_prefix("lcc"));
    let up = emulate_up_221(&rack.0, &d.join("rack")).arg("--replace").arg("--rates").arg(d.join("rates.json")).output().unwrap();
    assert!(up.status.success(), "emulate up: {}", String::from_utf8_lossy(&up.stderr));
    let t0 = std::time::Instant::now();
    let run = bin()
        // A 5 s cap (quick's is 2 s) gives every contended set about five streaming windows:
        // their median then shrugs off a window stalled by a busy CI core (with two or three, a
        // set read up to +4% on a fresh root with a busy core beside it).
        .args(["run", "--plan", "calibrate", "--quick", "--time-cap", "5", "--no-progress", "--rack"])
        .arg(d.join("rack/rack.json"))
        .arg("--out")
        .arg(d.join("run"))
        .output()
        .unwrap();
    assert!(run.status.success(), "run: {}", String::from_utf8_lossy(&run.stderr));
    eprintln!("{}run --plan calibrate took {:.1} s", String::from_utf8_lossy(&run.stderr), t0.elapsed().as_secs_f64());
    assert!(d.join("run/phase1/results.json").exists() && d.join("run/journal.jsonl").exists());
    let cal_path = d.join("cal.json");
    let c = bin().args(["calibrate", "--results"]).arg(d.join("run")).arg("--out").arg(&cal_path).output().unwrap();
    assert!(c.status.success(), "calibrate: {}", String::from_utf8_lossy(&c.stderr));
    let cal: Calibration = read(&cal_path);
    let gt: GroundTruth = read(&d.join("rack/ground-truth.json"));
    let truth: BTreeMap<Hop, f64> = gt.segments.iter().map(|s| (Hop { id: s.segment, dir: s.dir }, s.goodput_Bps)).collect();
    let mut problems = Vec::new();
    let (mut identified, mut bounds, mut worst) = (0, 0, 0.0f64);
    for s in &cal.segments {
        let h = Hop { id: s.segment, dir: s.dir };
        let Some(&t) = truth.get(&h) else { continue };
        match s.method {
            Method::Isolated | Method::Saturation | Method::Bottleneck => {
                let e = s.capacity_Bps.unwrap() / t - 1.0;
                eprintln!(
                    "{h:<24} {:<11} {:>12.4e} truth {t:>12.4e} {:+.2}%",
                    format!("{:?}", s.method),
                    s.capacity_Bps.unwrap(),
                    e * 100.0
                );
                identified += 1;
                worst = worst.max(e.abs());
                if e.abs() > 0.02 {
                    problems.push(format!("{h} {:?}: {:+.2}%", s.method, e * 100.0));
                }
            }
            Method::LowerBound => {
                let b = s.lower_bound_Bps.unwrap();
                bounds += 1;
                if b > t * 1.005 {
                    problems.push(format!("{h}: lower bound {b:.4e} above truth {t:.4e}"));
                }
            }
            Method::Unobserved => {}
        }
    }
    for g in &cal.series_groups {
        if let Some(v) = g.capacity_Bps {
            let min = g.members.iter().filter_map(|h| truth.get(h)).fold(f64::INFINITY, |a, b| a.min(*b));
            if (v / min - 1.0).abs() > 0.02 {
                problems.push(format!("series group {}: {v:.4e} vs member minimum {min:.4e}", g.id));
            }
        }
    }
    // What the same experiments identify at best: a noise-free replay on the true capacities.
    let measured: Results = read(&d.join("run/results.json"));
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: truth.clone(),
        hops: HopOptions::default(),
        sizes: Vec::new(),
        alpha_s: 1e-4,
        noise: 0.002,
        samples: 7,
        seed,
    };
    let ideal = calibrate(&Inputs { results: vec![("replay".into(), replay(&cfg, &measured))], ..Default::default() }).unwrap();
    let best = ideal.segments.iter().filter(|s| s.method.identified()).count();
    eprintln!(
        "{identified} identified (worst {:.2}%), {bounds} lower bounds; a noise-free replay identifies {best}",
        worst * 100.0
    );
    assert!(best >= 3, "the plan's experiments should identify several links of a (2,2,1) rack; a replay identifies {best}");
    let known = |c: &Calibration| -> Vec<String> {
        c.segments.iter().filter(|s| s.method.identified()).map(|s| format!("{} {}", s.segment, s.dir)).collect()
    };
    let mine = known(&cal);
    let missed: Vec<String> = known(&ideal).into_iter().filter(|h| !mine.contains(h)).collect();
    if !missed.is_empty() {
        eprintln!("identified by the replay only: {missed:?}");
    }
    if identified + 1 < best {
        problems.push(format!("{identified} identified, a noise-free replay of the same experiments identifies {best}"));
    }
    let sim = bin().args(["sim", "--json", "--calibration"]).arg(&cal_path).arg("--against").arg(d.join("run")).output().unwrap();
    assert!(sim.status.success(), "sim: {}", String::from_utf8_lossy(&sim.stderr));
    let v: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    let mut errs = Vec::new();
    for ch in v["checks"].as_array().unwrap() {
        let mk = ch["makespan_error"].as_f64().unwrap();
        let stream = ch["aggregate_error"].as_f64();
        eprintln!(
            "{:<52} burst makespan {:+.2}% (streaming sum {})",
            ch["id"].as_str().unwrap(),
            mk * 100.0,
            stream.map(|a| format!("{:+.2}%", a * 100.0)).unwrap_or_default()
        );
        errs.push(mk.abs());
    }
    errs.sort_by(f64::total_cmp);
    let (median, worst_sim) = (errs[errs.len() / 2], errs[errs.len() - 1]);
    let within = errs.iter().filter(|e| **e <= 0.05).count();
    eprintln!(
        "sim: {within}/{} bursts within 5%, median |error| {:.2}%, worst {:.2}%",
        errs.len(),
        median * 100.0,
        worst_sim * 100.0
    );
    if median > 0.02 || within + 1 < errs.len() {
        problems.push(format!(
            "sim: median burst error {:.2}% (max 2%), {within}/{} within 5% (one may miss), worst {:.2}%",
            median * 100.0,
            errs.len(),
            worst_sim * 100.0
        ));
    }
    problems
}
