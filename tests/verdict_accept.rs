//! Acceptance on synthetic racks with known rates: pass, a 10% slower segment failing exactly
//! that segment, lower bounds never failing, series groups failing as a group, warn, waivers,
//! nominal fractions, fleet baselines, JUnit, and bad input (exit 2 naming file and field).

#[path = "verdict_support/mod.rs"]
mod support;

use assert_cmd::Command;
use linkcal::verdict::{accept, AcceptInputs, Baseline, ItemKind, Outcome, Rules};
use support::{truth_rules, Synth};

fn judge(rules: &Rules, s: &Synth) -> linkcal::verdict::AcceptReport {
    let (c, r) = (s.calibration(), s.results());
    let p = std::path::Path::new("x.json");
    accept(rules, AcceptInputs { calibration: Some((p, &c)), results: Some((p, &r)), baseline: None }).unwrap()
}

fn failing(rep: &linkcal::verdict::AcceptReport, kind: ItemKind) -> Vec<String> {
    rep.items.iter().filter(|i| i.kind == kind && i.outcome == Outcome::Fail).map(|i| i.item.clone()).collect()
}

#[test]
fn truth_passes_and_a_ten_percent_drop_fails_exactly_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    truth_rules(&s, &dir.path().join("r.toml"));
    let rules = Rules::load(&dir.path().join("r.toml")).unwrap();
    let rep = judge(&rules, &s);
    assert_eq!(rep.outcome, Outcome::Pass, "{:#?}", rep.items.iter().filter(|i| i.outcome != Outcome::Pass).collect::<Vec<_>>());
    assert!(rep.counts.pass >= 8, "{:?}", rep.counts);

    let slow = s.scaled("GPU_D[1]_PCI down", 0.9);
    let rep = judge(&rules, &slow);
    assert_eq!(rep.outcome, Outcome::Fail);
    assert_eq!(failing(&rep, ItemKind::Segment), vec!["GPU_D[1]_PCI down".to_string()]);
    assert!(failing(&rep, ItemKind::Group).is_empty());
    let it = rep.items.iter().find(|i| i.item == "GPU_D[1]_PCI down").unwrap();
    assert!(it.checks[0].detail.contains("85.50 MB/s < fail threshold 90.25 MB/s"), "{}", it.checks[0].detail);
}

#[test]
fn lower_bounds_are_not_identified_but_groups_fail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    truth_rules(&s, &dir.path().join("r.toml"));
    let rules = Rules::load(&dir.path().join("r.toml")).unwrap();
    // IB_Cable_P[0] up is in a series group with IB_NIC_P[0]_PCI down: neither is identified
    // alone, but the group's capacity is below both members' floors, so the group fails.
    let rep = judge(&rules, &s.scaled("IB_Cable_P[0] up", 0.9));
    assert!(failing(&rep, ItemKind::Segment).is_empty(), "{:?}", failing(&rep, ItemKind::Segment));
    assert_eq!(failing(&rep, ItemKind::Group), vec!["series group G1 (IB_NIC_P[0]_PCI down + IB_Cable_P[0] up)".to_string()]);
    let member = rep.items.iter().find(|i| i.item == "IB_Cable_P[0] up").unwrap();
    assert_eq!(member.outcome, Outcome::NotMeasured);
    assert!(member.lower_bound);
    assert!(member.reason.as_deref().unwrap().contains("not identified"), "{:?}", member.reason);
    assert!(rep.items.iter().filter(|i| i.lower_bound).all(|i| i.outcome != Outcome::Fail));
    // A lower bound that clears the floor passes: IB_Cable_D[1] down >= 95 MB/s (Path 2 into
    // server 1 is limited by GPU_D[1]_PCI), floor 90 MB/s.
    let r2 = dir.path().join("lb.toml");
    std::fs::write(&r2, "schema = \"linkcal.rules/1\"\n[[rule]]\nsegments = [\"IB_Cable_D[1]\"]\ndir = \"down\"\nfloor = \"90 MB/s\"\nwarn_floor = \"100 MB/s\"\n").unwrap();
    let rep = judge(&Rules::load(&r2).unwrap(), &s);
    let it = &rep.items[0];
    assert_eq!(
        (it.item.as_str(), it.outcome, it.lower_bound, it.value_Bps),
        ("IB_Cable_D[1] down", Outcome::Pass, true, Some(9.5e7))
    );
    assert!(it.checks[0].detail.contains("warn threshold undecided"), "{}", it.checks[0].detail);
}

