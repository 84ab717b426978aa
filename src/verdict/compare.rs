//! Regression between a baseline and a new run: per route, payload and measurement (results)
//! or per segment direction and path point (calibration). A change is a regression only when
//! the whole interval of the relative change lies below `-min_effect`: larger than the minimum
//! effect and more than the measurements' own noise explains. With raw samples the figure is the
//! goodput at the median transfer (bytes / median transfer time) and its interval a
//! moving-block bootstrap of the ratio of medians; otherwise the files' 95% intervals (delta
//! method). Intervals are family-wise (Bonferroni over the items compared). Improvements are
//! reported the same way.
#![allow(non_snake_case)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::bootstrap::{change_interval_from_ci, median_change_interval, MIN_SAMPLES};
use crate::error::InputError;
use crate::model::calibration::Method;
use crate::model::results::{FlowResult, MeasurementKind, Results, Summary};
use crate::model::Calibration;
use crate::spec::{Hop, PathRef};
use crate::stats::median;
use crate::units::fmt_bytes;

/// Schema id of comparison reports.
pub const COMPARE_SCHEMA: &str = "linkcal.compare/1";

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Smallest relative change that counts (0.03 = 3%).
    pub min_effect: f64,
    /// Two-sided family-wise confidence of the change intervals (0.95), split over the items.
    pub confidence: f64,
    /// Bootstrap replicates.
    pub resamples: usize,
    /// Bootstrap seed (results are reproducible for a seed).
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { min_effect: 0.03, confidence: 0.95, resamples: 2000, seed: 0x006c_696e_6b63_616c }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Slower by more than the minimum effect, beyond noise.
    Regression,
    /// Faster by more than the minimum effect, beyond noise.
    Improvement,
    /// The change is within the minimum effect.
    Unchanged,
    /// The change exceeds the minimum effect but the noise could explain it (or there is no noise estimate).
    Inconclusive,
    /// In the baseline, not in the new run.
    Missing,
    /// In the new run, not in the baseline.
    Added,
}

impl Change {
    /// Display order in tables: regressions first, unchanged last.
    pub fn display_rank(self) -> u8 {
        match self {
            Change::Regression => 0,
            Change::Improvement => 1,
            Change::Inconclusive => 2,
            Change::Missing => 3,
            Change::Added => 4,
            Change::Unchanged => 5,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Regression => "regression",
            Change::Improvement => "improvement",
            Change::Unchanged => "unchanged",
            Change::Inconclusive => "inconclusive",
            Change::Missing => "missing",
            Change::Added => "added",
        }
    }
}

/// One compared item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompareRow {
    /// Stable key, e.g. `solo prefill_to_decode:0->0 @ 4 MiB`, `segment GPU_P[0]_PCI up`.
    pub key: String,
    /// The route, for path rows.
    pub path: Option<PathRef>,
    /// Payload, bytes, for path rows.
    pub payload_bytes: Option<u64>,
    /// The segment direction, for segment rows.
    pub hop: Option<Hop>,
    /// Baseline value (goodput at the median transfer, or capacity), B/s.
    pub baseline_Bps: Option<f64>,
    /// New value, B/s.
    pub new_Bps: Option<f64>,
    /// Relative change new/baseline - 1 (e.g. -0.10 = 10% slower).
    pub change: Option<f64>,
    /// Low end of the change's interval.
    pub ci_low: Option<f64>,
    /// High end of the change's interval.
    pub ci_high: Option<f64>,
    /// What the interval rests on, e.g. `block bootstrap of median times, 40+38 transfers`, `95% intervals`.
    pub basis: String,
    /// The verdict.
    pub status: Change,
}

/// A comparison: `linkcal.compare/1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompareReport {
    /// Always `linkcal.compare/1`.
    pub schema: String,
    /// Baseline file.
    pub baseline: String,
    /// New file.
    pub new: String,
    /// `results` or `calibration`.
    pub compared: String,
    /// Smallest relative change reported as a regression, as a fraction (0.05 = 5%).
    pub min_effect: f64,
    /// Family-wise confidence: every interval in the table holds together with this probability.
    pub confidence: f64,
    /// Confidence of each item's interval (Bonferroni: 1 - (1 - confidence) / items compared).
    pub per_item_confidence: f64,
    /// Every compared item.
    pub rows: Vec<CompareRow>,
    /// Count per status.
    pub counts: BTreeMap<String, usize>,
    /// True when any row is a regression (exit code 1).
    pub regression: bool,
}

