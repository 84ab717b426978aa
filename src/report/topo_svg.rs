//! The rack drawn as the spec describes it (prefill server with its PCIe switch, GPUs and IB
//! NICs; the IB switch; decode servers with GPU, PCIe switch, IB and Ethernet NICs; the
//! Ethernet switch), each edge labelled with its segment name and measured figures per
//! direction and colored by its acceptance outcome. Outside-spec links are dashed.

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::plots::{err, PlotError, PlotResult};

use crate::spec::{RackShape, SegmentId, SegmentKind};
use crate::units::fmt_rate;
use crate::verdict::Outcome;

/// One direction's figure on an edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    /// An identified capacity, B/s.
    Exact(f64),
    /// Only a lower bound, B/s.
    AtLeast(f64),
}

/// What is written on one segment's edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeInfo {
    /// Figure in the `up` direction.
    pub up: Option<Figure>,
    /// Figure in the `down` direction.
    pub down: Option<Figure>,
    /// Worst acceptance outcome of the segment's directions, if judged.
    pub outcome: Option<Outcome>,
}

fn fig(f: Option<Figure>) -> String {
    match f {
        Some(Figure::Exact(v)) => fmt_rate(v),
        Some(Figure::AtLeast(v)) => format!("≥{}", fmt_rate(v)),
        None => "–".into(),
    }
}

fn outcome_color(o: Option<Outcome>) -> RGBColor {
    match o {
        Some(Outcome::Fail) => RGBColor(200, 30, 30),
        Some(Outcome::Warn) => RGBColor(220, 130, 0),
        Some(Outcome::Pass) => RGBColor(30, 140, 50),
        Some(Outcome::Waived) | Some(Outcome::NotMeasured) | None => RGBColor(90, 90, 90),
    }
}

type Pt = (i32, i32);

struct Canvas<'a, 'b> {
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    edges: &'a BTreeMap<SegmentId, EdgeInfo>,
    /// Edge labels, drawn last so that nodes never cover them: (center, lines, color).
    labels: std::cell::RefCell<Vec<(Pt, [String; 2], RGBColor)>>,
}

impl Canvas<'_, '_> {
    fn node(&self, c: Pt, w: i32, label: &str, fill: RGBColor) -> Result<(), PlotError> {
        let (x, y) = c;
        self.area.draw(&Rectangle::new([(x - w / 2, y - 14), (x + w / 2, y + 14)], fill.filled())).map_err(err)?;
        self.area
            .draw(&Rectangle::new([(x - w / 2, y - 14), (x + w / 2, y + 14)], RGBColor(60, 60, 60).stroke_width(1)))
            .map_err(err)?;
        let style = ("sans-serif", 12).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        self.area.draw(&Text::new(label.to_string(), (x, y), style)).map_err(err)
    }

    /// An edge for `seg` from `a` to `b`, its label placed at fraction `t` along it.
    fn edge(&self, seg: SegmentId, a: Pt, b: Pt, t: f64) -> Result<(), PlotError> {
        let info = self.edges.get(&seg).cloned().unwrap_or_default();
        let col = outcome_color(info.outcome);
        let width = if matches!(info.outcome, Some(Outcome::Fail) | Some(Outcome::Warn)) { 3 } else { 2 };
        if seg.outside_spec() {
            self.area.draw(&plotters::element::DashedPathElement::new(vec![a, b], 6, 4, col.stroke_width(width))).map_err(err)?;
        } else {
            self.area.draw(&PathElement::new(vec![a, b], col.stroke_width(width))).map_err(err)?;
        }
        let m = (a.0 + ((b.0 - a.0) as f64 * t) as i32, a.1 + ((b.1 - a.1) as f64 * t) as i32);
        let lines = [seg.to_string(), format!("↑{} ↓{}", fig(info.up), fig(info.down))];
        self.labels.borrow_mut().push((m, lines, col));
        Ok(())
    }

    fn draw_labels(&self) -> Result<(), PlotError> {
        for (m, [l1, l2], col) in self.labels.borrow().iter() {
            let w = (l1.chars().count().max(l2.chars().count()) as f64 * 5.6) as i32 + 8;
            self.area
                .draw(&Rectangle::new([(m.0 - w / 2, m.1 - 14), (m.0 + w / 2, m.1 + 14)], WHITE.mix(0.92).filled()))
                .map_err(err)?;
            let style = |size| {
                ("sans-serif", size).into_font().color(col).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ))
            };
            self.area.draw(&Text::new(l1.clone(), (m.0, m.1 - 6), style(11))).map_err(err)?;
            self.area.draw(&Text::new(l2.clone(), (m.0, m.1 + 7), style(11))).map_err(err)?;
        }
        Ok(())
    }
}

