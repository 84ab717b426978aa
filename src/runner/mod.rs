//! The measurement runner: every experiment (solo routes over a payload sweep, contention
//! sets at the contended sizes) through the agents, with barrier start, warmup and the
//! stopping rule (95% CI half-width of goodput <= target, or a time cap). The run directory
//! belongs to [`crate::model::ResultsDir`]: `results.json`'s header at the start, every finished
//! measurement to `journal.jsonl` (fsynced) before the next starts, `results.json` and
//! `results.csv` at the end; `--resume` continues a run there.

pub mod aggregate;
pub mod engine;
pub mod fault;
pub mod local;
pub mod measure;
pub mod phases;
pub mod resolve;
pub mod waves;

use std::path::Path;

use std::sync::atomic::AtomicU64;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::ControlError;
use crate::error::{Classified, ExitClass, InputError};
use crate::model::results::{Measurement, RackSummary, Results, Skipped, Waiver, RESULTS_SCHEMA};
use crate::model::{Provenance, RackFile, ResultsDir, RunDirError, RunWriter, Start};
use crate::payload::Payloads;
use crate::spec::{Experiment, RouteKind};
use crate::transport::TransportKind;

/// Run failures; each names the host, file or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad input (rack file, flags).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The control plane failed (agent unreachable, died, refused, timed out).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// An agent reported a failure.
    #[error("agent {host}: {message}")]
    Agent {
        /// Agent name.
        host: String,
        /// What happened.
        message: String,
    },
    /// An agent of the measurement stopped answering (the heartbeat's probe found it) while
    /// the run waited for a reply.
    #[error("agent {host} does not answer: {finding} (found after {waited_s:.1} s of waiting for agent {waiting_on})")]
    Unresponsive {
        /// The agent that does not answer.
        host: String,
        /// What the probe found.
        finding: String,
        /// The agent whose reply the run was waiting for.
        waiting_on: String,
        /// How long the run had waited, seconds.
        waited_s: f64,
    },
    /// A window (flows moving data) failed on an agent or ran past its deadline.
    #[error("while flows moved data: {source}")]
    DataPlane {
        /// What the control connection reported.
        source: ControlError,
    },
    /// Joining the rack's control namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::control::netns::NetnsError),
    /// The run directory refused the run (bad input) or could not be written.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

impl Classified for RunError {
    /// Bad input as the wrapped error says; the control plane and the agents fail at run time.
    fn exit_class(&self) -> ExitClass {
        match self {
            RunError::Input(e) => e.exit_class(),
            RunError::RunDir(e) => e.exit_class(),
            RunError::Control(_)
            | RunError::Netns(_)
            | RunError::Agent { .. }
            | RunError::Unresponsive { .. }
            | RunError::DataPlane { .. } => ExitClass::Runtime,
        }
    }
}

impl RunError {
    /// The agent an error came from (or names as not answering), when there is one.
    pub fn host(&self) -> Option<&str> {
        match self {
            RunError::Control(e) | RunError::DataPlane { source: e } => Some(e.host()),
            RunError::Agent { host, .. } | RunError::Unresponsive { host, .. } => Some(host),
            RunError::Input(_) | RunError::Netns(_) | RunError::RunDir(_) => None,
        }
    }

    /// True when the error came while flows moved data (a window), not while they were set up.
    pub fn in_data_plane(&self) -> bool {
        matches!(self, RunError::DataPlane { .. } | RunError::Unresponsive { .. }) || self.route_unreachable()
    }

    /// True when an agent could not reach its peer's data address while setting up a flow (no
    /// route, network or host unreachable, connect timed out): the route is at fault, not the
    /// agent that said so (a link that went down takes its routes with it).
    pub fn route_unreachable(&self) -> bool {
        let message = match self {
            RunError::Control(ControlError::Remote { message, .. }) | RunError::Agent { message, .. } => message,
            _ => return false,
        };
        const UNREACHABLE: [&str; 4] = ["No route to host", "Network is unreachable", "Host is unreachable", "timed out"];
        message.contains("connect to") && UNREACHABLE.iter().any(|u| message.contains(u))
    }
}