/// Compares two files of the same kind and rack shape.
pub fn compare(base: &Baseline, new: &Baseline, opt: &CompareOptions) -> Result<CompareReport, InputError> {
    let (bs, _) = base.shape();
    let (ns, field) = new.shape();
    if bs != ns {
        return Err(InputError::field(
            new.file(),
            field,
            format!("measured on another rack shape than the baseline {}: compare runs of the same rack", base.file().display()),
        ));
    }
    // Bonferroni over the items both sides have, so that "beyond noise" holds for the whole
    // table and not just for each row: a run with no change stays clean however many rows it has.
    let items = match (base, new) {
        (Baseline::Results(_, b), Baseline::Results(_, n)) => {
            let kn = keyed(n);
            keyed(b).keys().filter(|k| kn.contains_key(*k)).count()
        }
        (Baseline::Calibration(_, b), Baseline::Calibration(_, n)) => {
            b.segments.iter().filter(|e| n.segments.iter().any(|m| m.segment == e.segment && m.dir == e.dir)).count()
                + b.paths.iter().map(|p| p.raw.len()).sum::<usize>()
        }
        _ => 1,
    };
    let per_item = CompareOptions { confidence: 1.0 - (1.0 - opt.confidence) / items.max(1) as f64, ..*opt };
    let (rows, compared) = match (base, new) {
        (Baseline::Results(_, b), Baseline::Results(_, n)) => (results_rows(b, n, &per_item), "results"),
        (Baseline::Calibration(_, b), Baseline::Calibration(_, n)) => (calibration_rows(b, n, &per_item), "calibration"),
        (Baseline::Results(..), Baseline::Calibration(..)) | (Baseline::Calibration(..), Baseline::Results(..)) => {
            return Err(InputError::field(
                new.file(),
                "schema",
                format!(
                    "is of another kind than the baseline {}: compare results with results, calibrations with calibrations",
                    base.file().display()
                ),
            ));
        }
    };
    let mut counts = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.status.as_str().to_string()).or_insert(0) += 1;
    }
    Ok(CompareReport {
        schema: COMPARE_SCHEMA.to_string(),
        baseline: base.file().display().to_string(),
        new: new.file().display().to_string(),
        compared: compared.to_string(),
        min_effect: opt.min_effect,
        confidence: opt.confidence,
        per_item_confidence: per_item.confidence,
        regression: rows.iter().any(|r| r.status == Change::Regression),
        rows,
        counts,
    })
}

/// Classifies a change with its interval.
pub fn classify(change: f64, ci: Option<(f64, f64)>, min_effect: f64) -> Change {
    match ci {
        Some((_, hi)) if hi < -min_effect => Change::Regression,
        Some((lo, _)) if lo > min_effect => Change::Improvement,
        _ if change.abs() <= min_effect => Change::Unchanged,
        _ => Change::Inconclusive,
    }
}

/// Per-transfer times of a flow, s (positive ones).
fn times(f: &FlowResult) -> Vec<f64> {
    f.transfer_times_s.iter().copied().filter(|t| *t > 0.0).collect()
}

/// One side of a results comparison: raw transfer times with the payload (goodput at the
/// median transfer = bytes / median time), else the goodput summary.
enum Side {
    Samples(u64, Vec<f64>),
    Summary(Summary),
}

impl Side {
    fn value(&self) -> f64 {
        match self {
            Side::Samples(bytes, t) => *bytes as f64 / median(t),
            Side::Summary(s) => s.mean,
        }
    }
}

struct Keyed {
    path: Option<PathRef>,
    payload: Option<u64>,
    side: Side,
}

