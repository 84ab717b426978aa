//! Path 2 through NIXL on the emulated rack (needs root: namespaces, veth, tbf), beside host
//! TCP on the same routes: a (2,2,1) rack whose Path-2 routes are each held by one slow hop
//! (`IB_Cable_D[j] down`, every other segment direction faster), measured solo with both
//! transports and with NIXL at 16- and 256-token KV blocks (llama-3.1-70b: 32 KiB and 512 KiB
//! descriptors), then the KV burst (both Path-2 flows at once through the shared prefill NIC).
//! Host TCP must deliver the configured truth; NIXL must not beat it, and its ratio to host
//! TCP is printed per payload and block size. The agents get the NIXL venv through
//! VIRTUAL_ENV, inherited from `emulate up`; UCX_TLS=tcp is set by linkcal.
//! Mooncake Transfer Engine is measured the same way (16- and 256-token blocks, solo) when
//! `scripts/mooncake-venv` can make its venv (the agents get it through LINKCAL_MOONCAKE_VENV).
//! Then the engines' efficiency through the tools: `calibrate` of the three runs must hold
//! host TCP's time over NIXL's per route, block and payload as the results give them (and keep
//! NIXL out of the per-segment solve), `report` must show them, and `predict --kv-engine nixl`
//! (and `mooncake`) must divide each Path-2 route's link time by the curve's ratio at its bytes.
//! Under `CI=true` a missing capability or a missing NIXL fails the test.
//! `LINKCAL_TEST_NS_TAG` replaces the namespace prefix's tag (`lcn`).

use std::path::Path;

mod nixl_support;
mod rack_support;

use linkcal::spec::{Hop, HopOptions, RackShape, Route};
use nixl_support::{efficiency, mooncake_venv, nixl_venv, run_path2};
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

/// (destination decode server, payload bytes, mean goodput B/s) of every solo flow of a run on
/// the routes Path 2 i->i.
fn flows(results: &serde_json::Value) -> Vec<(u64, u64, f64)> {
    let mut v: Vec<(u64, u64, f64)> = results["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "solo")
        .flat_map(|m| m["flows"].as_array().unwrap().iter())
        .filter(|f| f["path"]["kind"] == "prefill_to_decode" && f["path"]["src"] == f["path"]["dst"])
        .map(|f| {
            (f["path"]["dst"].as_u64().unwrap(), f["payload_bytes"].as_u64().unwrap(), f["goodput_Bps"]["mean"].as_f64().unwrap())
        })
        .collect();
    v.sort_by_key(|r| (r.0, r.1));
    v
}

fn run(rack: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    run_on(rack, out, "prefill_to_decode:0->0,prefill_to_decode:1->1", extra)
}

fn run_on(rack: &Path, out: &Path, routes: &str, extra: &[&str]) -> serde_json::Value {
    let (code, err, r) = run_path2(rack, out, routes, &[&["--sizes", "4MiB,16MiB", "--time-cap", "2"], extra].concat());
    if code != Some(0) {
        // The agents' logs (emulate up writes them beside rack.json) say why one died.
        for e in std::fs::read_dir(rack.parent().unwrap().join("agents")).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(e.path()).unwrap_or_default();
            eprintln!("--- {}:\n{}", e.path().display(), &log[log.len().saturating_sub(3000)..]);
        }
    }
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
    // Mooncake beside NIXL when its venv can be made (a waiver otherwise; a failure under CI).
    let mooncake = mooncake_venv();
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
    let mut up = emulate_up_221(&rack.0, &d.join("rack"));
    up.arg("--replace").arg("--rates").arg(d.join("rates.json")).env("VIRTUAL_ENV", &venv);
    if let Some(m) = &mooncake {
        up.env("LINKCAL_MOONCAKE_VENV", m);
    }
    let up = up.output().unwrap();
    assert!(up.status.success(), "emulate up: {}", String::from_utf8_lossy(&up.stderr));
    let rack_file = d.join("rack/rack.json");
    // Host TCP on every spec route (predict needs Paths 1 and 3 too), solo only.
    let spec_routes = "prefill_inter_rank:0->1,prefill_to_decode:0->0,prefill_to_decode:0->1,prefill_to_decode:1->0,\
                       prefill_to_decode:1->1,decode_inter_rank:0->1";
    let tcp_run = run_on(&rack_file, &d.join("host_tcp"), spec_routes, &["--transport", "host_tcp", "--contention", "none"]);
    let tcp = flows(&tcp_run);
    let mut by_block = Vec::new();
    let mut engine_runs = Vec::new();
    let engines: &[&str] = if mooncake.is_some() { &["nixl", "mooncake"] } else { &["nixl"] };
    for engine in engines {
        for tokens in ["16", "256"] {
            let dir = format!("{engine}-{tokens}");
            let r = run(&rack_file, &d.join(&dir), &["--kv-engine", engine, "--block-tokens", tokens, "--contention", "none"]);
            by_block.push((format!("{engine}/{tokens}"), flows(&r)));
            engine_runs.push(EngineRun { engine: engine.to_string(), tokens: tokens.parse().unwrap(), dir, results: r });
        }
    }
    let heads: Vec<String> = by_block.iter().map(|b| format!("{:>19}", format!("{}-token", b.0))).collect();
    eprintln!("route   payload   truth MB/s   host_tcp {}   (ratio to host_tcp)", heads.join(""));
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
        for (name, eng) in &by_block {
            let (nj, nb, n_rate) = eng[k];
            assert_eq!((nj, nb), (j, bytes), "{name}-token blocks: the same routes and payloads");
            // The engine crosses the same hops: it cannot beat them (beyond what the tbf bucket
            // lends a transfer after an idle gap, as for host TCP), and it moved every payload.
            let limit = truth * (1.0 + bucket / bytes as f64 + 0.003);
            assert!(n_rate <= limit && n_rate > 0.0, "{name}: {j}->{j} {bytes} B at {n_rate} B/s, truth {truth}");
            line.push_str(&format!(" {:>10.2} ({:.3})", n_rate / 1e6, n_rate / tcp_rate));
        }
        eprintln!("{line}");
    }
    // The KV burst: both Path-2 flows at once through NIXL (they share the prefill NIC, each
    // still held by its own slow decode cable, which sum below the NIC's rate).
    let burst = run(&rack_file, &d.join("nixl-burst"), &["--kv-engine", "nixl", "--contention", "spec"]);
    let kv = burst["measurements"].as_array().unwrap().iter().find(|m| m["set"] == "kv_burst").expect("the kv_burst set");
    let sum = kv["aggregate"]["goodput_sum_Bps"]["p50"].as_f64().unwrap();
    let truth_sum: f64 = SLOW_BPS.iter().map(|r| goodput(*r)).sum();
    eprintln!("nixl KV burst {}: {:.2} MB/s of {:.2} ({:.3})", kv["id"], sum / 1e6, truth_sum / 1e6, sum / truth_sum);
    assert!(sum <= truth_sum * 1.005 && sum > 0.0, "burst sum {sum} vs {truth_sum}");
    through_the_tools(d, &tcp_run, &engine_runs);
    eprintln!("nixl_emulated: {:.1} s", t0.elapsed().as_secs_f64());
}

