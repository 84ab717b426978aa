//! Synthetic results from a ground truth: runs experiments through the max-min simulator and
//! writes what a runner would have measured (with seeded multiplicative noise). Used to test
//! the calibration solver against known capacities, and by the demo when no rack is present.
#![allow(non_snake_case)]

use super::{maxmin_rates, simulate, Capacities, SimFlow};
use crate::model::results::{Aggregate, FlowResult, Measurement, MeasurementKind, RackSummary, StopReason, Summary};
use crate::model::{Provenance, Results};
use crate::spec::{Dir, Experiment, Hop, HopOptions, PathRef, RackShape, RouteSet};
use crate::stats::rng::SplitMix64;
use crate::stats::{RATE_QUANTUM, TIME_QUANTUM};

/// How to synthesize a run.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Rack shape.
    pub shape: RackShape,
    /// True goodput of every segment direction, B/s.
    pub truth: Capacities,
    /// Outside-spec hops the routes cross.
    pub hops: HopOptions,
    /// Payload sizes measured, bytes.
    pub sizes: Vec<u64>,
    /// Fixed cost per transfer, seconds.
    pub alpha_s: f64,
    /// Relative noise on each transfer time (slower by a uniform fraction in [0, noise)).
    pub noise: f64,
    /// Transfers per flow and size.
    pub samples: usize,
    /// Seed.
    pub seed: u64,
}

/// Random true capacities for every segment direction of `shape`: each uniform in
/// [lo, hi) B/s, so the bottleneck differs from seed to seed.
pub fn random_truth(shape: &RackShape, seed: u64, lo: f64, hi: f64) -> Capacities {
    let mut rng = SplitMix64::new(seed);
    let mut out = Capacities::new();
    for id in shape.segments() {
        for dir in [Dir::Up, Dir::Down] {
            out.insert(Hop { id, dir }, rng.range(lo, hi));
        }
    }
    out
}

/// The runner's summary ([`crate::stats::summarize`]) of a synthetic sample, B/s or seconds
/// (`quantum` as there). A sample is empty only when `samples` is 0: then every figure is NaN.
fn summarize(xs: &[f64], quantum: f64) -> Summary {
    crate::stats::summarize(xs, quantum).unwrap_or(Summary {
        p50: f64::NAN,
        mean: f64::NAN,
        ci95_low: None,
        ci95_high: None,
        min: f64::NAN,
        max: f64::NAN,
        p99: None,
        stddev: None,
    })
}

