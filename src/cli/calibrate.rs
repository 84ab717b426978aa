//! `linkcal calibrate`: results directories -> calibration JSON + per-segment CSV.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::calibrate::plan::plan;
use crate::calibrate::{calibrate, load_results_dir, read_nominal, write_csv, Inputs};
use crate::error::InputError;
use crate::model::calibration::Method;
use crate::model::Results;
use crate::runner::phases::{Phase2, Planner};
use crate::spec::RouteSet;

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
        let (res, rec) = load_results_dir(dir)?;
        super::accept::note_run("calibrate", dir, &rec);
        inp.results.push((dir.clone(), res));
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
    for c in &cal.engine_efficiency {
        let pts: Vec<String> = c.points.iter().map(|p| format!("{} B {:.4}", p.payload_bytes, p.ratio)).collect();
        let tokens = c.kv_block_tokens.map(|t| format!(" ({t} tokens)")).unwrap_or_default();
        println!(
            "{} {} blocks of {} B{tokens}, host TCP time / engine time: {}",
            c.engine,
            c.path,
            c.kv_block_bytes,
            pts.join(", ")
        );
    }
    println!("wrote {} and {} (units: B/s per direction, seconds)", a.out.display(), csv.display());
    Ok(0)
}

/// Phase 2 of `run --plan calibrate`: phase 1 calibrated in memory, then the experiments
/// [`plan`] chooses for what it left as lower bounds.
pub(crate) struct CalibratePlanner;

impl Planner for CalibratePlanner {
    fn phase2(&self, routes: &RouteSet, phase1: &Results, dir: &Path) -> Result<Phase2, InputError> {
        let cal1 = calibrate(&Inputs { results: vec![(dir.to_path_buf(), phase1.clone())], ..Default::default() })?;
        let p = plan(routes, Some(&cal1));
        let lower = cal1.segments.iter().filter(|s| s.method == Method::LowerBound).count();
        let mut notes = vec![format!(
            "phase 1 left {lower} segment directions as lower bounds; phase 2 aims at {} targets, {} out of reach",
            p.targets.len(),
            p.unreachable.len()
        )];
        notes.extend(p.unreachable.iter().map(|(h, why)| format!("{h}: {why}")));
        Ok(Phase2 { experiments: p.experiments, notes })
    }
}