fn linkcal(args: &[&str]) -> std::process::Output {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("linkcal")).args(args).output().unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

/// One engine run kept in `d/DIR`.
struct EngineRun {
    engine: String,
    tokens: u64,
    dir: String,
    results: serde_json::Value,
}

/// Calibrate, report and predict over the host TCP run (`d/host_tcp`) and the engine runs.
fn through_the_tools(d: &Path, tcp: &serde_json::Value, runs: &[EngineRun]) {
    let s = |p: std::path::PathBuf| p.display().to_string();
    // Every engine measurement records its block: 32 KiB per 16 tokens without --model.
    for r in runs {
        for m in r.results["measurements"].as_array().unwrap() {
            let block = (m["kv_block_tokens"].as_u64(), m["kv_block_bytes"].as_u64());
            assert_eq!(block, (Some(r.tokens), Some(r.tokens * 2048)), "{} {}", r.dir, m["id"]);
            assert_eq!(m["transport"], r.engine.as_str());
        }
    }
    assert!(tcp["measurements"].as_array().unwrap().iter().all(|m| m["kv_block_bytes"].is_null()));
    let results: Vec<&serde_json::Value> = runs.iter().map(|r| &r.results).collect();
    let want = efficiency::expected_ratios(tcp, &results);
    assert_eq!(want.len(), runs.len() * 2 * 2, "2 routes x 2 payloads per engine run: {want:?}");
    let cal_file = d.join("cal.json");
    let mut args = vec!["calibrate".to_string(), "--out".into(), s(cal_file.clone()), "--results".into(), s(d.join("host_tcp"))];
    for r in runs {
        args.extend(["--results".to_string(), s(d.join(&r.dir))]);
    }
    let o = linkcal(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "calibrate: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "{}",
        String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("engine time")).collect::<Vec<_>>().join("\n")
    );
    let cal: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cal_file).unwrap()).unwrap();
    let got = efficiency::calibration_ratios(&cal);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in &want {
        assert!(close(got[k], *v, 1e-9), "{k:?}: calibration {} vs results {v}", got[k]);
    }
    // The engines stay out of the per-segment solve: route 0->0's path model holds host TCP's medians.
    let p00 = cal["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"]["kind"] == "prefill_to_decode" && p["path"]["src"] == 0 && p["path"]["dst"] == 0)
        .unwrap();
    for raw in p00["raw"].as_array().unwrap() {
        let f = tcp["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["flows"].as_array().unwrap())
            .find(|f| f["path"] == p00["path"] && f["payload_bytes"] == raw["payload_bytes"]);
        assert_eq!(raw["p50_Bps"], f.unwrap()["goodput_Bps"]["p50"], "{raw}");
    }
    // The report shows every ratio of the calibration.
    let html_file = d.join("report.html");
    let o = linkcal(&[
        "report",
        "--results",
        &s(d.join("host_tcp")),
        "--calibration",
        &s(cal_file.clone()),
        "--out",
        &s(html_file.clone()),
    ]);
    assert!(o.status.success(), "report: {}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(html.contains("id=\"engine-efficiency\"") && html.contains("KV engine goodput / host TCP goodput"));
    let shown = efficiency::report_ratios(&html);
    assert_eq!(shown.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in &want {
        assert!((shown[k] - v).abs() <= 1e-6, "{k:?}: report {} vs {v}", shown[k]);
    }
    let mut engines: Vec<&str> = runs.iter().map(|r| r.engine.as_str()).collect();
    engines.dedup();
    for e in engines {
        check_predict(&s(cal_file.clone()), e, &want);
    }
}

