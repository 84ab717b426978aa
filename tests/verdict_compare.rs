//! Regression on synthetic runs: unchanged racks with fresh noise are never flagged (over many
//! seeds), a 10% slower segment flags exactly the routes crossing it, a faster one is reported as
//! an improvement, noise larger than the change gives "inconclusive", calibrations compare per
//! segment, and mismatched inputs exit 2.

#[path = "verdict_support/mod.rs"]
mod support;

use assert_cmd::Command;
use linkcal::verdict::{compare, Baseline, Change, CompareOptions};
use support::{hop, Synth};

fn results_of(s: &Synth) -> Baseline {
    Baseline::Results("mem.json".into(), Box::new(s.results()))
}

#[test]
fn no_change_is_never_flagged_over_many_repeats() {
    let base = Synth::default_rack();
    let opt = CompareOptions::default();
    for seed in 2..14 {
        let rep = compare(&results_of(&base), &results_of(&base.with_seed(seed)), &opt).unwrap();
        let flagged: Vec<_> =
            rep.rows.iter().filter(|r| !matches!(r.status, Change::Unchanged)).map(|r| (&r.key, r.change, r.status)).collect();
        assert!(flagged.is_empty(), "seed {seed}: {flagged:?}");
        assert!(!rep.regression);
    }
}

#[test]
fn ten_percent_slower_segment_flags_exactly_its_routes() {
    let base = Synth::default_rack();
    let slow = base.scaled("GPU_D[1]_PCI down", 0.9).with_seed(5);
    let rep = compare(&results_of(&base), &results_of(&slow), &CompareOptions::default()).unwrap();
    assert!(rep.regression);
    let h = hop("GPU_D[1]_PCI down");
    for r in &rep.rows {
        let Some(p) = r.path else { continue };
        let route = base.routes().into_iter().find(|x| x.path == p).unwrap();
        // Routes whose bottleneck the slower segment becomes: Path 2 into server 1 (95 -> 85.5 MB/s).
        // Path 3 into server 1 crosses it too but stays limited by the 59 MB/s Ethernet cable.
        let limited = route.segments.contains(&h) && p.kind == linkcal::spec::RouteKind::PrefillToDecode;
        if limited && r.key.starts_with("solo") && r.payload_bytes >= Some(1 << 20) {
            assert_eq!(r.status, Change::Regression, "{r:?}");
            assert!(r.ci_high.unwrap() < -0.03 && r.change.unwrap() < -0.08, "{r:?}");
        } else if !limited {
            assert_eq!(r.status, Change::Unchanged, "{r:?}");
        }
    }
    let improved = compare(&results_of(&slow), &results_of(&base.with_seed(9)), &CompareOptions::default()).unwrap();
    assert!(!improved.regression);
    assert!(improved.rows.iter().any(|r| r.status == Change::Improvement));
}

#[test]
fn noise_larger_than_the_change_is_inconclusive() {
    // Six transfers with +-30% noise and no real change: point estimates stray past 3%, but the
    // intervals say the noise explains it.
    let mut base = Synth::default_rack();
    base.noise = 0.3;
    base.samples = 6;
    let mut inconclusive = 0;
    for seed in 2..8 {
        let rep = compare(&results_of(&base), &results_of(&base.with_seed(seed)), &CompareOptions::default()).unwrap();
        let wrong: Vec<_> = rep
            .rows
            .iter()
            .filter(|r| matches!(r.status, Change::Regression | Change::Improvement))
            .map(|r| (&r.key, r.change, r.ci_low, r.ci_high))
            .collect();
        assert!(wrong.is_empty(), "seed {seed}: {wrong:?}");
        inconclusive += rep.rows.iter().filter(|r| r.status == Change::Inconclusive).count();
    }
    assert!(inconclusive > 0);
}

#[test]
fn calibrations_compare_per_segment() {
    let base = Synth::default_rack();
    let b = Baseline::Calibration("b.json".into(), Box::new(base.calibration()));
    let n = Baseline::Calibration("n.json".into(), Box::new(base.scaled("GPU_D[1]_PCI down", 0.9).calibration()));
    let rep = compare(&b, &n, &CompareOptions::default()).unwrap();
    let regs: Vec<&str> = rep.rows.iter().filter(|r| r.status == Change::Regression).map(|r| r.key.as_str()).collect();
    assert!(regs.contains(&"segment GPU_D[1]_PCI down"), "{regs:?}");
    assert!(regs.iter().all(|k| *k == "segment GPU_D[1]_PCI down" || k.starts_with("path prefill_to_decode:1->1")), "{regs:?}");
}

#[test]
fn cli_compare_exit_codes_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let base = Synth::default_rack();
    let (b, bc) = base.write(&dir.path().join("base"));
    let (n, _) = base.with_seed(7).write(&dir.path().join("same"));
    let (s, _) = base.scaled("GPU_D[1]_PCI down", 0.9).with_seed(8).write(&dir.path().join("slow"));
    let bin = || Command::cargo_bin("linkcal").unwrap();
    let out = bin().arg("compare").arg(b.parent().unwrap()).arg(n.parent().unwrap()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no regression"));
    let json = dir.path().join("c.json");
    let junit = dir.path().join("c.xml");
    let out = bin().arg("compare").arg(&b).arg(&s).arg("--json").arg(&json).arg("--junit").arg(&junit).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("**REGRESSION**") && md.contains("solo prefill_to_decode:1->1 @ 8 MiB"), "{md}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "linkcal.compare/1");
    assert_eq!(v["regression"], true);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.matches("<failure").count() >= 2, "{xml}");
    // A larger minimum effect than the drop: nothing to report.
    let out = bin().arg("compare").arg(&b).arg(&s).args(["--min-effect", "0.2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    // Bad input: results against a calibration, another shape, a bad flag value, a missing file.
    let out = bin().arg("compare").arg(&b).arg(&bc).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("calibration.json: field 'schema'"));
    let mut big = base.clone();
    big.shape = linkcal::spec::RackShape::new(3, 2, 1).unwrap();
    for seg in big.shape.segments() {
        for d in [linkcal::spec::Dir::Up, linkcal::spec::Dir::Down] {
            big.rates.entry(linkcal::spec::Hop { id: seg, dir: d }).or_insert(1e8);
        }
    }
    let (bg, _) = big.write(&dir.path().join("big"));
    let out = bin().arg("compare").arg(&b).arg(&bg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("field 'rack.shape'"));
    let out = bin().arg("compare").arg(&b).arg(&n).args(["--min-effect", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().arg("compare").arg(&b).arg(dir.path().join("nope.json")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.json"));
}
