//! The spin-gate PTX assembled by NVIDIA's real `ptxas` for sm_80 (A100) and sm_90 (H100/H200),
//! so a PTX the driver's JIT would refuse is caught without a GPU. ptxas comes from the
//! nvidia-cuda-nvcc-cu12 wheel (scripts/ptxas-venv, cached under target/ptxas-venv), or from
//! `LINKCAL_PTXAS`. Where it cannot be had the test says so and passes, except under `CI=true`,
//! where a missing ptxas fails it.

use std::path::PathBuf;
use std::process::Command;

fn ptxas() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("LINKCAL_PTXAS") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let out = Command::new(root.join("scripts/ptxas-venv"))
        .arg(target.join("ptxas-venv"))
        .output()
        .map_err(|e| format!("scripts/ptxas-venv: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/ptxas-venv failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn spin_gate_ptx_assembles_for_sm80_and_sm90() {
    let ptxas = match ptxas() {
        Ok(p) => p,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI needs ptxas: {why}"),
        Err(why) => {
            eprintln!("skipped (not CI): no ptxas: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gate.ptx");
    std::fs::write(&src, linkcal::gpu::gate::SPIN_PTX).unwrap();
    for arch in ["sm_80", "sm_90"] {
        let cubin = dir.path().join(format!("gate_{arch}.cubin"));
        let out = Command::new(&ptxas)
            .arg(format!("-arch={arch}"))
            .arg("--warn-on-spills")
            .arg(&src)
            .arg("-o")
            .arg(&cubin)
            .output()
            .expect("run ptxas");
        assert!(out.status.success(), "ptxas -arch={arch}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::metadata(&cubin).unwrap().len() > 0, "{arch}: empty cubin");
        // The entry the host code looks up must be in the image.
        let image = std::fs::read(&cubin).unwrap();
        let entry = linkcal::gpu::gate::SPIN_ENTRY.as_bytes();
        assert!(image.windows(entry.len()).any(|w| w == entry), "{arch}: no {} symbol", linkcal::gpu::gate::SPIN_ENTRY);
    }
}
