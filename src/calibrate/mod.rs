//! Segment solver: from path measurements (a results directory) to per-segment, per-direction
//! capacities with how each was obtained, series groups, per-segment latency, and per-path
//! size-dependent models. Works on files only.
#![allow(non_snake_case)]

pub mod engine;
mod fit;
mod nominal;
mod observe;
pub mod plan;
mod solve;

pub use fit::{alpha_beta, alpha_interval, segment_latency, theil_sen};
pub use nominal::read_nominal;
pub use solve::{SAT_MARGIN, TOL};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::InputError;
use crate::model::calibration::{Method, Origin, PathModel, SegmentEstimate, SeriesGroup};
use crate::model::results::Measurement;
use crate::model::rundir::RESULTS_FILE;
use crate::model::{Calibration, Provenance, Recovery, Results, ResultsDir, CALIBRATION_SCHEMA};
use crate::spec::{Dir, Hop};

/// Reads a run to calibrate through [`ResultsDir::load`] (`results.json` merged with
/// `journal.jsonl`, so a killed run calibrates from what it finished) and checks it holds
/// something to calibrate: at least one measurement, every flow with the hops it crossed.
/// Returns the results and what the merge recovered (say it when the run is partial).
pub fn load_results_dir(dir: &Path) -> Result<(Results, Recovery), InputError> {
    let (res, rec) = ResultsDir::load(dir)?;
    let main = ResultsDir::results_file(dir);
    check_results(&main, &res)?;
    Ok((res, rec))
}

/// Checks loaded results hold something to calibrate: at least one measurement, every flow
/// with the hops it crossed (`main`: the results file, named in errors).
pub fn check_results(main: &Path, res: &Results) -> Result<(), InputError> {
    if res.measurements.is_empty() {
        return Err(InputError::field(
            main,
            "measurements",
            "is empty (and no journal.jsonl adds any): nothing to calibrate; run `linkcal run` first",
        ));
    }
    for (n, m) in res.measurements.iter().enumerate() {
        if m.flows.is_empty() {
            return Err(InputError::field(
                main,
                format!("measurements[{n}].flows"),
                format!("measurement {} has no flows", m.id),
            ));
        }
        for (k, f) in m.flows.iter().enumerate() {
            if f.segments.is_empty() {
                return Err(InputError::field(
                    main,
                    format!("measurements[{n}].flows[{k}].segments"),
                    format!("is empty in measurement {}: every flow must record the hops it crossed", m.id),
                ));
            }
        }
    }
    Ok(())
}

/// Inputs of one calibration.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Results, with the directory each came from.
    pub results: Vec<(PathBuf, Results)>,
    /// Nominal capacities per hop from discovery, B/s.
    pub nominal: BTreeMap<Hop, f64>,
    /// SHA-256 of the topology file, if given.
    pub topology_digest: Option<String>,
}

