//! The planner's prediction in the HTML report (and as a standalone SVG for `linkcal predict
//! --svg`): the routes' times with what limits them, and the KV burst against T, one line per N.

use std::fmt::Write;

use super::junit::xml_escape as esc;
use super::plots::{svg_or_error, time_lines_svg, Line, PlotResult};
use crate::predict::{Prediction, ScalePoint};

/// The KV burst (all prefill stages at once) against T, one line per N (log-log).
pub fn scaling_svg(p: &Prediction, pts: &[ScalePoint]) -> PlotResult {
    let mut ns: Vec<u64> = pts.iter().map(|x| x.n).collect();
    ns.dedup();
    let lines: Vec<Line> = ns
        .iter()
        .map(|&n| Line {
            label: format!("N={n}"),
            points: pts.iter().filter(|x| x.n == n).map(|x| (x.t as f64, x.kv_burst_s)).collect(),
        })
        .collect();
    let rack = if p.payload_scale != 1.0 { format!(", payloads / {}", p.payload_scale) } else { String::new() };
    let title = format!("{}: KV handoff of all {} stages at once (M={}{rack})", p.model, p.shape.pp_prefill, p.workload.m);
    time_lines_svg(&title, "T: context length (tokens, log scale)", &lines)
}

/// The report section: a table of every route and the scaling plot.
pub fn section(h: &mut String, p: &Prediction, pts: &[ScalePoint]) {
    let w = p.workload;
    let _ = write!(
        h,
        "<h2 id=\"prediction\">Planner prediction: {} at N={} T={} M={}</h2><p class=\"note\">Times from the calibration: each route's fixed cost plus its bytes at its max-min share (sharing efficiency {:.4} on shared segment directions).{}</p>",
        esc(&p.model),
        w.n,
        w.t,
        w.m,
        p.sharing_efficiency,
        if p.payload_scale != 1.0 || p.emulated {
            format!(" <b>Times are for the {} rack with payloads divided by {}</b>, not hardware times for the real bytes.", if p.emulated { "emulated" } else { "calibrated" }, p.payload_scale)
        } else {
            String::new()
        }
    );
    h.push_str("<table><tr><th>path</th><th>route</th><th>real bytes</th><th>rack bytes</th><th>alone ms</th><th>all at once ms</th><th>limited by</th></tr>");
    for (name, set) in [("1: pipeline step", &p.path1), ("2: KV handoff", &p.path2), ("3: decode step", &p.path3)] {
        for r in &set.routes {
            let _ = write!(
                h,
                "<tr><td>{name}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td>{}</td></tr>",
                esc(&r.route.to_string()),
                r.real_bytes,
                r.scaled_bytes,
                r.alone_s * 1e3,
                r.all_at_once_s * 1e3,
                esc(&r.bottleneck.describe())
            );
        }
    }
    h.push_str("</table><ul>");
    for n in &p.notes {
        let _ = write!(h, "<li>{}</li>", esc(n));
    }
    h.push_str("</ul>");
    h.push_str(&svg_or_error(scaling_svg(p, pts)));
}
