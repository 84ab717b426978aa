//! How the predicted times scale with N (batch) and T (context): the KV burst (all prefill
//! stages hand off at once) grows with N x T, one decode step with N, one pipeline step only
//! with M.
#![allow(non_snake_case)]

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use super::{predict, Limit, PredictError};
use crate::model::Calibration;
use crate::payload::{payloads_with, ModelConfig, Serving};
use crate::spec::Workload;

/// Default batch sizes of the table.
pub const SCALE_N: [u64; 6] = [1, 2, 4, 8, 16, 32];
/// Default context lengths of the table, tokens (2k .. 128k).
pub const SCALE_T: [u64; 7] = [2048, 4096, 8192, 16384, 32768, 65536, 131072];

/// The predicted times at one (N, T).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ScalePoint {
    /// N: batch size.
    pub n: u64,
    /// T: context length, tokens.
    pub t: u64,
    /// KV bytes every prefill stage hands off together (real payload).
    pub kv_real_bytes: u64,
    /// The KV handoff of all stages at once (makespan), seconds on the calibrated rack.
    pub kv_burst_s: f64,
    /// One decode step (all Path-3 routes at once), seconds; 0 with one decode server.
    pub decode_step_s: f64,
    /// One pipeline step (all Path-1 routes at once), seconds; 0 with one prefill stage.
    pub pipeline_step_s: f64,
    /// True when some Path-2 route is limited by a lower bound (its time is an upper bound).
    pub kv_upper_bound: bool,
}

/// The predicted times over every (n, t) of `ns` x `ts`, at chunk `m`.
pub fn scaling(
    cal: &Calibration,
    cal_file: &Path,
    model: &ModelConfig,
    serving: &Serving,
    m: u64,
    ns: &[u64],
    ts: &[u64],
) -> Result<Vec<ScalePoint>, PredictError> {
    let mut out = Vec::with_capacity(ns.len() * ts.len());
    for &n in ns {
        for &t in ts {
            let w = Workload::new(n, t, m).map_err(crate::payload::PayloadError::from)?;
            let p = payloads_with(model, &w, &cal.shape, serving)?;
            let pred = predict(cal, cal_file, &p, w)?;
            out.push(ScalePoint {
                n,
                t,
                kv_real_bytes: p.stages.iter().map(|s| s.kv_handoff_bytes).sum(),
                kv_burst_s: pred.path2.all_at_once_s,
                decode_step_s: pred.path3.all_at_once_s,
                pipeline_step_s: pred.path1.all_at_once_s,
                kv_upper_bound: pred.path2.routes.iter().any(|r| r.bottleneck.limit == Limit::LowerBoundOnly),
            });
        }
    }
    Ok(out)
}
