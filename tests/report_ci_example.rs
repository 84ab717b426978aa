//! scripts/ci-example/run-and-judge on existing runs: a healthy run exits 0, a run with a 10%
//! slower segment exits 1, and both leave JUnit, JSON, markdown and the HTML report behind.

#[path = "verdict_support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{truth_rules, Synth};

fn judge(run: &Path, cal: &Path, rules: &Path, baseline: &Path, out: &Path) -> i32 {
    let o = Command::new("scripts/ci-example/run-and-judge")
        .env("LINKCAL", env!("CARGO_BIN_EXE_linkcal"))
        .arg("--results")
        .arg(run)
        .arg("--calibration")
        .arg(cal)
        .arg("--rules")
        .arg(rules)
        .arg("--baseline")
        .arg(baseline)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    o.status.code().unwrap_or(-1)
}

#[test]
fn ci_example_judges_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    let rules = dir.path().join("rules.toml");
    truth_rules(&s, &rules);
    let (base, _) = s.write(&dir.path().join("baseline"));
    let (ok, okcal) = s.with_seed(3).write(&dir.path().join("ok"));
    let (bad, badcal) = s.scaled("GPU_D[1]_PCI down", 0.9).with_seed(4).write(&dir.path().join("bad"));
    let base = base.parent().unwrap();

    let out = dir.path().join("out-ok");
    assert_eq!(judge(ok.parent().unwrap(), &okcal, &rules, base, &out), 0);
    for f in ["junit-acceptance.xml", "junit-compare.xml", "acceptance.json", "compare.json", "summary.md", "report.html"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("no regression"));

    let out = dir.path().join("out-bad");
    assert_eq!(judge(bad.parent().unwrap(), &badcal, &rules, base, &out), 1);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(v["regression"], true);
    let xml = std::fs::read_to_string(out.join("junit-acceptance.xml")).unwrap();
    assert!(xml.contains("failures=\"1\""));
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("FAIL</div>"));

    // Bad input: no rules.
    let o = Command::new("scripts/ci-example/run-and-judge").arg("--results").arg(&ok).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
