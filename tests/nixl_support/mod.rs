//! Helpers of the KV-engine tests: the venvs that hold NIXL's and Mooncake's wheels, and
//! per-payload figures read from a results file.
#![allow(dead_code)]

pub mod efficiency;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Mean goodput (B/s) and mean transfer time (s) per payload.
pub fn per_payload(results: &serde_json::Value) -> Vec<(u64, f64, f64)> {
    let mut v: Vec<(u64, f64, f64)> = results["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["flows"].as_array().unwrap().iter())
        .map(|f| {
            assert!(f["samples"].as_u64().unwrap() >= 3, "{f}");
            (
                f["payload_bytes"].as_u64().unwrap(),
                f["goodput_Bps"]["mean"].as_f64().unwrap(),
                f["transfer_time_s"]["mean"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|r| r.0);
    v
}

/// The venv with NIXL, made by `scripts/nixl-venv` (None: waived locally; panics under CI).
pub fn nixl_venv() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("nixl-venv");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nixl-venv");
    let o = Command::new(script).arg(&venv).output().unwrap();
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!ci, "CI=true and scripts/nixl-venv failed: {err}");
        eprintln!("waived: NIXL not installed (scripts/nixl-venv: {err})");
        return None;
    }
    Some(venv)
}

/// The venv with Mooncake Transfer Engine, made by `scripts/mooncake-venv` (None: waived
/// locally; panics under CI).
pub fn mooncake_venv() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("mooncake-venv");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mooncake-venv");
    let o = Command::new(script).arg(&venv).output().unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and scripts/mooncake-venv failed: {err}");
        eprintln!("waived: Mooncake not installed (scripts/mooncake-venv: {err})");
        return None;
    }
    Some(venv)
}

/// `linkcal run --rack RACK --out OUT` of the Path-2 routes `paths` (quick, no progress) with
/// `extra`; returns (exit code, stderr, results.json if written).
pub fn run_path2(rack: &Path, out: &Path, paths: &str, extra: &[&str]) -> (Option<i32>, String, Option<serde_json::Value>) {
    let o = Command::new(assert_cmd::cargo::cargo_bin("linkcal"))
        .args(["run", "--paths", paths, "--quick", "--no-progress", "--rack"])
        .arg(rack)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let results = std::fs::read_to_string(out.join("results.json")).ok().map(|s| serde_json::from_str(&s).unwrap());
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), results)
}
