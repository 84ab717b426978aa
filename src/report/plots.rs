//! SVG plots for the HTML report, drawn with plotters: goodput vs payload per route with the
//! fitted alpha-beta model, per-segment capacity vs nominal, and contended vs solo goodput.
//! Rates are drawn in the SI unit that suits the largest value and the axis names it.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::model::calibration::AlphaBeta;
use crate::units::rate_scale;

/// Why a plot was not drawn (the report shows it in the plot's place instead of panicking).
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing in range to draw (no points, or none positive on a log axis).
    #[error("plot failed: {0}")]
    Empty(&'static str),
    /// plotters refused a drawing step; its own error, as it prints itself.
    #[error("plot failed: {0}")]
    Draw(String),
}

/// An SVG document, or why it was not drawn.
pub type PlotResult = Result<String, PlotError>;

/// plotters' error of any backend, as a [`PlotError`].
pub fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// Draws `pts` as dots of color `c`, joined by a line when `joined`, with one legend entry.
pub fn dots<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pts: &[(f64, f64)],
    c: RGBColor,
    joined: bool,
    label: String,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if joined {
        chart.draw_series(LineSeries::new(pts.to_vec(), c.stroke_width(2))).map_err(err)?;
    }
    let r = if joined { 3 } else { 4 };
    chart
        .draw_series(pts.iter().map(|p| Circle::new(*p, r, c.filled())))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    Ok(())
}

/// Draws the legend of every labelled series at `pos`.
pub fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

/// Colors for series, chosen to stay apart for the first eight.
pub const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Color of series `i`.
pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// One route's measured points and model.
pub struct GoodputSeries {
    /// Legend label (the route).
    pub label: String,
    /// (payload bytes, median goodput B/s, 95% interval low, high).
    pub points: Vec<(u64, f64, Option<f64>, Option<f64>)>,
    /// Piecewise alpha-beta model (empty: none).
    pub model: Vec<AlphaBeta>,
}

/// Goodput predicted by a piecewise alpha-beta model at `bytes` (the piece covering it, or the nearest).
pub fn model_goodput(model: &[AlphaBeta], bytes: f64) -> Option<f64> {
    let piece = model.iter().find(|p| bytes >= p.min_bytes as f64 && bytes <= p.max_bytes as f64).or_else(|| {
        model.iter().min_by(|a, b| {
            let d = |p: &AlphaBeta| {
                (bytes.ln() - (p.min_bytes.max(1) as f64).ln()).abs().min((bytes.ln() - (p.max_bytes.max(1) as f64).ln()).abs())
            };
            d(a).total_cmp(&d(b))
        })
    })?;
    let t = piece.alpha_s + bytes / piece.beta_Bps;
    (t > 0.0).then(|| bytes / t)
}

/// An axis tick in SI bytes (log ticks fall on powers of ten): `100 kB`, `1 MB`.
fn si_bytes(x: f64) -> String {
    let (div, unit) = match x {
        x if x >= 1e9 => (1e9, "GB"),
        x if x >= 1e6 => (1e6, "MB"),
        x if x >= 1e3 => (1e3, "kB"),
        _ => (1.0, "B"),
    };
    let v = x / div;
    if (v - v.round()).abs() < 1e-6 {
        format!("{} {unit}", v.round())
    } else {
        format!("{v:.1} {unit}")
    }
}

