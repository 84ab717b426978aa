//! Path 2 through NIXL on the emulated rack (needs root: namespaces, veth, tbf), beside host
//! TCP on the same routes: a (2,2,1) rack whose Path-2 routes are each held by one slow hop
//! (`IB_Cable_D[j] down`, every other segment direction faster), measured solo with both
//! transports and with NIXL at 16- and 256-token KV blocks (llama-3.1-70b: 32 KiB and 512 KiB
//! descriptors), then the KV burst (both Path-2 flows at once through the shared prefill NIC).
//! Host TCP must deliver the configured truth; NIXL must not beat it, and its ratio to host
//! TCP is printed per payload and block size. The agents get the NIXL venv through
//! VIRTUAL_ENV, inherited from `emulate up`; UCX_TLS=tcp is set by linkcal.
//! Under `CI=true` a missing capability or a missing NIXL fails the test.

use std::path::Path;

mod nixl_support;
mod rack_support;

use linkcal::spec::{Hop, HopOptions, RackShape, Route};
use nixl_support::{nixl_venv, run_path2};
use rack_support::{can_emulate, emulate_up_221, unique_prefix, RackGuard};

/// Every segment direction's rate but the routes' own bottlenecks, B/s.
const FAST_BPS: f64 = 120e6;
/// `IB_Cable_D[j] down`, the one slow hop of Path 2 i->j, B/s.
const SLOW_BPS: [f64; 2] = [30e6, 50e6];
const MTU: f64 = 9000.0;

fn rates(shape: &RackShape) -> serde_json::Value {
    let mut segs = serde_json::Map::new();
    for id in shape.segments() {
        let name = id.to_string();
        let down = SLOW_BPS.iter().enumerate().find(|(j, _)| name == format!("IB_Cable_D[{j}]")).map_or(FAST_BPS, |(_, r)| *r);
        segs.insert(name, serde_json::json!({"up_Bps": FAST_BPS, "down_Bps": down}));
    }
    serde_json::json!({"mtu": MTU as u64, "segments": segs})
}

/// TCP goodput of a route held by a hop of `rate` B/s: every frame of MTU bytes carries
/// MTU - 52 bytes of payload (IP 20, TCP 20 + 12 timestamps) and costs MTU + 14 on the wire.
fn goodput(rate: f64) -> f64 {
    rate * (MTU - 52.0) / (MTU + 14.0)
}

