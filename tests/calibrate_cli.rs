//! `linkcal calibrate`, `sim` and `export` end to end on a synthetic run, and their bad inputs.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

use linkcal::calibrate::plan::plan;
use linkcal::sim::synth::{random_truth, solo_experiments, synthesize, SynthConfig};
use linkcal::spec::{Experiment, HopOptions, RackShape, RouteKind, RouteSet};

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

/// A synthetic (4,4,2) run with solo, plan and the spec's burst sets, written as `linkcal run` would.
fn synthetic_run(dir: &Path) {
    let shape = RackShape::new(4, 4, 2).unwrap();
    let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
    let mut exps = solo_experiments(&set);
    exps.extend(plan(&set, None).experiments);
    for (name, kind) in [("kv_burst", RouteKind::PrefillToDecode), ("decode_all", RouteKind::DecodeInterRank)] {
        exps.push(Experiment {
            name: name.into(),
            flows: set.of_kind(kind).map(|(_, r)| r.path).collect(),
            purpose: name.into(),
        });
    }
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: random_truth(&shape, 11, 1e8, 1e9),
        hops: HopOptions::default(),
        sizes: vec![1 << 16, 1 << 20, 16 << 20],
        alpha_s: 3e-5,
        noise: 0.005,
        samples: 7,
        seed: 11,
    };
    let res = synthesize(&cfg, &exps).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (last, rest) = res.measurements.split_last().unwrap();
    let mut head = res.clone();
    head.measurements = rest.to_vec();
    linkcal::model::write_json(&dir.join("results.json"), &head).unwrap();
    // The last measurement only reached the journal.
    std::fs::write(dir.join("journal.jsonl"), serde_json::to_string(last).unwrap() + "\n").unwrap();
}

#[test]
fn calibrate_sim_export_pipeline() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    synthetic_run(&run);
    let cal = d.path().join("cal.json");
    linkcal()
        .args(["calibrate", "--results"])
        .arg(&run)
        .arg("--out")
        .arg(&cal)
        .assert()
        .success()
        .stdout(predicate::str::contains("saturation").and(predicate::str::contains("B/s per direction")));
    let csv = std::fs::read_to_string(d.path().join("cal.csv")).unwrap();
    assert!(csv.starts_with("segment,dir,outside_spec,method,capacity_Bps"));
    linkcal().args(["schema", "--check"]).assert().success();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cal).unwrap()).unwrap();
    assert_eq!(v["schema"], "linkcal.calibration/3");
    assert!(v["provenance"]["argv"].as_array().unwrap().len() > 2);
    // The simulator replays the contended runs within 5% (makespan and aggregate).
    let out = linkcal()
        .args(["sim", "--json", "--tolerance", "0.05", "--calibration"])
        .arg(&cal)
        .arg("--against")
        .arg(&run)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "worst error {}", j["worst_error"]);
    assert!(j["checks"].as_array().unwrap().iter().any(|c| c["id"].as_str().unwrap().starts_with("kv_burst/")));
    for sc in ["kv-burst", "pipeline-step", "pipeline-with-handoff", "decode-step"] {
        linkcal()
            .args(["sim", "--scenario", sc, "--calibration"])
            .arg(&cal)
            .assert()
            .success()
            .stdout(predicate::str::contains("makespan"));
    }
    let flows = d.path().join("flows.json");
    std::fs::write(
        &flows,
        r#"{"flows": [{"path": {"kind": "prefill_to_decode", "src": 0, "dst": 0}, "bytes": 1000000},
                      {"hops": [{"id": "IB_Cable_P[0]", "dir": "up"}], "bytes": 1000000, "start_s": 0.001, "name": "other"}]}"#,
    )
    .unwrap();
    linkcal()
        .args(["sim", "--calibration"])
        .arg(&cal)
        .arg("--flows")
        .arg(&flows)
        .assert()
        .success()
        .stdout(predicate::str::contains("other"));
    for (fmt, needle) in [("simgrid", "<platform version=\"4.1\">"), ("astra-sim", "GB/s")] {
        let out = d.path().join(format!("out.{fmt}"));
        linkcal().args(["export", "--format", fmt, "--calibration"]).arg(&cal).arg("--out").arg(&out).assert().success();
        assert!(std::fs::read_to_string(&out).unwrap().contains(needle), "{fmt}");
    }
    let base = d.path().join("base.yaml");
    std::fs::write(&base, "data_dir: data/x\ngpu:\n  mem_bw: 1\nnode:\n  num_gpus_per_node: 8\n").unwrap();
    let out = d.path().join("aic");
    let export = |fmt: &str, extra: &[&str]| {
        let mut c = linkcal();
        c.args(["export", "--format", fmt, "--calibration"]).arg(&cal).arg("--out").arg(&out).args(extra);
        c
    };
    export("aiconfigurator", &[]).assert().code(2).stderr(predicate::str::contains("--aic-base"));
    export("aiconfigurator", &["--aic-base", base.to_str().unwrap()]).assert().success();
    assert!(std::fs::read_to_string(out.join("linkcal_decode.yaml")).unwrap().contains("data_dir: data/x"));
    export("vidur", &[]).assert().code(2).stderr(predicate::str::contains("--vidur-node"));
    export("vidur", &["--vidur-node", "decode"]).assert().success();
    assert!(std::fs::read_to_string(out.join("send_recv.csv")).unwrap().contains("send_recv,1,1"));
}