/// Runs every experiment at every size and returns the results a runner would have written.
pub fn synthesize(cfg: &SynthConfig, experiments: &[Experiment]) -> Result<Results, super::SimError> {
    let set = RouteSet::build(&cfg.shape, None, cfg.hops, true)?;
    let mut rng = SplitMix64::new(cfg.seed);
    let mut measurements = Vec::new();
    for e in experiments {
        let routes = e
            .flows
            .iter()
            .map(|p| set.find(p).map(|r| (r.path, r.segments.clone())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| super::SimError::UnknownRoute { experiment: e.name.clone() })?;
        for &size in &cfg.sizes {
            measurements.push(synth_measurement(cfg, &mut rng, &e.name, !e.is_solo(), &routes, size));
        }
    }
    Ok(results_of(cfg.shape.clone(), measurements))
}

/// What a noise-free runner would have measured for the same experiments (same flows, hops
/// and payloads) on a rack whose capacities are `cfg.truth`: what the experiments of a real
/// run could identify at best. `cfg.sizes` and `cfg.hops` are not used.
pub fn replay(cfg: &SynthConfig, measured: &Results) -> Results {
    let mut rng = SplitMix64::new(cfg.seed);
    let measurements = measured
        .measurements
        .iter()
        .filter_map(|m| {
            let size = m.flows.first()?.payload_bytes;
            let routes: Vec<(PathRef, Vec<Hop>)> = m.flows.iter().map(|f| (f.path, f.segments.clone())).collect();
            let name = m.id.rsplit_once('/').map_or(m.id.as_str(), |(n, _)| n);
            let mut out = synth_measurement(cfg, &mut rng, name, m.kind == MeasurementKind::Contended, &routes, size);
            out.id = m.id.clone();
            Some(out)
        })
        .collect();
    results_of(measured.rack.shape.clone(), measurements)
}

fn results_of(shape: RackShape, measurements: Vec<Measurement>) -> Results {
    // A synthetic run is a finished one (a run directory built from it is complete).
    let provenance =
        Provenance { finished_at: Some(crate::model::provenance::rfc3339_now()), ..Provenance::now(vec!["synthetic".into()]) };
    Results { measurements, ..Results::header(provenance, RackSummary::bare(shape, true)) }
}

/// One experiment at one size through the max-min simulator.
fn synth_measurement(
    cfg: &SynthConfig,
    rng: &mut SplitMix64,
    name: &str,
    contended: bool,
    routes: &[(PathRef, Vec<Hop>)],
    size: u64,
) -> Measurement {
    let flows: Vec<SimFlow> = routes
        .iter()
        .map(|(p, hops)| SimFlow {
            name: p.to_string(),
            hops: hops.clone(),
            bytes: size,
            start_s: 0.0,
            alpha_s: cfg.alpha_s,
            cap_Bps: None,
        })
        .collect();
    // As the runner measures: every flow streams transfers back to back for a window, so each
    // transfer runs at the rate all flows share (the first max-min phase); the makespan is
    // that of one released round (a burst).
    let span = super::makespan(&simulate(&flows, &cfg.truth));
    let hops: Vec<&[Hop]> = flows.iter().map(|f| f.hops.as_slice()).collect();
    let shared = maxmin_rates(&hops, &vec![None; flows.len()], &cfg.truth);
    let rounds: Vec<f64> = (0..cfg.samples).map(|_| span * (1.0 + cfg.noise * rng.unit())).collect();
    let mut results = Vec::new();
    for ((path, segments), rate) in routes.iter().zip(&shared) {
        let t0 = cfg.alpha_s + size as f64 / rate;
        let times: Vec<f64> = (0..cfg.samples).map(|_| t0 * (1.0 + cfg.noise * rng.unit())).collect();
        let goodputs: Vec<f64> = times.iter().map(|t| size as f64 / t).collect();
        results.push(FlowResult {
            path: *path,
            segments: segments.clone(),
            payload_bytes: size,
            goodput_Bps: summarize(&goodputs, RATE_QUANTUM),
            transfer_time_s: summarize(&times, TIME_QUANTUM),
            samples: cfg.samples as u64,
            warmup: 0,
            stop: StopReason::SampleCap,
            transfer_times_s: times,
        });
    }
    let aggregate = contended.then(|| {
        // The runner's sum is taken while every flow moves: the first max-min phase.
        let sum0: f64 = shared.iter().sum();
        let sums: Vec<f64> = rounds.iter().map(|_| sum0 / (1.0 + cfg.noise * rng.unit())).collect();
        let meds: Vec<f64> = results.iter().map(|f| f.goodput_Bps.p50).collect();
        let (lo, hi) = meds.iter().fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
        Aggregate {
            goodput_sum_Bps: summarize(&sums, RATE_QUANTUM),
            makespan_s: Some(summarize(&rounds, TIME_QUANTUM)),
            fairness_max_over_min: Some(hi / lo),
        }
    });
    Measurement {
        id: format!("{name}/{size}"),
        kind: if contended { MeasurementKind::Contended } else { MeasurementKind::Solo },
        set: contended.then(|| name.to_string()),
        transport: "synthetic".into(),
        kv_block_bytes: None,
        kv_block_tokens: None,
        started_at: crate::model::provenance::rfc3339_now(),
        duration_s: rounds.iter().sum(),
        flows: results,
        aggregate,
    }
}

/// One solo experiment per route of the set (spec paths and isolation routes).
pub fn solo_experiments(set: &RouteSet) -> Vec<Experiment> {
    set.routes
        .iter()
        .map(|r| Experiment { name: format!("solo/{}", r.path), flows: vec![r.path], purpose: "solo".into() })
        .collect()
}
