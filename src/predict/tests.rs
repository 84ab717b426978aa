//! Predicted times against hand computations on a small synthetic calibration of a (2,2,1)
//! rack: time = alpha + bytes / (slowest of the route's hops and its measured rate), and
//! max-min sharing of IB_Cable_P[0] up by the two KV flows worked by hand.

use std::path::Path;

use super::*;
use crate::model::calibration::{AlphaBeta, Origin, PathModel, SegmentEstimate, SeriesGroup};
use crate::model::{Provenance, CALIBRATION_SCHEMA};
use crate::payload::{payloads_with, ModelConfig, Serving};
use crate::spec::{Dir, SegmentKind as K};

const GBPS: f64 = 1e9;
/// Path 2 fixed cost and measured rate, seconds and B/s.
const KV_ALPHA: f64 = 1e-3;
const KV_BETA: f64 = 5.0 * GBPS;
/// Path 1 fixed cost and measured rate.
const P1_ALPHA: f64 = 2e-4;
const P1_BETA: f64 = 9.0 * GBPS;
const SHARING: f64 = 0.9;

fn seg(kind: K, i: usize, dir: Dir, method: Method, v: f64, group: Option<&str>) -> SegmentEstimate {
    let ident = method.identified();
    SegmentEstimate {
        segment: crate::spec::SegmentId::new(kind, i),
        dir,
        outside_spec: false,
        method,
        capacity_Bps: ident.then_some(v),
        ci95_low_Bps: None,
        ci95_high_Bps: None,
        lower_bound_Bps: (!ident).then_some(v),
        latency_s: None,
        nominal_Bps: None,
        series_group: group.map(str::to_string),
        evidence: Vec::new(),
    }
}

fn path(kind: RouteKind, src: usize, dst: usize, alpha: f64, beta: f64) -> PathModel {
    let shape = RackShape::new(2, 2, 1).unwrap();
    let set = RouteSet::spec(&shape, None).unwrap();
    let r = set.find(&PathRef { kind, src, dst }).unwrap();
    PathModel {
        path: r.path,
        segments: r.segments.clone(),
        capacity_Bps: Some(beta),
        raw_peak_Bps: Some(beta),
        alpha_s: Some(alpha),
        alpha_ci95_low_s: None,
        alpha_ci95_high_s: None,
        pieces: vec![AlphaBeta { min_bytes: 1, max_bytes: 1 << 40, alpha_s: alpha, beta_Bps: beta }],
        efficiency: Vec::new(),
        raw: Vec::new(),
    }
}

/// (2,2,1): Path 1 limited by GPU_P[1] down (8 GB/s, identified); Path 2 shares IB_Cable_P[0]
/// up (5 GB/s, identified), route 1->1 also crosses IB_Cable_D[1] down known only as >= 3 GB/s;
/// Path 3 has no path model and is limited by its Ethernet series group G1 (1 GB/s).
fn calibration(payload_scale: f64) -> Calibration {
    use Dir::{Down, Up};
    use Method::{Isolated as I, LowerBound as L};
    let mut segments = vec![
        seg(K::GpuP, 0, Up, I, 10.0 * GBPS, None),
        seg(K::GpuP, 1, Up, I, 10.0 * GBPS, None),
        seg(K::GpuP, 1, Down, I, 8.0 * GBPS, None),
        seg(K::IbNicP, 0, Down, I, 10.0 * GBPS, None),
        seg(K::IbCableP, 0, Up, I, 5.0 * GBPS, None),
        seg(K::IbCableD, 0, Down, I, 6.0 * GBPS, None),
        seg(K::IbCableD, 1, Down, L, 3.0 * GBPS, None),
        seg(K::GpuD, 0, Down, I, 10.0 * GBPS, None),
        seg(K::GpuD, 1, Down, L, 4.0 * GBPS, None),
        seg(K::GpuD, 0, Up, L, 2.0 * GBPS, None),
    ];
    for (k, i, d) in [(K::EthNicD, 0, Down), (K::EthCableD, 0, Up), (K::EthCableD, 1, Down), (K::EthNicD, 1, Up)] {
        segments.push(seg(k, i, d, L, 0.9 * GBPS, Some("G1")));
    }
    let g1 = SeriesGroup {
        id: "G1".into(),
        members: segments[10..].iter().map(|s| Hop { id: s.segment, dir: s.dir }).collect(),
        capacity_Bps: Some(GBPS),
        ci95_low_Bps: None,
        ci95_high_Bps: None,
        reason: "test".into(),
    };
    Calibration {
        schema: CALIBRATION_SCHEMA.into(),
        provenance: Provenance::now(Vec::new()),
        origin: Origin {
            emulated: payload_scale != 1.0,
            payload_scale,
            mtu_bytes: None,
            run_ids: Vec::new(),
            hosts: Vec::new(),
            run_tool_versions: Vec::new(),
        },
        shape: RackShape::new(2, 2, 1).unwrap(),
        sources: Vec::new(),
        topology_digest: None,
        segments,
        series_groups: vec![g1],
        paths: vec![
            path(RouteKind::PrefillInterRank, 0, 1, P1_ALPHA, P1_BETA),
            path(RouteKind::PrefillToDecode, 0, 0, KV_ALPHA, KV_BETA),
            path(RouteKind::PrefillToDecode, 1, 1, KV_ALPHA, KV_BETA),
        ],
        notes: Vec::new(),
        sharing_efficiency: Some(SHARING),
        engine_efficiency: Vec::new(),
    }
}

