//! SimGrid platform XML (v4.1, SimGrid 3.32): one SHARED link per segment direction with the
//! calibrated capacity, asymmetric routes as ordered `link_ctn` lists, and the CM02 model with
//! factors 1, no latency weighting and no cross-traffic, so SimGrid shares links max-min with
//! the values as given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::usable;
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

/// The platform file.
pub fn simgrid_platform(cal: &Calibration) -> Result<String, String> {
    let set = RouteSet::build(&cal.shape, None, HopOptions::default(), true).map_err(|e| e.to_string())?;
    // Routes: measured hop lists where the calibration has them, else the spec's.
    let mut routes: BTreeMap<PathRef, Vec<Hop>> = set.routes.iter().map(|r| (r.path, r.segments.clone())).collect();
    for m in &cal.paths {
        if !m.segments.is_empty() {
            routes.insert(m.path, m.segments.clone());
        }
    }
    let hops: BTreeSet<Hop> = routes.values().flatten().copied().collect();
    let latency: BTreeMap<Hop, f64> =
        cal.segments.iter().filter_map(|s| Some((Hop { id: s.segment, dir: s.dir }, s.latency_s?))).collect();
    let mut hosts = BTreeSet::new();
    for p in routes.keys() {
        let (a, b) = endpoints(p);
        hosts.insert(a);
        hosts.insert(b);
    }
    let mut x = String::new();
    let w = &mut x;
    let _ = writeln!(w, "<?xml version='1.0'?>");
    let _ = writeln!(w, "<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">");
    let _ = writeln!(
        w,
        "<!-- linkcal calibration of rack PP_prefill={} PP_decode={} Num_IB_Cards={} (calibrated {}).",
        cal.shape.pp_prefill, cal.shape.pp_decode, cal.shape.ib_cards, cal.provenance.started_at
    );
    let _ = writeln!(w, "     One link per segment direction, bandwidth = calibrated goodput in bytes/s (lower-bound");
    let _ = writeln!(w, "     segments carry their bound; unobserved ones {UNOBSERVED_BPS:e} B/s). What this loses: the");
    let _ = writeln!(w, "     per-path size-dependent efficiency (alpha-beta pieces), the 95% intervals, the difference");
    let _ = writeln!(w, "     between identified values and lower bounds, and TCP's uneven per-flow shares (SimGrid");
    let _ = writeln!(w, "     shares max-min). Compute speeds are placeholders: only the network is calibrated. -->");
    let _ = writeln!(w, "<platform version=\"4.1\">");
    let _ = writeln!(w, "  <config>");
    for (k, v) in [
        ("network/model", "CM02"),
        ("network/latency-factor", "1.0"),
        ("network/bandwidth-factor", "1.0"),
        ("network/weight-S", "0.0"),
        ("network/crosstraffic", "0"),
    ] {
        let _ = writeln!(w, "    <prop id=\"{k}\" value=\"{v}\"/>");
    }
    let _ = writeln!(w, "  </config>");
    let _ = writeln!(w, "  <zone id=\"linkcal_rack\" routing=\"Full\">");
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
    for (p, hs) in &routes {
        let (a, b) = endpoints(p);
        let _ = writeln!(w, "    <route src=\"{a}\" dst=\"{b}\" symmetrical=\"NO\">");
        for h in hs {
            let _ = writeln!(w, "      <link_ctn id=\"{}\"/>", link_id(h));
        }
        let _ = writeln!(w, "    </route>");
    }
    let _ = writeln!(w, "  </zone>");
    let _ = writeln!(w, "</platform>");
    Ok(x)
}
