//! The two-phase run (`linkcal run --plan calibrate`): phase 1 measures the spec's experiments
//! plus every isolation route the rack carries, solo; a [`Planner`] chooses phase 2's
//! experiments from what phase 1 measured. The segment solver that plans lives above the
//! runner (`calibrate`), so the caller supplies it as a trait object; the runner owns the run:
//! both phases' run directories, the merged run, and what is said about them.

use std::path::Path;

use super::{header, run, RunError, RunOptions};
use crate::error::InputError;
use crate::model::results::Measurement;
use crate::model::{RackFile, Results, ResultsDir, RunWriter, Start};
use crate::spec::{Experiment, Hop, HopOptions, PathRef, RouteSet};

/// What phase 2 runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase2 {
    /// Its experiments (none: phase 1 was enough).
    pub experiments: Vec<Experiment>,
    /// Lines for the operator: what phase 1 left open and what phase 2 aims at (or cannot reach).
    pub notes: Vec<String>,
}

/// Chooses phase 2 from phase 1.
pub trait Planner {
    /// Phase 2 for `routes` (the routes phase 1 measured, with the hops it recorded) from
    /// phase 1's results (in `dir`).
    fn phase2(&self, routes: &RouteSet, phase1: &Results, dir: &Path) -> Result<Phase2, InputError>;
}

/// The routes a rack carries, with the hops it says each crosses (the emulated rack lists
/// them); without a list, the spec's paths and isolation routes with the spec's hops.
pub fn rack_routes(rack: &RackFile, rack_path: &Path, layers: Option<u32>) -> Result<RouteSet, InputError> {
    let mut set = RouteSet::build(&rack.shape, layers, HopOptions::default(), true)
        .map_err(|e| InputError::file(rack_path.display().to_string(), format!("building the rack's routes: {e}")))?;
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

/// `base` (the spec's experiments) plus every isolation route of `set` not in it, solo.
pub fn phase1(base: Vec<Experiment>, set: &RouteSet) -> Vec<Experiment> {
    let mut out = base;
    for r in set.routes.iter().filter(|r| !r.path.kind.is_spec_path()) {
        if !out.iter().any(|e| e.is_solo() && e.flows[0] == r.path) {
            out.push(Experiment::solo(r.path));
        }
    }
    out
}

/// `set` less the routes `r` did not measure, each with the hops its measurements recorded.
fn measured_routes(set: &RouteSet, r: &Results) -> RouteSet {
    let mut measured = set.clone();
    let ran: Vec<(PathRef, Vec<Hop>)> =
        r.measurements.iter().flat_map(|m| m.flows.iter().map(|f| (f.path, f.segments.clone()))).collect();
    measured.routes.retain(|r| ran.iter().any(|(p, _)| *p == r.path));
    for r in &mut measured.routes {
        if let Some((_, h)) = ran.iter().find(|(p, _)| *p == r.path) {
            r.segments = h.clone();
        }
    }
    measured
}

/// Appends to the merged run's journal the measurements it does not hold yet.
fn append_new(top: &mut RunWriter, ms: &[Measurement]) -> Result<(), RunError> {
    let mut held = top.done_ids();
    for m in ms.iter().filter(|m| held.insert(m.id.clone())) {
        top.append(m)?;
    }
    Ok(())
}

/// Runs both phases. Each keeps its own run directory (`phase1/`, `phase2/`); `out` is the
/// merged run (a [`ResultsDir`] like theirs: header at the start, each phase's measurements
/// appended to its journal when the phase ends, `results.json` and `results.csv` at the end),
/// which `linkcal calibrate --results OUT` reads. `opts.start` applies to all three.
#[allow(clippy::too_many_arguments)]
pub fn run_two_phase(
    rack: &RackFile,
    rack_path: &Path,
    base: Vec<Experiment>,
    layers: Option<u32>,
    sizes: &[u64],
    opts: &RunOptions,
    out: &Path,
    planner: &dyn Planner,
) -> Result<Results, RunError> {
    let t0 = std::time::Instant::now();
    if opts.start == Start::Fresh {
        for dir in [out.to_path_buf(), out.join("phase1"), out.join("phase2")] {
            ResultsDir::check_fresh(&dir)?;
        }
    }
    // OUT holds the merged run: its header now, each phase's measurements once the phase ends.
    let mut top = ResultsDir::create(out, header(rack, opts), opts.start)?;
    let set = rack_routes(rack, rack_path, layers)?;
    let phase1 = phase1(base, &set);
    let dir1 = out.join("phase1");
    let r1 = run(rack, rack_path, &phase1, sizes, opts, &dir1)
        .inspect_err(|_| eprintln!("linkcal run --plan calibrate: phase 1 (solo) failed"))?;
    append_new(&mut top, &r1.measurements)?;
    let p = planner.phase2(&measured_routes(&set, &r1), &r1, &dir1)?;
    eprintln!(
        "linkcal run --plan calibrate: phase 1 ran {} experiments ({} measurements) in {:.1} s; phase 2 runs {} experiments",
        phase1.len(),
        r1.measurements.len(),
        t0.elapsed().as_secs_f64(),
        p.experiments.len()
    );
    for n in &p.notes {
        eprintln!("  {n}");
    }
    let mut merged = r1;
    if !p.experiments.is_empty() {
        let r2 = run(rack, rack_path, &p.experiments, sizes, opts, &out.join("phase2"))
            .inspect_err(|_| eprintln!("linkcal run --plan calibrate: phase 2 (contention) failed"))?;
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
    top.finish(&merged)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{spec_experiments, RackShape, RouteKind};

    #[test]
    fn phase1_adds_each_isolation_route_once_and_keeps_the_base() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
        let base = spec_experiments(&RouteSet::spec(&shape, None).unwrap(), false);
        let isolation: Vec<PathRef> = set.routes.iter().map(|r| r.path).filter(|p| !p.kind.is_spec_path()).collect();
        assert!(!isolation.is_empty());
        let mut with_one = base.clone();
        with_one.push(Experiment::solo(isolation[0]));
        let p = phase1(with_one.clone(), &set);
        assert_eq!(&p[..with_one.len()], with_one.as_slice(), "the base comes first, unchanged");
        assert_eq!(p.len(), base.len() + isolation.len(), "an isolation route already there is not added again");
        assert!(p[with_one.len()..].iter().all(|e| e.is_solo() && !e.flows[0].kind.is_spec_path()));
        assert!(p.iter().any(|e| e.flows.iter().any(|f| f.kind == RouteKind::PrefillInterRank)));
    }
}
