//! Property tests (proptest): payload arithmetic never wraps (a size that does not fit in u64
//! is an error, one that fits is exact), the spec model's routes and hops for random shapes
//! within the limits, and the max-min simulator (no segment over capacity, every flow
//! bottlenecked on a saturated segment or its own cap, finite times, termination).

#![allow(non_snake_case)]

use proptest::prelude::*;

use linkcal::payload::{payloads_with, preset, Dtype, Formula, Serving};
use linkcal::sim::{maxmin_rates, simulate, Capacities, SimFlow};
use linkcal::spec::{handoff_pairs, stage_ranges, Dir, Hop, HopOptions, RackShape, RouteKind, RouteSet, SegmentKind, Workload};

/// A u64 of any magnitude (1 to 2^64 - 1, spread over the exponents).
fn magnitude() -> impl Strategy<Value = u64> {
    (any::<u64>(), 0u32..64).prop_map(|(x, shift)| (x >> shift).max(1))
}

/// A shape within small limits, with a random NIC map.
fn shape() -> impl Strategy<Value = RackShape> {
    (1usize..=12, 1usize..=12, 1usize..=6)
        .prop_flat_map(|(p, d, ib)| (Just((p, d, ib)), proptest::collection::vec(0..ib, p)))
        .prop_map(|((p, d, ib), map)| RackShape::with_nic_map(p, d, ib, Some(map)).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The README's formula in u128: every payload the library returns equals it, and the
    /// library errs exactly when one of them does not fit in u64.
    #[test]
    fn payload_sizes_are_exact_or_an_overflow_error(
        hidden in magnitude(), kv_heads in magnitude(), head_dim in magnitude(),
        n in magnitude(), t in magnitude(), m in magnitude(),
        layers in 1u32..=48, p in 1usize..=8, d in 1usize..=8,
    ) {
        prop_assume!(layers as usize >= p.max(d));
        let mut model = preset("llama-3.1-8b").unwrap();
        model.hidden_size = hidden;
        model.num_key_value_heads = kv_heads;
        model.head_dim = head_dim;
        model.num_hidden_layers = layers;
        model.dtype = Some(Dtype::Bf16);
        model.mla = None;
        let shape = RackShape::new(p, d, 1).unwrap();
        let w = Workload::new(n, t, m).unwrap();
        let serving = Serving { formula: Formula::Spec, ..Serving::default() };
        let got = payloads_with(&model, &w, &shape, &serving);

        let fits = |x: u128| u64::try_from(x).ok();
        let kvptl = 2u128.checked_mul(kv_heads as u128).and_then(|x| x.checked_mul(head_dim as u128)).and_then(|x| x.checked_mul(2));
        let layer = kvptl.and_then(|k| (n as u128).checked_mul(t as u128).and_then(|x| x.checked_mul(k)));
        let stages: Vec<Option<u128>> =
            stage_ranges(layers, p).iter().map(|&(a, b)| layer.and_then(|l| l.checked_mul((b - a) as u128))).collect();
        let chunk = m as u128 * hidden as u128 * 2;
        let decode = n as u128 * hidden as u128 * 2;
        let all_fit = kvptl.and_then(fits).is_some()
            && layer.and_then(fits).is_some()
            && stages.iter().all(|s| s.and_then(fits).is_some())
            && fits(chunk).is_some()
            && fits(decode).is_some();
        match got {
            Ok(pl) => {
                prop_assert!(all_fit, "a size that does not fit in u64 was returned: {pl:?}");
                prop_assert_eq!(pl.kv_per_token_layer_bytes as u128, kvptl.unwrap());
                prop_assert_eq!(pl.chunk_activation_bytes as u128, chunk);
                prop_assert_eq!(pl.decode_activation_bytes as u128, decode);
                for (s, want) in pl.stages.iter().zip(&stages) {
                    prop_assert_eq!(s.kv_handoff_bytes as u128, want.unwrap());
                    let split: u128 = s.handoffs.iter().map(|h| h.bytes as u128).sum();
                    prop_assert_eq!(split, want.unwrap(), "a stage's handoffs add up to its KV");
                }
            }
            Err(e) => {
                prop_assert!(!all_fit, "every size fits in u64, yet: {e}");
                prop_assert!(e.to_string().contains("overflow") || e.to_string().contains("too large"), "{e}");
            }
        }
    }

    /// Every route of a random shape: its hops are segments of the shape, none twice; the
    /// spec's counts of Path 1 and Path 3 routes; a KV handoff starts at its prefill GPU, crosses
    /// the NIC the map names and ends at its decode GPU; each stage's KV shares add up to 1.
    #[test]
    fn routes_of_random_shapes_follow_the_spec(shape in shape()) {
        let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
        let count = |k: RouteKind| set.routes.iter().filter(|r| r.path.kind == k).count();
        prop_assert_eq!(count(RouteKind::PrefillInterRank), shape.pp_prefill - 1);
        prop_assert_eq!(count(RouteKind::DecodeInterRank), shape.pp_decode - 1);
        let pairs = handoff_pairs(&shape, None).unwrap();
        prop_assert_eq!(count(RouteKind::PrefillToDecode), pairs.len());
        let mut share = vec![0.0; shape.pp_prefill];
        for r in &set.routes {
            for (n, h) in r.segments.iter().enumerate() {
                prop_assert!(shape.check_segment(h.id).is_ok(), "{:?} crosses {:?}", r.path, h);
                prop_assert!(!r.segments[..n].contains(h), "{:?} crosses {:?} twice", r.path, h);
            }
            if r.path.kind == RouteKind::PrefillToDecode {
                let (i, j) = (r.path.src, r.path.dst);
                let k = shape.nic_of(i);
                prop_assert_eq!(r.nic, Some(k));
                prop_assert_eq!(r.segments.first(), Some(&Hop::new(SegmentKind::GpuP, i, Dir::Up)));
                prop_assert_eq!(r.segments.last(), Some(&Hop::new(SegmentKind::GpuD, j, Dir::Down)));
                prop_assert!(r.segments.contains(&Hop::new(SegmentKind::IbCableP, k, Dir::Up)));
                prop_assert!(r.segments.contains(&Hop::new(SegmentKind::IbCableD, j, Dir::Down)));
                prop_assert!(pairs.iter().any(|&(a, b, _)| (a, b) == (i, j)));
                share[i] += r.kv_share.unwrap();
            }
        }
        for (i, s) in share.iter().enumerate() {
            prop_assert!((s - 1.0).abs() < 1e-9, "stage {i}'s KV shares add up to {s}");
        }
    }

    /// Shapes over the limits are refused before anything is built.
    #[test]
    fn shapes_over_the_limits_are_refused(p in 1025usize..1 << 40, ib in 65usize..1 << 40) {
        prop_assert!(RackShape::new(p, 1, 1).is_err());
        prop_assert!(RackShape::new(1, p, 1).is_err());
        prop_assert!(RackShape::new(2, 2, ib).is_err());
    }
}

/// A pool of hops with capacities, and flows over them.
#[derive(Debug, Clone)]
struct Net {
    cap: Capacities,
    flows: Vec<SimFlow>,
}

/// Up to 8 flows over up to 6 segment directions with capacities over `lo..hi` decades (B/s).
fn net(lo: i32, hi: i32, max_start_s: f64) -> impl Strategy<Value = Net> {
    let hop = |i: usize| Hop::new(SegmentKind::GpuD, i, if i % 2 == 0 { Dir::Up } else { Dir::Down });
    let caps = proptest::collection::vec((lo..hi, 1.0f64..10.0).prop_map(|(e, m)| m * 10f64.powi(e)), 1..=6);
    caps.prop_flat_map(move |caps| {
        let k = caps.len();
        let flow = (
            proptest::collection::btree_set(0..k, 1..=k.min(4)),
            1u64..1 << 50,
            0.0..=max_start_s,
            prop_oneof![Just(0.0), 0.0f64..1.0],
            proptest::option::of((lo..hi, 1.0f64..10.0).prop_map(|(e, m)| m * 10f64.powi(e))),
        );
        (Just(caps), proptest::collection::vec(flow, 1..=8))
    })
    .prop_map(move |(caps, flows)| Net {
        cap: caps.iter().enumerate().map(|(i, c)| (hop(i), *c)).collect(),
        flows: flows
            .into_iter()
            .enumerate()
            .map(|(n, (hops, bytes, start_s, alpha_s, cap_Bps))| SimFlow {
                name: format!("f{n}"),
                hops: hops.into_iter().map(hop).collect(),
                bytes,
                start_s,
                alpha_s,
                cap_Bps,
            })
            .collect(),
    })
}

const TOL: f64 = 1e-6;

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Max-min rates: no segment direction carries more than its capacity; every flow is at its
    /// own cap or crosses a saturated segment direction where no flow gets more than it.
    #[test]
    fn maxmin_rates_respect_capacity_and_bottleneck_every_flow(net in net(-3, 15, 0.0)) {
        let hops: Vec<&[Hop]> = net.flows.iter().map(|f| f.hops.as_slice()).collect();
        let caps: Vec<Option<f64>> = net.flows.iter().map(|f| f.cap_Bps).collect();
        let rate = maxmin_rates(&hops, &caps, &net.cap);
        let load = |h: &Hop| -> f64 { (0..hops.len()).filter(|&f| hops[f].contains(h)).map(|f| rate[f]).sum() };
        for (h, c) in &net.cap {
            prop_assert!(load(h) <= c * (1.0 + TOL), "{h:?} carries {} over its {c}", load(h));
        }
        for f in 0..hops.len() {
            prop_assert!(rate[f].is_finite() && rate[f] > 0.0, "flow {f}: rate {}", rate[f]);
            let at_cap = caps[f].is_some_and(|c| rate[f] >= c * (1.0 - TOL));
            let bottleneck = hops[f].iter().any(|h| {
                let saturated = load(h) >= net.cap[h] * (1.0 - TOL);
                let top = (0..hops.len()).filter(|&g| hops[g].contains(h)).all(|g| rate[g] <= rate[f] * (1.0 + TOL));
                saturated && top
            });
            prop_assert!(at_cap || bottleneck, "flow {f} at {} is bottlenecked nowhere", rate[f]);
            prop_assert!(caps[f].is_none_or(|c| rate[f] <= c * (1.0 + TOL)), "flow {f} above its cap");
        }
    }

    /// The simulator ends (the test returns), and each flow's finish is finite, after its
    /// release and fixed cost, and no sooner than its bytes take at its slowest segment alone.
    #[test]
    fn simulated_times_are_finite_and_physical(net in net(-3, 15, 1e9)) {
        let out = simulate(&net.flows, &net.cap);
        prop_assert_eq!(out.len(), net.flows.len());
        for (f, o) in net.flows.iter().zip(&out) {
            prop_assert!(o.finish_s.is_finite(), "{}: finish {}", f.name, o.finish_s);
            let ready = f.start_s + f.alpha_s;
            prop_assert!(o.finish_s >= ready * (1.0 - 1e-12), "{} finishes at {} before it is ready at {ready}", f.name, o.finish_s);
            let slowest = f.hops.iter().map(|h| net.cap[h]).chain(f.cap_Bps).fold(f64::INFINITY, f64::min);
            let alone = f.bytes as f64 / slowest;
            // At 1e9 s a double resolves ~1e-7 s: allow that much rounding beside the relative bound.
            let slack = 1e-9 * o.finish_s.abs() + 1e-12;
            prop_assert!(o.finish_s - ready >= alone * (1.0 - TOL) - slack,
                "{} took {} s, under the {alone} s its bytes take alone", f.name, o.finish_s - ready);
        }
    }
}
