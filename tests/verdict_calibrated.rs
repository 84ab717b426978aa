//! Acceptance and the report on a calibration made by `linkcal calibrate` itself (not one built
//! by hand): a synthetic default emulated rack, measured on the spec's paths plus the isolation
//! routes, passes the emulated-rack rules; with one IB cable 10% slow, exactly that segment
//! fails, and `compare` flags the routes through it.

#[path = "verdict_support/mod.rs"]
mod support;

use std::path::Path;

use assert_cmd::Command;
use linkcal::spec::RackShape;
use support::{failed_segments, Synth};

/// The default emulated (2,2,1) rack's expected TCP goodputs (its ground truth).
fn emulated_default() -> Synth {
    let mut s = Synth::default_rack();
    s.shape = RackShape::new(2, 2, 1).unwrap();
    s.rates = support::emulated_default_truth(&s.shape).into_iter().collect();
    s.isolation = true;
    s
}

fn calibrate(s: &Synth, dir: &Path) -> std::path::PathBuf {
    let (res, _) = s.write(dir);
    let cal = dir.join("cal.json");
    let o = Command::cargo_bin("linkcal")
        .unwrap()
        .arg("calibrate")
        .arg("--results")
        .arg(res.parent().unwrap())
        .arg("--out")
        .arg(&cal)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    cal
}

fn accept(cal: &Path, res: &Path) -> (i32, serde_json::Value) {
    let json = cal.with_file_name("verdict.json");
    let o = Command::cargo_bin("linkcal")
        .unwrap()
        .args(["accept", "--rules", "rules/emulated-default.toml", "--calibration"])
        .arg(cal)
        .arg("--results")
        .arg(res)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (o.status.code().unwrap(), v)
}

#[test]
fn real_calibration_passes_and_a_slow_cable_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = emulated_default();
    let cal = calibrate(&s, &dir.path().join("ok"));
    let (code, v) = accept(&cal, &dir.path().join("ok"));
    assert_eq!(code, 0, "{}", serde_json::to_string_pretty(&v["items"]).unwrap());
    assert!(v["counts"]["pass"].as_u64().unwrap() >= 6, "{}", v["counts"]);

    let slow = s.scaled("IB_Cable_D[1] down", 0.9).with_seed(6);
    let cal2 = calibrate(&slow, &dir.path().join("slow"));
    let (code, v) = accept(&cal2, &dir.path().join("slow"));
    assert_eq!(code, 1);
    assert_eq!(failed_segments(&v), vec!["IB_Cable_D[1] down".to_string()]);

    let o = Command::cargo_bin("linkcal")
        .unwrap()
        .arg("compare")
        .arg(dir.path().join("ok"))
        .arg(dir.path().join("slow"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = Command::cargo_bin("linkcal").unwrap().arg("compare").arg(&cal).arg(&cal2).output().unwrap();
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("segment IB_Cable_D[1] down"), "{md}");
}

#[test]
fn an_unidentified_slow_cable_still_fails_as_a_route_bottleneck() {
    // Spec paths only: nothing isolates IB_Cable_D[1] down from the other hops of Path 2 into
    // server 1, so no segment fails, but the route's goodput is below every candidate's floor.
    let dir = tempfile::tempdir().unwrap();
    let mut s = emulated_default();
    s.isolation = false;
    let cal = calibrate(&s, &dir.path().join("ok"));
    let (code, v) = accept(&cal, &dir.path().join("ok"));
    assert_eq!(code, 0, "{}", serde_json::to_string_pretty(&v["items"]).unwrap());

    let slow = s.scaled("IB_Cable_D[1] down", 0.9).with_seed(6);
    let cal = calibrate(&slow, &dir.path().join("slow"));
    let (code, v) = accept(&cal, &dir.path().join("slow"));
    assert_eq!(code, 1);
    assert_eq!(failed_segments(&v), Vec::<String>::new());
    let b: Vec<&serde_json::Value> =
        v["items"].as_array().unwrap().iter().filter(|i| i["kind"] == "route_bottleneck" && i["outcome"] == "fail").collect();
    assert_eq!(b.len(), 1, "{b:?}");
    let name = b[0]["item"].as_str().unwrap();
    assert!(
        name.starts_with("bottleneck of prefill_to_decode:1->1 @ 8 MiB: one of") && name.contains("IB_Cable_D[1] down"),
        "{name}"
    );
    // Hops shown faster elsewhere are not candidates: the shared NIC and cable on the prefill side.
    assert!(!name.contains("IB_Cable_P[0] up") && !name.contains("IB_NIC_P[0]_PCI down"), "{name}");
}
