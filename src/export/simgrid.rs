//! SimGrid platform XML (v4.1, SimGrid 3.32): one SHARED link per segment direction with the
//! calibrated capacity, one private FATPIPE link per route carrying that route's fixed cost
//! (alpha) and per-flow rate cap, asymmetric routes in both directions as ordered `link_ctn`
//! lists, and the CM02 model with factors 1, no latency weighting, no TCP window bound and no
//! cross-traffic, so SimGrid shares links max-min with the values as given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{usable, ExportError, ExportFile, Exporter, Options};
use crate::model::calibration::PathModel;
use crate::model::Calibration;
use crate::spec::{Hop, HopOptions, PathRef, RouteKind, RouteSet};

/// Capacity given to links the calibration did not observe (B/s): effectively unconstrained.
const UNOBSERVED_BPS: f64 = 1e15;

/// The SimGrid host names a route runs between.
pub fn endpoints(p: &PathRef) -> (String, String) {
    match p.kind {
        RouteKind::PrefillInterRank => (format!("gpu_p{}", p.src), format!("gpu_p{}", p.dst)),
        RouteKind::PrefillToDecode => (format!("gpu_p{}", p.src), format!("gpu_d{}", p.dst)),
        RouteKind::DecodeInterRank => (format!("gpu_d{}", p.src), format!("gpu_d{}", p.dst)),
        RouteKind::PrefillGpuToHost => (format!("gpu_p{}", p.src), "host_p".to_string()),
        RouteKind::PrefillHostToGpu => ("host_p".to_string(), format!("gpu_p{}", p.dst)),
        RouteKind::DecodeGpuToHost => (format!("gpu_d{}", p.src), format!("host_d{}", p.src)),
        RouteKind::DecodeHostToGpu => (format!("host_d{}", p.dst), format!("gpu_d{}", p.dst)),
        RouteKind::HostRdma => (format!("host_p_nic{}", p.src), format!("host_d{}", p.dst)),
    }
}

fn link_id(h: &Hop) -> String {
    format!("{}:{}", h.id, h.dir)
}

/// One route of the platform: its hops and the fixed cost and rate cap of its private link.
#[derive(Debug, Clone, PartialEq)]
pub struct SimgridRoute {
    /// Source host.
    pub src: String,
    /// Destination host.
    pub dst: String,
    /// Segment directions crossed, in order.
    pub hops: Vec<Hop>,
    /// Fixed cost of a transfer (alpha of the largest-payload piece), seconds.
    pub alpha_s: f64,
    /// Per-flow rate cap (beta of the largest-payload piece), B/s; None when not measured.
    pub cap_Bps: Option<f64>,
    /// The measured route whose model it carries (itself, or the forward route of a reverse).
    pub model_of: Option<PathRef>,
}

/// Every route between two hosts, both directions. A reverse route (b -> a) crosses the
/// forward route's hops in reverse order, each in the opposite direction; it carries its own
/// model when the calibration measured it, else the forward route's.
pub fn routes(cal: &Calibration) -> Result<Vec<SimgridRoute>, ExportError> {
    let set = RouteSet::build(&cal.shape, None, HopOptions::default(), true)?;
    let mut fwd: BTreeMap<PathRef, Vec<Hop>> = set.routes.iter().map(|r| (r.path, r.segments.clone())).collect();
    for m in &cal.paths {
        if !m.segments.is_empty() {
            fwd.insert(m.path, m.segments.clone());
        }
    }
    let model = |p: &PathRef| cal.paths.iter().find(|m| m.path == *p);
    let mut out: BTreeMap<(String, String), SimgridRoute> = BTreeMap::new();
    for (p, hops) in &fwd {
        let (a, b) = endpoints(p);
        let (alpha_s, cap_Bps) = large_piece(model(p));
        let m = model(p).map(|m| m.path);
        out.insert((a.clone(), b.clone()), SimgridRoute { src: a, dst: b, hops: hops.clone(), alpha_s, cap_Bps, model_of: m });
    }
    for (p, hops) in &fwd {
        let (a, b) = endpoints(p);
        let rev: Vec<Hop> = hops.iter().rev().map(|h| Hop { id: h.id, dir: h.dir.reverse() }).collect();
        let (alpha_s, cap_Bps) = large_piece(model(p));
        let m = model(p).map(|m| m.path);
        out.entry((b.clone(), a.clone())).or_insert(SimgridRoute { src: b, dst: a, hops: rev, alpha_s, cap_Bps, model_of: m });
    }
    Ok(out.into_values().collect())
}

/// Alpha and beta of the piece covering the largest measured payload (0 and None if unmeasured).
fn large_piece(m: Option<&PathModel>) -> (f64, Option<f64>) {
    match m.and_then(|m| m.pieces.last()) {
        Some(p) => (p.alpha_s, Some(p.beta_Bps)),
        None => (0.0, None),
    }
}

