//! Acceptance: every segment direction, series group and path the rules name, judged against
//! floors, fractions of nominal and a fleet baseline. A lower bound is never judged as a
//! capacity: it passes when the bound itself clears the fail threshold, and is otherwise "not
//! identified" (not_measured); a series group whose identified capacity is below every
//! member's floor fails as a group, since one of its members must be the slow one.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::baseline::Baseline;
pub use super::item::{AcceptInputs, CheckResult, ItemKind, ItemVerdict};
use super::rules::{glob_match, PayloadSel, Rule, Rules, Style, Threshold};
use super::Outcome;
use crate::error::InputError;
use crate::model::calibration::{Method, SegmentEstimate};
use crate::model::results::MeasurementKind;
use crate::spec::{Hop, PathRef, RackShape, RouteSet};
use crate::units::fmt_rate;

/// Schema id of acceptance reports.
pub const ACCEPT_SCHEMA: &str = "linkcal.acceptance/1";

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Items that passed.
    pub pass: usize,
    /// Items that warned.
    pub warn: usize,
    /// Items that failed.
    pub fail: usize,
    /// Items waived.
    pub waived: usize,
    /// Items not measured or not identified.
    pub not_measured: usize,
}

/// An acceptance run: `linkcal.acceptance/1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptReport {
    /// Always `linkcal.acceptance/1`.
    pub schema: String,
    /// Rules title.
    pub title: String,
    /// Rules file.
    pub rules_file: String,
    /// Calibration and results files judged.
    pub inputs: Vec<String>,
    /// Baseline file, if any.
    pub baseline: Option<String>,
    /// The rack's shape.
    pub shape: RackShape,
    /// Verdicts: segments, series groups, route bottlenecks, then paths.
    pub items: Vec<ItemVerdict>,
    /// Outcome counts.
    pub counts: Counts,
    /// fail if any item failed; else not_measured ("incomplete") when the results are a partial
    /// run or no item had a value to judge; else warn if any warned; else pass (which may still
    /// leave items not measured: see `counts`).
    pub outcome: Outcome,
    /// Why the results judged are a partial run (killed or failed, recovered from its journal),
    /// absent when they are complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
}

impl AcceptReport {
    /// Exit code: 1 on fail or incomplete (a partial run, or nothing judged), and with
    /// `strict` when anything is not measured; else 0.
    pub fn exit_code(&self, strict: bool) -> u8 {
        if matches!(self.outcome, Outcome::Fail | Outcome::NotMeasured) || (strict && self.counts.not_measured > 0) {
            crate::error::EXIT_FAIL
        } else {
            crate::error::EXIT_OK
        }
    }

    /// Marks the results judged as a partial run (`why` says which and what was recovered):
    /// the verdict becomes incomplete unless something failed.
    pub fn mark_partial(&mut self, why: String) {
        self.partial = Some(match self.partial.take() {
            Some(before) => format!("{why}; {before}"),
            None => why,
        });
        self.outcome = overall(&self.counts, true);
    }
}

/// The overall outcome of `counts` (see [`AcceptReport::outcome`]).
fn overall(c: &Counts, partial: bool) -> Outcome {
    if c.fail > 0 {
        Outcome::Fail
    } else if partial || (c.not_measured > 0 && c.pass + c.warn == 0) {
        Outcome::NotMeasured
    } else if c.warn > 0 {
        Outcome::Warn
    } else {
        Outcome::Pass
    }
}

/// A value to judge.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Exact(f64),
    AtLeast(f64),
    Missing(String),
}