#[test]
fn bad_inputs_exit_2_naming_file_and_field() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cal = d.path().join("cal.json");
    linkcal()
        .args(["calibrate", "--results"])
        .arg(&empty)
        .arg("--out")
        .arg(&cal)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("results.json"));
    let run = d.path().join("run");
    synthetic_run(&run);
    let mut text = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    text.truncate(text.len() / 2);
    // A last line cut off by a crash is ignored, and said.
    std::fs::write(run.join("journal.jsonl"), &text).unwrap();
    linkcal()
        .args(["calibrate", "--results"])
        .arg(&run)
        .arg("--out")
        .arg(&cal)
        .assert()
        .success()
        .stderr(predicate::str::contains("journal.jsonl line 1 was cut off"));
    // A complete line that is not a measurement is damage: exit 2 naming the line.
    std::fs::write(run.join("journal.jsonl"), text + "\n").unwrap();
    linkcal()
        .args(["calibrate", "--results"])
        .arg(&run)
        .arg("--out")
        .arg(&cal)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("journal.jsonl").and(predicate::str::contains("line 1")));
    std::fs::remove_file(run.join("journal.jsonl")).unwrap();
    linkcal().args(["calibrate", "--results"]).arg(&run).arg("--out").arg(&cal).assert().success();
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cal).unwrap()).unwrap();
    let bad = d.path().join("bad.json");
    v["schema"] = "linkcal.calibration/7".into();
    std::fs::write(&bad, v.to_string()).unwrap();
    linkcal()
        .args(["sim", "--scenario", "kv-burst", "--calibration"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.json").and(predicate::str::contains("linkcal.calibration/7")));
    v["schema"] = "linkcal.calibration/3".into();
    v.as_object_mut().unwrap().remove("segments");
    std::fs::write(&bad, v.to_string()).unwrap();
    linkcal()
        .args(["export", "--format", "simgrid", "--out"])
        .arg(d.path().join("x.xml"))
        .arg("--calibration")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.json").and(predicate::str::contains("'segments'")));
    let flows = d.path().join("flows.json");
    std::fs::write(&flows, r#"{"flows": [{"path": {"kind": "prefill_to_decode", "src": 9, "dst": 0}, "bytes": 10}]}"#).unwrap();
    linkcal()
        .args(["sim", "--calibration"])
        .arg(&cal)
        .arg("--flows")
        .arg(&flows)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("flows.json").and(predicate::str::contains("flows[0].path")));
}

#[test]
fn topology_nominal_values_sit_beside_calibrated_ones() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    synthetic_run(&run);
    let fixture = Path::new("../shared/topo-fixtures/open-mpi_hwloc_nvidiaDGX2.xml");
    assert!(fixture.exists(), "the shared topology fixtures must sit beside the repository");
    let out = linkcal()
        .args(["discover", "--as", "prefill", "--pp-prefill", "4", "--ib-cards", "2", "--json", "--xml"])
        .arg(fixture)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let topo = d.path().join("topology.json");
    std::fs::write(&topo, &out.stdout).unwrap();
    let cal = d.path().join("cal.json");
    linkcal().args(["calibrate", "--results"]).arg(&run).arg("--topology").arg(&topo).arg("--out").arg(&cal).assert().success();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cal).unwrap()).unwrap();
    assert_eq!(v["topology_digest"].as_str().unwrap().len(), 64);
    let seg = |name: &str, dir: &str| {
        v["segments"].as_array().unwrap().iter().find(|s| s["segment"] == name && s["dir"] == dir).unwrap().clone()
    };
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = t["conformance"]["capacities"].as_array().unwrap().iter().find(|c| c["segment"] == "GPU_P[0]_PCI").unwrap()
        ["nominal_Bps"]
        .clone();
    assert!(want.as_f64().unwrap() > 1e9);
    assert_eq!(seg("GPU_P[0]_PCI", "up")["nominal_Bps"], want);
    assert_eq!(seg("GPU_P[0]_PCI", "down")["nominal_Bps"], want);
    assert!(seg("IB_Cable_D[0]", "down")["nominal_Bps"].is_null(), "no link speed known: null");
    linkcal()
        .args(["calibrate", "--results"])
        .arg(&run)
        .arg("--topology")
        .arg(&cal)
        .arg("--out")
        .arg(d.path().join("x.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("linkcal.topology/1"));
}