/// (destination decode server, payload bytes, mean goodput B/s) of every flow of a run.
fn flows(results: &serde_json::Value) -> Vec<(u64, u64, f64)> {
    let mut v: Vec<(u64, u64, f64)> = results["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "solo")
        .flat_map(|m| m["flows"].as_array().unwrap().iter())
        .map(|f| {
            (f["path"]["dst"].as_u64().unwrap(), f["payload_bytes"].as_u64().unwrap(), f["goodput_Bps"]["mean"].as_f64().unwrap())
        })
        .collect();
    v.sort_by_key(|r| (r.0, r.1));
    v
}

fn run(rack: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let routes = "prefill_to_decode:0->0,prefill_to_decode:1->1";
    let (code, err, r) = run_path2(rack, out, routes, &[&["--sizes", "4MiB,16MiB", "--time-cap", "2"], extra].concat());
    assert_eq!(code, Some(0), "run {extra:?}: {err}");
    let r = r.unwrap_or_else(|| panic!("run {extra:?}: no results.json: {err}"));
    assert!(r["waivers"].as_array().unwrap().is_empty(), "run {extra:?} waived: {}", r["waivers"]);
    r
}

#[test]
fn nixl_beside_host_tcp_on_the_emulated_rack() {
    if !can_emulate("nixl_emulated") {
        return;
    }
    let Some(venv) = nixl_venv() else { return };
    let t0 = std::time::Instant::now();
    let shape = RackShape::new(2, 2, 1).unwrap();
    // The bottleneck of Path 2 i->j is IB_Cable_D[j] down (the spec's hops of the route).
    for j in 0..2 {
        let route = Route::prefill_to_decode(j, 0, j, HopOptions { decode_ib_nic: true, staged_in_host: false });
        assert!(route.crosses(&format!("IB_Cable_D[{j}] down").parse::<Hop>().unwrap()), "{route:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rates.json"), rates(&shape).to_string()).unwrap();
    let rack = RackGuard(unique_prefix("lcn"));
    let up = emulate_up_221(&rack.0, &d.join("rack"))
        .arg("--replace")
        .arg("--rates")
        .arg(d.join("rates.json"))
        .env("VIRTUAL_ENV", &venv)
        .output()
        .unwrap();
    assert!(up.status.success(), "emulate up: {}", String::from_utf8_lossy(&up.stderr));
    let rack_file = d.join("rack/rack.json");
    let tcp = flows(&run(&rack_file, &d.join("host_tcp"), &["--transport", "host_tcp"]));
    let mut by_block = Vec::new();
    for tokens in ["16", "256"] {
        let r = run(&rack_file, &d.join(format!("nixl-{tokens}")), &["--kv-engine", "nixl", "--block-tokens", tokens]);
        by_block.push((tokens, flows(&r)));
    }
    eprintln!("route   payload   truth MB/s   host_tcp   nixl/16-token   nixl/256-token   (ratio to host_tcp)");
    for (k, &(j, bytes, tcp_rate)) in tcp.iter().enumerate() {
        let truth = goodput(SLOW_BPS[j as usize]);
        let mut line = format!("{j}->{j} {:>6} MiB {:>10.2} {:>10.2}", bytes >> 20, truth / 1e6, tcp_rate / 1e6);
        // Host TCP is the emulator's witness here: within 1% of the configured truth at 16 MiB,
        // and never above it by more than the tbf bucket (README: the larger of 5 frames and
        // 0.5 ms at the rate) can lend a transfer that starts after an idle gap, plus 0.3%.
        let bucket = (5.0 * (MTU + 14.0)).max(SLOW_BPS[j as usize] * 5e-4);
        let err = tcp_rate / truth - 1.0;
        assert!(err < bucket / bytes as f64 + 0.003, "host_tcp {j}->{j} {bytes} B: {err:+.4} of truth");
        assert!(bytes < 16 << 20 || err > -0.01, "host_tcp {j}->{j} {bytes} B: {err:+.4} of truth");
        for (tokens, nixl) in &by_block {
            let (nj, nb, n_rate) = nixl[k];
            assert_eq!((nj, nb), (j, bytes), "{tokens}-token blocks: the same routes and payloads");
            // NIXL crosses the same hops: it cannot beat them, and it moved every payload.
            assert!(n_rate <= truth * 1.005 && n_rate > 0.0, "nixl {tokens}: {j}->{j} {bytes} B at {n_rate} B/s, truth {truth}");
            line.push_str(&format!(" {:>9.2} ({:.3})", n_rate / 1e6, n_rate / tcp_rate));
        }
        eprintln!("{line}");
    }
    // The KV burst: both Path-2 flows at once through NIXL (they share the prefill NIC, each
    // still held by its own slow decode cable, which sum below the NIC's rate).
    let burst = run(&rack_file, &d.join("nixl-burst"), &["--kv-engine", "nixl", "--contention", "spec"]);
    let kv = burst["measurements"].as_array().unwrap().iter().find(|m| m["kind"] == "contended").expect("a contended set");
    let sum = kv["aggregate"]["goodput_sum_Bps"]["p50"].as_f64().unwrap();
    let truth_sum: f64 = SLOW_BPS.iter().map(|r| goodput(*r)).sum();
    eprintln!("nixl KV burst {}: {:.2} MB/s of {:.2} ({:.3})", kv["id"], sum / 1e6, truth_sum / 1e6, sum / truth_sum);
    assert!(sum <= truth_sum * 1.005 && sum > 0.0, "burst sum {sum} vs {truth_sum}");
    eprintln!("nixl_emulated: {:.1} s", t0.elapsed().as_secs_f64());
}
