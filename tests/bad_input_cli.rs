//! Bad input that used to panic, hang or pass silently: each exits 2 naming the file, field or
//! flag, in well under a second.

#[path = "verdict_support/mod.rs"]
mod verdict_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use verdict_support::Synth;

fn linkcal() -> Command {
    let mut c = Command::cargo_bin("linkcal").unwrap();
    c.timeout(Duration::from_secs(20));
    c
}

/// Runs `args`, expects exit 2 within 5 s with every `want` in stderr.
fn refused(args: &[&str], want: &[&str]) {
    let t0 = Instant::now();
    let out = linkcal().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", t0.elapsed());
    for w in want {
        assert!(err.contains(w), "{args:?}: '{w}' not in: {err}");
    }
}

fn edit(path: &Path, out: &Path, f: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(out, serde_json::to_string(&v).unwrap()).unwrap();
    out.to_path_buf()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shapes_beyond_the_bounds_exit_2() {
    refused(&["paths", "--pp-prefill", "9223372036854775808", "--pp-decode", "1", "--ib-cards", "1"], &["--pp-prefill", "1024"]);
    refused(&["paths", "--pp-prefill", "1", "--pp-decode", "1000000000", "--ib-cards", "1"], &["--pp-decode"]);
    refused(&["paths", "--pp-prefill", "10000000", "--pp-decode", "1", "--ib-cards", "1"], &["--pp-prefill"]);
    refused(&["paths", "--pp-prefill", "2", "--pp-decode", "1", "--ib-cards", "65"], &["--ib-cards", "64"]);
}

/// A nic_map shorter than PP_prefill in a calibration or results file.
#[test]
fn a_short_nic_map_in_a_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (res, cal) = Synth::default_rack().write(&dir.path().join("ok"));
    let short = |v: &mut serde_json::Value, at: &str| v.pointer_mut(at).unwrap().as_array_mut().unwrap().truncate(1);
    let bad_cal = edit(&cal, &dir.path().join("c/calibration.json"), |v| short(v, "/shape/nic_map"));
    refused(
        &["sim", "--scenario", "kv-burst", "--calibration", s(&bad_cal)],
        &["calibration.json", "nic_map has 1 entries but pp_prefill is 2"],
    );
    let xml = dir.path().join("x.xml");
    refused(&["export", "--format", "simgrid", "--out", s(&xml), "--calibration", s(&bad_cal)], &["calibration.json", "nic_map"]);
    let bad_res = edit(&res, &dir.path().join("r/results.json"), |v| short(v, "/rack/shape/nic_map"));
    refused(
        &["calibrate", "--results", s(bad_res.parent().unwrap()), "--out", s(&dir.path().join("o.json"))],
        &["results.json", "nic_map"],
    );
}

/// Calibrate with a non-positive transfer time; report with a goodput of 1e308.
#[test]
fn non_positive_or_huge_numbers_in_results_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (res, cal) = Synth::default_rack().write(&dir.path().join("ok"));
    for (n, (at, value)) in
        [("/measurements/0/flows/0/transfer_time_s/mean", -1.0), ("/measurements/0/flows/0/transfer_time_s/p50", 0.0)]
            .into_iter()
            .enumerate()
    {
        let bad = edit(&res, &dir.path().join(format!("t{n}/results.json")), |v| *v.pointer_mut(at).unwrap() = value.into());
        let out = dir.path().join(format!("t{n}/cal.json"));
        refused(
            &["calibrate", "--results", s(bad.parent().unwrap()), "--out", s(&out)],
            &["results.json", "measurements[0].flows[0].transfer_time_s"],
        );
    }
    let bad = edit(&res, &dir.path().join("h/results.json"), |v| {
        *v.pointer_mut("/measurements/0/flows/0/goodput_Bps/p50").unwrap() = 1e308.into()
    });
    let html = dir.path().join("r.html");
    refused(
        &["report", "--results", s(&bad), "--calibration", s(&cal), "--out", s(&html)],
        &["measurements[0].flows[0].goodput_Bps.p50"],
    );
}