/// Judges rules against the inputs. Errors are bad input (shape mismatches, a missing baseline).
pub fn accept(rules: &Rules, inputs: AcceptInputs<'_>) -> Result<AcceptReport, InputError> {
    let shape = check_shapes(rules, &inputs)?;
    rules.check_shape(&shape)?;
    if rules.needs_baseline() && inputs.baseline.is_none() {
        let r = rules
            .rules
            .iter()
            .find(|r| r.thresholds.iter().any(|t| t.style == Style::BaselineDeviation))
            .expect("needs_baseline");
        return Err(InputError::field(
            &r.file,
            format!("rule[{}].baseline_deviation", r.index),
            "needs a fleet baseline: set `baseline = \"FILE\"` in the rules file or pass --baseline FILE",
        ));
    }
    let mut items = segment_items(rules, &inputs, &shape);
    items.extend(super::inferred::group_items(inputs.calibration.map(|c| c.1), &items));
    let paths = path_items(rules, &inputs, &shape);
    let bottlenecks = super::inferred::bottleneck_items(&inputs, &items);
    items.extend(bottlenecks);
    items.extend(paths);
    let mut counts = Counts::default();
    for it in &items {
        match it.outcome {
            Outcome::Pass => counts.pass += 1,
            Outcome::Warn => counts.warn += 1,
            Outcome::Fail => counts.fail += 1,
            Outcome::Waived => counts.waived += 1,
            Outcome::NotMeasured => counts.not_measured += 1,
        }
    }
    // A run that lacks a route the rules ask for is not a passed run.
    let unmeasured = items.iter().filter(|i| i.kind == ItemKind::Path && i.outcome == Outcome::NotMeasured).count();
    let partial = (inputs.results.is_some() && unmeasured > 0).then(|| {
        format!(
            "{unmeasured} route measurements the rules ask for are not in the results (never measured or skipped): \
             measure them (`linkcal run --resume DIR`) before accepting"
        )
    });
    let outcome = overall(&counts, partial.is_some());
    let mut files = Vec::new();
    files.extend(inputs.calibration.map(|(p, _)| p.display().to_string()));
    files.extend(inputs.results.map(|(p, _)| p.display().to_string()));
    Ok(AcceptReport {
        schema: ACCEPT_SCHEMA.to_string(),
        title: rules.title.clone(),
        rules_file: rules.file.display().to_string(),
        inputs: files,
        baseline: inputs.baseline.map(|b| b.file().display().to_string()),
        shape,
        items,
        counts,
        outcome,
        partial,
    })
}

/// The rack shape every input agrees on.
fn check_shapes(rules: &Rules, inputs: &AcceptInputs<'_>) -> Result<RackShape, InputError> {
    let shape = match (inputs.calibration, inputs.results) {
        (Some((_, c)), Some((rp, r))) => {
            if c.shape != r.rack.shape {
                return Err(InputError::field(
                    rp,
                    "rack.shape",
                    "the results were measured on another rack shape than the calibration",
                ));
            }
            c.shape.clone()
        }
        (Some((_, c)), None) => c.shape.clone(),
        (None, Some((_, r))) => r.rack.shape.clone(),
        (None, None) => {
            return Err(InputError::file(&rules.file, "nothing to judge: give --calibration FILE and/or --results DIR"))
        }
    };
    if let Some(b) = inputs.baseline {
        let (bs, field) = b.shape();
        if *bs != shape {
            return Err(InputError::field(
                b.file(),
                field,
                format!(
                    "baseline rack is PP_prefill={} PP_decode={} IB cards={} NIC map {:?}, but the judged rack is {} {} {} {:?}: use a baseline of the same rack shape",
                    bs.pp_prefill, bs.pp_decode, bs.ib_cards, bs.nic_map, shape.pp_prefill, shape.pp_decode, shape.ib_cards, shape.nic_map
                ),
            ));
        }
    }
    Ok(shape)
}

fn segment_value(e: Option<&SegmentEstimate>, have_calibration: bool) -> Value {
    let Some(e) = e else {
        return Value::Missing(if have_calibration { "not in the calibration" } else { "no calibration given" }.into());
    };
    match (e.method, e.capacity_Bps, e.lower_bound_Bps) {
        (m, Some(c), _) if m.identified() => Value::Exact(c),
        (Method::LowerBound, _, Some(b)) => Value::AtLeast(b),
        (Method::Unobserved, _, _) => Value::Missing("unobserved: no measurement crossed it".into()),
        _ => Value::Missing("the calibration gives no value".into()),
    }
}