/// Goodput (y, B/s in an SI unit) against payload (x, log bytes), one color per route.
pub fn goodput_svg(title: &str, series: &[GoodputSeries]) -> PlotResult {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let xmin = pts.clone().map(|p| p.0).min().unwrap_or(1).max(1) as f64;
    let xmax = pts.clone().map(|p| p.0).max().unwrap_or(2).max(2) as f64;
    let ymax = pts.map(|p| p.3.unwrap_or(p.1).max(p.1)).fold(0.0, f64::max).max(1.0);
    let (div, unit) = rate_scale(ymax);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (760, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((xmin / 1.5..xmax * 1.5).log_scale(), 0.0..ymax * 1.12 / div)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("payload (bytes, SI, log scale)")
            .y_desc(format!("goodput ({unit}, one direction)"))
            .x_label_formatter(&|x| si_bytes(*x))
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let fitted: Vec<(f64, f64)> = (0..=80)
                .filter_map(|k| {
                    let lo = s.points.iter().map(|p| p.0).min()? as f64;
                    let hi = s.points.iter().map(|p| p.0).max()? as f64;
                    let b = lo * (hi / lo).powf(k as f64 / 80.0);
                    model_goodput(&s.model, b).map(|g| (b, g / div))
                })
                .collect();
            if !fitted.is_empty() {
                chart.draw_series(LineSeries::new(fitted, c.stroke_width(2))).map_err(err)?;
            }
            for p in &s.points {
                if let (Some(lo), Some(hi)) = (p.2, p.3) {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(p.0 as f64, lo / div), (p.0 as f64, hi / div)],
                            c.stroke_width(1),
                        )))
                        .map_err(err)?;
                }
            }
            let measured: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 as f64, p.1 / div)).collect();
            dots(&mut chart, &measured, c, false, s.label.clone())?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One bar of a horizontal bar chart.
pub struct Bar {
    /// Row label.
    pub label: String,
    /// Main value, B/s.
    pub value: Option<f64>,
    /// True when `value` is a lower bound (drawn pale, with an open end).
    pub lower_bound: bool,
    /// 95% interval, B/s.
    pub ci: Option<(f64, f64)>,
    /// Reference marker, B/s (nominal, or solo goodput).
    pub reference: Option<f64>,
    /// Color index.
    pub color: usize,
}

/// Horizontal bars with optional interval whiskers and a reference tick per row.
pub fn bars_svg(title: &str, x_desc: &str, reference_desc: &str, rows: &[Bar]) -> PlotResult {
    let n = rows.len().max(1);
    let xmax = rows.iter().flat_map(|r| [r.value, r.reference, r.ci.map(|c| c.1)]).flatten().fold(0.0, f64::max).max(1.0);
    let (div, unit) = rate_scale(xmax);
    let label_w = rows.iter().map(|r| r.label.len()).max().unwrap_or(10) as u32 * 7 + 12;
    let height = (110 + 22 * n as u32).max(240);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (820, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_w.min(420))
            .build_cartesian_2d(0.0..xmax * 1.1 / div, (0..n).into_segmented())
            .map_err(err)?;
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        chart
            .configure_mesh()
            .x_desc(format!("{x_desc} ({unit}); black tick: {reference_desc}"))
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        for (i, r) in rows.iter().enumerate() {
            let c = color(r.color);
            if let Some(v) = r.value {
                let style = if r.lower_bound { c.mix(0.3).filled() } else { c.mix(0.85).filled() };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, SegmentValue::Exact(i)), (v / div, SegmentValue::Exact(i + 1))],
                        style,
                    )))
                    .map_err(err)?;
                if r.lower_bound {
                    let y = SegmentValue::CenterOf(i);
                    chart
                        .draw_series(std::iter::once(Text::new("≥ (lower bound)", (v / div, y), ("sans-serif", 11).into_font())))
                        .map_err(err)?;
                }
            }
            if let Some((lo, hi)) = r.ci {
                let y = SegmentValue::CenterOf(i);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(lo / div, y.clone()), (hi / div, y)],
                        BLACK.stroke_width(1),
                    )))
                    .map_err(err)?;
            }
            if let Some(rf) = r.reference {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(rf / div, SegmentValue::Exact(i)), (rf / div, SegmentValue::Exact(i + 1))],
                        BLACK.stroke_width(3),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One line of a log-log chart.
pub struct Line {
    /// Legend label.
    pub label: String,
    /// (x, y) points, both positive.
    pub points: Vec<(f64, f64)>,
}

