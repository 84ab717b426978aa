//! `linkcal run` against agents on loopback: protocol 2 end to end, the agent's name checked
//! against the rack file, and flags checked against the agents' limits before anything runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::cargo_bin;

mod loopback_support;

use loopback_support::{start_agents, Agents};

/// A (1,1,1) rack of `gpu_p0` and `gpu_d0` on loopback; `names` are the names the agents at
/// those two addresses call themselves. Returns the rack file.
fn rack(dir: &Path, names: [&str; 2], agents: &mut Agents) -> PathBuf {
    let addrs = start_agents(dir, &names, agents, |_| {});
    let host = |name: &str, role: &str, addr: &str| serde_json::json!({"name": name, "role": role, "index": 0, "control_addr": addr, "data_addr": "127.0.0.1", "netns": null});
    let rack = serde_json::json!({
        "schema": "linkcal.rack/2",
        "shape": {"pp_prefill": 1, "pp_decode": 1, "ib_cards": 1, "nic_map": [0]},
        "emulated": false,
        "payload_scale": 1.0,
        "mtu_bytes": null,
        "token_file": "token",
        "hosts": [host("gpu_p0", "prefill_gpu", &addrs[0]), host("gpu_d0", "decode_gpu", &addrs[1])],
    });
    let path = dir.join("rack.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rack).unwrap()).unwrap();
    path
}

fn run(rack: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(cargo_bin("linkcal"))
        .args(["run", "--paths", "prefill_to_decode:0->0", "--contention", "none", "--quick", "--no-progress", "--rack"])
        .arg(rack)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_run_measures_through_protocol_2_agents() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), ["gpu_p0", "gpu_d0"], &mut agents);
    let out = dir.path().join("out");
    let o = run(&rack, &out, &["--sizes", "64KiB", "--time-cap", "0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let m = results["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["flows"][0]["payload_bytes"], 65536);
}

#[test]
fn an_agent_answering_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    // The agent at gpu_d0's address is gpu_p0's twin.
    let rack = rack(dir.path(), ["gpu_p0", "gpu_p0"], &mut agents);
    let o = run(&rack, &dir.path().join("out"), &["--sizes", "64KiB"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gpu_d0") && err.contains("gpu_p0") && err.contains("control_addr"), "{err}");
}

#[test]
fn flags_over_the_agents_limits_exit_2_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), ["gpu_p0", "gpu_d0"], &mut agents);
    let cases: [(&[&str], &str); 7] = [
        (&["--sizes", "1000GiB"], "--sizes"),
        (&["--contended-sizes", "8GiB"], "--contended-sizes"),
        (&["--ci-target", "0"], "--ci-target"),
        (&["--ci-target", "NaN"], "--ci-target"),
        (&["--ci-target=-1"], "--ci-target"),
        (&["--time-cap=-1"], "--time-cap"),
        (&["--time-cap", "NaN"], "--time-cap"),
    ];
    for (flags, name) in cases {
        let out = dir.path().join("out");
        let o = run(&rack, &out, flags);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(name), "{flags:?}: {err}");
        assert!(!out.join("journal.jsonl").exists(), "{flags:?} started a run");
    }
}

#[test]
fn a_rerun_into_a_used_out_is_refused_and_resume_measures_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), ["gpu_p0", "gpu_d0"], &mut agents);
    let out = dir.path().join("out");
    let journal = || std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    let o = run(&rack, &out, &["--sizes", "64KiB", "--time-cap", "0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let first = journal();
    assert_eq!(first.lines().count(), 1);
    // A plain re-run is refused before it touches anything, naming the directory and the ways on.
    let o = run(&rack, &out, &["--sizes", "64KiB", "--time-cap", "0.2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&out.display().to_string()) && err.contains("--resume") && err.contains("--force"), "{err}");
    assert_eq!(journal(), first);
    // Resume with one more size: the finished measurement is kept, only the new one runs.
    let resume = ["--resume", out.to_str().unwrap(), "--sizes", "64KiB,128KiB", "--time-cap", "0.2"];
    let o = run(&rack, &out, &resume);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let now = journal();
    assert!(now.starts_with(&first) && now.lines().count() == 2, "{now}");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let bytes: Vec<u64> =
        results["measurements"].as_array().unwrap().iter().map(|m| m["flows"][0]["payload_bytes"].as_u64().unwrap()).collect();
    assert_eq!(bytes, vec![65536, 131072]);
    // --force starts over.
    let o = run(&rack, &out, &["--force", "--sizes", "64KiB", "--time-cap", "0.2"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(journal().lines().count(), 1);
}