/// Capacity 0 or -1, a negative sharing efficiency, alpha 1e308: refused by every reader.
#[test]
fn impossible_calibrations_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cal) = Synth::default_rack().write(&dir.path().join("ok"));
    let cases: [(&str, serde_json::Value, &str); 4] = [
        ("/segments/0/capacity_Bps", 0.0.into(), "segments[0].capacity_Bps"),
        ("/segments/0/capacity_Bps", (-1.0).into(), "segments[0].capacity_Bps"),
        ("/sharing_efficiency", (-0.5).into(), "sharing_efficiency"),
        ("/paths/0/pieces/0/alpha_s", 1e308.into(), "paths[0].pieces[0].alpha_s"),
    ];
    for (n, (at, value, field)) in cases.into_iter().enumerate() {
        let bad = edit(&cal, &dir.path().join(format!("c{n}/calibration.json")), |v| *v.pointer_mut(at).unwrap() = value);
        refused(&["sim", "--scenario", "kv-burst", "--calibration", s(&bad)], &["calibration.json", field]);
        let xml = dir.path().join(format!("c{n}.xml"));
        refused(&["export", "--format", "simgrid", "--out", s(&xml), "--calibration", s(&bad)], &[field]);
    }
}

/// Flow files: a segment outside the rack, 0 bytes, a release at 1e9 s.
#[test]
fn bad_flow_files_exit_2_naming_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cal) = Synth::default_rack().write(&dir.path().join("ok"));
    let flow = |hop: &str, bytes: u64, start: f64| serde_json::json!({"flows": [{"hops": [{"id": hop, "dir": "up"}], "bytes": bytes, "start_s": start}]});
    let cases = [
        (flow("GPU_P[99]_PCI", 1000, 0.0), "flows[0].hops[0]"),
        (flow("GPU_P[0]_PCI", 0, 0.0), "flows[0].bytes"),
        (flow("GPU_P[0]_PCI", 1000, 1e9), "flows[0].start_s"),
    ];
    for (n, (v, field)) in cases.into_iter().enumerate() {
        let f = dir.path().join(format!("f{n}.json"));
        std::fs::write(&f, v.to_string()).unwrap();
        refused(&["sim", "--calibration", s(&cal), "--flows", s(&f)], &[&format!("f{n}.json"), field]);
    }
    // A type error names the field, not the value.
    let f = dir.path().join("t.json");
    std::fs::write(&f, r#"{"flows": [{"path": null, "hops": [{"id": "GPU_P[0]_PCI", "dir": "up"}], "bytes": 1e308}]}"#).unwrap();
    refused(&["sim", "--calibration", s(&cal), "--flows", s(&f)], &["field 'flows[0].bytes'"]);
}

/// A calibrate --out that cannot be written leaves no temp file behind.
#[test]
fn a_failed_calibrate_out_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (res, _) = Synth::default_rack().write(&dir.path().join("ok"));
    // The output path is a directory: the rename over it fails.
    let out = dir.path().join("out.json");
    std::fs::create_dir(&out).unwrap();
    let o = linkcal().args(["calibrate", "--results", s(res.parent().unwrap()), "--out", s(&out)]).output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    let left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
}

/// The largest values the checks let through still make a report quickly (a contended p50 of
/// 1e308 used to run for minutes).
#[test]
fn a_report_at_the_largest_accepted_rates_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (res, cal) = Synth::default_rack().write(&dir.path().join("ok"));
    let max = linkcal::model::check::MAX_RATE_BPS;
    let big = edit(&res, &dir.path().join("b/results.json"), |v| {
        for m in v["measurements"].as_array_mut().unwrap() {
            if m["kind"] == "contended" {
                m["flows"][0]["goodput_Bps"]["p50"] = max.into();
                m["flows"][0]["goodput_Bps"]["max"] = max.into();
                m["aggregate"]["goodput_sum_Bps"]["p50"] = max.into();
            }
        }
    });
    let html = dir.path().join("r.html");
    let t0 = Instant::now();
    let out = linkcal().args(["report", "--results", s(&big), "--calibration", s(&cal), "--out", s(&html)]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    assert!(t0.elapsed() < Duration::from_secs(10), "report took {:?}", t0.elapsed());
}