/// Computes the calibration. All results must be of one rack shape.
pub fn calibrate(inp: &Inputs) -> Result<Calibration, InputError> {
    let (first_dir, first) = inp.results.first().ok_or_else(|| InputError::file("<none>", "no results directory given"))?;
    let shape = first.rack.shape.clone();
    for (dir, r) in &inp.results {
        if r.rack.shape != shape {
            return Err(InputError::field(
                dir.join(RESULTS_FILE),
                "rack.shape",
                format!("differs from {}: calibrate one rack at a time", first_dir.display()),
            ));
        }
    }
    let all: Vec<Measurement> = inp.results.iter().flat_map(|(_, r)| r.measurements.iter().cloned()).collect();
    let measurements: Vec<Measurement> = all.iter().filter(|m| !engine::is_engine(&m.transport)).cloned().collect();
    if measurements.is_empty() {
        return Err(InputError::field(
            first_dir.join(RESULTS_FILE),
            "measurements",
            "holds KV-engine runs only (nixl): segments are calibrated from host transports; add a run of the same routes \
             and payloads with `linkcal run --transport host_tcp` (--results HOST_RUN --results ENGINE_RUN)",
        ));
    }
    let obs = observe::observe(&measurements);
    let mut universe = Vec::new();
    for id in shape.segments() {
        for dir in [Dir::Up, Dir::Down] {
            universe.push(Hop { id, dir });
        }
    }
    let sol = solve::solve(&obs, &universe);
    // Per-path models and path latencies (the fixed cost of the smallest-size piece).
    let mut paths = Vec::new();
    let mut lat_rows = Vec::new();
    for s in obs.solo.values() {
        let pts: Vec<(u64, f64)> = s.flows.iter().map(|(b, f)| (*b, f.transfer_time_s.p50)).collect();
        let pieces = fit::alpha_beta(&pts);
        let (raw, efficiency, peak) = fit::curve(&s.flows);
        let alpha = pieces.first().filter(|_| pts.len() >= 2).map(|p| (p.alpha_s, fit::alpha_interval(&pts, p)));
        if let Some((a, _)) = alpha {
            lat_rows.push((s.hops.clone(), a));
        }
        paths.push(PathModel {
            path: s.path,
            segments: s.hops.clone(),
            capacity_Bps: pieces.last().map(|p| p.beta_Bps),
            raw_peak_Bps: peak,
            alpha_s: alpha.map(|a| a.0),
            alpha_ci95_low_s: alpha.map(|a| a.1 .0),
            alpha_ci95_high_s: alpha.map(|a| a.1 .1),
            pieces,
            efficiency,
            raw,
        });
    }
    let latency = fit::segment_latency(&lat_rows);
    let groups: Vec<SeriesGroup> = sol
        .groups
        .iter()
        .enumerate()
        .map(|(g, grp)| SeriesGroup {
            id: format!("G{}", g + 1),
            members: grp.members.clone(),
            capacity_Bps: grp.rate.as_ref().map(|r| r.value),
            ci95_low_Bps: grp.rate.as_ref().map(|r| r.low),
            ci95_high_Bps: grp.rate.as_ref().map(|r| r.high),
            reason: "every measurement crossed these segment directions with the same flows: only their minimum is identified"
                .into(),
        })
        .collect();
    let mut segments = Vec::new();
    for (h, e) in &sol.hops {
        let ident = e.method.identified();
        let group_rate = e.group.and_then(|g| sol.groups[g].rate.as_ref());
        // A bound is the largest rate the segment direction surely carried (a solo flow's median
        // goodput, a burst's bytes / makespan, or one flow's throughput); a member of an
        // identified series group is bounded below by the low end of the group minimum's
        // interval (the minimum itself is an estimate, and may sit a little above the truth).
        let bound = match (&e.rate, group_rate) {
            (Some(r), Some(g)) => Some(r.value.max(g.low)),
            (r, g) => r.as_ref().map(|r| r.value).or(g.map(|g| g.low)),
        };
        segments.push(SegmentEstimate {
            segment: h.id,
            dir: h.dir,
            outside_spec: h.id.outside_spec(),
            method: e.method,
            capacity_Bps: e.rate.as_ref().filter(|_| ident).map(|r| r.value),
            ci95_low_Bps: e.rate.as_ref().filter(|_| ident).map(|r| r.low),
            ci95_high_Bps: e.rate.as_ref().filter(|_| ident).map(|r| r.high),
            lower_bound_Bps: if ident { None } else { bound },
            latency_s: latency.get(h).copied(),
            nominal_Bps: inp.nominal.get(h).copied(),
            series_group: e.group.map(|g| format!("G{}", g + 1)),
            evidence: e
                .rate
                .iter()
                .map(|r| r.evidence.clone())
                .chain(group_rate.filter(|_| !ident).map(|r| r.evidence.clone()))
                .collect(),
        });
    }
    segments.sort_by_key(|s| (s.segment.outside_spec(), s.segment, s.dir));
    let origin = origin(&inp.results);
    let notes = run_notes(&shape, &segments, &origin);
    let hosts = first.provenance.hosts.clone();
    let mut provenance = Provenance::now(hosts);
    provenance.finished_at = Some(crate::model::provenance::rfc3339_now());
    let mut cal = Calibration {
        schema: CALIBRATION_SCHEMA.into(),
        provenance,
        origin,
        shape,
        sources: inp.results.iter().map(|(d, _)| d.display().to_string()).collect(),
        topology_digest: inp.topology_digest.clone(),
        segments,
        series_groups: groups,
        paths,
        notes,
        sharing_efficiency: None,
        engine_efficiency: engine::efficiency(&all),
    };
    cal.sharing_efficiency = sharing_efficiency(&cal, &measurements, &obs);
    Ok(cal)
}

