//! Planner formats: ASTRA-sim analytical network YAML, AIConfigurator `node:` block, Vidur
//! `send_recv.csv`. Each collapses the per-segment calibration to a few numbers and says so.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{min_peak, models, typical_alpha, usable};
use crate::model::Calibration;
use crate::spec::{Dir, Hop, RouteKind, SegmentId, SegmentKind};

/// The smallest usable capacity over both directions of every segment of `kind`, B/s.
fn min_over(cal: &Calibration, kind: SegmentKind) -> Option<f64> {
    (0..cal.shape.count(kind))
        .flat_map(|i| [Dir::Up, Dir::Down].map(|dir| Hop { id: SegmentId::new(kind, i), dir }))
        .filter_map(|h| usable(cal, &h))
        .reduce(f64::min)
}

fn need(v: Option<f64>, what: &str) -> Result<f64, String> {
    v.ok_or_else(|| format!("the calibration has no value for {what}: measure it (linkcal run) and calibrate again"))
}

/// ASTRA-sim analytical network YAML: the prefill server's PCIe switch as one `Switch`
/// dimension of PP_prefill NPUs. ASTRA-sim reads bandwidth in GiB/s (2^30 B/s) and charges a
/// Switch dimension's link latency twice (NPU -> switch -> NPU), so the file carries half the
/// measured one-way fixed cost, in ns.
pub fn astra_sim(cal: &Calibration) -> Result<String, String> {
    let bw = need(
        min_peak(cal, RouteKind::PrefillInterRank).or_else(|| min_over(cal, SegmentKind::GpuP)),
        "Path 1 (prefill_inter_rank)",
    )?;
    let lat_s = typical_alpha(cal, RouteKind::PrefillInterRank).unwrap_or(0.0);
    let mut s = String::new();
    let _ = writeln!(s, "# linkcal calibration -> ASTRA-sim analytical network (prefill server, Path 1).");
    let _ = writeln!(
        s,
        "# bandwidth: slowest measured Path-1 goodput {bw:.6e} B/s per direction = {:.6} GiB/s.",
        bw / (1u64 << 30) as f64
    );
    let _ = writeln!(
        s,
        "# latency: half the Path-1 fixed cost ({:.3} ns one-way) because a Switch dimension charges it twice.",
        lat_s * 1e9
    );
    let _ = writeln!(s, "# Loses: the IB handoff (Path 2) and decode Ethernet (Path 3), which are not a symmetric dimension");
    let _ = writeln!(s, "# of the same NPUs; per-GPU and per-direction differences (one value for all); contention");
    let _ = writeln!(s, "# with the KV handoff on shared PCIe links; the size-dependent efficiency curve.");
    let _ = writeln!(s, "topology: [ Switch ]");
    let _ = writeln!(s, "npus_count: [ {} ]", cal.shape.pp_prefill);
    let _ = writeln!(s, "bandwidth: [ {:.6} ]  # GiB/s", bw / (1u64 << 30) as f64);
    let _ = writeln!(s, "latency: [ {:.3} ]  # ns", lat_s * 1e9 / 2.0);
    Ok(s)
}

/// The `node:` block of an AIConfigurator systems YAML, B/s per direction and seconds.
pub fn aiconfigurator(cal: &Calibration) -> Result<String, String> {
    let inter = need(min_peak(cal, RouteKind::PrefillToDecode), "Path 2 (prefill_to_decode)")?;
    let intra = need(min_peak(cal, RouteKind::PrefillInterRank), "Path 1 (prefill_inter_rank)")?;
    let pcie = need(min_over(cal, SegmentKind::GpuP), "GPU_P[i]_PCI")?;
    let lat = typical_alpha(cal, RouteKind::PrefillInterRank).unwrap_or(0.0);
    let mut s = String::new();
    let _ = writeln!(s, "# linkcal calibration -> AIConfigurator systems YAML `node:` block (B/s per direction, seconds).");
    let _ = writeln!(s, "# inter_node_bw: slowest solo Path-2 (KV handoff over IB) goodput; intra_node_bw: slowest solo");
    let _ = writeln!(s, "# Path-1 goodput; pcie_bw: smallest GPU_P[i]_PCI capacity (lower bounds count as values);");
    let _ = writeln!(s, "# p2p_latency: median Path-1 fixed cost. Loses: contention (shared NICs, cables and PCIe links),");
    let _ = writeln!(s, "# per-direction and per-GPU differences, the decode side's Ethernet, and the efficiency curve.");
    let _ = writeln!(s, "node:");
    let _ = writeln!(s, "  num_gpus_per_node: {}", cal.shape.pp_prefill);
    let _ = writeln!(s, "  inter_node_bw: {inter:.6e}");
    let _ = writeln!(s, "  intra_node_bw: {intra:.6e}");
    let _ = writeln!(s, "  pcie_bw: {pcie:.6e}");
    let _ = writeln!(s, "  p2p_latency: {lat:.6e}");
    Ok(s)
}

/// A Vidur-style `send_recv.csv`: per payload size, transfer-time statistics in milliseconds
/// over the measured routes. Path 1 rows are intra-node (devices_per_node 2), Path 3 rows
/// inter-node (devices_per_node 1).
pub fn vidur_send_recv(cal: &Calibration) -> Result<String, String> {
    let mut s = String::new();
    let _ =
        writeln!(s, "# linkcal calibration -> Vidur send_recv.csv (time in ms; min/max/mean/median/std over routes of the kind,");
    let _ = writeln!(s, "# each route's median). Loses: contention, per-direction values, which route a row came from,");
    let _ = writeln!(s, "# and the per-transfer spread (only the routes' medians are summarized).");
    let _ = writeln!(s, ",time_stats.send_recv.min,time_stats.send_recv.max,time_stats.send_recv.mean,time_stats.send_recv.median,time_stats.send_recv.std,rank,num_workers,size,collective,devices_per_node,max_devices_per_node");
    let mut row = 0;
    for (kind, dpn, max_dpn) in [(RouteKind::PrefillInterRank, 2, cal.shape.pp_prefill), (RouteKind::DecodeInterRank, 1, 1)] {
        let mut by_size: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for m in models(cal, kind) {
            for r in &m.raw {
                by_size.entry(r.payload_bytes).or_default().push(r.time_p50_s * 1e3);
            }
        }
        for (size, mut t) in by_size {
            t.sort_by(f64::total_cmp);
            let n = t.len() as f64;
            let mean = t.iter().sum::<f64>() / n;
            let std = (t.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let med = if t.len() % 2 == 1 { t[t.len() / 2] } else { 0.5 * (t[t.len() / 2 - 1] + t[t.len() / 2]) };
            let _ = writeln!(s, "{row},{},{},{mean},{med},{std},0,2,{size},send_recv,{dpn},{max_dpn}", t[0], t[t.len() - 1]);
            row += 1;
        }
    }
    if row == 0 {
        return Err("the calibration has no Path 1 or Path 3 measurements: nothing to write as send_recv.csv".into());
    }
    Ok(s)
}