#[test]
fn warn_waive_nominal_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    let base_file = dir.path().join("fleet.json");
    std::fs::write(&base_file, serde_json::to_string(&s.calibration()).unwrap()).unwrap();
    let rules_file = dir.path().join("r.toml");
    std::fs::write(
        &rules_file,
        r#"schema = "linkcal.rules/1"
baseline = "fleet.json"
[[rule]]
name = "eth cable vs nominal"
segments = ["Eth_Cable_D[*]"]
dir = "up"
nominal = "480 Mbit/s"
nominal_fraction = 0.9
warn_nominal_fraction = 0.99
[[rule]]
name = "gpu d vs fleet"
segments = ["GPU_D[*]_PCI"]
dir = "down"
baseline_deviation = -0.05
warn_baseline_deviation = -0.02
[[rule]]
name = "decode path waived"
paths = ["decode_inter_rank:*"]
floor = "1 TB/s"
waive = "Ethernet NICs are being replaced"
[[rule]]
name = "kv path"
paths = ["prefill_to_decode:*"]
floor = "50 MB/s"
"#,
    )
    .unwrap();
    let rules = Rules::load(&rules_file).unwrap();
    let base = Baseline::load(&base_file).unwrap();
    let slow = s.scaled("GPU_D[1]_PCI down", 0.97);
    let (c, r) = (slow.calibration(), slow.results());
    let p = std::path::Path::new("x.json");
    let rep = accept(&rules, AcceptInputs { calibration: Some((p, &c)), results: Some((p, &r)), baseline: Some(&base) }).unwrap();
    let get = |name: &str| rep.items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("{name} missing"));
    // 59 MB/s = 472 Mbit/s = 0.983 of 480 Mbit/s: above 0.9, below 0.99.
    assert_eq!(get("Eth_Cable_D[0] up").outcome, Outcome::Warn);
    assert_eq!(get("Eth_Cable_D[0] up").nominal_Bps, Some(60e6));
    // -3% against the fleet: past the -2% warning, short of the -5% failure.
    assert_eq!(get("GPU_D[1]_PCI down").outcome, Outcome::Warn);
    assert_eq!(get("GPU_D[1]_PCI down").baseline_Bps, Some(9.5e7));
    assert_eq!(get("decode_inter_rank:0->1 @ 8 MiB").outcome, Outcome::Waived);
    assert!(get("decode_inter_rank:0->1 @ 8 MiB").reason.as_deref().unwrap().contains("being replaced"));
    assert_eq!(get("prefill_to_decode:1->1 @ 8 MiB").outcome, Outcome::Pass);
    assert_eq!(rep.outcome, Outcome::Warn);
    assert_eq!(rep.exit_code(false), 0);
}

fn bin() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