/// `predict --kv-engine ENGINE` at both blocks: each Path-2 route's link time over the ratio the
/// measured curve gives at its rack bytes; a block never measured is exit 2 naming the run.
fn check_predict(cal: &str, engine: &str, ratios: &std::collections::BTreeMap<efficiency::Key, f64>) {
    // N=4, T=8192 of llama-3.1-70b puts each handoff's rack bytes between the measured payloads.
    let base = ["predict", "--calibration", cal, "--model", "llama-3.1-70b", "--n", "4", "--t", "8192", "--m", "2048", "--json"];
    let predict = |extra: &[&str]| -> serde_json::Value {
        let o = linkcal(&[&base[..], extra].concat());
        assert!(o.status.success(), "predict {extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["prediction"].clone()
    };
    let link = predict(&[]);
    assert!(link["kv_engine"].is_null());
    eprintln!("predict --kv-engine {engine} (llama-3.1-70b N=4 T=8192): route, rack bytes, link ms, block tokens: ratio -> ms");
    for tokens in [16u64, 256] {
        let eng = predict(&["--kv-engine", engine, "--block-tokens", &tokens.to_string()]);
        assert_eq!(eng["kv_engine"]["kv_block_bytes"].as_u64(), Some(tokens * 2048));
        assert_eq!(eng["kv_engine"]["engine"], engine);
        let routes = link["path2"]["routes"].as_array().unwrap();
        assert!(!routes.is_empty());
        for (k, r) in routes.iter().enumerate() {
            let p = &r["route"];
            let name = format!("{}:{}->{}", p["kind"].as_str().unwrap(), p["src"], p["dst"]);
            let bytes = r["scaled_bytes"].as_u64().unwrap();
            let want = efficiency::expected_predict_ratio(ratios, engine, &name, tokens * 2048, bytes);
            let e = &eng["path2"]["routes"][k];
            assert_eq!(e["route"], r["route"]);
            let (raw, got) = (r["alone_s"].as_f64().unwrap(), e["alone_s"].as_f64().unwrap());
            assert!(close(got, raw / want, 1e-9), "{engine} {name} {tokens}-token: {got} s vs {raw} / {want}");
            assert!(close(eng["kv_engine"]["routes"][k]["ratio"].as_f64().unwrap(), want, 1e-9));
            eprintln!("  {name} {bytes} B {:.3} ms, {tokens}: {want:.4} -> {:.3} ms", raw * 1e3, got * 1e3);
        }
        assert_eq!(eng["path1"], link["path1"]);
    }
    let o = linkcal(&[&base[..], &["--kv-engine", engine, "--block-tokens", "64"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("engine_efficiency") && err.contains(&format!("--kv-engine {engine} --block-tokens 64")), "{err}");
}
