//! Vidur `send_recv.csv` (its profiled point-to-point times, read with a plain `pd.read_csv`):
//! a dense size sweep from each route's alpha-beta model, for one node type, plus a sidecar
//! text file with the provenance and what the CSV drops (CSV has no comment Vidur tolerates).

use std::fmt::Write;

use super::{models, ExportError, ExportFile, Exporter, Options};
use crate::model::calibration::PathModel;
use crate::model::Calibration;
use crate::spec::RouteKind;

/// Sizes per sweep.
pub const SWEEP_SIZES: usize = 128;

/// Which of Vidur's two send/recv classes to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VidurNode {
    /// The prefill server: pipeline stages in one node (Path 1); Vidur reads these rows
    /// (`devices_per_node` 2) for a single-node replica.
    Prefill,
    /// The decode servers: one GPU per node (Path 3); Vidur reads these rows
    /// (`devices_per_node` 1) for a multi-node replica.
    Decode,
}

impl VidurNode {
    fn kind(self) -> RouteKind {
        match self {
            VidurNode::Prefill => RouteKind::PrefillInterRank,
            VidurNode::Decode => RouteKind::DecodeInterRank,
        }
    }
    /// Vidur's `devices_per_node` for the class.
    pub fn devices_per_node(self) -> u32 {
        match self {
            VidurNode::Prefill => 2,
            VidurNode::Decode => 1,
        }
    }
}

/// A route model's time for `bytes`: the piece covering it (or the nearest), seconds.
pub fn model_time(m: &PathModel, bytes: u64) -> Option<f64> {
    let p = m.pieces.iter().find(|p| bytes >= p.min_bytes && bytes <= p.max_bytes).or_else(|| {
        if bytes < m.pieces.first()?.min_bytes {
            m.pieces.first()
        } else {
            m.pieces.last()
        }
    })?;
    Some(p.alpha_s + bytes as f64 / p.beta_Bps)
}

/// `SWEEP_SIZES` sizes spaced evenly in log from `lo` to `hi` bytes, distinct.
fn sweep(lo: u64, hi: u64) -> Vec<u64> {
    let (a, b) = ((lo.max(1) as f64).ln(), (hi.max(lo + SWEEP_SIZES as u64) as f64).ln());
    let mut v: Vec<u64> =
        (0..SWEEP_SIZES).map(|k| (a + (b - a) * k as f64 / (SWEEP_SIZES - 1) as f64).exp().round() as u64).collect();
    for k in 1..v.len() {
        if v[k] <= v[k - 1] {
            v[k] = v[k - 1] + 1;
        }
    }
    v
}

/// `send_recv.csv` and `send_recv.linkcal.txt` for `node`.
pub fn vidur_send_recv(cal: &Calibration, node: VidurNode) -> Result<Vec<ExportFile>, ExportError> {
    let ms: Vec<&PathModel> = models(cal, node.kind()).filter(|m| !m.pieces.is_empty()).collect();
    let sizes: Vec<u64> = ms.iter().flat_map(|m| m.raw.iter().map(|r| r.payload_bytes)).collect();
    let (Some(&lo), Some(&hi)) = (sizes.iter().min(), sizes.iter().max()) else {
        return Err(ExportError::Missing {
            what: format!("{} (no measurements: nothing to write for --vidur-node {node:?})", node.kind()),
        });
    };
    let mut csv = String::from(",time_stats.send_recv.min,time_stats.send_recv.max,time_stats.send_recv.mean,time_stats.send_recv.median,time_stats.send_recv.std,rank,num_workers,size,collective,devices_per_node,max_devices_per_node\n");
    let dpn = node.devices_per_node();
    for (row, size) in sweep(lo, hi).into_iter().enumerate() {
        let mut t: Vec<f64> = ms.iter().filter_map(|m| model_time(m, size)).map(|s| s * 1e3).collect();
        t.sort_by(f64::total_cmp);
        let n = t.len() as f64;
        let mean = t.iter().sum::<f64>() / n;
        let std = (t.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let med = if t.len() % 2 == 1 { t[t.len() / 2] } else { 0.5 * (t[t.len() / 2 - 1] + t[t.len() / 2]) };
        let _ = writeln!(csv, "{row},{},{},{mean},{med},{std},0,2,{size},send_recv,{dpn},{dpn}", t[0], t[t.len() - 1]);
    }
    let mut side = String::new();
    let _ = writeln!(
        side,
        "linkcal {} -> Vidur send_recv.csv, node type {node:?} (devices_per_node {dpn}).",
        cal.provenance.tool_version
    );
    let _ = writeln!(
        side,
        "Calibration of a {} rack (payload scale {}), runs {}; calibrated {}.",
        if cal.origin.emulated { "emulated" } else { "real" },
        cal.origin.payload_scale,
        cal.origin.run_ids.join(" "),
        cal.provenance.started_at
    );
    let _ = writeln!(
        side,
        "Rows: {SWEEP_SIZES} sizes from {lo} to {hi} bytes (the measured range), time in ms from each {} route's",
        node.kind()
    );
    let _ = writeln!(side, "alpha-beta model; min/max/mean/median/std over the {} routes.", ms.len());
    let _ = writeln!(side, "Dropped: contention, per-direction values, which route a row came from, the per-transfer");
    let _ = writeln!(side, "spread (only the models are summarized), and the other node type's path.");
    Ok(vec![
        ExportFile { name: "send_recv.csv".into(), text: csv },
        ExportFile { name: "send_recv.linkcal.txt".into(), text: side },
    ])
}

/// Vidur's `send_recv.csv` for one node type, with a provenance sidecar.
pub struct Vidur;

impl Exporter for Vidur {
    fn files(&self, cal: &Calibration, opt: &Options) -> Result<Vec<ExportFile>, ExportError> {
        let node = opt.vidur_node.ok_or(ExportError::NeedsOption {
            format: "Vidur",
            flag: "--vidur-node prefill|decode",
            why: "it reads one node type's rows (devices_per_node 2 or 1)",
        })?;
        vidur_send_recv(cal, node)
    }
}