fn keyed(r: &Results) -> BTreeMap<String, Keyed> {
    let mut out = BTreeMap::new();
    for m in &r.measurements {
        let prefix = match (m.kind, &m.set) {
            (MeasurementKind::Solo, _) => "solo".to_string(),
            (MeasurementKind::Contended, Some(s)) => format!("contended[{s}]"),
            (MeasurementKind::Contended, None) => format!("contended[{}]", m.id),
        };
        for f in &m.flows {
            let t = times(f);
            let side = if t.is_empty() { Side::Summary(f.goodput_Bps) } else { Side::Samples(f.payload_bytes, t) };
            let key = format!("{prefix} {} @ {}", f.path, fmt_bytes(f.payload_bytes));
            out.insert(key, Keyed { path: Some(f.path), payload: Some(f.payload_bytes), side });
        }
        if let (MeasurementKind::Contended, Some(a)) = (m.kind, &m.aggregate) {
            let bytes = m.flows.first().map(|f| f.payload_bytes);
            let key = format!("{prefix} sum of {} flows @ {}", m.flows.len(), bytes.map(fmt_bytes).unwrap_or_default());
            out.insert(key, Keyed { path: None, payload: bytes, side: Side::Summary(a.goodput_sum_Bps) });
        }
    }
    out
}

fn results_rows(b: &Results, n: &Results, opt: &CompareOptions) -> Vec<CompareRow> {
    let (kb, kn) = (keyed(b), keyed(n));
    let mut keys: Vec<&String> = kb.keys().chain(kn.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let (x, y) = (kb.get(key), kn.get(key));
        let any = x.or(y).expect("key from one side");
        let mut row = CompareRow {
            key: key.clone(),
            path: any.path,
            payload_bytes: any.payload,
            hop: None,
            baseline_Bps: x.map(|k| k.side.value()),
            new_Bps: y.map(|k| k.side.value()),
            change: None,
            ci_low: None,
            ci_high: None,
            basis: String::new(),
            status: Change::Missing,
        };
        match (x, y) {
            (Some(x), Some(y)) => {
                let change = y.side.value() / x.side.value() - 1.0;
                let ci = match (&x.side, &y.side) {
                    (Side::Samples(_, a), Side::Samples(_, c)) => {
                        row.basis = format!("block bootstrap of median times, {}+{} transfers", a.len(), c.len());
                        median_change_interval(a, c, opt.confidence, opt.resamples, opt.seed.wrapping_add(i as u64))
                    }
                    _ => {
                        row.basis = "95% intervals".into();
                        let tri = |s: &Side| match s {
                            Side::Samples(..) => (s.value(), None, None),
                            Side::Summary(s) => (s.mean, s.ci95_low, s.ci95_high),
                        };
                        change_interval_from_ci(tri(&x.side), tri(&y.side), opt.confidence)
                    }
                };
                if ci.is_none() {
                    row.basis = match (&x.side, &y.side) {
                        (Side::Samples(_, a), Side::Samples(_, c)) => {
                            format!("no noise estimate: {}+{} transfers (at least {MIN_SAMPLES} a side needed)", a.len(), c.len())
                        }
                        _ => "no noise estimate".into(),
                    };
                }
                row.change = Some(change);
                row.ci_low = ci.map(|c| c.0);
                row.ci_high = ci.map(|c| c.1);
                row.status = classify(change, ci, opt.min_effect);
            }
            (None, Some(_)) => row.status = Change::Added,
            _ => row.status = Change::Missing,
        }
        rows.push(row);
    }
    rows
}

