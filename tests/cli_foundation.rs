//! CLI behaviour of `paths`, `payload` and `schema`, bad inputs included.

use assert_cmd::Command;
use predicates::prelude::*;

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

#[test]
fn paths_json_shape() {
    let out = linkcal().args(["paths", "--pp-prefill", "8", "--pp-decode", "8", "--ib-cards", "4", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = v["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 22);
    assert_eq!(paths[7]["kind"], "prefill_to_decode");
    assert_eq!(paths[7]["src"], 0);
    assert_eq!(paths[7]["segments"][1], serde_json::json!({"id": "IB_NIC_P[0]_PCI", "dir": "down"}));
    let shared = v["shared"].as_array().unwrap();
    let nic0 = shared.iter().find(|s| s["segment"] == "IB_NIC_P[0]_PCI").unwrap();
    assert_eq!(nic0["dir"], "down");
    assert_eq!(nic0["paths"], serde_json::json!([7, 11]));
}

#[test]
fn paths_table_names_segments() {
    linkcal()
        .args(["paths", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("IB_Cable_D[1] down").and(predicate::str::contains("shared segment directions")));
}

#[test]
fn payload_json_matches_hand_computation() {
    let out = linkcal()
        .args([
            "payload",
            "--model",
            "llama-3.1-8b",
            "--n",
            "8",
            "--t",
            "4096",
            "--m",
            "512",
            "--pp-prefill",
            "4",
            "--pp-decode",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes_per_element"], 2);
    assert_eq!(v["chunk_activation_bytes"], 4_194_304u64);
    assert_eq!(v["decode_activation_bytes"], 65_536u64);
    assert_eq!(v["stages"][2]["layers"], 8);
    assert_eq!(v["stages"][2]["kv_handoff_bytes"], 1_073_741_824u64);
}

#[test]
fn payload_dtype_override() {
    let out = linkcal()
        .args([
            "payload",
            "--model",
            "llama-3.1-70b",
            "--n",
            "1",
            "--t",
            "10",
            "--m",
            "10",
            "--pp-prefill",
            "1",
            "--pp-decode",
            "1",
            "--dtype",
            "fp8",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes_per_element"], 1);
    assert_eq!(v["chunk_activation_bytes"], 10 * 8192);
}

fn bad(args: &[&str], needle: &str) {
    let assert = linkcal().args(args).assert().code(2).stderr(predicate::str::contains(needle));
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_inputs_exit_2_naming_the_flag() {
    bad(&["paths", "--pp-prefill", "0", "--pp-decode", "1", "--ib-cards", "1"], "--pp-prefill");
    bad(&["paths", "--pp-prefill", "2", "--pp-decode", "1", "--ib-cards", "0"], "--ib-cards");
    bad(&["paths", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "2", "--nic-map", "0"], "--nic-map");
    bad(&["paths", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "2", "--nic-map", "0,2"], "--nic-map");
    bad(&["paths", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "2", "--nic-map", "a,b"], "--nic-map");
    let common = ["--n", "1", "--t", "1", "--m", "1", "--pp-prefill", "1", "--pp-decode", "1"];
    let with =
        |extra: &[&str]| -> Vec<String> { ["payload"].iter().chain(extra).chain(common.iter()).map(|s| s.to_string()).collect() };
    let args = with(&["--model", "llama-7"]);
    bad(&args.iter().map(String::as_str).collect::<Vec<_>>(), "unknown model preset");
    let args = with(&["--model-config", "/nonexistent/config.json"]);
    bad(&args.iter().map(String::as_str).collect::<Vec<_>>(), "/nonexistent/config.json");
    bad(
        &["payload", "--model", "llama-3.1-8b", "--n", "0", "--t", "1", "--m", "1", "--pp-prefill", "1", "--pp-decode", "1"],
        "--n",
    );
    bad(
        &["payload", "--model", "llama-3.1-8b", "--n", "1", "--t", "1", "--m", "0", "--pp-prefill", "1", "--pp-decode", "1"],
        "--m",
    );
    bad(
        &["payload", "--model", "llama-3.1-8b", "--n", "1", "--t", "1", "--m", "1", "--pp-prefill", "0", "--pp-decode", "1"],
        "--pp-prefill",
    );
    bad(
        &[
            "payload",
            "--model",
            "llama-3.1-8b",
            "--n",
            "1",
            "--t",
            "1",
            "--m",
            "1",
            "--pp-prefill",
            "1",
            "--pp-decode",
            "1",
            "--dtype",
            "int2",
        ],
        "dtype",
    );
}

#[test]
fn incomplete_model_config_names_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, r#"{"hidden_size": 4096, "num_hidden_layers": 32}"#).unwrap();
    bad(
        &[
            "payload",
            "--model-config",
            p.to_str().unwrap(),
            "--n",
            "1",
            "--t",
            "1",
            "--m",
            "1",
            "--pp-prefill",
            "1",
            "--pp-decode",
            "1",
        ],
        "num_attention_heads",
    );
}

#[test]
fn schema_files_have_not_drifted() {
    // Fails when a model type changed without `linkcal schema` being re-run and committed.
    linkcal().args(["schema", "--check", "--dir", concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")]).assert().success();
}

#[test]
fn closed_stdout_is_not_a_panic() {
    // `linkcal paths --json | head -c 10`: the reader goes away mid-output.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("linkcal"))
        .args(["paths", "--pp-prefill", "8", "--pp-decode", "8", "--ib-cards", "4", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
