//! Path 2 through a KV-transfer engine: the link times of the calibration (what host TCP
//! moves) divided by the engine's efficiency curve at the route's payload, for one KV block
//! size (`calibration.engine_efficiency`, written by `linkcal calibrate`).
#![allow(non_snake_case)]

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use super::{PredictError, Prediction};
use crate::error::InputError;
use crate::model::calibration::{EngineCurve, EnginePoint};
use crate::model::Calibration;
use crate::spec::PathRef;

/// Which curve of an engine a prediction uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The curve measured at this many tokens per KV block (`--block-tokens`).
    Tokens(u64),
    /// The curve measured at this KV block length, bytes (`--kv-block-bytes`).
    Bytes(u64),
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Block::Tokens(t) => write!(f, "{t}-token KV blocks"),
            Block::Bytes(b) => write!(f, "{b} B KV blocks"),
        }
    }
}

/// The engine applied to Path 2.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EngineApplied {
    /// Engine (e.g. `nixl`).
    pub engine: String,
    /// KV block of the curves used, bytes.
    pub kv_block_bytes: u64,
    /// Tokens per KV block of the curves used (null when they were measured in bytes).
    pub kv_block_tokens: Option<u64>,
    /// One entry per Path-2 route, as in `path2.routes`.
    pub routes: Vec<EngineRoute>,
}

/// The engine's ratio on one route.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EngineRoute {
    /// The route.
    pub route: PathRef,
    /// The engine's goodput over host TCP's at the route's rack bytes (interpolated).
    pub ratio: f64,
    /// The route's time alone over the links (host TCP), before the engine, seconds.
    pub link_alone_s: f64,
    /// Routes whose curves gave the ratio: the route's own, or every measured route's (their
    /// mean) when it has none.
    pub curves_of: Vec<PathRef>,
}

/// The ratio of a curve at `bytes`: linear in log(payload) between the two measured payloads
/// around it; the nearest measured payload's ratio outside them. `points` sorted by payload.
pub fn ratio_at(points: &[EnginePoint], bytes: u64) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if bytes <= first.payload_bytes {
        return Some(first.ratio);
    }
    if bytes >= last.payload_bytes {
        return Some(last.ratio);
    }
    let k = points.iter().position(|p| p.payload_bytes >= bytes)?;
    let (a, b) = (&points[k - 1], &points[k]);
    let x = |v: u64| (v as f64).ln();
    let w = (x(bytes) - x(a.payload_bytes)) / (x(b.payload_bytes) - x(a.payload_bytes));
    Some(a.ratio + w * (b.ratio - a.ratio))
}

fn matches(c: &EngineCurve, engine: &str, block: Block) -> bool {
    c.engine == engine
        && match block {
            Block::Tokens(t) => c.kv_block_tokens == Some(t),
            Block::Bytes(b) => c.kv_block_bytes == b,
        }
}

/// The curves of `engine` at `block`, or the bad-input error that says what to run.
pub fn curves<'a>(cal: &'a Calibration, cal_file: &Path, engine: &str, block: Block) -> Result<Vec<&'a EngineCurve>, InputError> {
    let v: Vec<&EngineCurve> = cal.engine_efficiency.iter().filter(|c| matches(c, engine, block)).collect();
    if !v.is_empty() {
        return Ok(v);
    }
    let mut have: Vec<String> = cal
        .engine_efficiency
        .iter()
        .map(|c| {
            format!("{} at {} B ({} tokens)", c.engine, c.kv_block_bytes, c.kv_block_tokens.map_or("?".into(), |t| t.to_string()))
        })
        .collect();
    have.dedup();
    let flag = match block {
        Block::Tokens(t) => format!("--block-tokens {t}"),
        Block::Bytes(b) => format!("--kv-block-bytes {b}"),
    };
    Err(InputError::field(
        cal_file,
        "engine_efficiency",
        format!(
            "has no {engine} curve at {block} (it has: {}): run Path 2 with `linkcal run --kv-engine {engine} {flag}` and with \
             `linkcal run --transport host_tcp` on the same routes and payloads, then `linkcal calibrate --results HOST_TCP_RUN \
             --results ENGINE_RUN`",
            if have.is_empty() { "none".into() } else { have.join(", ") }
        ),
    ))
}

/// Divides Path 2's times (routes, and stages by their slowest route's ratio) by the engine's
/// ratio at each route's rack bytes and records what was applied in `p.kv_engine`.
pub fn apply(p: &mut Prediction, cal: &Calibration, cal_file: &Path, engine: &str, block: Block) -> Result<(), PredictError> {
    let cs = curves(cal, cal_file, engine, block)?;
    let mut routes = Vec::new();
    for r in &mut p.path2.routes {
        let own: Vec<&&EngineCurve> = cs.iter().filter(|c| c.path == r.route).collect();
        let used: Vec<&EngineCurve> = if own.is_empty() { cs.clone() } else { own.into_iter().copied().collect() };
        let ratios: Vec<f64> = used.iter().filter_map(|c| ratio_at(&c.points, r.scaled_bytes)).collect();
        let ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
        if !(ratio.is_finite() && ratio > 0.0) {
            let msg = format!("the {engine} curves at {block} give no positive ratio for {}: calibrate again", r.route);
            return Err(InputError::field(cal_file, "engine_efficiency", msg).into());
        }
        routes.push(EngineRoute {
            route: r.route,
            ratio,
            link_alone_s: r.alone_s,
            curves_of: used.iter().map(|c| c.path).collect(),
        });
        r.alone_s /= ratio;
        r.all_at_once_s /= ratio;
    }
    p.path2.all_at_once_s = p.path2.routes.iter().map(|r| r.all_at_once_s).fold(0.0, f64::max);
    for st in &mut p.stages {
        let slowest = routes.iter().filter(|r| r.route.src == st.stage).map(|r| r.ratio).fold(f64::INFINITY, f64::min);
        if slowest.is_finite() {
            st.alone_s /= slowest;
            st.all_at_once_s /= slowest;
        }
    }
    let first = cs[0];
    p.notes.push(format!(
        "Path 2 runs through {engine} at {block} ({} B): link times divided by the engine's ratio to host TCP at each route's rack \
         bytes (interpolated in log payload, the nearest measured payload outside them); a stage by its slowest route's ratio; the \
         scaling table stays link time",
        first.kv_block_bytes
    ));
    p.kv_engine = Some(EngineApplied {
        engine: engine.into(),
        kv_block_bytes: first.kv_block_bytes,
        kv_block_tokens: first.kv_block_tokens,
        routes,
    });
    Ok(())
}