/// The platform file.
pub fn simgrid_platform(cal: &Calibration) -> Result<String, ExportError> {
    let routes = routes(cal)?;
    let hops: BTreeSet<Hop> = routes.iter().flat_map(|r| r.hops.iter().copied()).collect();
    let latency: BTreeMap<Hop, f64> =
        cal.segments.iter().filter_map(|s| Some((Hop { id: s.segment, dir: s.dir }, s.latency_s?))).collect();
    let hosts: BTreeSet<&String> = routes.iter().flat_map(|r| [&r.src, &r.dst]).collect();
    let sharing = cal.sharing_efficiency.unwrap_or(1.0);
    let mut x = String::new();
    let w = &mut x;
    header(w, cal, sharing);
    let _ = writeln!(w, "<platform version=\"4.1\">");
    let _ = writeln!(w, "  <config>");
    for (k, v) in [
        ("network/model", "CM02"),
        ("network/latency-factor", "1.0"),
        ("network/bandwidth-factor", "1.0"),
        ("network/weight-S", "0.0"),
        ("network/TCP-gamma", "0"),
        ("network/crosstraffic", "0"),
    ] {
        let _ = writeln!(w, "    <prop id=\"{k}\" value=\"{v}\"/>");
    }
    let _ = writeln!(w, "  </config>");
    let _ = writeln!(w, "  <zone id=\"linkcal_rack\" routing=\"Full\">");
    let _ = writeln!(w, "    <prop id=\"linkcal_sharing_efficiency\" value=\"{sharing:.6}\"/>");
    for h in &hosts {
        let _ = writeln!(w, "    <host id=\"{h}\" speed=\"1Gf\"/>");
    }
    for h in &hops {
        let (bw, note) = match usable(cal, h) {
            Some(v) => (v, ""),
            None => (UNOBSERVED_BPS, " <!-- unobserved -->"),
        };
        let lat = latency.get(h).copied().unwrap_or(0.0);
        let _ = writeln!(
            w,
            "    <link id=\"{}\" bandwidth=\"{bw:.6e}Bps\" latency=\"{lat:.6e}s\" sharing_policy=\"SHARED\"/>{note}",
            link_id(h)
        );
    }
    for r in &routes {
        let seg_lat: f64 = r.hops.iter().filter_map(|h| latency.get(h)).sum();
        let bw = r.cap_Bps.unwrap_or(UNOBSERVED_BPS);
        let lat = (r.alpha_s - seg_lat).max(0.0);
        let _ = writeln!(
            w,
            "    <link id=\"route:{}->{}\" bandwidth=\"{bw:.6e}Bps\" latency=\"{lat:.6e}s\" sharing_policy=\"FATPIPE\"/>",
            r.src, r.dst
        );
    }
    for r in &routes {
        let _ = writeln!(w, "    <route src=\"{}\" dst=\"{}\" symmetrical=\"NO\">", r.src, r.dst);
        let _ = writeln!(w, "      <link_ctn id=\"route:{}->{}\"/>", r.src, r.dst);
        for h in &r.hops {
            let _ = writeln!(w, "      <link_ctn id=\"{}\"/>", link_id(h));
        }
        let _ = writeln!(w, "    </route>");
    }
    let _ = writeln!(w, "  </zone>");
    let _ = writeln!(w, "</platform>");
    Ok(x)
}

fn header(w: &mut String, cal: &Calibration, sharing: f64) {
    let o = &cal.origin;
    let _ = writeln!(w, "<?xml version='1.0'?>");
    let _ = writeln!(w, "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">");
    let _ = writeln!(
        w,
        "<!-- linkcal {} calibration of rack PP_prefill={} PP_decode={} Num_IB_Cards={} ({} rack, payload scale {}, runs {}).",
        cal.provenance.tool_version,
        cal.shape.pp_prefill,
        cal.shape.pp_decode,
        cal.shape.ib_cards,
        if o.emulated { "emulated" } else { "real" },
        o.payload_scale,
        o.run_ids.join(" ")
    );
    for line in [
        "     Links: one SHARED link per segment direction, bandwidth = calibrated goodput in bytes/s;",
        "     lower-bound segments carry their bound, members of a series group the group's capacity,",
        "     unobserved ones 1e15 B/s. One FATPIPE link per route, route:SRC->DST, carries the route's",
        "     fixed cost (alpha) as latency and its sustained per-flow rate (beta of the largest-payload",
        "     piece) as bandwidth. Reverse routes not measured take the forward route's alpha and beta.",
        "     Dropped: the small-payload pieces of the alpha-beta models and the efficiency curve, the",
        "     95% intervals, the difference between identified values and lower bounds, TCP's uneven",
        "     per-flow shares (SimGrid shares max-min), compute (host speeds are placeholders).",
    ] {
        let _ = writeln!(w, "{line}");
    }
    let _ = writeln!(w, "     Contention loss: shared links deliver {sharing:.4} of their capacity while two or more");
    let _ = writeln!(w, "     flows cross them (zone prop linkcal_sharing_efficiency). XML cannot express it: while two or");
    let _ = writeln!(w, "     more flows cross a SHARED link, scale its bandwidth by it (Link.set_bandwidth from a controller");
    let _ = writeln!(w, "     actor; the NONLINEAR sharing callback hangs in SimGrid 3.32's Python bindings). -->");
}

/// SimGrid platform XML v4.1 (`platform.xml`).
pub struct Simgrid;

impl Exporter for Simgrid {
    fn files(&self, cal: &Calibration, _: &Options) -> Result<Vec<ExportFile>, ExportError> {
        Ok(vec![ExportFile { name: "platform.xml".into(), text: simgrid_platform(cal)? }])
    }
}
