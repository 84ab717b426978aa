//! `linkcal.results/3`: every measurement of a run, solo and contended, with summaries and the
//! raw per-transfer times they came from.
//!
//! Migration from `linkcal.results/2`: /3 adds `measurements[].kv_block_bytes` and
//! `measurements[].kv_block_tokens`, the KV block a KV-transfer engine (NIXL) moved the payload
//! in; /2 files still load, both read as null (no block: every /2 engine run used the default
//! 32 KiB, but which one is not recorded, so `calibrate` leaves such runs out of
//! `engine_efficiency`; measure them again).
//!
//! Migration from `linkcal.results/1`: only `payloads` changed. /2 adds `payloads.serving`
//! (engine, formula, dtypes, block size, activation tensors), `payloads.layers` (per-layer kind
//! and bytes) and `payloads.stages[].first_layer`; sizes are now what the engine holds and
//! moves (README "Payload sizes"). /1 files still load: the new fields default to absent.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Provenance;
use crate::payload::Payloads;
use crate::spec::{Hop, PathRef, RackShape};

/// Schema id of results files.
pub const RESULTS_SCHEMA: &str = "linkcal.results/3";
/// Older results schemas read as [`RESULTS_SCHEMA`]: `linkcal.results/2` lacks the KV block
/// fields of measurements; `linkcal.results/1` also lacks
/// `rack.tcp_congestion_control`, `rack.emulation` and the per-layer `payloads` fields, which
/// read as null / their defaults.
pub const RESULTS_SCHEMA_COMPAT: &[&str] = &["linkcal.results/1", RESULTS_SCHEMA_V2];
/// The previous version, still read (`kv_block_bytes`, `kv_block_tokens` read as null).
pub const RESULTS_SCHEMA_V2: &str = "linkcal.results/2";
/// The first version, still read.
pub const RESULTS_SCHEMA_V1: &str = "linkcal.results/1";

/// A run's results: `results.json` in the output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Results {
    /// `linkcal.results/3` (`/2` and `/1` read too: see [`RESULTS_SCHEMA_COMPAT`]).
    pub schema: String,
    /// Where and when it was measured.
    pub provenance: Provenance,
    /// The rack that was measured.
    pub rack: RackSummary,
    /// Model payload sizes the sweep was derived from (before scaling), when a model was given.
    pub payloads: Option<Payloads>,
    /// Finished measurements, in the order they ran.
    pub measurements: Vec<Measurement>,
    /// Probes that do not apply here, each with its reason.
    pub waivers: Vec<Waiver>,
    /// Measurements this run skipped because an agent died or stopped answering, or a route
    /// stopped moving data (`linkcal run` then exits 1); `run --resume` measures them. Absent
    /// when none were, and in files written before it existed (no schema change: it defaults
    /// to empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl Results {
    /// The header of a run (this schema): no measurements, waivers or skips yet.
    pub fn header(provenance: Provenance, rack: RackSummary) -> Results {
        Results {
            schema: RESULTS_SCHEMA.into(),
            provenance,
            rack,
            payloads: None,
            measurements: Vec::new(),
            waivers: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

/// A measurement a run skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// Measurement id, as in `measurements[].id` (e.g. `solo/prefill_to_decode:0->1/65536`).
    pub id: String,
    /// The agent it needed that was gone or not answering (null when every agent answered
    /// but a route stopped moving data; the reason names its hops).
    pub host: Option<String>,
    /// What happened: the host or route, the segment hops, what the run saw.
    pub reason: String,
}

/// The measured rack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RackSummary {
    /// Spec shape and NIC map.
    pub shape: RackShape,
    /// True when measured on the emulated rack (namespaces + tbf).
    pub emulated: bool,
    /// Model payloads are divided by this on the emulated rack (1 on real hardware).
    pub payload_scale: f64,
    /// MTU of the data links in bytes, when known.
    pub mtu_bytes: Option<u64>,
    /// TCP congestion control the flows set (null: the hosts' default, or not recorded).
    #[serde(default)]
    pub tcp_congestion_control: Option<String>,
    /// How the emulated rack shaped its links (null on hardware, or not recorded).
    #[serde(default)]
    pub emulation: Option<crate::model::rack::Emulation>,
}

impl RackSummary {
    /// A rack of `shape` with only whether it is emulated recorded: payloads unscaled, MTU,
    /// TCP congestion control and shaping not recorded.
    pub fn bare(shape: RackShape, emulated: bool) -> RackSummary {
        RackSummary { shape, emulated, payload_scale: 1.0, mtu_bytes: None, tcp_congestion_control: None, emulation: None }
    }
}

/// Solo (one flow alone) or contended (several flows started on one barrier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasurementKind {
    /// One flow alone on the rack.
    Solo,
    /// Concurrent flows released together.
    Contended,
}