fn segment_items(rules: &Rules, inputs: &AcceptInputs<'_>, shape: &RackShape) -> Vec<ItemVerdict> {
    let cal = inputs.calibration.map(|(_, c)| c);
    let mut out = Vec::new();
    for seg in shape.segments() {
        let name = seg.to_string();
        for dir in [crate::spec::Dir::Up, crate::spec::Dir::Down] {
            let matched: Vec<&Rule> =
                rules.rules.iter().filter(|r| r.dirs.contains(&dir) && r.segments.iter().any(|p| glob_match(p, &name))).collect();
            if matched.is_empty() {
                continue;
            }
            let hop = Hop { id: seg, dir };
            let est = cal.and_then(|c| c.segments.iter().find(|e| e.segment == seg && e.dir == dir));
            let value = segment_value(est, cal.is_some());
            let nominal = est.and_then(|e| e.nominal_Bps);
            let base = match inputs.baseline {
                Some(Baseline::Calibration(_, b)) => {
                    match segment_value(b.segments.iter().find(|e| e.segment == seg && e.dir == dir), true) {
                        Value::Exact(v) => Ok(v),
                        Value::AtLeast(_) => Err("the baseline has only a lower bound for it".to_string()),
                        Value::Missing(why) => Err(format!("baseline: {why}")),
                    }
                }
                Some(Baseline::Results(..)) => Err("the baseline is a results file; segment baselines need a calibration".into()),
                None => Err("no baseline".into()),
            };
            let mut item = ItemVerdict {
                item: hop.to_string(),
                kind: ItemKind::Segment,
                hops: vec![hop],
                path: None,
                payload_bytes: None,
                value_Bps: None,
                lower_bound: false,
                method: est.map(|e| e.method),
                nominal_Bps: None,
                baseline_Bps: base.as_ref().ok().copied(),
                outcome: Outcome::Pass,
                reason: None,
                checks: Vec::new(),
            };
            judge_item(&mut item, &matched, &value, nominal, &base);
            out.push(item);
        }
    }
    out
}

/// Fills `value_Bps`, checks, outcome and reason of an item from the rules that match it.
fn judge_item(item: &mut ItemVerdict, rules: &[&Rule], value: &Value, nominal: Option<f64>, base: &Result<f64, String>) {
    match value {
        Value::Exact(v) => item.value_Bps = Some(*v),
        Value::AtLeast(b) => {
            item.value_Bps = Some(*b);
            item.lower_bound = true;
        }
        Value::Missing(why) => item.reason = Some(why.clone()),
    }
    for rule in rules {
        let nom = nominal.or(rule.nominal_Bps);
        if nom.is_some() && rule.thresholds.iter().any(|t| t.style == Style::NominalFraction) {
            item.nominal_Bps = nom;
        }
        for t in &rule.thresholds {
            item.checks.push(check(rule, t, value, nom, base));
        }
    }
    let waiver = rules.iter().find_map(|r| r.waive.as_ref().map(|w| (r, w)));
    if let Some((r, why)) = waiver {
        item.outcome = Outcome::Waived;
        item.reason = Some(format!("{} (rule '{}')", why, r.name));
        return;
    }
    item.outcome = item.checks.iter().fold(Outcome::Waived, |acc, c| acc.worst(c.outcome));
    if item.checks.is_empty() {
        item.outcome = Outcome::NotMeasured;
    }
    if item.reason.is_none() && item.outcome == Outcome::NotMeasured {
        item.reason = item.checks.iter().find(|c| c.outcome == Outcome::NotMeasured).map(|c| c.detail.clone());
    }
}

