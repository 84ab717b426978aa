//! The KV-transfer engines' efficiency beside host TCP in the HTML report: one table row per
//! engine, route, KV block and payload (from `calibration.engine_efficiency`), and the ratio
//! against payload, one line per route and block.

use std::fmt::Write;

use plotters::prelude::*;

use super::junit::xml_escape as esc;
use super::plots::{color, dots, err, legend, PlotError, PlotResult};
use crate::model::calibration::EngineCurve;
use crate::model::Calibration;
use crate::units::{fmt_bytes, fmt_rate};

fn label(c: &EngineCurve) -> String {
    let tokens = c.kv_block_tokens.map(|t| format!("{t}-token ")).unwrap_or_default();
    format!("{} {} {tokens}blocks of {}", c.engine, c.path, fmt_bytes(c.kv_block_bytes))
}

/// Ratio (engine goodput / host TCP goodput, linear y) against payload (log x), one line per curve.
fn ratio_svg(curves: &[EngineCurve]) -> PlotResult {
    let pts = curves.iter().flat_map(|c| c.points.iter());
    let (xmin, xmax) =
        pts.clone().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.payload_bytes as f64), a.1.max(p.payload_bytes as f64)));
    let ymax = pts.fold(1.0_f64, |a, p| a.max(p.ratio));
    if xmin > xmax || xmin <= 0.0 {
        return Err(PlotError::Empty("no points"));
    }
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (760, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("KV engine goodput / host TCP goodput, solo", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((xmin / 1.5..xmax * 1.5).log_scale(), 0.0..ymax * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("payload (bytes, log scale)")
            .x_label_formatter(&|x| fmt_bytes(*x as u64))
            .y_desc("ratio (1 = host TCP)")
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        for (i, c) in curves.iter().enumerate() {
            let col = color(i);
            let p: Vec<(f64, f64)> = c.points.iter().map(|p| (p.payload_bytes as f64, p.ratio)).collect();
            dots(&mut chart, &p, col, true, label(c))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// The section, when the calibration holds engine curves.
pub fn section(h: &mut String, cal: &Calibration) {
    if cal.engine_efficiency.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"engine-efficiency\">KV engine efficiency vs host TCP</h2>");
    h.push_str("<p class=\"note\">Solo Path-2 runs through the engine and over host TCP on the same route and payload: ratio = host TCP's mean transfer time / the engine's (the engine's goodput as a fraction of host TCP's). <code>linkcal predict --kv-engine</code> divides Path 2's link times by it.</p>");
    h.push_str(&super::plots::svg_or_error(ratio_svg(&cal.engine_efficiency)));
    h.push_str("<table><tr><th>engine</th><th>route</th><th>KV block</th><th>payload</th><th>host TCP</th><th>engine</th><th>ratio</th></tr>");
    for c in &cal.engine_efficiency {
        let tokens = c.kv_block_tokens.map(|t| format!(" ({t} tokens)")).unwrap_or_default();
        for p in &c.points {
            let b = p.payload_bytes as f64;
            let _ = write!(
                h,
                "<tr data-engine=\"{}\" data-route=\"{}\" data-block-bytes=\"{}\" data-payload-bytes=\"{}\" data-ratio=\"{:.6}\"><td>{}</td><td>{}</td><td class=\"num\">{}{tokens}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td></tr>",
                esc(&c.engine),
                esc(&c.path.to_string()),
                c.kv_block_bytes,
                p.payload_bytes,
                p.ratio,
                esc(&c.engine),
                esc(&c.path.to_string()),
                fmt_bytes(c.kv_block_bytes),
                fmt_bytes(p.payload_bytes),
                fmt_rate(b / p.host_tcp_time_s),
                fmt_rate(b / p.engine_time_s),
                p.ratio
            );
        }
    }
    h.push_str("</table>");
}
