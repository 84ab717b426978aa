//! `linkcal probe --list` on whatever machine runs the tests: every probe is listed as
//! "applies" or "waived: <reason>"; on a machine without CUDA or RDMA the reasons say so.

use assert_cmd::Command;

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

#[test]
fn list_prints_every_probe_with_applies_or_a_waiver() {
    let out = linkcal().args(["probe", "--list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.ends_with("  applies") || l.contains("  waived: "), "line without a status: {l}");
    }
    for kind in [
        "cuda_p2p",
        "cuda_d2h",
        "cuda_h2d",
        "gpu_staged_tcp",
        "gpudirect_rdma",
        "host_rdma",
        "hip_p2p",
        "hip_d2h",
        "hip_h2d",
        "hip_staged_tcp",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(kind)), "{kind} missing from:\n{text}");
    }
    match linkcal::gpu::driver_status() {
        Err(linkcal::gpu::Unavailable::NoLibrary) => {
            let l = lines.iter().find(|l| l.starts_with("cuda_p2p")).unwrap();
            assert!(l.ends_with("waived: libcuda.so not found"), "{l}");
        }
        Err(other) => assert!(text.contains(&other.to_string()), "{text}"),
        Ok(_) => {}
    }
    if let Err(linkcal::gpu::Unavailable::HipLibrary { .. }) = linkcal::gpu::hip::hip_status() {
        for kind in ["hip_p2p", "hip_d2h", "hip_h2d", "hip_staged_tcp"] {
            let l = lines.iter().find(|l| l.starts_with(kind)).unwrap();
            assert!(l.contains("waived: libamdhip64.so not found"), "{l}");
        }
    }
    // No RDMA device, or no libibverbs.so.1 at all ("... not found: install rdma-core /
    // libibverbs1"): the listing says exactly why.
    if let Err(u) = linkcal::rdma::list_devices() {
        let l = lines.iter().find(|l| l.starts_with("host_rdma")).unwrap();
        assert!(l.contains(&format!("waived: {u}")), "{l}");
        let library = matches!(u, linkcal::rdma::Unavailable::Library { .. });
        assert!(u.to_string().starts_with("no RDMA device") || library, "{u}");
    }
}

#[test]
fn list_as_json_carries_status_and_reason() {
    let out = linkcal().args(["probe", "--list", "--json", "--as", "decode"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert!(!items.is_empty());
    for p in items {
        match p["status"]["status"].as_str().unwrap() {
            "applies" => {}
            "waived" => assert!(!p["status"]["reason"].as_str().unwrap().is_empty()),
            other => panic!("unknown status {other}"),
        }
    }
}

#[test]
fn bad_flags_are_bad_input() {
    let out = linkcal().args(["probe", "--list", "--gpus", "zz:00"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gpus"));
    let out = linkcal().args(["probe", "--list", "--nic-map", "0,x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = linkcal().arg("probe").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_writes_the_results_files_and_waives_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = linkcal().args(["probe", "--run", "--quick", "--sizes", "64K,1M", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    let r: linkcal::model::Results = serde_json::from_str(&text).unwrap();
    assert_eq!(r.schema, "linkcal.results/3");
    assert!(!r.rack.emulated);
    assert!(dir.path().join("results.csv").exists());
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), r.measurements.len());
    if matches!(linkcal::gpu::driver_status(), Err(linkcal::gpu::Unavailable::NoLibrary)) {
        assert!(r.measurements.is_empty(), "measured without a GPU");
        assert!(r.waivers.iter().any(|w| w.reason == "libcuda.so not found"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("waived: libcuda.so not found"), "{stderr}");
    }
    if let Err(linkcal::gpu::Unavailable::HipLibrary { .. }) = linkcal::gpu::hip::hip_status() {
        assert!(r.waivers.iter().any(|w| w.probe == "hip_d2h all GPUs" && w.reason == "libamdhip64.so not found"));
    }
    if let Err(u) = linkcal::rdma::list_devices() {
        assert!(r.waivers.iter().any(|w| w.reason == u.to_string()), "{u}");
    }
}

#[test]
fn a_topology_file_for_peer_links_is_read_and_a_bad_one_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("topo.txt");
    std::fs::write(&good, "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV12\t0-7\nGPU1\tNV12\t X \t0-7\n\nLegend:\n\n  X    = Self\n")
        .unwrap();
    let out = linkcal().args(["probe", "--list", "--nvidia-smi-topo"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = dir.path().join("not-a-matrix.txt");
    std::fs::write(&bad, "hello\n").unwrap();
    let out = linkcal().args(["probe", "--list", "--nvidia-smi-topo"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-matrix.txt"));
}

/// `scripts/hw-smoke` runs a prebuilt binary (no cargo, no apt), says what the host lacks and
/// ends in a summary; without a binary it is exit 2 naming where it looked.
#[test]
fn hw_smoke_runs_a_prebuilt_binary_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hw-smoke");
    let out = std::process::Command::new(&script)
        .args(["--quick", "--sizes", "64K"])
        .env("LINKCAL_BIN", env!("CARGO_BIN_EXE_linkcal"))
        .env("OUT", dir.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("== summary") && text.contains("applies"), "{text}");
    for f in ["results.json", "probes.txt", "figures.txt"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    if linkcal::gpu::driver_status().is_err() {
        assert!(text.contains("MISSING: libcuda.so.1"), "{text}");
        assert!(text.contains("cuda_p2p  waived: "), "{text}");
    }
    let none = std::process::Command::new(&script).env("LINKCAL_BIN", dir.path().join("no-such-linkcal")).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no linkcal binary"));
}