/// How a run measures.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Transport of every flow whose route kind is not in `per_route`.
    pub transport: TransportKind,
    /// Transport per route kind (e.g. Path 1 over CUDA P2P, Path 2 over GPUDirect RDMA).
    pub per_route: Vec<(RouteKind, TransportKind)>,
    /// Stop when the 95% CI half-width of every flow's mean goodput is at most this fraction.
    pub ci_target: f64,
    /// Stop a measurement after this long once every flow has `min_samples`, seconds.
    pub time_cap_s: f64,
    /// Stop a measurement after this long in any case, seconds.
    pub hard_cap_s: f64,
    /// Measured transfers per flow at least before the CI is trusted.
    pub min_samples: u32,
    /// Measured transfers per flow at most.
    pub max_samples: u32,
    /// Warmup transfers per flow (not counted).
    pub warmup: u32,
    /// Warmup transfers carry at most this many bytes.
    pub warmup_max_bytes: u64,
    /// Length of one barrier-started window, seconds.
    pub window_s: f64,
    /// Measured transfers per flow in every window of a contended run, at least (so the
    /// interval where all flows are active holds whole transfers of each).
    pub contended_min_count: u32,
    /// Payloads of contention sets, bytes (empty: the largest solo size, at most 16 MiB).
    pub contended_sizes: Vec<u64>,
    /// Extra payloads for solo runs of one route kind (model-derived sizes), bytes.
    pub route_sizes: Vec<(RouteKind, u64)>,
    /// Data-plane timeout of every blocking wait, seconds.
    pub timeout_s: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Model payloads the sizes came from, recorded in the results.
    pub payloads: Option<Payloads>,
    /// Experiments run at the same time at most, when they share no segment and no host
    /// ([`waves`]); 1 runs them one by one.
    pub max_parallel: usize,
    /// Options of NIXL flows ([`crate::transport::nixl::layout::NixlOptions`]); `null`: defaults.
    pub nixl: serde_json::Value,
    /// Tokens per KV block behind NIXL's `block_bytes`, recorded with its measurements (None
    /// when the block was given in bytes).
    pub kv_block_tokens: Option<u64>,
    /// What to do with a run already in the output directory: refuse (default), resume, start over.
    pub start: Start,
    /// Checks the rack's links on the hops of a route that stopped moving data, one finding a
    /// line (the emulated rack's: `emulate::health::explain`); None: no check.
    pub link_check: Option<LinkCheck>,
}

/// A check of the links of some segments of a rack (see [`RunOptions::link_check`]).
pub type LinkCheck = fn(&RackFile, &std::collections::BTreeSet<crate::spec::SegmentId>) -> Vec<String>;

impl RunOptions {
    /// The full run's defaults.
    pub fn full() -> RunOptions {
        RunOptions {
            transport: TransportKind::HostTcp,
            per_route: Vec::new(),
            ci_target: 0.01,
            time_cap_s: 1.0,
            hard_cap_s: 60.0,
            min_samples: 3,
            max_samples: 1000,
            warmup: 2,
            warmup_max_bytes: 4 << 20,
            window_s: 0.25,
            contended_min_count: 3,
            contended_sizes: Vec::new(),
            route_sizes: Vec::new(),
            timeout_s: 30.0,
            progress: true,
            payloads: None,
            max_parallel: 1,
            nixl: serde_json::Value::Null,
            kv_block_tokens: None,
            start: Start::Fresh,
            link_check: None,
        }
    }

    /// The stopping rule these options set.
    pub fn stop_rule(&self) -> crate::stats::StopRule {
        crate::stats::StopRule {
            min_samples: self.min_samples,
            max_samples: self.max_samples,
            ci_target: self.ci_target,
            time_cap_s: self.time_cap_s,
            hard_cap_s: self.hard_cap_s,
        }
    }

