//! Verdicts acceptance infers beyond single segment directions, where only a minimum over
//! several of them is known: a series group (segment directions always crossed together), and
//! the unidentified bottleneck of a solo route (its goodput is the minimum over the hops not
//! shown faster elsewhere). When that minimum is below the fail threshold of every candidate,
//! one of them must be below its floor: the item fails and lists the candidates, so a slow
//! cable is caught even when the probes cannot say which link it is.
#![allow(non_snake_case)]

use std::collections::BTreeMap;

use super::item::{AcceptInputs, ItemKind, ItemVerdict};
use super::Outcome;
use crate::model::results::MeasurementKind;
use crate::model::Calibration;
use crate::spec::{Hop, PathRef};
use crate::units::{fmt_bytes, fmt_rate};

/// A segment direction shown faster than a route's goodput by more than this fraction is not
/// a candidate for its bottleneck.
const FASTER: f64 = 0.01;

/// The strictest threshold among an item's checks (B/s): fail thresholds, or warn thresholds
/// (falling back to fail) when `warn`.
fn strictest(it: &ItemVerdict, warn: bool) -> Option<f64> {
    it.checks
        .iter()
        .filter_map(|c| if warn { c.warn_below_Bps.or(c.fail_below_Bps) } else { c.fail_below_Bps })
        .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
}

fn min_all(v: &[Option<f64>]) -> Option<f64> {
    v.iter().copied().collect::<Option<Vec<f64>>>().map(|v| v.into_iter().fold(f64::INFINITY, f64::min))
}

fn blank(item: String, kind: ItemKind, hops: Vec<Hop>, value: Option<f64>) -> ItemVerdict {
    ItemVerdict {
        item,
        kind,
        hops,
        path: None,
        payload_bytes: None,
        value_Bps: value,
        lower_bound: false,
        method: None,
        nominal_Bps: None,
        baseline_Bps: None,
        outcome: Outcome::NotMeasured,
        reason: None,
        checks: Vec::new(),
    }
}

/// Segment items that can be judged as members of a minimum (not waived, with thresholds).
fn judged<'a>(segs: &'a [ItemVerdict], hops: &[Hop]) -> Vec<&'a ItemVerdict> {
    segs.iter()
        .filter(|it| {
            it.kind == ItemKind::Segment && hops.contains(&it.hops[0]) && it.outcome != Outcome::Waived && !it.checks.is_empty()
        })
        .collect()
}

/// Series groups: fail when the group's capacity is below every judged member's fail threshold
/// (whichever member is the slow one, it fails), pass when it clears every member's thresholds.
pub(super) fn group_items(cal: Option<&Calibration>, segs: &[ItemVerdict]) -> Vec<ItemVerdict> {
    let Some(cal) = cal else { return Vec::new() };
    let mut out = Vec::new();
    for g in &cal.series_groups {
        let members = judged(segs, &g.members);
        if members.is_empty() {
            continue;
        }
        let fails: Vec<Option<f64>> = members.iter().map(|m| strictest(m, false)).collect();
        let warns: Vec<Option<f64>> = members.iter().map(|m| strictest(m, true)).collect();
        let top = warns.iter().flatten().copied().fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        let names: Vec<String> = g.members.iter().map(|h| h.to_string()).collect();
        let mut item =
            blank(format!("series group {} ({})", g.id, names.join(" + ")), ItemKind::Group, g.members.clone(), g.capacity_Bps);
        let (outcome, why) = match g.capacity_Bps {
            None => (Outcome::NotMeasured, "the group's capacity is not identified".to_string()),
            Some(c) => match (min_all(&fails), min_all(&warns), top) {
                (Some(f), _, _) if c < f => (
                    Outcome::Fail,
                    format!(
                        "group capacity {} < every member's fail threshold (lowest {}): one member is below its floor",
                        fmt_rate(c),
                        fmt_rate(f)
                    ),
                ),
                (_, Some(w), _) if c < w => (
                    Outcome::Warn,
                    format!("group capacity {} < every member's warn threshold (lowest {})", fmt_rate(c), fmt_rate(w)),
                ),
                (_, _, Some(t)) if c >= t => (
                    Outcome::Pass,
                    format!("group capacity {} >= every member's thresholds (highest {})", fmt_rate(c), fmt_rate(t)),
                ),
                _ => (
                    Outcome::NotMeasured,
                    format!(
                        "group capacity {} is between the members' thresholds: which member limits it is not identified",
                        fmt_rate(c)
                    ),
                ),
            },
        };
        item.outcome = outcome;
        item.reason = Some(why);
        out.push(item);
    }
    out
}