/// One threshold against one value.
fn check(rule: &Rule, t: &Threshold, value: &Value, nominal: Option<f64>, base: &Result<f64, String>) -> CheckResult {
    let (scale, what) = match t.style {
        Style::Floor => (Ok(1.0), "floor".to_string()),
        Style::NominalFraction => (
            nominal.ok_or_else(|| "no nominal rate: calibrate with --topology, or set `nominal` in the rule".to_string()),
            "of nominal".to_string(),
        ),
        Style::BaselineDeviation => (base.clone(), "vs baseline".to_string()),
    };
    let to_Bps = |x: Option<f64>, s: f64| {
        x.map(|x| match t.style {
            Style::Floor => x,
            Style::NominalFraction => x * s,
            Style::BaselineDeviation => s * (1.0 + x),
        })
    };
    let mut res = CheckResult {
        rule: rule.name.clone(),
        style: t.style,
        fail_below_Bps: None,
        warn_below_Bps: None,
        outcome: Outcome::NotMeasured,
        detail: String::new(),
    };
    let s = match scale {
        Ok(s) => s,
        Err(why) => {
            res.detail = why;
            return res;
        }
    };
    let (fail, warn) = (to_Bps(t.fail, s), to_Bps(t.warn, s));
    res.fail_below_Bps = fail;
    res.warn_below_Bps = warn;
    let label = |x: Option<f64>, raw: Option<f64>| match (x, raw, t.style) {
        (Some(x), _, Style::Floor) => format!("{} {what}", fmt_rate(x)),
        (Some(x), Some(r), Style::NominalFraction) => format!("{} ({:.0}% {what} {})", fmt_rate(x), r * 100.0, fmt_rate(s)),
        (Some(x), Some(r), Style::BaselineDeviation) => format!("{} ({:+.1}% {what} {})", fmt_rate(x), r * 100.0, fmt_rate(s)),
        _ => "-".to_string(),
    };
    let (outcome, detail) = match value {
        Value::Missing(why) => (Outcome::NotMeasured, why.clone()),
        Value::Exact(v) => {
            if fail.is_some_and(|f| *v < f) {
                (Outcome::Fail, format!("{} < fail threshold {}", fmt_rate(*v), label(fail, t.fail)))
            } else if warn.is_some_and(|w| *v < w) {
                (Outcome::Warn, format!("{} < warn threshold {}", fmt_rate(*v), label(warn, t.warn)))
            } else {
                let th = warn.or(fail);
                (Outcome::Pass, format!("{} >= {}", fmt_rate(*v), label(th, if warn.is_some() { t.warn } else { t.fail })))
            }
        }
        Value::AtLeast(b) => {
            let top = warn.or(fail).unwrap_or(0.0).max(fail.unwrap_or(0.0));
            if *b >= top {
                (
                    Outcome::Pass,
                    format!("lower bound {} >= every threshold (capacity not identified, but at least this)", fmt_rate(*b)),
                )
            } else if fail.is_some_and(|f| *b >= f) {
                (
                    Outcome::Pass,
                    format!(
                        "lower bound {} >= fail threshold {}; warn threshold undecided (capacity not identified)",
                        fmt_rate(*b),
                        label(fail, t.fail)
                    ),
                )
            } else {
                (
                    Outcome::NotMeasured,
                    format!(
                        "not identified: only a lower bound {} (below {}); the capacity may still meet it",
                        fmt_rate(*b),
                        label(fail.or(warn), t.fail.or(t.warn))
                    ),
                )
            }
        }
    };
    res.outcome = outcome;
    res.detail = detail;
    res
}

/// Path items: every route the rules name that was measured or waived, plus spec routes named.
fn path_items(rules: &Rules, inputs: &AcceptInputs<'_>, shape: &RackShape) -> Vec<ItemVerdict> {
    let res = inputs.results.map(|(_, r)| r);
    let mut candidates: Vec<PathRef> = Vec::new();
    if let Some(r) = res {
        candidates.extend(r.measurements.iter().flat_map(|m| m.flows.iter().map(|f| f.path)));
        candidates.extend(r.waivers.iter().filter_map(|w| w.path));
    }
    if let Ok(set) = RouteSet::spec(shape, None) {
        candidates.extend(set.routes.iter().map(|r| r.path));
    }
    candidates.sort();
    candidates.dedup();
    let mut out = Vec::new();
    for p in candidates {
        let name = p.to_string();
        let matched: Vec<&Rule> = rules.rules.iter().filter(|r| r.paths.iter().any(|pat| glob_match(pat, &name))).collect();
        if matched.is_empty() {
            continue;
        }
        // Rules judging different payloads make separate items.
        let mut sels: Vec<PayloadSel> = matched.iter().map(|r| r.payload).collect();
        sels.dedup();
        for sel in sels {
            let these: Vec<&Rule> = matched.iter().copied().filter(|r| r.payload == sel).collect();
            out.push(path_item(p, sel, &these, inputs));
        }
    }
    out
}

