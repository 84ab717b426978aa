//! `report.html`: one self-contained file (inline CSS and SVG, no scripts, no external
//! resources) with the acceptance verdicts at the top, then goodput vs payload per route with
//! the fitted alpha-beta model, per-segment capacity vs nominal, contended vs solo, and the
//! topology drawing with measured figures on its edges.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::junit::xml_escape as esc;
use super::plots::{bars_svg, goodput_svg, svg_or_error, Bar, GoodputSeries};
use super::topo_svg::{topology_svg, EdgeInfo, Figure};
use crate::model::calibration::Method;
use crate::model::results::{MeasurementKind, Results};
use crate::model::Calibration;
use crate::spec::{Dir, PathRef, RouteKind, SegmentId};
use crate::units::{fmt_bytes, fmt_rate};
use crate::verdict::{AcceptReport, Change, CompareReport, ItemKind, Outcome};

/// What goes into the report.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The run's results and where they were read from.
    pub results: (&'a Path, &'a Results),
    /// A calibration computed from them, if any.
    pub calibration: Option<(&'a Path, &'a Calibration)>,
    /// Acceptance verdicts, if rules were given.
    pub acceptance: Option<&'a AcceptReport>,
    /// A comparison against a baseline, if one was given.
    pub comparison: Option<&'a CompareReport>,
    /// A planner's prediction on the calibration and its N x T table, if one was asked for.
    pub prediction: Option<(&'a crate::predict::Prediction, &'a [crate::predict::ScalePoint])>,
    /// Why the results are a partial run (killed or failed, recovered from its journal), if so.
    pub partial: Option<&'a str>,
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1300px;color:#222;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\nsummary{cursor:pointer;color:#444;font-size:13px;margin:6px 0}\nul{font-size:13px;color:#333}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}
.pass{background:#1e8c32}.warn{background:#dc8200}.fail{background:#c81e1e}.waived{background:#777}.not_measured{background:#999}
.regression{background:#c81e1e}.improvement{background:#1e8c32}.unchanged{background:#999}.inconclusive{background:#dc8200}.missing,.added{background:#777}
.verdict{font-size:20px;padding:10px 14px;border-radius:6px;margin:12px 0;color:#fff;display:inline-block}
.meta{color:#555;font-size:13px}.note{color:#555;font-size:13px;max-width:1000px}svg{max-width:100%;height:auto;display:block;margin:8px 0}";

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

/// Renders the whole report.
pub fn render(inp: &ReportInput<'_>) -> String {
    let (rpath, res) = inp.results;
    let mut h = String::new();
    let _ = write!(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>linkcal report</title><style>{CSS}</style></head><body>\n");
    let s = &res.rack.shape;
    let _ = writeln!(
        h,
        "<h1>linkcal report</h1><p class=\"meta\">Rack PP_prefill={} PP_decode={} Num_IB_Cards={} NIC map {:?}{}; results <code>{}</code>{}; linkcal {} ({}) on {}, {} – {}. Rates are bytes/s (SI, 1 GB/s = 1e9 B/s), per direction of one flow unless marked as a sum.</p>",
        s.pp_prefill,
        s.pp_decode,
        s.ib_cards,
        s.nic_map,
        if res.rack.emulated { format!(", emulated rack (payloads scaled 1/{})", res.rack.payload_scale) } else { String::new() },
        esc(&rpath.display().to_string()),
        inp.calibration.map(|(p, _)| format!("; calibration <code>{}</code>", esc(&p.display().to_string()))).unwrap_or_default(),
        esc(&res.provenance.tool_version),
        esc(res.provenance.git_sha.as_deref().unwrap_or("unknown sha")),
        esc(&res.provenance.host),
        esc(&res.provenance.started_at),
        esc(res.provenance.finished_at.as_deref().unwrap_or("unfinished")),
    );
    if let Some(p) = inp.partial {
        let _ = writeln!(
            h,
            "<div class=\"verdict not_measured\">Partial run</div><p class=\"note\">{}. Figures below are what the run finished; continue it with <code>linkcal run --resume DIR</code>.</p>",
            esc(p)
        );
    }
    acceptance_section(&mut h, inp.acceptance);
    if let Some(c) = inp.comparison {
        compare_section(&mut h, c);
    }
    goodput_section(&mut h, res, inp.calibration.map(|c| c.1));
    capacity_section(&mut h, res, inp.calibration.map(|c| c.1), inp.acceptance);
    contention_section(&mut h, res);
    topology_section(&mut h, res, inp.calibration.map(|c| c.1), inp.acceptance);
    if let Some((_, c)) = inp.calibration {
        super::engine::section(&mut h, c);
    }
    if let Some((p, pts)) = inp.prediction {
        super::prediction::section(&mut h, p, pts);
    }
    if !res.waivers.is_empty() {
        h.push_str("<h2>Waived probes</h2><table><tr><th>probe</th><th>route</th><th>reason</th></tr>");
        for w in &res.waivers {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&w.probe),
                w.path.map(|p| esc(&p.to_string())).unwrap_or_default(),
                esc(&w.reason)
            );
        }
        h.push_str("</table>");
    }
    if let Some((_, c)) = inp.calibration {
        if !c.notes.is_empty() {
            h.push_str("<h2>Calibration notes</h2><ul>");
            for n in &c.notes {
                let _ = write!(h, "<li>{}</li>", esc(n));
            }
            h.push_str("</ul>");
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn acceptance_section(h: &mut String, acc: Option<&AcceptReport>) {
    h.push_str("<h2 id=\"acceptance\">Acceptance</h2>");
    let Some(a) = acc else {
        h.push_str("<p class=\"note\">No rules given: pass <code>--rules FILE</code> (e.g. rules/emulated-default.toml) to judge this run.</p>");
        return;
    };
    let c = &a.counts;
    let _ = write!(
        h,
        "<div class=\"verdict {}\">{}: {}</div><p class=\"meta\">{} pass, {} warn, {} fail, {} waived, {} not measured; rules <code>{}</code>{}</p>",
        a.outcome.as_str(),
        esc(&a.title),
        super::markdown::verdict_word(a),
        c.pass,
        c.warn,
        c.fail,
        c.waived,
        c.not_measured,
        esc(&a.rules_file),
        a.baseline.as_ref().map(|b| format!("; baseline <code>{}</code>", esc(b))).unwrap_or_default()
    );
    let mut items: Vec<_> = a.items.iter().collect();
    items.sort_by_key(|it| it.outcome.display_rank());
    let (judged, unjudged): (Vec<_>, Vec<_>) = items.into_iter().partition(|it| it.outcome != Outcome::NotMeasured);
    verdict_table(h, &judged);
    if !unjudged.is_empty() {
        let _ = write!(
            h,
            "<details><summary>{} items not measured or not identified (unobserved, or only a lower bound below the threshold)</summary>",
            unjudged.len()
        );
        verdict_table(h, &unjudged);
        h.push_str("</details>");
    }
}

fn verdict_table(h: &mut String, items: &[&crate::verdict::ItemVerdict]) {
    h.push_str("<table><tr><th>item</th><th>value</th><th>method</th><th>outcome</th><th>detail</th></tr>");
    for it in items {
        let value = match (it.value_Bps, it.lower_bound) {
            (Some(v), true) => format!("≥ {}", fmt_rate(v)),
            (Some(v), false) => fmt_rate(v),
            (None, _) => "–".into(),
        };
        let method = match (it.kind, it.method) {
            (ItemKind::Path, _) => "median solo goodput".to_string(),
            (ItemKind::Group, _) => "series group".to_string(),
            (ItemKind::RouteBottleneck, _) => "route bottleneck".to_string(),
            (_, Some(m)) => serde_json::to_value(m).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            (_, None) => String::new(),
        };
        let detail = match it.outcome {
            Outcome::Waived | Outcome::NotMeasured => it.reason.clone().unwrap_or_default(),
            _ => it.checks.iter().map(|c| c.detail.clone()).chain(it.reason.clone()).collect::<Vec<_>>().join("; "),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&it.item),
            esc(&value),
            esc(&method),
            badge(it.outcome.as_str(), it.outcome.as_str()),
            esc(&detail)
        );
    }
    h.push_str("</table>");
}

fn compare_section(h: &mut String, c: &CompareReport) {
    let _ = write!(
        h,
        "<h2 id=\"regression\">Regression against a baseline</h2><p class=\"meta\">Baseline <code>{}</code>; minimum effect {:.1}%; {:.0}% family-wise intervals of the change (Bonferroni over the items). {}</p>",
        esc(&c.baseline),
        c.min_effect * 100.0,
        c.confidence * 100.0,
        c.counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    );
    h.push_str("<table><tr><th>item</th><th>baseline</th><th>new</th><th>change</th><th>interval</th><th>status</th></tr>");
    let mut rows: Vec<_> = c.rows.iter().filter(|r| r.status != Change::Unchanged).collect();
    rows.sort_by_key(|r| r.status.display_rank());
    for r in rows {
        let pct = |v: Option<f64>| v.map(|v| format!("{:+.1}%", v * 100.0)).unwrap_or_else(|| "–".into());
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">[{}, {}]</td><td>{}</td></tr>",
            esc(&r.key),
            r.baseline_Bps.map(fmt_rate).unwrap_or_default(),
            r.new_Bps.map(fmt_rate).unwrap_or_default(),
            pct(r.change),
            pct(r.ci_low),
            pct(r.ci_high),
            badge(r.status.as_str(), r.status.as_str())
        );
    }
    h.push_str("</table>");
}

/// Solo points per route: payload -> (p50 goodput, ci low, ci high, p50 time); the last measurement wins.
type SoloPoints = BTreeMap<PathRef, BTreeMap<u64, (f64, Option<f64>, Option<f64>, f64)>>;

fn solo_points(res: &Results) -> SoloPoints {
    let mut by: SoloPoints = BTreeMap::new();
    for m in res.measurements.iter().filter(|m| m.kind == MeasurementKind::Solo) {
        for f in &m.flows {
            let g = f.goodput_Bps;
            by.entry(f.path).or_default().insert(f.payload_bytes, (g.p50, g.ci95_low, g.ci95_high, f.transfer_time_s.p50));
        }
    }
    by
}

fn goodput_section(h: &mut String, res: &Results, cal: Option<&Calibration>) {
    h.push_str("<h2 id=\"goodput\">Goodput vs payload size</h2>");
    let _ = write!(
        h,
        "<p class=\"note\">Dots: median goodput of solo transfers, whiskers: 95% interval of the mean. Lines: {}.</p>",
        if cal.is_some() {
            "the calibration's piecewise alpha-beta model (time = alpha + bytes / beta)"
        } else {
            "the alpha-beta model `linkcal calibrate` would fit to these median times (no calibration given)"
        }
    );
    let points = solo_points(res);
    if points.is_empty() {
        h.push_str("<p class=\"note\">No solo measurements in these results.</p>");
        return;
    }
    for kind in RouteKind::ALL {
        let series: Vec<GoodputSeries> = points
            .iter()
            .filter(|(p, _)| p.kind == kind)
            .map(|(p, pts)| {
                let model = cal
                    .and_then(|c| c.paths.iter().find(|m| m.path == *p).map(|m| m.pieces.clone()))
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| crate::calibrate::alpha_beta(&pts.iter().map(|(b, v)| (*b, v.3)).collect::<Vec<_>>()));
                GoodputSeries { label: p.to_string(), points: pts.iter().map(|(b, v)| (*b, v.0, v.1, v.2)).collect(), model }
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let title = match kind.spec_number() {
            Some(n) => format!("Path {n}: {kind}"),
            None => format!("{kind} (isolation route, outside the spec)"),
        };
        h.push_str(&svg_or_error(goodput_svg(&title, &series)));
        h.push_str(
            "<table><tr><th>route</th><th>alpha (s)</th><th>beta</th><th>largest payload</th><th>median goodput there</th></tr>",
        );
        for s in &series {
            let last = s.points.iter().max_by_key(|p| p.0);
            for m in &s.model {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{:.3e}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&s.label),
                    m.alpha_s,
                    fmt_rate(m.beta_Bps),
                    last.map(|p| fmt_bytes(p.0)).unwrap_or_default(),
                    last.map(|p| fmt_rate(p.1)).unwrap_or_default()
                );
            }
        }
        h.push_str("</table>");
    }
}

fn outcome_color(o: Option<Outcome>) -> usize {
    match o {
        Some(Outcome::Pass) => 2,
        Some(Outcome::Warn) => 1,
        Some(Outcome::Fail) => 3,
        _ => 0,
    }
}

fn segment_outcome(acc: Option<&AcceptReport>, seg: SegmentId, dir: Option<Dir>) -> Option<Outcome> {
    acc?.items
        .iter()
        .filter(|it| {
            it.kind == ItemKind::Segment && it.hops.first().is_some_and(|h| h.id == seg && dir.is_none_or(|d| h.dir == d))
        })
        .map(|it| it.outcome)
        .reduce(Outcome::worst)
}

/// Lower bounds per segment direction from solo results: the largest median goodput, at each
/// route's largest payload, of a solo flow that crossed it. Small payloads are left out: a
/// shaper's burst allowance lets a few KiB through faster than the link's rate.
fn bounds_from_results(res: &Results) -> BTreeMap<(SegmentId, Dir), f64> {
    let mut largest: BTreeMap<PathRef, u64> = BTreeMap::new();
    for m in res.measurements.iter().filter(|m| m.kind == MeasurementKind::Solo) {
        for f in &m.flows {
            let e = largest.entry(f.path).or_insert(0);
            *e = (*e).max(f.payload_bytes);
        }
    }
    let mut out: BTreeMap<(SegmentId, Dir), f64> = BTreeMap::new();
    for m in res.measurements.iter().filter(|m| m.kind == MeasurementKind::Solo) {
        for f in m.flows.iter().filter(|f| largest.get(&f.path) == Some(&f.payload_bytes)) {
            for hop in &f.segments {
                let e = out.entry((hop.id, hop.dir)).or_insert(0.0);
                *e = e.max(f.goodput_Bps.p50);
            }
        }
    }
    out
}

fn capacity_section(h: &mut String, res: &Results, cal: Option<&Calibration>, acc: Option<&AcceptReport>) {
    h.push_str("<h2 id=\"capacity\">Per-segment capacity vs nominal</h2>");
    let nominal_of = |seg: SegmentId, dir: Dir| {
        acc.and_then(|a| {
            a.items.iter().find(|it| it.kind == ItemKind::Segment && it.hops.first() == Some(&crate::spec::Hop { id: seg, dir }))
        })
        .and_then(|it| it.nominal_Bps)
    };
    let rows: Vec<Bar> = match cal {
        Some(c) => {
            h.push_str("<p class=\"note\">Bars: calibrated capacity per segment direction (solid: identified by isolation, saturation or as a bottleneck; pale with ≥: only a lower bound), whiskers: 95% interval, black tick: nominal rate (from discovery, or the rules). Colors: acceptance outcome (green pass, orange warn, red fail, blue not judged).</p>");
            c.segments
                .iter()
                .filter(|e| e.method != Method::Unobserved)
                .map(|e| Bar {
                    label: format!("{} {}{}", e.segment, e.dir, if e.outside_spec { " (outside spec)" } else { "" }),
                    value: e.capacity_Bps.or(e.lower_bound_Bps),
                    lower_bound: !e.method.identified(),
                    ci: e.ci95_low_Bps.zip(e.ci95_high_Bps),
                    reference: e.nominal_Bps.or_else(|| nominal_of(e.segment, e.dir)),
                    color: outcome_color(segment_outcome(acc, e.segment, Some(e.dir))),
                })
                .collect()
        }
        None => {
            h.push_str("<p class=\"note\">No calibration given: bars are lower bounds only (the fastest solo flow that crossed each segment direction); run <code>linkcal calibrate</code> for capacities.</p>");
            bounds_from_results(res)
                .into_iter()
                .map(|((seg, dir), v)| Bar {
                    label: format!("{seg} {dir}"),
                    value: Some(v),
                    lower_bound: true,
                    ci: None,
                    reference: nominal_of(seg, dir),
                    color: outcome_color(segment_outcome(acc, seg, Some(dir))),
                })
                .collect()
        }
    };
    if rows.is_empty() {
        h.push_str("<p class=\"note\">No segment figures.</p>");
        return;
    }
    h.push_str(&svg_or_error(bars_svg("Capacity per segment direction", "capacity", "nominal", &rows)));
}

fn contention_section(h: &mut String, res: &Results) {
    h.push_str("<h2 id=\"contention\">Contended vs solo</h2>");
    let solo = solo_points(res);
    let mut rows = Vec::new();
    for m in res.measurements.iter().filter(|m| m.kind == MeasurementKind::Contended) {
        let set = m.set.clone().unwrap_or_else(|| m.id.clone());
        let mut solo_sum = Some(0.0);
        for f in &m.flows {
            let s = solo.get(&f.path).and_then(|p| p.get(&f.payload_bytes)).map(|v| v.0);
            solo_sum = solo_sum.zip(s).map(|(a, b)| a + b);
            rows.push(Bar {
                label: format!("{set}: {} @ {}", f.path, fmt_bytes(f.payload_bytes)),
                value: Some(f.goodput_Bps.p50),
                lower_bound: false,
                ci: f.goodput_Bps.ci95_low.zip(f.goodput_Bps.ci95_high),
                reference: s,
                color: 0,
            });
        }
        if let Some(a) = &m.aggregate {
            rows.push(Bar {
                label: format!("{set}: sum of {} flows", m.flows.len()),
                value: Some(a.goodput_sum_Bps.p50),
                lower_bound: false,
                ci: a.goodput_sum_Bps.ci95_low.zip(a.goodput_sum_Bps.ci95_high),
                reference: solo_sum,
                color: 4,
            });
        }
    }
    if rows.is_empty() {
        h.push_str("<p class=\"note\">No contended measurements in these results.</p>");
        return;
    }
    h.push_str("<p class=\"note\">Bars: median goodput of each flow while the set ran together (purple: the sum over the set's flows); black tick: the same route's solo median at the same payload (for sums: the sum of the solo medians).</p>");
    h.push_str(&svg_or_error(bars_svg("Contended vs solo goodput", "goodput", "solo", &rows)));
}

fn topology_section(h: &mut String, res: &Results, cal: Option<&Calibration>, acc: Option<&AcceptReport>) {
    h.push_str("<h2 id=\"topology\">Topology with measured figures</h2>");
    let mut edges: BTreeMap<SegmentId, EdgeInfo> = BTreeMap::new();
    match cal {
        Some(c) => {
            for e in &c.segments {
                let f = match (e.method.identified(), e.capacity_Bps, e.lower_bound_Bps) {
                    (true, Some(v), _) => Some(Figure::Exact(v)),
                    (false, _, Some(b)) => Some(Figure::AtLeast(b)),
                    _ => None,
                };
                let info = edges.entry(e.segment).or_default();
                match e.dir {
                    Dir::Up => info.up = f,
                    Dir::Down => info.down = f,
                }
            }
        }
        None => {
            for ((seg, dir), v) in bounds_from_results(res) {
                let info = edges.entry(seg).or_default();
                match dir {
                    Dir::Up => info.up = Some(Figure::AtLeast(v)),
                    Dir::Down => info.down = Some(Figure::AtLeast(v)),
                }
            }
        }
    }
    for seg in res.rack.shape.segments() {
        // An edge shows its worst judged outcome; "not measured" only when nothing was judged.
        let o = acc.and_then(|a| {
            let outs: Vec<Outcome> = a
                .items
                .iter()
                .filter(|it| it.kind == ItemKind::Segment && it.hops.first().is_some_and(|h| h.id == seg))
                .map(|it| it.outcome)
                .collect();
            [Outcome::Fail, Outcome::Warn, Outcome::Pass, Outcome::NotMeasured, Outcome::Waived]
                .into_iter()
                .find(|o| outs.contains(o))
        });
        if o.is_some() {
            edges.entry(seg).or_default().outcome = o;
        }
    }
    h.push_str(&svg_or_error(topology_svg(&res.rack.shape, &edges)));
}
