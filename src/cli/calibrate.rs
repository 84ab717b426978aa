//! `linkcal calibrate`: results directories -> calibration JSON + per-segment CSV.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::calibrate::plan::plan;
use crate::calibrate::{calibrate, load_results_dir, read_nominal, write_csv, Inputs};
use crate::model::calibration::Method;
use crate::model::{RackFile, Results, ResultsDir, RunWriter, Start};
use crate::runner::{self, RunOptions};
use crate::spec::{Experiment, Hop, HopOptions, PathRef, RouteSet};

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

/// The routes a rack carries, with the hops it says each crosses (the emulated rack lists
/// them); without a list, the spec's paths and isolation routes with the spec's hops.
fn rack_routes(rack: &RackFile, layers: Option<u32>) -> anyhow::Result<RouteSet> {
    let mut set = RouteSet::build(&rack.shape, layers, HopOptions::default(), true).context("building the rack's routes")?;
    if !rack.routes.is_empty() {
        set.routes.retain(|r| rack.routes.iter().any(|x| x.path == r.path));
        for r in &mut set.routes {
            if let Some(x) = rack.routes.iter().find(|x| x.path == r.path) {
                r.segments = x.segments.clone();
            }
        }
    }
    Ok(set)
}

/// Appends to the merged run's journal the measurements it does not hold yet.
fn append_new(top: &mut RunWriter, ms: &[crate::model::results::Measurement]) -> anyhow::Result<()> {
    let mut held = top.done_ids();
    for m in ms.iter().filter(|m| held.insert(m.id.clone())) {
        top.append(m).with_context(|| format!("writing {}", top.journal_path().display()))?;
    }
    Ok(())
}

/// `linkcal run --plan calibrate`. Phase 1 runs `base` (the spec's experiments) plus every
/// isolation route the rack carries, solo; it is calibrated in memory, and phase 2 runs the
/// experiments `calibrate::plan` chooses for what phase 1 left as lower bounds. Each phase
/// keeps its own run directory (`phase1/`, `phase2/`); `out` is the merged run (a
/// [`ResultsDir`] like theirs: header at the start, each phase's measurements appended to its
/// journal when the phase ends, `results.json` and `results.csv` at the end), which
/// `linkcal calibrate --results OUT` reads. `opts.start` applies to all three.
pub(crate) fn run_plan(
    rack: &RackFile,
    rack_path: &Path,
    base: Vec<Experiment>,
    layers: Option<u32>,
    sizes: &[u64],
    opts: &RunOptions,
    out: &Path,
) -> anyhow::Result<Results> {
    let t0 = std::time::Instant::now();
    if opts.start == Start::Fresh {
        for dir in [out.to_path_buf(), out.join("phase1"), out.join("phase2")] {
            ResultsDir::check_fresh(&dir)?;
        }
    }
    // OUT holds the merged run: its header now, each phase's measurements once the phase ends.
    let mut top = ResultsDir::create(out, runner::header(rack, opts), opts.start)?;
    let set = rack_routes(rack, layers)?;
    let mut phase1 = base;
    for r in set.routes.iter().filter(|r| !r.path.kind.is_spec_path()) {
        if !phase1.iter().any(|e| e.is_solo() && e.flows[0] == r.path) {
            phase1.push(Experiment::solo(r.path));
        }
    }
    let dir1 = out.join("phase1");
    let r1 = runner::run(rack, rack_path, &phase1, sizes, opts, &dir1).context("linkcal run --plan calibrate, phase 1 (solo)")?;
    let t1 = t0.elapsed().as_secs_f64();
    append_new(&mut top, &r1.measurements)?;
    let cal1 = calibrate(&Inputs { results: vec![(dir1.clone(), r1.clone())], ..Default::default() })?;
    // Plan on the routes that ran, with the hops they recorded.
    let mut measured = set.clone();
    let ran: Vec<(PathRef, Vec<Hop>)> =
        r1.measurements.iter().flat_map(|m| m.flows.iter().map(|f| (f.path, f.segments.clone()))).collect();
    measured.routes.retain(|r| ran.iter().any(|(p, _)| *p == r.path));
    for r in &mut measured.routes {
        if let Some((_, h)) = ran.iter().find(|(p, _)| *p == r.path) {
            r.segments = h.clone();
        }
    }
    let p = plan(&measured, Some(&cal1));
    eprintln!(
        "linkcal run --plan calibrate: phase 1 ran {} experiments ({} measurements) in {t1:.1} s; {} segment directions are lower bounds; phase 2 runs {} experiments ({} targets, {} out of reach)",
        phase1.len(),
        r1.measurements.len(),
        cal1.segments.iter().filter(|s| s.method == Method::LowerBound).count(),
        p.experiments.len(),
        p.targets.len(),
        p.unreachable.len()
    );
    for (h, why) in &p.unreachable {
        eprintln!("  {h}: {why}");
    }
    let mut merged = r1;
    if !p.experiments.is_empty() {
        let dir2 = out.join("phase2");
        let r2 = runner::run(rack, rack_path, &p.experiments, sizes, opts, &dir2)
            .context("linkcal run --plan calibrate, phase 2 (contention)")?;
        append_new(&mut top, &r2.measurements)?;
        merged.measurements.extend(r2.measurements);
        merged.skipped.extend(r2.skipped);
        for w in r2.waivers {
            if !merged.waivers.contains(&w) {
                merged.waivers.push(w);
            }
        }
        merged.provenance.finished_at = r2.provenance.finished_at;
    }
    eprintln!(
        "linkcal run --plan calibrate: {} experiments, {} measurements in {:.1} s",
        phase1.len() + p.experiments.len(),
        merged.measurements.len(),
        t0.elapsed().as_secs_f64()
    );
    top.finish(&merged).with_context(|| format!("writing the merged run in {}", out.display()))?;
    Ok(merged)
}