    /// The transport a flow of `kind` uses.
    pub fn transport_of(&self, kind: RouteKind) -> TransportKind {
        self.per_route.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t).unwrap_or(self.transport)
    }

    /// `--quick`: shorter caps and windows.
    pub fn quick() -> RunOptions {
        RunOptions { time_cap_s: 2.0, window_s: 0.15, max_samples: 400, ..RunOptions::full() }
    }
}

/// Experiments `run --plan calibrate` runs at the same time at most (when they share no
/// segment and no host): 8 on hardware, where flows cost the hosts little CPU; on the emulated
/// rack, where every flow at ~100 MB/s keeps about one core busy with its frames on every
/// hop (measured on a 2-core VM), half the cores (so 1 on 2 cores: parallel flows there
/// starve each other's shaping and read up to 36% low).
pub fn calibrate_parallel(emulated: bool) -> usize {
    if !emulated {
        return 8;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / 2).clamp(1, 8)
}

/// The hardware transport of each route kind: what `--transport auto` picks on a real rack
/// (on the emulated rack these are waived, with the reason, since no GPU or RDMA NIC exists).
pub fn hardware_transports() -> Vec<(RouteKind, TransportKind)> {
    RouteKind::ALL.into_iter().map(|k| (k, crate::transport::routes::hardware_transport(k))).collect()
}

/// The default payload sweep: 4 KiB..64 MiB in steps of 4x (`quick`: 64 KiB, 1 MiB, 16 MiB).
pub fn default_sizes(quick: bool) -> Vec<u64> {
    if quick {
        vec![64 << 10, 1 << 20, 16 << 20]
    } else {
        (0..8).map(|n| (4u64 << 10) << (2 * n)).collect()
    }
}

/// The planned (experiment, payload) pairs, in run order.
pub fn schedule(experiments: &[Experiment], sizes: &[u64], opts: &RunOptions) -> Vec<(usize, u64)> {
    let largest = sizes.iter().copied().max().unwrap_or(1 << 20);
    let contended = if opts.contended_sizes.is_empty() { vec![largest.min(16 << 20)] } else { opts.contended_sizes.clone() };
    let mut out = Vec::new();
    for (n, e) in experiments.iter().enumerate() {
        // Isolation routes (GPU<->host copies, host RDMA) exist to split series groups: only
        // their capacity matters, so they run at the largest payload alone.
        let isolation = e.is_solo() && !e.flows[0].kind.is_spec_path();
        let mut s: Vec<u64> = match (e.is_solo(), isolation) {
            (true, true) => vec![largest],
            (true, false) => sizes.to_vec(),
            (false, _) => contended.clone(),
        };
        if e.is_solo() && !isolation {
            s.extend(opts.route_sizes.iter().filter(|(k, _)| *k == e.flows[0].kind).map(|(_, b)| *b));
        }
        s.sort_unstable();
        s.dedup();
        out.extend(s.into_iter().map(|b| (n, b)));
    }
    out
}