/// Seconds in the SI unit that suits `max`: (divisor, unit).
fn time_scale(max: f64) -> (f64, &'static str) {
    match max {
        m if m >= 1.0 => (1.0, "s"),
        m if m >= 1e-3 => (1e-3, "ms"),
        _ => (1e-6, "µs"),
    }
}

/// Times (y, seconds in an SI unit, log scale) against a positive x (log scale), one line per
/// series: e.g. the predicted KV burst against context length, one line per batch size.
pub fn time_lines_svg(title: &str, x_desc: &str, lines: &[Line]) -> PlotResult {
    let pts = lines.iter().flat_map(|l| l.points.iter()).filter(|p| p.0 > 0.0 && p.1 > 0.0);
    let (xmin, xmax) = pts.clone().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (ymin, ymax) = pts.fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if xmin > xmax {
        return Err(PlotError::Empty("no positive points"));
    }
    let (div, unit) = time_scale(ymax);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((xmin / 1.3..xmax * 1.3).log_scale(), (ymin / 1.5 / div..ymax * 1.5 / div).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(format!("time ({unit}, log scale)"))
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        for (i, l) in lines.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = l.points.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0).map(|p| (p.0, p.1 / div)).collect();
            dots(&mut chart, &pts, c, true, l.label.clone())?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// A drawing inline in HTML: the `<svg>` element, or the drawing error as a note.
pub fn svg_or_error(r: PlotResult) -> String {
    match r {
        // Drop the XML declaration if any: inline SVG in HTML needs only the <svg> element.
        Ok(s) => s.find("<svg").map(|i| s[i..].to_string()).unwrap_or(s),
        Err(e) => format!("<p class=\"note\">{}</p>", super::junit::xml_escape(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_goodput_uses_the_right_piece() {
        let m = [
            AlphaBeta { min_bytes: 1, max_bytes: 1000, alpha_s: 1e-3, beta_Bps: 1e6 },
            AlphaBeta { min_bytes: 1001, max_bytes: 1_000_000, alpha_s: 0.0, beta_Bps: 2e6 },
        ];
        assert!((model_goodput(&m, 1000.0).unwrap() - 1000.0 / 2e-3).abs() < 1e-6);
        assert!((model_goodput(&m, 5e5).unwrap() - 2e6).abs() < 1e-6);
        assert!((model_goodput(&m, 5e7).unwrap() - 2e6).abs() < 1e-6);
        assert!(model_goodput(&[], 5.0).is_none());
    }

    #[test]
    fn svgs_render() {
        let s = GoodputSeries {
            label: "prefill_to_decode:0->0".into(),
            points: vec![(4096, 1e7, Some(0.9e7), Some(1.1e7)), (1 << 20, 1e8, None, None)],
            model: vec![AlphaBeta { min_bytes: 4096, max_bytes: 1 << 20, alpha_s: 3e-4, beta_Bps: 1.1e8 }],
        };
        let svg = goodput_svg("Path 2", &[s]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("prefill_to_decode:0-&gt;0") && svg.contains("MB/s"), "{}", &svg[..200]);
        let bars = [Bar {
            label: "GPU_P[0]_PCI up".into(),
            value: Some(1e8),
            lower_bound: true,
            ci: Some((0.9e8, 1.1e8)),
            reference: Some(1.2e8),
            color: 0,
        }];
        let svg = bars_svg("Capacity", "capacity", "nominal", &bars).unwrap();
        assert!(svg.contains("GPU_P[0]_PCI up") && svg.contains("lower bound"));
        let lines = [Line { label: "N=8".into(), points: vec![(2048.0, 0.02), (8192.0, 0.08)] }];
        let svg = time_lines_svg("KV burst", "T (tokens)", &lines).unwrap();
        assert!(svg.contains("N=8") && svg.contains("time (ms, log scale)"), "{}", &svg[..200]);
        assert!(time_lines_svg("empty", "x", &[]).is_err());
    }
}
