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
    // vLLM passes hidden states and the residual: 2 x 512 x 4096 x 2 B; 2 x 8 x 4096 x 2 B.
    assert_eq!(v["chunk_activation_bytes"], 8_388_608u64);
    assert_eq!(v["decode_activation_bytes"], 131_072u64);
    assert_eq!(v["serving"]["engine"], "vllm");
    assert_eq!(v["serving"]["activation_tensors"], 2);
    // 32 layers over 4 stages: 8 each; 8 x 4096 x 8 x (2 x 8 x 128 x 2) B.
    assert_eq!(v["stages"][2]["layers"], 8);
    assert_eq!(v["stages"][2]["kv_handoff_bytes"], 1_073_741_824u64);
    assert_eq!(v["layers"].as_array().unwrap().len(), 32);
    assert_eq!(
        v["layers"][9],
        serde_json::json!({"layer": 9, "stage": 1, "kind": "full", "kv_heads": 8, "head_dim": 128, "tokens_held": 4096, "bytes": 134_217_728u64})
    );
}

fn payload_json(args: &[&str]) -> serde_json::Value {
    let out = linkcal().arg("payload").args(args).args(["--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn payload_engine_profiles_and_spec_formula() {
    let gpt = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/model-configs/gpt-oss-20b.json");
    let common = ["--n", "8", "--t", "8192", "--m", "2048", "--pp-prefill", "2", "--pp-decode", "2"];
    let with = |extra: &[&str]| payload_json(&[&["--model-config", gpt][..], &common[..], extra].concat());
    let per_token = 2 * 8 * 64 * 2;
    // vLLM: 12 sliding layers keep 128 tokens, 12 full layers all 8192; 24 layers, 12 per stage.
    let v = with(&[]);
    assert_eq!(v["stages"][0]["kv_handoff_bytes"], 6 * 8 * 128 * per_token + 6 * 8 * 8192 * per_token);
    assert_eq!(v["layers"][0]["kind"], "sliding");
    assert_eq!(v["layers"][0]["window"], 128);
    // SGLang pages of one token keep W - 1 = 127.
    let v = with(&["--engine", "sglang"]);
    assert_eq!(v["stages"][0]["kv_handoff_bytes"], 6 * 8 * 127 * per_token + 6 * 8 * 8192 * per_token);
    // The README's uniform formula: every layer over T, hidden states only.
    let v = with(&["--formula", "spec"]);
    assert_eq!(v["stages"][0]["kv_handoff_bytes"], 12 * 8 * 8192 * per_token);
    assert_eq!(v["chunk_activation_bytes"], 2048 * 2880 * 2);
    // fp8 KV cache: 1 B per element, activations stay bf16 (x2 for the residual).
    let v = with(&["--kv-cache-dtype", "fp8"]);
    assert_eq!(v["stages"][1]["kv_handoff_bytes"], (6 * 8 * 128 + 6 * 8 * 8192) * per_token / 2);
    assert_eq!(v["chunk_activation_bytes"], 2 * 2048 * 2880 * 2);
}

#[test]
fn payload_reads_nonfinite_tokens_and_refuses_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"rope_scaling":{"factor":Infinity}}"#).unwrap();
    let v = payload_json(&[
        "--model-config",
        p.to_str().unwrap(),
        "--n",
        "1",
        "--t",
        "16",
        "--m",
        "1",
        "--pp-prefill",
        "1",
        "--pp-decode",
        "1",
    ]);
    // No dtype declared: float32 per vLLM, served as bf16. 2 layers x 16 tokens x 2 x 4 x 16 x 2 B.
    assert_eq!(v["stages"][0]["kv_handoff_bytes"], 2 * 16 * (2 * 4 * 16 * 2));
    let big = (1u64 << 32).to_string();
    bad(
        &["payload", "--model", "llama-3.1-8b", "--n", &big, "--t", &big, "--m", "1", "--pp-prefill", "1", "--pp-decode", "1"],
        "overflows",
    );
    std::fs::write(&p, r#"{"hidden_size":8192,"num_hidden_layers":2,"num_attention_heads":64,"num_key_value_heads":7}"#).unwrap();
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
        "num_key_value_heads",
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
            "--kv-cache-dtype",
            "fp8_ds_mla",
        ],
        "no MLA",
    );
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
    // Hidden states and residual, 1 B each.
    assert_eq!(v["chunk_activation_bytes"], 2 * 10 * 8192);
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
fn a_drifted_schema_file_is_a_finding_naming_it() {
    let d = tempfile::tempdir().unwrap();
    linkcal().args(["schema", "--dir"]).arg(d.path()).assert().success();
    let f = d.path().join("results.schema.json");
    std::fs::write(&f, std::fs::read_to_string(&f).unwrap().replacen("Median", "Mean", 1)).unwrap();
    let o = linkcal().args(["schema", "--check", "--dir"]).arg(d.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "--help says exit 1 on drift");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&f.display().to_string()));
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
