//! In-process NIXL flows (two agents in one process, over UCX tcp on loopback). Without
//! NIXL they print a waiver, except under `CI=true`, where a missing NIXL fails.

use super::*;
use crate::transport::host_tcp::tests::flow;

/// Whether NIXL is here; under CI its absence fails the test.
fn nixl_here() -> bool {
    match loader::load() {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true and NIXL is missing: {e}"),
        Err(e) => {
            eprintln!("waived: {e}");
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
    match Nixl.applicability() {
        Applicability::Applies => assert!(loader::load().is_ok()),
        Applicability::Waived { reason } => assert!(reason.contains("libnixl_capi.so") || reason.contains("NIXL"), "{reason}"),
    }
}