/// Where the calibration's data came from: emulated or real, payload scale, runs, hosts.
fn origin(results: &[(PathBuf, Results)]) -> Origin {
    let mut hosts: Vec<String> = results.iter().flat_map(|(_, r)| r.provenance.hosts.iter().cloned()).collect();
    hosts.sort();
    hosts.dedup();
    let mut versions: Vec<String> = results.iter().map(|(_, r)| r.provenance.tool_version.clone()).collect();
    versions.sort();
    versions.dedup();
    Origin {
        emulated: results.iter().all(|(_, r)| r.rack.emulated),
        payload_scale: results.first().map_or(1.0, |(_, r)| r.rack.payload_scale),
        mtu_bytes: results.first().and_then(|(_, r)| r.rack.mtu_bytes),
        run_ids: results.iter().map(|(d, r)| format!("{}@{}", d.display(), r.provenance.started_at)).collect(),
        hosts,
        run_tool_versions: versions,
    }
}

/// Notes about this calibration only: what kind of rack it measured, the segment directions
/// this run left unidentified that no spec path can ever identify, and how many are bounds.
fn run_notes(shape: &crate::spec::RackShape, segments: &[SegmentEstimate], origin: &Origin) -> Vec<String> {
    let mut notes = Vec::new();
    if origin.emulated {
        notes.push(format!(
            "emulated rack: capacities are the emulator's shaped rates and payloads were divided by {}; they are not hardware figures",
            origin.payload_scale
        ));
    }
    let unidentified = |h: &Hop| segments.iter().any(|s| s.segment == h.id && s.dir == h.dir && !s.method.identified());
    notes.extend(
        plan::never_identifiable(shape).into_iter().filter(|(h, _)| unidentified(h)).map(|(h, why)| format!("{h}: {why}")),
    );
    let lb = segments.iter().filter(|s| s.method == Method::LowerBound).count();
    if lb > 0 {
        notes.push(format!("{lb} segment directions are lower bounds only (capacity >= value): `linkcal run --plan calibrate` adds the contention experiments that identify them"));
    }
    notes
}

/// The burst efficiency of shared links: max-min predicted over measured makespan, median over
/// the contended measurements at their set's largest payload (at least two), within [0.8, 1].
fn sharing_efficiency(cal: &Calibration, measurements: &[Measurement], obs: &observe::Observations) -> Option<f64> {
    let picked: Vec<Measurement> = measurements.iter().filter(|m| obs.largest.contains(&m.id)).cloned().collect();
    let mut r: Vec<f64> = crate::sim::validate(cal, &picked, false)
        .iter()
        .map(|c| c.predicted_makespan_s / c.measured_makespan_s)
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if r.len() < 2 {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let med = if r.len() % 2 == 1 { r[r.len() / 2] } else { 0.5 * (r[r.len() / 2 - 1] + r[r.len() / 2]) };
    Some(med.clamp(0.8, 1.0))
}

/// Writes the per-segment table as CSV (same values as the JSON; empty cell = null).
pub fn write_csv(cal: &Calibration, path: &Path) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "segment",
        "dir",
        "outside_spec",
        "method",
        "capacity_Bps",
        "ci95_low_Bps",
        "ci95_high_Bps",
        "lower_bound_Bps",
        "latency_s",
        "nominal_Bps",
        "series_group",
    ])?;
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6e}")).unwrap_or_default();
    for s in &cal.segments {
        let method = serde_json::to_value(s.method).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        w.write_record([
            s.segment.to_string(),
            s.dir.to_string(),
            s.outside_spec.to_string(),
            method,
            opt(s.capacity_Bps),
            opt(s.ci95_low_Bps),
            opt(s.ci95_high_Bps),
            opt(s.lower_bound_Bps),
            opt(s.latency_s),
            opt(s.nominal_Bps),
            s.series_group.clone().unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Loads a calibration file, naming file and field on error.
pub fn load_calibration(path: &Path) -> Result<Calibration, InputError> {
    crate::model::load(path, CALIBRATION_SCHEMA)
}

#[cfg(test)]
mod tests;