/// A Llama-shaped config with `layers` layers (512 B of KV per token per layer in bf16).
fn model(dir: &Path, layers: u32) -> ModelConfig {
    let f = dir.join("config.json");
    let cfg = serde_json::json!({"model_type": "llama", "hidden_size": 512, "num_hidden_layers": layers,
        "num_attention_heads": 8, "num_key_value_heads": 2, "torch_dtype": "bfloat16"});
    std::fs::write(&f, cfg.to_string()).unwrap();
    ModelConfig::from_file(&f).unwrap()
}

fn run(cal: &Calibration, layers: u32, w: Workload) -> (Payloads, Prediction) {
    let d = tempfile::tempdir().unwrap();
    let p = payloads_with(&model(d.path(), layers), &w, &cal.shape, &Serving::default()).unwrap();
    let pred = predict(cal, Path::new("cal.json"), &p, w).unwrap();
    (p, pred)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
}

#[test]
fn solo_times_are_alpha_plus_bytes_over_the_slowest_hop() {
    let cal = calibration(1.0);
    let (p, pred) = run(&cal, 4, Workload::new(2, 1024, 256).unwrap());
    // Path 1: GPU_P[1] down (8 GB/s) is below the route's measured 9 GB/s.
    let c = p.chunk_activation_bytes as f64;
    let r1 = &pred.path1.routes[0];
    assert!(close(r1.alone_s, P1_ALPHA + c / (8.0 * GBPS)), "{r1:?}");
    assert_eq!(r1.bottleneck.limit, Limit::Identified);
    assert_eq!(r1.bottleneck.hop, Some(Hop::new(K::GpuP, 1, Dir::Down)));
    // Path 2, 0->0: IB_Cable_P[0] up 5 GB/s = the measured rate.
    let b = p.stages[0].kv_handoff_bytes as f64;
    assert_eq!(p.stages[0].kv_handoff_bytes, p.stages[1].kv_handoff_bytes, "premise: 4 layers split 2 + 2");
    let r = &pred.path2.routes;
    assert!(close(r[0].alone_s, KV_ALPHA + b / (5.0 * GBPS)), "{:?}", r[0]);
    assert_eq!(r[0].bottleneck.hop, Some(Hop::new(K::IbCableP, 0, Dir::Up)));
    // 1->1: IB_Cable_D[1] down is known only as >= 3 GB/s: simulated at 3 GB/s, flagged.
    assert!(close(r[1].alone_s, KV_ALPHA + b / (3.0 * GBPS)), "{:?}", r[1]);
    assert_eq!(r[1].bottleneck.limit, Limit::LowerBoundOnly);
    assert_eq!(r[1].bottleneck.slowest_identified, Some((Hop::new(K::IbCableP, 0, Dir::Up), 5.0 * GBPS)));
    assert!(pred.notes.iter().any(|n| n.contains("not a capacity")), "{:?}", pred.notes);
    // Path 3: no path model; the Ethernet group's identified minimum, 1 GB/s, no fixed cost.
    let d = p.decode_activation_bytes as f64;
    let r3 = &pred.path3.routes[0];
    assert!(close(r3.alone_s, d / GBPS), "{r3:?}");
    assert_eq!((r3.bottleneck.limit, r3.bottleneck.series_group.as_deref()), (Limit::SeriesGroup, Some("G1")));
}

#[test]
fn kv_burst_shares_the_prefill_cable_max_min() {
    let cal = calibration(1.0);
    let (p, pred) = run(&cal, 4, Workload::new(2, 1024, 256).unwrap());
    let b = p.stages[0].kv_handoff_bytes as f64;
    // Both flows cross IB_Cable_P[0] up: 5 GB/s x 0.9 shared = 2.25 GB/s each (below 1->1's
    // 3 GB/s bound), both after the 1 ms fixed cost; equal bytes finish together.
    let both = KV_ALPHA + b / (5.0 * GBPS * SHARING / 2.0);
    assert!(close(pred.path2.all_at_once_s, both), "{} vs {both}", pred.path2.all_at_once_s);
    for s in &pred.stages {
        assert!(close(s.all_at_once_s, both));
    }
    // A stage alone is its one route alone.
    assert!(close(pred.stages[0].alone_s, KV_ALPHA + b / (5.0 * GBPS)));
    assert!(close(pred.stages[1].alone_s, KV_ALPHA + b / (3.0 * GBPS)));
    let sb = pred.path2.shared_bottleneck.as_ref().unwrap();
    assert_eq!((sb.hop, sb.limit), (Some(Hop::new(K::IbCableP, 0, Dir::Up)), Limit::Identified));
}