/// Why repetition stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The 95% confidence half-width of goodput reached the target (1% by default).
    Converged,
    /// The time cap ran out first.
    TimeCap,
    /// The sample cap was reached first.
    SampleCap,
}

/// One measurement: one flow (solo) or a set of concurrent flows (contended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// Stable identifier, e.g. `solo/prefill_to_decode:0->0/1048576`.
    pub id: String,
    /// Solo or contended.
    pub kind: MeasurementKind,
    /// Contention set name for contended runs (e.g. `nic_share:IB_NIC_P[0]_PCI`, `kv_burst`).
    pub set: Option<String>,
    /// Transport used (e.g. `host_tcp`, `staged_tcp`, `cuda_p2p`, `gpudirect_rdma`).
    pub transport: String,
    /// KV block a KV-transfer engine moved the payload in, bytes: one descriptor, one layer's K
    /// or V of `kv_block_tokens` tokens (null for transports without blocks, and in /2 files).
    #[serde(default)]
    pub kv_block_bytes: Option<u64>,
    /// Tokens per KV block (vLLM's `block_size`) behind `kv_block_bytes` (null when the block
    /// was given in bytes, for transports without blocks, and in /2 files).
    #[serde(default)]
    pub kv_block_tokens: Option<u64>,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the whole measurement including warmup, seconds.
    pub duration_s: f64,
    /// Per-flow results.
    pub flows: Vec<FlowResult>,
    /// Aggregate over concurrent flows (contended runs): sum of flow goodputs and round makespan.
    pub aggregate: Option<Aggregate>,
}

/// Aggregate figures of concurrent flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Aggregate {
    /// Sum of the flows' goodputs while all were active, B/s (a sum over flows, per direction of each segment).
    pub goodput_sum_Bps: Summary,
    /// Time for every flow of a round to finish, seconds.
    pub makespan_s: Option<Summary>,
    /// Spread of per-flow goodput: max/min of the flows' medians (1 = perfectly even).
    pub fairness_max_over_min: Option<f64>,
}

/// One flow's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowResult {
    /// Route kind, source and destination.
    pub path: PathRef,
    /// Segment traversals this flow actually crossed (spec hops plus any outside-spec links).
    pub segments: Vec<Hop>,
    /// Bytes per transfer.
    pub payload_bytes: u64,
    /// Goodput per transfer (payload / transfer time), B/s, one direction.
    pub goodput_Bps: Summary,
    /// Transfer time, seconds.
    pub transfer_time_s: Summary,
    /// Measured transfers (after warmup).
    pub samples: u64,
    /// Warmup transfers discarded.
    pub warmup: u64,
    /// Why repetition stopped.
    pub stop: StopReason,
    /// Raw per-transfer times in seconds, in order.
    pub transfer_times_s: Vec<f64>,
}

/// Summary of a sample, every figure in the sample's unit (B/s for `goodput_Bps`, seconds
/// for `transfer_time_s` and `makespan_s`). The median comes from the samples, the 99th
/// percentile from an hdrhistogram; the interval is for the mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Median: the middle sample, or the mean of the two middle ones (files written before
    /// 2026-12-01 took the lower of the two).
    pub p50: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Lower end of the 95% confidence interval of the mean (null with fewer than 2 samples).
    pub ci95_low: Option<f64>,
    /// Upper end of the 95% confidence interval of the mean (null with fewer than 2 samples).
    pub ci95_high: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 99th percentile (nearest rank; null with fewer than 2 samples).
    pub p99: Option<f64>,
    /// Sample standard deviation (null with fewer than 2 samples).
    pub stddev: Option<f64>,
}

/// A probe that does not apply here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Waiver {
    /// Probe or transport name, e.g. `cuda_p2p`.
    pub probe: String,
    /// The route it would have measured, if any.
    pub path: Option<PathRef>,
    /// Why, e.g. `libcuda.so not found`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_version_1_still_load() {
        // results/example-2-2-1 was written as linkcal.results/1, before payloads had
        // `serving`, `layers` and `first_layer`.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/example-2-2-1/results.json");
        let r: Results = crate::model::load(&path, RESULTS_SCHEMA).unwrap();
        assert_eq!(r.schema, RESULTS_SCHEMA_V1);
        let p = r.payloads.unwrap();
        assert!(p.serving.is_none() && p.layers.is_empty());
        assert_eq!((p.stages[1].first_layer, p.stages[1].layers), (0, 40));
        // Another kind's file is still refused under the results schema.
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("x.json");
        std::fs::write(&other, r#"{"schema":"linkcal.calibration/1"}"#).unwrap();
        assert!(crate::model::load::<Results>(&other, RESULTS_SCHEMA).unwrap_err().to_string().contains("linkcal.calibration/1"));
    }
}