fn path_item(p: PathRef, sel: PayloadSel, rules: &[&Rule], inputs: &AcceptInputs<'_>) -> ItemVerdict {
    let res = inputs.results.map(|(_, r)| r);
    let solo: Vec<(u64, f64)> = res
        .map(|r| {
            r.measurements
                .iter()
                .filter(|m| m.kind == MeasurementKind::Solo)
                .flat_map(|m| m.flows.iter().filter(|f| f.path == p).map(|f| (f.payload_bytes, f.goodput_Bps.p50)))
                .collect()
        })
        .unwrap_or_default();
    let payload = match sel {
        PayloadSel::Largest => solo.iter().map(|s| s.0).max(),
        PayloadSel::Bytes(b) => Some(b),
    };
    let value = match (res, payload.and_then(|b| solo.iter().rev().find(|s| s.0 == b))) {
        (None, _) => Value::Missing("no results given".into()),
        (_, Some(&(_, v))) => Value::Exact(v),
        (Some(_), None) => Value::Missing(match payload {
            Some(b) => format!("no solo measurement of this path at {b} bytes"),
            None => "no solo measurement of this path".into(),
        }),
    };
    let cal = inputs.calibration.map(|(_, c)| c);
    let hops: Vec<Hop> = res
        .and_then(|r| r.measurements.iter().flat_map(|m| m.flows.iter()).find(|f| f.path == p).map(|f| f.segments.clone()))
        .or_else(|| cal.and_then(|c| c.paths.iter().find(|m| m.path == p).map(|m| m.segments.clone())))
        .unwrap_or_default();
    let nominal = cal.and_then(|c| {
        let noms: Option<Vec<f64>> = hops
            .iter()
            .map(|h| c.segments.iter().find(|e| e.segment == h.id && e.dir == h.dir).and_then(|e| e.nominal_Bps))
            .collect();
        noms.filter(|v| !v.is_empty()).map(|v| v.into_iter().fold(f64::INFINITY, f64::min))
    });
    let base = match (inputs.baseline, payload) {
        (None, _) => Err("no baseline".to_string()),
        (Some(_), None) => Err("no payload to compare".to_string()),
        (Some(Baseline::Results(_, b)), Some(bytes)) => b
            .measurements
            .iter()
            .filter(|m| m.kind == MeasurementKind::Solo)
            .flat_map(|m| m.flows.iter())
            .filter(|f| f.path == p && f.payload_bytes == bytes)
            .map(|f| f.goodput_Bps.p50)
            .next_back()
            .ok_or_else(|| format!("the baseline has no solo measurement of {p} at {bytes} bytes")),
        (Some(Baseline::Calibration(_, c)), Some(bytes)) => c
            .paths
            .iter()
            .find(|m| m.path == p)
            .and_then(|m| m.raw.iter().find(|r| r.payload_bytes == bytes))
            .map(|r| r.p50_Bps)
            .ok_or_else(|| format!("the baseline calibration has no raw point of {p} at {bytes} bytes")),
    };
    let mut item = ItemVerdict {
        item: match payload {
            Some(b) => format!("{p} @ {}", crate::units::fmt_bytes(b)),
            None => p.to_string(),
        },
        kind: ItemKind::Path,
        hops,
        path: Some(p),
        payload_bytes: payload,
        value_Bps: None,
        lower_bound: false,
        method: None,
        nominal_Bps: None,
        baseline_Bps: base.as_ref().ok().copied(),
        outcome: Outcome::Pass,
        reason: None,
        checks: Vec::new(),
    };
    judge_item(&mut item, rules, &value, nominal, &base);
    if item.outcome != Outcome::Waived && matches!(value, Value::Missing(_)) {
        if let Some(w) = res.and_then(|r| r.waivers.iter().find(|w| w.path == Some(p))) {
            item.outcome = Outcome::Waived;
            item.reason = Some(format!("probe {} does not apply: {}", w.probe, w.reason));
        }
    }
    item
}