#[test]
fn unequal_stages_and_payload_scale() {
    // 3 layers over 2 stages (vLLM split 2 + 1): stage 0 hands off twice stage 1's KV.
    let scale = 1000.0;
    let cal = calibration(scale);
    let (p, pred) = run(&cal, 3, Workload::new(4, 4096, 512).unwrap());
    let (r0, r1) = (p.stages[0].kv_handoff_bytes, p.stages[1].kv_handoff_bytes);
    assert_eq!(r0, 2 * r1, "premise");
    let x = (r1 as f64 / scale).round();
    assert_eq!(pred.path2.routes[1].scaled_bytes, x as u64);
    assert_eq!(pred.path2.routes[0].real_bytes, r0);
    let two_x = pred.path2.routes[0].scaled_bytes as f64;
    // Shared at 2.25 GB/s each until the small flow ends; then the big one is alone on the
    // cable (no longer shared: 5 GB/s, its measured rate) for what it has left.
    let t1 = KV_ALPHA + x / 2.25e9;
    let t0 = t1 + (two_x - x) / (5.0 * GBPS);
    assert!(close(pred.stages[1].all_at_once_s, t1), "{} vs {t1}", pred.stages[1].all_at_once_s);
    assert!(close(pred.stages[0].all_at_once_s, t0), "{} vs {t0}", pred.stages[0].all_at_once_s);
    assert!(close(pred.path2.all_at_once_s, t0));
    assert!(pred.notes.iter().any(|n| n.contains("divided by 1000")), "{:?}", pred.notes);
}

#[test]
fn route_without_any_capacity_is_refused() {
    let mut cal = calibration(1.0);
    cal.segments.retain(|s| !matches!(s.segment.kind, K::EthNicD | K::EthCableD | K::GpuD));
    let d = tempfile::tempdir().unwrap();
    let w = Workload::new(1, 64, 64).unwrap();
    let p = payloads_with(&model(d.path(), 4), &w, &cal.shape, &Serving::default()).unwrap();
    let e = predict(&cal, Path::new("cal.json"), &p, w).unwrap_err().to_string();
    assert!(e.contains("cal.json") && e.contains("'paths'") && e.contains("decode_inter_rank:0->1"), "{e}");
}

#[test]
fn scaling_grows_with_n_times_t() {
    let cal = calibration(1.0);
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path(), 4);
    let pts = scaling(&cal, Path::new("cal.json"), &m, &Serving::default(), 256, &[1, 2], &[1024, 2048]).unwrap();
    assert_eq!(pts.len(), 4);
    // KV bytes go as N x T (T a multiple of the 16-token block); the burst time less its
    // fixed cost likewise; the decode step goes with N only.
    let kv = |n, t| pts.iter().find(|p| p.n == n && p.t == t).unwrap();
    assert_eq!(kv(2, 2048).kv_real_bytes, 4 * kv(1, 1024).kv_real_bytes);
    assert!(close(kv(2, 2048).kv_burst_s - KV_ALPHA, 4.0 * (kv(1, 1024).kv_burst_s - KV_ALPHA)));
    assert!(close(kv(2, 1024).decode_step_s, kv(2, 2048).decode_step_s));
    assert!(close(kv(2, 1024).decode_step_s, 2.0 * kv(1, 1024).decode_step_s));
    // Route 1->1 rests on IB_Cable_D[1] down's lower bound at every size.
    assert!(pts.iter().all(|p| p.kv_upper_bound));
}

/// A curve of `engine` on `path` at `tokens`-token blocks (2 KiB per token) through `points`
/// (payload, ratio); the times are host TCP 1 s and the engine 1 / ratio s.
fn curve(dst: usize, tokens: u64, points: &[(u64, f64)]) -> crate::model::calibration::EngineCurve {
    use crate::model::calibration::{EngineCurve, EnginePoint};
    EngineCurve {
        engine: "nixl".into(),
        path: PathRef { kind: RouteKind::PrefillToDecode, src: dst, dst },
        kv_block_bytes: tokens * 2048,
        kv_block_tokens: Some(tokens),
        points: points
            .iter()
            .map(|&(b, r)| EnginePoint { payload_bytes: b, host_tcp_time_s: 1.0, engine_time_s: 1.0 / r, ratio: r })
            .collect(),
    }
}