/// Runs `experiments` on `rack` into the run directory `out_dir` ([`ResultsDir`]):
/// `results.json`'s header at the start, each measurement to `journal.jsonl` as it finishes,
/// `results.json` and `results.csv` at the end. `opts.start` says what to do with a run already
/// there: refuse it, resume it (measuring only ids its journal lacks) or start over. The
/// calibration plan passes its own experiments through here.
pub fn run(
    rack: &RackFile,
    rack_path: &Path,
    experiments: &[Experiment],
    sizes: &[u64],
    opts: &RunOptions,
    out_dir: &Path,
) -> Result<Results, RunError> {
    let token_path = resolve_token_path(rack_path, &rack.token_file);
    let token = crate::control::read_token(&token_path)?;
    let mut writer = ResultsDir::create(out_dir, header(rack, opts), opts.start)?;
    if let Some(ns) = &rack.control_netns {
        crate::control::netns::enter(ns)?;
    }
    let plan = pending(experiments, sizes, opts, &writer);
    let bar = progress_bar(opts.progress, plan.len() as u64);
    let fps = waves::footprints(rack, rack_path, experiments)?;
    let groups = waves::waves(&fps, opts.max_parallel);
    let mut results = writer.header().clone();
    // Skips are this run's: a resumed run measures what an earlier one skipped.
    results.skipped.clear();
    let mut blocked = fault::Blocked::default();
    let shared = Shared { rack, rack_path, token: &token, opts, ids: AtomicU64::new(1), bar: &bar };
    let mut done: Vec<(usize, Measurement)> = Vec::new();
    let started = std::time::Instant::now();
    for wave in &groups {
        let jobs = wave_jobs(wave, &plan, &fps, &blocked, experiments, &mut results.skipped);
        bar.inc(plan.iter().filter(|(n, _)| wave.contains(n)).count().saturating_sub(jobs.iter().map(|j| j.1.len()).sum()) as u64);
        let outcome = run_wave(&shared, experiments, jobs, |k, m| {
            writer.append(&m)?;
            done.push((k, m));
            Ok(())
        })?;
        for w in outcome.waivers {
            if !results.waivers.contains(&w) {
                results.waivers.push(w);
            }
        }
        for (f, skipped) in outcome.faults {
            eprintln!("linkcal run: {f}; skipping {} measurements and going on", skipped.len());
            blocked.add(&f);
            results.skipped.extend(skipped);
        }
        if let Some(e) = outcome.error {
            bar.abandon();
            let kept = writer.prior().len() + done.len();
            eprintln!(
                "linkcal run: stopped; {kept} finished measurements are in {} (continue with `linkcal run --resume {}`)",
                writer.journal_path().display(),
                out_dir.display()
            );
            return Err(e);
        }
    }
    if groups.len() < experiments.len() {
        eprintln!(
            "linkcal run: {} experiments in {} waves (up to {} at a time) in {:.1} s",
            experiments.len(),
            groups.len(),
            groups.iter().map(Vec::len).max().unwrap_or(0),
            started.elapsed().as_secs_f64()
        );
    }
    done.sort_by_key(|(k, _)| *k);
    results.measurements = writer.prior().to_vec();
    results.measurements.extend(done.into_iter().map(|(_, m)| m));
    bar.finish_and_clear();
    results.provenance.finished_at = Some(crate::model::provenance::rfc3339_now());
    let hosts = fps.iter().flat_map(|f| f.hosts.iter().cloned());
    let prior_hosts = if writer.prior().is_empty() { Vec::new() } else { results.provenance.hosts.clone() };
    results.provenance.hosts =
        prior_hosts.into_iter().chain(hosts).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    writer.finish(&results)?;
    Ok(results)
}

/// The schedule less what a resumed run already holds (by measurement id); says what resume found.
fn pending(experiments: &[Experiment], sizes: &[u64], opts: &RunOptions, writer: &RunWriter) -> Vec<(usize, u64)> {
    let done_ids = writer.done_ids();
    let plan: Vec<(usize, u64)> = schedule(experiments, sizes, opts)
        .into_iter()
        .filter(|(e, b)| !done_ids.contains(&measure::measurement_id(&experiments[*e], *b)))
        .collect();
    if let Some(rec) = writer.recovery() {
        eprintln!(
            "linkcal run --resume {}: {} measurements kept{}; {} to measure",
            writer.dir().display(),
            rec.total(),
            rec.note().map(|n| format!(" ({n})")).unwrap_or_default(),
            plan.len()
        );
    }
    plan
}

