//! `linkcal calibrate`: results directories -> calibration JSON + per-segment CSV.

use std::path::PathBuf;

use anyhow::Context;

use crate::calibrate::{calibrate, load_results_dir, read_nominal, write_csv, Inputs};
use crate::model::calibration::Method;

/// Flags of `linkcal calibrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Results directory written by `linkcal run` (results.json + journal.jsonl); repeat to merge runs of one rack.
    #[arg(long, required = true)]
    pub results: Vec<PathBuf>,
    /// Discovery file (`linkcal discover --json`) whose link speeds are shown beside the calibrated values.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Output calibration file (JSON); the per-segment CSV is written beside it (same name, .csv).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `linkcal calibrate`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let mut inp = Inputs::default();
    for dir in &a.results {
        inp.results.push((dir.clone(), load_results_dir(dir)?));
    }
    if let Some(t) = &a.topology {
        let (nominal, digest) = read_nominal(t)?;
        inp.nominal = nominal;
        inp.topology_digest = Some(digest);
    }
    let cal = calibrate(&inp)?;
    crate::model::write_json(&a.out, &cal).with_context(|| format!("writing {}", a.out.display()))?;
    let csv = a.out.with_extension("csv");
    write_csv(&cal, &csv).with_context(|| format!("writing {}", csv.display()))?;
    let count = |m: Method| cal.segments.iter().filter(|s| s.method == m).count();
    println!(
        "calibrated {} segment directions: {} isolated, {} saturation, {} bottleneck, {} lower bound, {} unobserved; {} series groups",
        cal.segments.len(),
        count(Method::Isolated),
        count(Method::Saturation),
        count(Method::Bottleneck),
        count(Method::LowerBound),
        count(Method::Unobserved),
        cal.series_groups.len()
    );
    println!("{:<22} {:<5} {:<12} {:>14} {:>14}", "segment", "dir", "method", "capacity GB/s", ">= bound GB/s");
    for s in cal.segments.iter().filter(|s| s.method != Method::Unobserved) {
        let f = |v: Option<f64>| v.map(|x| format!("{:.4}", x / 1e9)).unwrap_or_else(|| "-".into());
        let m = serde_json::to_value(s.method)?.as_str().unwrap_or_default().to_string();
        println!(
            "{:<22} {:<5} {:<12} {:>14} {:>14}",
            s.segment.to_string(),
            s.dir.as_str(),
            m,
            f(s.capacity_Bps),
            f(s.lower_bound_Bps)
        );
    }
    println!("wrote {} and {} (units: B/s per direction, seconds)", a.out.display(), csv.display());
    Ok(0)
}