fn calibration_rows(b: &Calibration, n: &Calibration, opt: &CompareOptions) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    let blank = |key: String| CompareRow {
        key,
        path: None,
        payload_bytes: None,
        hop: None,
        baseline_Bps: None,
        new_Bps: None,
        change: None,
        ci_low: None,
        ci_high: None,
        basis: String::new(),
        status: Change::Missing,
    };
    for e in &b.segments {
        let hop = Hop { id: e.segment, dir: e.dir };
        let mut row = blank(format!("segment {hop}"));
        row.hop = Some(hop);
        row.baseline_Bps = e.capacity_Bps;
        let Some(m) = n.segments.iter().find(|x| x.segment == e.segment && x.dir == e.dir) else {
            rows.push(row);
            continue;
        };
        row.new_Bps = m.capacity_Bps;
        match (e.capacity_Bps.filter(|_| e.method.identified()), m.capacity_Bps.filter(|_| m.method.identified())) {
            (Some(x), Some(y)) => {
                let change = y / x - 1.0;
                let ci = change_interval_from_ci(
                    (x, e.ci95_low_Bps, e.ci95_high_Bps),
                    (y, m.ci95_low_Bps, m.ci95_high_Bps),
                    opt.confidence,
                );
                row.basis = if ci.is_some() { "95% intervals".into() } else { "no noise estimate (no intervals)".into() };
                row.change = Some(change);
                row.ci_low = ci.map(|c| c.0);
                row.ci_high = ci.map(|c| c.1);
                row.status = classify(change, ci, opt.min_effect);
            }
            _ => {
                row.basis = format!("not comparable: method {} -> {}", method_name(e.method), method_name(m.method));
                row.baseline_Bps = e.capacity_Bps.or(e.lower_bound_Bps);
                row.new_Bps = m.capacity_Bps.or(m.lower_bound_Bps);
                row.status = Change::Inconclusive;
                if e.method == m.method && !e.method.identified() {
                    row.basis = format!("{} in both: not judged", method_name(e.method));
                    row.status = Change::Unchanged;
                }
            }
        }
        rows.push(row);
    }
    for m in &n.segments {
        if !b.segments.iter().any(|x| x.segment == m.segment && x.dir == m.dir) {
            let hop = Hop { id: m.segment, dir: m.dir };
            let mut row = blank(format!("segment {hop}"));
            row.hop = Some(hop);
            row.new_Bps = m.capacity_Bps;
            row.status = Change::Added;
            rows.push(row);
        }
    }
    for pm in &b.paths {
        let other = n.paths.iter().find(|x| x.path == pm.path);
        for rp in &pm.raw {
            let mut row = blank(format!("path {} @ {}", pm.path, fmt_bytes(rp.payload_bytes)));
            row.path = Some(pm.path);
            row.payload_bytes = Some(rp.payload_bytes);
            row.baseline_Bps = Some(rp.p50_Bps);
            if let Some(np) = other.and_then(|o| o.raw.iter().find(|x| x.payload_bytes == rp.payload_bytes)) {
                let change = np.p50_Bps / rp.p50_Bps - 1.0;
                let ci = change_interval_from_ci(
                    (rp.p50_Bps, rp.ci95_low_Bps, rp.ci95_high_Bps),
                    (np.p50_Bps, np.ci95_low_Bps, np.ci95_high_Bps),
                    opt.confidence,
                );
                row.new_Bps = Some(np.p50_Bps);
                row.basis = if ci.is_some() { "95% intervals".into() } else { "no noise estimate (no intervals)".into() };
                row.change = Some(change);
                row.ci_low = ci.map(|c| c.0);
                row.ci_high = ci.map(|c| c.1);
                row.status = classify(change, ci, opt.min_effect);
            }
            rows.push(row);
        }
    }
    rows
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Isolated => "isolated",
        Method::Saturation => "saturation",
        Method::Bottleneck => "bottleneck",
        Method::LowerBound => "lower_bound",
        Method::Unobserved => "unobserved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(-0.10, Some((-0.12, -0.08)), 0.03), Change::Regression);
        assert_eq!(classify(-0.10, Some((-0.2, 0.01)), 0.03), Change::Inconclusive);
        assert_eq!(classify(-0.04, Some((-0.05, -0.025)), 0.03), Change::Inconclusive);
        assert_eq!(classify(0.01, Some((-0.01, 0.03)), 0.03), Change::Unchanged);
        assert_eq!(classify(0.10, Some((0.08, 0.12)), 0.03), Change::Improvement);
        assert_eq!(classify(-0.10, None, 0.03), Change::Inconclusive);
        assert_eq!(classify(-0.01, None, 0.03), Change::Unchanged);
    }
}
