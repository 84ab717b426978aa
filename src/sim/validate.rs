//! The simulator against measured contended runs: every contended measurement's flows are
//! replayed on the calibration (their recorded hops and payloads, each path's fixed cost and
//! size-dependent cap) and the predicted makespan and aggregate rate are compared with what
//! was measured.
#![allow(non_snake_case)]

use serde::Serialize;

use super::{flows_for, maxmin_rates_shared, simulate_shared, Capacities};
use crate::model::results::{Measurement, MeasurementKind};
use crate::model::Calibration;
use crate::spec::Hop;

/// Predicted against measured for one contended measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Measurement id.
    pub id: String,
    /// Number of concurrent flows.
    pub flows: usize,
    /// Measured makespan of a round (median), seconds.
    pub measured_makespan_s: f64,
    /// Predicted makespan, seconds.
    pub predicted_makespan_s: f64,
    /// predicted / measured - 1.
    pub makespan_error: f64,
    /// Measured burst aggregate: the round's bytes / its makespan, B/s.
    pub measured_burst_Bps: f64,
    /// Predicted burst aggregate, B/s.
    pub predicted_burst_Bps: f64,
    /// Measured sum of the flows' goodputs while all moved (the runner's streaming windows, median), B/s.
    pub measured_aggregate_Bps: Option<f64>,
    /// Predicted sum of the flows' rates while all move, B/s.
    pub predicted_aggregate_Bps: f64,
    /// predicted / measured - 1 (informative: streaming windows are not bursts, and segments
    /// known only by a lower bound are simulated at that bound).
    pub aggregate_error: Option<f64>,
    /// Measured max/min of per-flow goodput (1 = even; max-min would predict its own split).
    pub fairness_max_over_min: Option<f64>,
}

/// Replays one measurement.
pub fn check(cal: &Calibration, cap: &Capacities, m: &Measurement, ideal: bool) -> Check {
    let flows: Vec<_> = m
        .flows
        .iter()
        .map(|f| {
            let mut s = flows_for(cal, f.path, f.segments.clone(), f.payload_bytes, ideal);
            s.hops = f.segments.clone();
            s
        })
        .collect();
    let sharing = if ideal { 1.0 } else { cal.sharing_efficiency.unwrap_or(1.0) };
    let out = simulate_shared(&flows, cap, sharing);
    let predicted = super::makespan(&out);
    let measured = m
        .aggregate
        .as_ref()
        .and_then(|a| a.makespan_s.map(|s| s.p50))
        .unwrap_or_else(|| m.flows.iter().map(|f| f.transfer_time_s.p50).fold(0.0, f64::max));
    let hops: Vec<&[Hop]> = flows.iter().map(|f| f.hops.as_slice()).collect();
    let caps: Vec<Option<f64>> = flows.iter().map(|f| f.cap_Bps).collect();
    let agg: f64 = maxmin_rates_shared(&hops, &caps, cap, sharing).iter().sum();
    let measured_agg = m.aggregate.as_ref().map(|a| a.goodput_sum_Bps.p50);
    let bytes: f64 = m.flows.iter().map(|f| f.payload_bytes as f64).sum();
    Check {
        id: m.id.clone(),
        flows: m.flows.len(),
        measured_makespan_s: measured,
        predicted_makespan_s: predicted,
        makespan_error: predicted / measured - 1.0,
        measured_burst_Bps: bytes / measured,
        predicted_burst_Bps: bytes / predicted,
        measured_aggregate_Bps: measured_agg,
        predicted_aggregate_Bps: agg,
        aggregate_error: measured_agg.map(|x| agg / x - 1.0),
        fairness_max_over_min: m.aggregate.as_ref().and_then(|a| a.fairness_max_over_min),
    }
}

/// Replays every contended measurement.
pub fn validate(cal: &Calibration, measurements: &[Measurement], ideal: bool) -> Vec<Check> {
    let cap = super::capacities(cal);
    measurements.iter().filter(|m| m.kind == MeasurementKind::Contended).map(|m| check(cal, &cap, m, ideal)).collect()
}
