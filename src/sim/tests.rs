use super::*;
use crate::spec::{Dir, SegmentKind};

fn hop(k: SegmentKind, i: usize, d: Dir) -> Hop {
    Hop::new(k, i, d)
}

#[test]
fn maxmin_classic_example() {
    // Link A (10) shared by f0, f1; link B (4) carries f1 and f2. f1 and f2 get 2 each on B,
    // then f0 takes what is left on A: 8.
    let a = hop(SegmentKind::IbCableP, 0, Dir::Up);
    let b = hop(SegmentKind::IbCableD, 0, Dir::Down);
    let cap: Capacities = [(a, 10.0), (b, 4.0)].into_iter().collect();
    let h0 = [a];
    let h1 = [a, b];
    let h2 = [b];
    let r = maxmin_rates(&[&h0, &h1, &h2], &[None, None, None], &cap);
    assert!((r[0] - 8.0).abs() < 1e-9 && (r[1] - 2.0).abs() < 1e-9 && (r[2] - 2.0).abs() < 1e-9, "{r:?}");
    // A cap on f1 below its fair share frees capacity for f2.
    let r = maxmin_rates(&[&h0, &h1, &h2], &[None, Some(1.0), None], &cap);
    assert!((r[1] - 1.0).abs() < 1e-9 && (r[2] - 3.0).abs() < 1e-9 && (r[0] - 9.0).abs() < 1e-9, "{r:?}");
}

#[test]
fn burst_makespan_matches_hand_computation() {
    // Two 20 MiB flows through one 1.8e7 B/s link: both finish at 2*20MiB/1.8e7 = 2.3302 s.
    let a = hop(SegmentKind::IbCableP, 0, Dir::Up);
    let cap: Capacities = [(a, 1.8e7)].into_iter().collect();
    let f = |n: &str| SimFlow { name: n.into(), hops: vec![a], bytes: 20 << 20, start_s: 0.0, alpha_s: 0.0, cap_Bps: None };
    let out = simulate(&[f("a"), f("b")], &cap);
    assert!((makespan(&out) - 2.0 * (20u64 << 20) as f64 / 1.8e7).abs() < 1e-6);
    // Unequal sizes: the small one leaves, the big one speeds up.
    let mut g = f("big");
    g.bytes = 40 << 20;
    let out = simulate(&[f("small"), g], &cap);
    let mib = (1u64 << 20) as f64;
    assert!((out[0].finish_s - 40.0 * mib / 1.8e7).abs() < 1e-6);
    assert!((out[1].finish_s - 60.0 * mib / 1.8e7).abs() < 1e-6);
}

#[test]
fn alpha_delays_and_cap_limits() {
    let a = hop(SegmentKind::GpuP, 0, Dir::Up);
    let cap: Capacities = [(a, 100.0)].into_iter().collect();
    let f = SimFlow { name: "x".into(), hops: vec![a], bytes: 100, start_s: 1.0, alpha_s: 0.5, cap_Bps: Some(50.0) };
    let out = simulate(&[f], &cap);
    assert!((out[0].finish_s - 3.5).abs() < 1e-9, "{out:?}");
    assert!((out[0].rate_Bps - 40.0).abs() < 1e-9);
}

/// Times so late or rates so high that `now + dt` rounds to `now`: the simulation still ends,
/// every flow finished at a finite time no earlier than its release.
#[test]
fn extreme_times_and_rates_terminate() {
    let a = hop(SegmentKind::GpuP, 0, Dir::Up);
    for (start_s, alpha_s, capacity) in [(1e9, 0.0, 1e10), (0.0, 1e308, 1e10), (0.0, 0.0, 1e308), (1e15, 0.0, 1.0)] {
        let cap: Capacities = [(a, capacity)].into_iter().collect();
        let f = |n: &str, bytes| SimFlow { name: n.into(), hops: vec![a], bytes, start_s, alpha_s, cap_Bps: None };
        let t0 = std::time::Instant::now();
        let out = simulate(&[f("a", 1), f("b", 1 << 20), f("c", 3)], &cap);
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(out.len(), 3);
        for o in &out {
            assert!(o.finish_s.is_finite() && o.finish_s >= start_s, "{start_s} {alpha_s} {capacity}: {o:?}");
        }
    }
}
