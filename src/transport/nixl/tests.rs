//! In-process NIXL flows (two agents in one process, over UCX tcp on loopback). Without
//! NIXL they print a waiver, except under `CI=true`, where a missing NIXL fails.

use super::*;
use crate::transport::host_tcp::tests::flow;

/// Whether NIXL is here: first makes (once) the pinned venv with `scripts/nixl-venv` in the
/// target folder and points `VIRTUAL_ENV` at it, so the loader's once-per-process lookup sees
/// it. Under `CI=true` a missing NIXL fails; elsewhere it prints a waiver.
fn nixl_here() -> bool {
    static VENV: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let venv = VENV.get_or_init(|| {
        // target/debug/deps/<test binary> -> target/nixl-venv
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let venv = exe.ancestors().nth(3).ok_or("no target folder")?.join("nixl-venv");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nixl-venv");
        let o = std::process::Command::new(script).arg(&venv).output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("scripts/nixl-venv: {}", String::from_utf8_lossy(&o.stderr)));
        }
        // Set before any test calls the loader (every test here calls this first).
        std::env::set_var("VIRTUAL_ENV", &venv);
        Ok(venv.display().to_string())
    });
    let ci = std::env::var("CI").as_deref() == Ok("true");
    match (venv, loader::load()) {
        (_, Ok(_)) => true,
        (v, Err(e)) => {
            assert!(!ci, "CI=true and NIXL is missing: {e} ({v:?})");
            eprintln!("waived: {e} ({v:?})");
            false
        }
    }
}

fn nixl_flow(id: u64, max: u64, options: serde_json::Value) -> FlowSpec {
    FlowSpec { options, ..flow(id, TransportKind::Nixl, max) }
}

fn round_trip(f: &FlowSpec, sizes: &[u64]) -> ReceiverStats {
    let prepared = Nixl.prepare_receiver(f).unwrap();
    let server = std::thread::spawn(move || prepared.receiver.serve());
    let mut s = Nixl.connect_sender(f, &prepared.endpoint).unwrap();
    for &n in sizes {
        assert!(s.transfer(n).unwrap() > Duration::ZERO);
    }
    s.finish().unwrap();
    server.join().unwrap().unwrap()
}

#[test]
fn write_and_read_move_every_block() {
    if !nixl_here() {
        return;
    }
    for (id, op) in [(31, "write"), (32, "read")] {
        let f = nixl_flow(id, 4 << 20, serde_json::json!({"op": op, "block_bytes": 65536}));
        let stats = round_trip(&f, &[65536, 4 << 20, 1 << 20]);
        assert_eq!((stats.transfers, stats.bytes), (3, 65536 + (4 << 20) + (1 << 20)), "{op}");
    }
}

#[test]
fn a_payload_that_is_not_whole_blocks_is_refused_by_name() {
    if !nixl_here() {
        return;
    }
    let f = nixl_flow(33, 1 << 20, serde_json::json!({"block_bytes": 65536}));
    let prepared = Nixl.prepare_receiver(&f).unwrap();
    let server = std::thread::spawn(move || prepared.receiver.serve());
    let mut s = Nixl.connect_sender(&f, &prepared.endpoint).unwrap();
    let e = s.transfer(1000).unwrap_err();
    assert!(e.to_string().contains("whole number of 65536 B KV blocks"), "{e}");
    s.finish().unwrap();
    assert_eq!(server.join().unwrap().unwrap().transfers, 0);
}

#[test]
fn bad_options_and_endpoints_are_errors_not_aborts() {
    if !nixl_here() {
        return;
    }
    let f = nixl_flow(34, 1 << 20, serde_json::json!({"block_bytes": 0}));
    assert!(Nixl.prepare_receiver(&f).err().unwrap().to_string().contains("block_bytes is 0"));
    let f = nixl_flow(35, 1 << 20, serde_json::Value::Null);
    let e = Nixl.connect_sender(&f, &serde_json::json!({"addr": "127.0.0.1:1"})).err().unwrap();
    assert!(e.to_string().contains("nixl endpoint"), "{e}");
    let bogus = serde_json::json!({"addr": "127.0.0.1:1", "agent": "x", "md": "00ff", "base": 0, "len": 0, "dev": 0});
    let e = Nixl.connect_sender(&f, &bogus).err().unwrap();
    assert!(e.to_string().contains("loadRemoteMD"), "{e}");
}

#[test]
fn applicability_is_a_waiver_or_applies_never_an_abort() {
    let here = nixl_here();
    assert_eq!(here, Nixl.applicability() == Applicability::Applies);
    match Nixl.applicability() {
        Applicability::Applies => assert!(loader::load().is_ok()),
        Applicability::Waived { reason } => assert!(reason.contains("libnixl_capi.so") || reason.contains("NIXL"), "{reason}"),
    }
}