/// `results.json`'s header for a run of `rack`: provenance started now, no measurements.
pub fn header(rack: &RackFile, opts: &RunOptions) -> Results {
    Results {
        schema: RESULTS_SCHEMA.into(),
        provenance: Provenance::now(rack.hosts.iter().map(|h| h.name.clone()).collect()),
        rack: RackSummary {
            shape: rack.shape.clone(),
            emulated: rack.emulated,
            payload_scale: rack.payload_scale,
            mtu_bytes: rack.mtu_bytes,
            tcp_congestion_control: rack.tcp_congestion_control.clone(),
            emulation: rack.emulation.clone(),
        },
        payloads: opts.payloads.clone(),
        measurements: Vec::new(),
        waivers: Vec::new(),
        skipped: Vec::new(),
    }
}

/// The jobs of one wave: its experiments with their pending payloads, less those an earlier
/// fault rules out ([`fault::Blocked`]), which go to `skipped` instead.
fn wave_jobs(
    wave: &[usize],
    plan: &[(usize, u64)],
    fps: &[waves::Footprint],
    blocked: &fault::Blocked,
    experiments: &[Experiment],
    skipped: &mut Vec<Skipped>,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    for e in wave {
        let sizes: Vec<(usize, u64)> = plan.iter().enumerate().filter(|(_, (n, _))| n == e).map(|(k, (_, b))| (k, *b)).collect();
        match blocked.blocks(&fps[*e]) {
            Some((host, reason)) => skipped.extend(sizes.iter().map(|(_, b)| Skipped {
                id: measure::measurement_id(&experiments[*e], *b),
                host: host.clone(),
                reason: reason.clone(),
            })),
            None => jobs.push((*e, sizes)),
        }
    }
    jobs
}

/// What every thread of a run shares.
struct Shared<'a> {
    rack: &'a RackFile,
    rack_path: &'a Path,
    token: &'a str,
    opts: &'a RunOptions,
    ids: AtomicU64,
    bar: &'a ProgressBar,
}

/// One experiment of a wave: its index and its (schedule position, payload bytes) pairs.
type Job = (usize, Vec<(usize, u64)>);

/// What a wave left besides its measurements.
struct WaveOutcome {
    waivers: Vec<Waiver>,
    /// Faults the run goes on after, each with the measurements it skipped.
    faults: Vec<(fault::Fault, Vec<Skipped>)>,
    error: Option<RunError>,
}

/// What one measurement of a wave came to.
enum Event {
    Measured(Box<Measurement>),
    Waived(Vec<Waiver>),
    /// A fault, with this measurement and the experiment's later ones, skipped.
    Fault(Box<fault::Fault>, Vec<Skipped>),
    Failed(RunError),
}

/// Runs one experiment's payloads in order on its own agent connections, sending each
/// outcome as it comes. After a fault ([`fault::diagnose`]) the experiment's remaining payloads
/// are skipped; after any other error it stops.
fn run_experiment(sh: &Shared, exp: &Experiment, sizes: Vec<(usize, u64)>, tx: &std::sync::mpsc::Sender<(usize, Event)>) {
    let mut ctx = measure::Ctx::new(sh.rack, sh.rack_path, sh.token.to_string(), sh.opts, &sh.ids);
    let mut left = sizes.into_iter();
    while let Some((k, bytes)) = left.next() {
        if sh.opts.progress && sh.opts.max_parallel <= 1 {
            sh.bar.set_message(format!("{} {}", exp.name, crate::units::fmt_bytes(bytes)));
        }
        let ev = match measure::measure(&mut ctx, exp, bytes) {
            Ok(Ok(m)) => Event::Measured(Box::new(m)),
            Ok(Err(w)) => Event::Waived(w),
            Err(e) => {
                let flows: Result<Vec<_>, _> = exp.flows.iter().map(|p| resolve::resolve(sh.rack, sh.rack_path, p)).collect();
                match flows.map_err(RunError::from).and_then(|fl| fault::diagnose(e, &fl, sh.token)) {
                    Ok(mut f) => {
                        if let (None, Some(check)) = (&f.host, sh.opts.link_check) {
                            f.links = check(sh.rack, &f.segments());
                        }
                        let reason = f.summary();
                        let skipped = std::iter::once(bytes)
                            .chain(left.map(|(_, b)| b))
                            .map(|b| Skipped {
                                id: measure::measurement_id(exp, b),
                                host: f.host.clone(),
                                reason: reason.clone(),
                            })
                            .collect();
                        let _ = tx.send((k, Event::Fault(Box::new(f), skipped)));
                        return;
                    }
                    Err(e) => Event::Failed(e),
                }
            }
        };
        let stop = matches!(ev, Event::Failed(_));
        if tx.send((k, ev)).is_err() || stop {
            return;
        }
    }
}