#[test]
fn kv_engine_divides_path2_by_the_interpolated_ratio_of_the_chosen_block() {
    use engine::{apply, Block};
    let mut cal = calibration(1.0);
    let w = Workload::new(2, 1024, 256).unwrap();
    let (_, link) = run(&cal, 4, w);
    let b0 = link.path2.routes.iter().find(|r| r.route.dst == 0).unwrap().scaled_bytes;
    // Route 0->0: points a factor 4 either side of its bytes, so log interpolation lands midway;
    // the 256-token curve must not be used; route 1->1 has no curve of its own: it takes the
    // measured routes' (0->0's) ratio at its own bytes.
    let (r_lo, r_hi) = (0.80, 0.96);
    cal.engine_efficiency = vec![curve(0, 16, &[(b0 / 4, r_lo), (b0 * 4, r_hi)]), curve(0, 256, &[(b0, 0.5)])];
    let mut p = link.clone();
    apply(&mut p, &cal, Path::new("cal.json"), "nixl", Block::Tokens(16)).unwrap();
    let e = p.kv_engine.as_ref().unwrap();
    assert_eq!((e.kv_block_bytes, e.kv_block_tokens), (16 * 2048, Some(16)));
    let lerp = |b: u64| {
        let x = ((b as f64).ln() - ((b0 / 4) as f64).ln()) / (((b0 * 4) as f64).ln() - ((b0 / 4) as f64).ln());
        r_lo + x.clamp(0.0, 1.0) * (r_hi - r_lo)
    };
    assert!(close(lerp(b0), (r_lo + r_hi) / 2.0));
    for ((raw, got), er) in link.path2.routes.iter().zip(&p.path2.routes).zip(&e.routes) {
        let want = lerp(raw.scaled_bytes);
        assert!(close(er.ratio, want), "{}: {} vs {want}", raw.route, er.ratio);
        assert!(close(got.alone_s, raw.alone_s / want) && close(got.all_at_once_s, raw.all_at_once_s / want));
        assert!(close(er.link_alone_s, raw.alone_s));
        assert_eq!(er.curves_of, vec![PathRef { kind: RouteKind::PrefillToDecode, src: 0, dst: 0 }]);
    }
    let max = p.path2.routes.iter().map(|r| r.all_at_once_s).fold(0.0, f64::max);
    assert!(close(p.path2.all_at_once_s, max));
    for (raw, got) in link.stages.iter().zip(&p.stages) {
        let slowest = e.routes.iter().filter(|r| r.route.src == raw.stage).map(|r| r.ratio).fold(f64::INFINITY, f64::min);
        assert!(close(got.alone_s, raw.alone_s / slowest), "stage {}", raw.stage);
    }
    // The 256-token curve, by bytes: 0.5 everywhere.
    let mut q = link.clone();
    apply(&mut q, &cal, Path::new("cal.json"), "nixl", Block::Bytes(256 * 2048)).unwrap();
    assert!(q.path2.routes.iter().zip(&link.path2.routes).all(|(g, r)| close(g.alone_s, r.alone_s / 0.5)));
    // Paths 1 and 3 are untouched.
    assert_eq!((q.path1.clone(), q.path3.clone()), (link.path1.clone(), link.path3.clone()));
}

#[test]
fn kv_engine_without_its_curve_names_what_to_run() {
    let mut cal = calibration(1.0);
    let (_, mut p) = run(&cal, 4, Workload::new(2, 1024, 256).unwrap());
    let none = engine::apply(&mut p, &cal, Path::new("cal.json"), "nixl", engine::Block::Tokens(16)).unwrap_err().to_string();
    assert!(
        none.contains("engine_efficiency")
            && none.contains("it has: none")
            && none.contains("--kv-engine nixl --block-tokens 16"),
        "{none}"
    );
    cal.engine_efficiency = vec![curve(0, 256, &[(1 << 20, 0.9)])];
    let other = engine::apply(&mut p, &cal, Path::new("cal.json"), "nixl", engine::Block::Tokens(16)).unwrap_err().to_string();
    assert!(other.contains("nixl at 524288 B (256 tokens)") && other.contains("linkcal calibrate --results"), "{other}");
    assert!(p.kv_engine.is_none());
}

#[test]
fn ratio_at_clamps_outside_the_measured_payloads() {
    let c = curve(0, 16, &[(1 << 20, 0.7), (1 << 22, 0.9)]);
    assert_eq!(engine::ratio_at(&c.points, 1), Some(0.7));
    assert_eq!(engine::ratio_at(&c.points, 1 << 30), Some(0.9));
    // 2 MiB is halfway in log between 1 and 4 MiB.
    assert!(close(engine::ratio_at(&c.points, 1 << 21).unwrap(), 0.8));
    assert_eq!(engine::ratio_at(&[], 1), None);
}