#[test]
fn cli_exit_codes_markdown_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    let (res, cal) = s.write(&dir.path().join("good"));
    let rules = dir.path().join("r.toml");
    truth_rules(&s, &rules);
    let out =
        bin().args(["accept", "--rules"]).arg(&rules).arg("--calibration").arg(&cal).arg("--results").arg(&res).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("**PASS**"));

    let (_, cal2) = s.scaled("GPU_D[1]_PCI down", 0.9).write(&dir.path().join("slow"));
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("v.json");
    let out = bin()
        .args(["accept", "--rules"])
        .arg(&rules)
        .arg("--calibration")
        .arg(&cal2)
        .arg("--junit")
        .arg(&junit)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("| GPU_D[1]_PCI down | 85.50 MB/s | **fail** |"), "{md}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert!(xml.contains(r#"<testsuite name="acceptance: synthetic truth" "#) && xml.contains("failures=\"1\""));
    assert!(xml.contains(r#"name="GPU_D[1]_PCI down""#));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "linkcal.acceptance/1");
    assert_eq!(v["outcome"], "fail");
    assert_eq!(v["counts"]["fail"], 1);
    // --strict fails when items are not identified.
    let out = bin().args(["accept", "--strict", "--rules"]).arg(&rules).arg("--calibration").arg(&cal).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

fn bad(args: &[&std::ffi::OsStr], want: &[&str]) {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for w in want {
        assert!(err.contains(w), "'{w}' not in: {err}");
    }
}

#[test]
fn bad_input_exits_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::default_rack();
    let (res, cal) = s.write(&dir.path().join("run"));
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("schema = \"linkcal.rules/1\"\n[[rule]]\n{body}")).unwrap();
        p
    };
    let os = |p: &std::path::Path| p.as_os_str().to_owned();
    let accept = |rules: &std::path::Path, extra: &[std::ffi::OsString]| {
        let mut v: Vec<std::ffi::OsString> = vec!["accept".into(), "--rules".into(), os(rules), "--calibration".into(), os(&cal)];
        v.extend(extra.iter().cloned());
        v
    };
    let run = |args: Vec<std::ffi::OsString>, want: &[&str]| bad(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(), want);

    let r = write("seg.toml", "segments = [\"GPU_Z[0]_PCI\"]\nfloor = 1\n");
    run(accept(&r, &[]), &["seg.toml", "rule[0].segments[0]", "unknown segment 'GPU_Z[0]_PCI'"]);
    let r = write("range.toml", "segments = [\"IB_Cable_P[3]\"]\nfloor = 1\n");
    run(accept(&r, &[]), &["range.toml", "rule[0].segments[0]", "does not exist"]);
    let r = write("unit.toml", "segments = [\"GPU_P[0]_PCI\"]\nfloor = \"30 GB/min\"\n");
    run(accept(&r, &[]), &["unit.toml", "rule[0].floor", "unknown unit 'GB/min'"]);
    let r = write("base.toml", "segments = [\"GPU_P[0]_PCI\"]\nbaseline_deviation = -0.05\n");
    run(accept(&r, &[]), &["base.toml", "rule[0].baseline_deviation", "needs a fleet baseline"]);
    // A baseline of another schema.
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"schema": "linkcal.rack/1"}"#).unwrap();
    run(accept(&r, &["--baseline".into(), os(&other)]), &["other.json", "'schema'", "linkcal.rack/1"]);
    // A baseline of another rack shape.
    let mut big = Synth::default_rack();
    big.shape = linkcal::spec::RackShape::new(2, 3, 1).unwrap();
    for seg in big.shape.segments() {
        for dir in [linkcal::spec::Dir::Up, linkcal::spec::Dir::Down] {
            big.rates.entry(linkcal::spec::Hop { id: seg, dir }).or_insert(1e8);
        }
    }
    let (_, bigcal) = big.write(&dir.path().join("big"));
    run(accept(&r, &["--baseline".into(), os(&bigcal)]), &["big/calibration.json", "'shape'", "same rack shape"]);
    // Results of another shape than the calibration.
    let (bigres, _) = big.write(&dir.path().join("big2"));
    let ok = write("ok.toml", "segments = [\"GPU_P[0]_PCI\"]\nfloor = 1\n");
    run(accept(&ok, &["--results".into(), os(&bigres)]), &["results.json", "rack.shape"]);
    // Results file that is really a calibration.
    run(accept(&ok, &["--results".into(), os(&cal)]), &["calibration.json", "'schema'"]);
    drop(res);
}