/// Runs the experiments of one wave at the same time, one thread (and one set of agent
/// connections) each, every experiment's payloads in order. `keep` gets each measurement (with
/// its place in the schedule) as it finishes, so it is on disk before the next one starts.
fn run_wave(
    sh: &Shared,
    experiments: &[Experiment],
    jobs: Vec<Job>,
    mut keep: impl FnMut(usize, Measurement) -> Result<(), RunDirError>,
) -> Result<WaveOutcome, RunDirError> {
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Event)>();
    let mut out = WaveOutcome { waivers: Vec::new(), faults: Vec::new(), error: None };
    std::thread::scope(|scope| -> Result<(), RunDirError> {
        for (e, sizes) in jobs {
            let tx = tx.clone();
            scope.spawn(move || run_experiment(sh, &experiments[e], sizes, &tx));
        }
        drop(tx);
        for (k, ev) in rx {
            match ev {
                Event::Measured(m) => {
                    sh.bar.inc(1);
                    keep(k, *m)?
                }
                Event::Waived(w) => {
                    sh.bar.inc(1);
                    out.waivers.extend(w)
                }
                Event::Fault(f, skipped) => {
                    sh.bar.inc(skipped.len() as u64);
                    out.faults.push((*f, skipped));
                }
                Event::Failed(e) => {
                    out.error.get_or_insert(e);
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// A relative token path in a rack file is relative to the rack file's directory.
/// The token file of a rack: absolute, or relative to the rack file.
pub fn resolve_token_path(rack_path: &Path, token: &str) -> std::path::PathBuf {
    let p = Path::new(token);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        rack_path.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{spec_experiments, RackShape, RouteSet};

    #[test]
    fn schedule_sizes() {
        let set = RouteSet::spec(&RackShape::new(2, 2, 1).unwrap(), None).unwrap();
        let e = spec_experiments(&set, true);
        let mut o = RunOptions::quick();
        o.route_sizes = vec![(RouteKind::PrefillToDecode, 777)];
        let s = schedule(&e, &default_sizes(true), &o);
        assert_eq!(s.iter().filter(|(n, _)| *n == 1).map(|x| x.1).collect::<Vec<_>>(), vec![777, 64 << 10, 1 << 20, 16 << 20]);
        assert_eq!(s.iter().filter(|(n, _)| *n == 0).count(), 3);
        assert_eq!(s.iter().filter(|(n, _)| !e[*n].is_solo()).map(|x| x.1).collect::<Vec<_>>(), vec![16 << 20; 3]);
        assert_eq!(default_sizes(false).first(), Some(&4096));
        assert_eq!(default_sizes(false).last(), Some(&(64 << 20)));
        let mut o = RunOptions::full();
        o.per_route = hardware_transports();
        assert_eq!(o.transport_of(RouteKind::PrefillToDecode), TransportKind::GpudirectRdma);
        assert_eq!(o.transport_of(RouteKind::DecodeInterRank), TransportKind::GpuStagedTcp);
        assert_eq!(RunOptions::full().transport_of(RouteKind::PrefillInterRank), TransportKind::HostTcp);
    }
}
