//! ASTRA-sim analytical network YAML for the congestion-unaware backend: the prefill server's
//! PCIe switch as one `Switch` dimension of PP_prefill NPUs (Path 1).

use std::fmt::Write;

use super::{min_capacity, need, typical_alpha, ExportError, ExportFile, Exporter, Options};
use crate::model::Calibration;
use crate::spec::RouteKind;

/// Bytes per GiB: ASTRA-sim's analytical backends read bandwidth in GB/s with 1 GB = 2^30 B.
pub const GIB: f64 = (1u64 << 30) as f64;

/// The YAML. ASTRA-sim's congestion-unaware backend charges a message `hops * latency +
/// bytes / bandwidth`, with 2 hops through a Switch (NPU -> switch -> NPU); the file carries
/// the slowest Path-1 sustained rate in GiB/s and half the Path-1 fixed cost in ns, so one
/// message costs alpha + bytes / rate as measured. Fails for PP_prefill < 2 (ASTRA-sim needs
/// at least 2 NPUs per dimension, and there is no Path 1).
pub fn astra_sim(cal: &Calibration) -> Result<String, ExportError> {
    if cal.shape.pp_prefill < 2 {
        let why = format!(
            "it needs at least 2 NPUs in a dimension, and this rack has PP_prefill = {}: there is no Path 1 (prefill inter-rank) to export",
            cal.shape.pp_prefill
        );
        return Err(ExportError::Unsupported { format: "ASTRA-sim", why });
    }
    let bw = need(min_capacity(cal, RouteKind::PrefillInterRank), "Path 1 (prefill_inter_rank) sustained rate")?;
    let alpha = need(typical_alpha(cal, RouteKind::PrefillInterRank), "Path 1 (prefill_inter_rank) fixed cost")?;
    let mut s = String::new();
    let _ = writeln!(s, "# linkcal {} -> ASTRA-sim analytical network, backend: congestion_unaware", cal.provenance.tool_version);
    let _ = writeln!(
        s,
        "# ({} rack, payload scale {}, runs {}).",
        if cal.origin.emulated { "emulated" } else { "real" },
        cal.origin.payload_scale,
        cal.origin.run_ids.join(" ")
    );
    let _ = writeln!(s, "# Model of that backend: time = 2 hops * latency + bytes / bandwidth through the Switch.");
    let _ =
        writeln!(s, "# bandwidth: slowest Path-1 sustained rate {bw:.6e} B/s = {:.6} GiB/s (ASTRA-sim GB = 2^30 B).", bw / GIB);
    let _ = writeln!(s, "# latency: half the median Path-1 fixed cost ({:.3} ns), charged twice per message.", alpha * 1e9);
    let _ = writeln!(s, "# Not for congestion_aware: it stores and forwards through the switch (2x the serialization).");
    let _ = writeln!(s, "# Dropped: Path 2 (IB handoff) and Path 3 (decode Ethernet), which are no symmetric dimension of");
    let _ = writeln!(s, "# these NPUs; per-GPU and per-direction differences (one value for all); contention with the");
    let _ = writeln!(s, "# KV handoff on shared PCIe links; the small-payload pieces of the alpha-beta model.");
    let _ = writeln!(s, "topology: [ Switch ]");
    let _ = writeln!(s, "npus_count: [ {} ]", cal.shape.pp_prefill);
    let _ = writeln!(s, "bandwidth: [ {:.6} ]  # GB/s (2^30 B/s)", bw / GIB);
    let _ = writeln!(s, "latency: [ {:.3} ]  # ns", alpha * 1e9 / 2.0);
    Ok(s)
}

/// ASTRA-sim's analytical network YAML (`network.yml`).
pub struct AstraSim;

impl Exporter for AstraSim {
    fn files(&self, cal: &Calibration, _: &Options) -> Result<Vec<ExportFile>, ExportError> {
        Ok(vec![ExportFile { name: "network.yml".into(), text: astra_sim(cal)? }])
    }
}