/// Per route: the largest solo payload, its median goodput (B/s) and the hops it crossed.
fn solo_routes(inputs: &AcceptInputs<'_>) -> BTreeMap<PathRef, (u64, f64, Vec<Hop>)> {
    let mut out: BTreeMap<PathRef, (u64, f64, Vec<Hop>)> = BTreeMap::new();
    let Some((_, res)) = inputs.results else { return out };
    for m in res.measurements.iter().filter(|m| m.kind == MeasurementKind::Solo) {
        for f in &m.flows {
            let e = out.entry(f.path).or_insert((0, 0.0, Vec::new()));
            if f.payload_bytes >= e.0 {
                *e = (f.payload_bytes, f.goodput_Bps.p50, f.segments.clone());
            }
        }
    }
    out
}

/// True when the calibration shows `h` faster than `g` B/s (identified, or a lower bound above it).
fn shown_faster(cal: Option<&Calibration>, h: &Hop, g: f64) -> bool {
    cal.and_then(|c| c.segments.iter().find(|e| e.segment == h.id && e.dir == h.dir))
        .and_then(|e| if e.method.identified() { e.capacity_Bps } else { e.lower_bound_Bps })
        .is_some_and(|v| v > g * (1.0 + FASTER))
}

/// Route bottlenecks the segment verdicts leave unexplained: a solo route's goodput below the
/// fail (or warn) threshold of every hop that may limit it. Emitted only as fail or warn, and
/// only when no candidate (or group of them) already failed.
pub(super) fn bottleneck_items(inputs: &AcceptInputs<'_>, items: &[ItemVerdict]) -> Vec<ItemVerdict> {
    let cal = inputs.calibration.map(|c| c.1);
    let mut seen: Vec<Vec<Hop>> = Vec::new();
    let mut out = Vec::new();
    for (p, (bytes, g, hops)) in solo_routes(inputs) {
        let cands: Vec<Hop> = hops.iter().copied().filter(|h| !shown_faster(cal, h, g)).collect();
        let judged = judged(items, &cands);
        if cands.is_empty() || judged.len() != cands.len() || seen.contains(&cands) {
            continue;
        }
        let explained = judged.iter().any(|it| it.outcome == Outcome::Fail)
            || items
                .iter()
                .any(|it| it.kind == ItemKind::Group && it.outcome == Outcome::Fail && cands.iter().all(|h| it.hops.contains(h)));
        if explained {
            continue;
        }
        let fails: Vec<Option<f64>> = judged.iter().map(|m| strictest(m, false)).collect();
        let warns: Vec<Option<f64>> = judged.iter().map(|m| strictest(m, true)).collect();
        let names: Vec<String> = cands.iter().map(|h| h.to_string()).collect();
        let (outcome, lowest) = match (min_all(&fails), min_all(&warns)) {
            (Some(f), _) if g < f => (Outcome::Fail, f),
            (_, Some(w)) if g < w => (Outcome::Warn, w),
            _ => continue,
        };
        seen.push(cands.clone());
        let mut item = blank(
            format!("bottleneck of {p} @ {}: one of {}", fmt_bytes(bytes), names.join(" | ")),
            ItemKind::RouteBottleneck,
            cands,
            Some(g),
        );
        item.path = Some(p);
        item.payload_bytes = Some(bytes);
        item.outcome = outcome;
        item.reason = Some(format!(
            "the route's median solo goodput {} is below every candidate's {} threshold (lowest {}): whichever link limits it is below its own; \
             the probes cannot tell which (isolation probes would)",
            fmt_rate(g),
            if outcome == Outcome::Fail { "fail" } else { "warn" },
            fmt_rate(lowest)
        ));
        out.push(item);
    }
    out
}