/// Draws the rack. `edges` holds the figures per segment; segments without figures show `–`.
pub fn topology_svg(shape: &RackShape, edges: &BTreeMap<SegmentId, EdgeInfo>) -> PlotResult {
    let (p, k, d) = (shape.pp_prefill as i32, shape.ib_cards as i32, shape.pp_decode as i32);
    let prefill_gap = 70;
    let decode_gap = 160;
    let top = 80;
    let height = (top + 50 + (p * prefill_gap).max(k * prefill_gap).max(d * decode_gap)).max(420);
    let width = 1460;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let c = Canvas { area: &root, edges, labels: Default::default() };
        let span = height - top - 50;
        let ys = |n: i32, i: i32| top + span * (2 * i + 1) / (2 * n.max(1));
        let mid = top + span / 2;
        let title = ("sans-serif", 14).into_font().color(&BLACK);
        root.draw(&Text::new("prefill server (PCIe switch)", (20, 20), title.clone())).map_err(err)?;
        root.draw(&Text::new("decode servers", (880, 20), title.clone())).map_err(err)?;
        root.draw(&Text::new(
            "edge: segment, ↑ up ↓ down per direction (≥ = lower bound only); green pass, orange warn, red fail, grey not judged; dashed = outside the spec",
            (20, 42),
            ("sans-serif", 11).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(err)?;
        let plx = (310, mid);
        let host = (310, top);
        let ibsw = (740, mid);
        let ethsw = (1400, mid);
        let gpu_p: Vec<Pt> = (0..p).map(|i| (50, ys(p, i))).collect();
        let nic_p: Vec<Pt> = (0..k).map(|i| (560, ys(k, i))).collect();
        for i in 0..p {
            c.edge(SegmentId::new(SegmentKind::GpuP, i as usize), gpu_p[i as usize], plx, 0.45)?;
        }
        c.edge(SegmentId::new(SegmentKind::UplinkP, 0), plx, host, 0.5)?;
        for i in 0..k {
            c.edge(SegmentId::new(SegmentKind::IbNicP, i as usize), plx, nic_p[i as usize], 0.45)?;
            c.edge(SegmentId::new(SegmentKind::IbCableP, i as usize), nic_p[i as usize], ibsw, 0.5)?;
        }
        let mut nodes = Vec::new();
        for j in 0..d {
            let y = ys(d, j);
            let (nic, sw, gpu, eth, hostd) = ((920, y), (1080, y), (1250, y - 45), (1250, y + 45), (990, y + 64));
            let ju = j as usize;
            c.edge(SegmentId::new(SegmentKind::IbCableD, ju), ibsw, nic, 0.6)?;
            c.edge(SegmentId::new(SegmentKind::IbNicD, ju), nic, sw, 0.5)?;
            c.edge(SegmentId::new(SegmentKind::GpuD, ju), sw, gpu, 0.5)?;
            c.edge(SegmentId::new(SegmentKind::EthNicD, ju), sw, eth, 0.5)?;
            c.edge(SegmentId::new(SegmentKind::EthCableD, ju), eth, ethsw, 0.5)?;
            c.edge(SegmentId::new(SegmentKind::UplinkD, ju), sw, hostd, 0.5)?;
            nodes.push((nic, 70, format!("IB NIC {j}"), RGBColor(255, 236, 200)));
            nodes.push((sw, 84, format!("PCIe sw D{j}"), RGBColor(225, 225, 225)));
            nodes.push((gpu, 70, format!("GPU D{j}"), RGBColor(200, 230, 200)));
            nodes.push((eth, 76, format!("Eth NIC {j}"), RGBColor(210, 220, 255)));
            nodes.push((hostd, 64, format!("host D{j}"), RGBColor(245, 245, 245)));
        }
        for (i, g) in gpu_p.iter().enumerate() {
            nodes.push((*g, 70, format!("GPU P{i}"), RGBColor(200, 230, 200)));
        }
        for (i, n) in nic_p.iter().enumerate() {
            nodes.push((*n, 70, format!("IB NIC {i}"), RGBColor(255, 236, 200)));
        }
        nodes.push((plx, 90, "PCIe switch".into(), RGBColor(225, 225, 225)));
        nodes.push((host, 90, "host memory".into(), RGBColor(245, 245, 245)));
        nodes.push((ibsw, 80, "IB switch".into(), RGBColor(255, 220, 160)));
        nodes.push((ethsw, 80, "Eth switch".into(), RGBColor(180, 200, 255)));
        for (pt, w, label, fill) in &nodes {
            c.node(*pt, *w, label, *fill)?;
        }
        c.draw_labels()?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_spec_segment() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let mut edges = BTreeMap::new();
        let g: SegmentId = "GPU_P[1]_PCI".parse().unwrap();
        edges.insert(
            g,
            EdgeInfo { up: Some(Figure::Exact(1.2e8)), down: Some(Figure::AtLeast(1e8)), outcome: Some(Outcome::Fail) },
        );
        let svg = topology_svg(&shape, &edges).unwrap();
        for s in shape.segments() {
            assert!(svg.contains(&s.to_string()), "{s} missing");
        }
        assert!(svg.contains("↑120.0 MB/s ↓≥100.0 MB/s"));
        assert!(svg.contains("#C81E1E"), "fail color missing");
    }
}
