//! Runs this host's applicable hardware probes in one process, through the runner's one
//! measurement loop ([`engine`]) over the in-process flow driver ([`InProcess`]: both ends of
//! each flow here; a contended set is one multi-lane operation per sample), and writes the results files the emulated rack writes, through [`ResultsDir`]: `journal.jsonl`
//! (each measurement made durable before the next starts), `results.json`, `results.csv`.
//!
//! Measured here, as the routes they are: copy-engine P2P between neighbouring GPUs (Path 1,
//! solo and both directions at once), GPU -> host and host -> GPU per GPU (solo, and all GPUs
//! at once: the switch uplink). RDMA between two NICs of the same host and GPU staging through
//! a local socket do not cross a spec route, so they go to `loopback.json`, labelled as such.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{routes::local_flow, Probe, ProbeKind, Status};
use crate::model::provenance::{rfc3339_now, Provenance};
use crate::model::results::{Measurement, RackSummary, Results, Summary, Waiver, RESULTS_SCHEMA};
use crate::model::rundir::{ResultsDir, RunWriter, Start, CSV_FILE, JOURNAL_FILE, RESULTS_FILE};
use crate::runner::engine::{self, EngineOptions, Label, Outcome, SystemClock};
pub use crate::runner::local::Factory;
use crate::runner::local::{InProcess, LocalFlow};
use crate::spec::{HopOptions, PathRef, RackShape, Route, RouteKind};
use crate::stats;
use crate::transport::{TransportError, TransportKind};

/// How the local probes repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Payload sizes, bytes (chunk and KV sizes).
    pub sizes: Vec<u64>,
    /// Warmup transfers per flow.
    pub warmup: u32,
    /// Measured transfers per flow, at least.
    pub min_samples: u32,
    /// Measured transfers per flow, at most.
    pub max_samples: u32,
    /// Stop once the 95% CI half-width of the mean goodput is this fraction of it.
    pub ci_target: f64,
    /// Stop a measurement after this long anyway, seconds.
    pub time_cap_s: f64,
    /// Data-plane timeout of every wait, seconds.
    pub timeout_s: f64,
    /// Extra flow options for every flow (`chunk_bytes`, `qps`, `write_bytes`, `outstanding`, `gid_index`).
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            sizes: vec![16 << 20, 256 << 20],
            warmup: 3,
            min_samples: 5,
            max_samples: 200,
            ci_target: 0.01,
            time_cap_s: 5.0,
            timeout_s: 30.0,
            options: Default::default(),
        }
    }
}

/// One flow to run: transport, options, and (when it is one) the spec route it measures.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowPlan {
    /// Transport.
    pub kind: TransportKind,
    /// Flow options.
    pub options: serde_json::Value,
    /// The route, when the flow measures one.
    pub path: Option<PathRef>,
    /// Label for output, e.g. `cuda_p2p gpu0 -> gpu1`.
    pub label: String,
}

impl RunConfig {
    /// The stopping rule (the runner's; no hard cap: each transfer is bounded by `timeout_s`).
    pub fn stop_rule(&self) -> stats::StopRule {
        stats::StopRule {
            min_samples: self.min_samples,
            max_samples: self.max_samples,
            ci_target: self.ci_target,
            time_cap_s: self.time_cap_s,
            hard_cap_s: f64::INFINITY,
        }
    }

    /// The measurement loop's options: `warmup` transfers of the payload itself, then one
    /// sample per flow per window (a solo transfer, or one multi-lane sample of a set) until
    /// the stop rule says stop; each window of a set gives its sum and makespan.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            stop: self.stop_rule(),
            warmup: self.warmup,
            warmup_max_bytes: u64::MAX,
            warmup_full: true,
            window_s: 0.0,
            contended_min_count: 1,
            bursts: 0,
        }
    }

    /// A plan's flow options with this run's extra options (the plan's own win).
    pub fn flow_options(&self, plan: &FlowPlan) -> serde_json::Value {
        let mut options = plan.options.clone();
        if let Some(o) = options.as_object_mut() {
            for (k, v) in &self.options {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        options
    }
}

/// Measures `plans` together (one flow: solo) at `bytes` per flow, flow ids from `first_id`,
/// through the in-process driver under the runner's measurement loop.
pub fn measure(make: Factory, plans: &[FlowPlan], first_id: u64, bytes: u64, cfg: &RunConfig) -> Result<Outcome, TransportError> {
    let flows = plans
        .iter()
        .enumerate()
        .map(|(n, p)| LocalFlow { id: first_id + n as u64, kind: p.kind, options: cfg.flow_options(p) })
        .collect();
    let mut d = InProcess::new(make, flows, cfg.timeout_s);
    engine::measure(&mut d, &cfg.engine(), bytes, &SystemClock::new())
}

/// The hops a local flow crosses (the spec's, plus the uplink for host ends). A peer copy
/// runs either way between two GPUs of the switch (the reverse direction of a bidirectional
/// run goes from i+1 to i).
pub fn segments(path: &PathRef) -> Vec<crate::spec::Hop> {
    use crate::spec::{Dir, Hop, SegmentKind};
    let opt = HopOptions::default();
    match path.kind {
        RouteKind::PrefillInterRank => {
            vec![Hop::new(SegmentKind::GpuP, path.src, Dir::Up), Hop::new(SegmentKind::GpuP, path.dst, Dir::Down)]
        }
        RouteKind::PrefillToDecode => Route::prefill_to_decode(path.src, path.src, path.dst, opt).segments,
        RouteKind::DecodeInterRank => Route::decode_inter_rank(path.src, opt).segments,
        kind => Route::isolation(kind, path.src, path.dst, opt).segments,
    }
}

/// A loopback figure: measured, but not a spec route.
#[allow(non_snake_case)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loopback {
    /// What ran, e.g. `host_rdma mlx5_0 -> mlx5_1`.
    pub probe: String,
    /// Transport.
    pub transport: String,
    /// Payload, bytes.
    pub payload_bytes: u64,
    /// Goodput per transfer, B/s, one direction.
    pub goodput_Bps: Option<Summary>,
    /// Raw transfer times, seconds.
    pub transfer_times_s: Vec<f64>,
}

/// Everything one local run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRun {
    /// The results (also on disk).
    pub results: Results,
    /// Loopback figures (also on disk).
    pub loopback: Vec<Loopback>,
    /// Probes that failed at run time, with the error (the run went on).
    pub failures: Vec<String>,
}

/// What a local run measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Plans {
    /// Flows that measure a spec route alone.
    pub solo: Vec<FlowPlan>,
    /// Named sets of route flows run together (both P2P directions; all GPUs to or from host).
    pub sets: Vec<(String, Vec<FlowPlan>)>,
    /// Flows that cross no spec route (RDMA between this host's NICs, local staging).
    pub loopback: Vec<FlowPlan>,
}

/// The solo and contended flows the catalogue's applicable probes make, in run order.
pub fn plans(catalogue: &[Probe]) -> Plans {
    let mut solo = Vec::new();
    let mut loop_ = Vec::new();
    for p in catalogue.iter().filter(|p| p.status == Status::Applies) {
        let (Some(options), Some(kind)) = (local_flow(p), TransportKind::parse(p.kind.as_str())) else { continue };
        let plan = FlowPlan { kind, options, path: p.path, label: format!("{} {}", p.kind.as_str(), p.target) };
        match (p.kind, p.path) {
            (
                ProbeKind::CudaP2p
                | ProbeKind::CudaD2h
                | ProbeKind::CudaH2d
                | ProbeKind::HipP2p
                | ProbeKind::HipD2h
                | ProbeKind::HipH2d,
                Some(_),
            ) => solo.push(plan),
            _ => loop_.push(FlowPlan { path: None, ..plan }),
        }
    }
    let mut sets = Vec::new();
    for s in solo.iter().filter(|f| matches!(f.kind, TransportKind::CudaP2p | TransportKind::HipP2p)) {
        let mut back = s.clone();
        back.options = serde_json::json!({ "src_gpu": s.options["dst_gpu"], "dst_gpu": s.options["src_gpu"] });
        back.path = s.path.map(|p| PathRef { kind: p.kind, src: p.dst, dst: p.src });
        back.label = format!("{} (reverse)", s.label);
        sets.push((format!("bidir:{}", s.label), vec![s.clone(), back]));
    }
    for (name, kind) in [
        ("all_d2h", TransportKind::CudaD2h),
        ("all_h2d", TransportKind::CudaH2d),
        ("all_hip_d2h", TransportKind::HipD2h),
        ("all_hip_h2d", TransportKind::HipH2d),
    ] {
        let group: Vec<FlowPlan> = solo.iter().filter(|f| f.kind == kind).cloned().collect();
        if group.len() >= 2 {
            sets.push((name.to_string(), group));
        }
    }
    Plans { solo, sets, loopback: loop_ }
}

/// Where finished work goes: the results, the journal (each measurement durable before the
/// next starts), loopback figures, failures.
struct Sink<'a> {
    out: &'a Path,
    results: Results,
    writer: RunWriter,
    loopback: Vec<Loopback>,
    failures: Vec<String>,
    next_id: u64,
}

impl Sink<'_> {
    fn ids(&mut self, n: usize) -> u64 {
        let id = self.next_id;
        self.next_id += n as u64;
        id
    }

    fn keep(&mut self, m: Measurement) -> std::io::Result<()> {
        self.writer.append(&m).map_err(std::io::Error::other)?;
        self.results.measurements.push(m);
        Ok(())
    }

    /// A flow that did not run: waived (recorded as a waiver) or failed (the run goes on).
    fn note(&mut self, label: &str, path: Option<PathRef>, kind: TransportKind, e: TransportError) {
        match e {
            TransportError::Waived { reason, .. } => {
                let w = Waiver { probe: label.to_string(), path, reason };
                if !self.results.waivers.contains(&w) {
                    self.results.waivers.push(w);
                }
            }
            other => self.failures.push(format!("{label} ({kind}): {other}")),
        }
    }

    /// Measures `group` (one plan: solo) and keeps its measurement; a flow that did not run is noted.
    fn measure(
        &mut self,
        make: Factory,
        set: Option<&str>,
        group: &[FlowPlan],
        bytes: u64,
        cfg: &RunConfig,
    ) -> std::io::Result<()> {
        let (t0, started_at) = (Instant::now(), rfc3339_now());
        let id = self.ids(group.len());
        let out = match measure(make, group, id, bytes, cfg) {
            Ok(out) => out,
            Err(e) => {
                let (label, path) = match set {
                    Some(name) => (name, None),
                    None => (group[0].label.as_str(), group[0].path),
                };
                self.note(label, path, group[0].kind, e);
                return Ok(());
            }
        };
        let routes: Option<Vec<_>> = group.iter().map(|p| p.path.map(|path| (path, segments(&path)))).collect();
        let Some(routes) = routes else { return Ok(()) };
        let label = Label {
            id: match set {
                Some(name) => format!("contended/{name}/{bytes}"),
                None => format!("solo/{}/{bytes}", routes[0].0),
            },
            set: set.map(str::to_string),
            transport: group[0].kind.to_string(),
            kv_block: None,
            started_at,
            duration_s: t0.elapsed().as_secs_f64(),
        };
        match engine::measurement(label, &routes, bytes, &out) {
            Some(m) => self.keep(m),
            None => Ok(()),
        }
    }

    fn loopback(&mut self, make: Factory, p: &FlowPlan, bytes: u64, cfg: &RunConfig) -> std::io::Result<()> {
        let id = self.ids(1);
        match measure(make, std::slice::from_ref(p), id, bytes, cfg) {
            Ok(out) => {
                let times = out.flows.into_iter().next().map(|f| f.times).unwrap_or_default();
                let g: Vec<f64> = times.iter().map(|s| bytes as f64 / s.max(1e-12)).collect();
                self.loopback.push(Loopback {
                    probe: p.label.clone(),
                    transport: p.kind.to_string(),
                    payload_bytes: bytes,
                    goodput_Bps: stats::summarize_rate(&g),
                    transfer_times_s: times,
                });
                crate::model::write_json(&self.out.join("loopback.json"), &self.loopback)
            }
            Err(e) => {
                self.note(&p.label, None, p.kind, e);
                Ok(())
            }
        }
    }
}

/// Runs the plans at every size, writing results as they finish.
pub fn run(make: Factory, catalogue: &[Probe], shape: RackShape, cfg: &RunConfig, out: &Path) -> std::io::Result<LocalRun> {
    std::fs::create_dir_all(out)?;
    let mut provenance = Provenance::now(vec![]);
    provenance.hosts = vec![provenance.host.clone()];
    let results = Results {
        schema: RESULTS_SCHEMA.into(),
        provenance,
        rack: RackSummary {
            shape,
            emulated: false,
            payload_scale: 1.0,
            mtu_bytes: None,
            tcp_congestion_control: None,
            emulation: None,
        },
        payloads: None,
        measurements: Vec::new(),
        waivers: catalogue.iter().filter_map(Probe::waiver).collect(),
        skipped: Vec::new(),
    };
    // `probe --run` has no --resume: it starts over in `out`, as it always did.
    let writer = ResultsDir::create(out, results.clone(), Start::Force).map_err(std::io::Error::other)?;
    let mut sink = Sink { out, results, writer, loopback: Vec::new(), failures: Vec::new(), next_id: 1 };
    let plans = plans(catalogue);
    for &bytes in &cfg.sizes {
        for p in &plans.solo {
            sink.measure(make, None, std::slice::from_ref(p), bytes, cfg)?;
        }
        for (name, group) in &plans.sets {
            sink.measure(make, Some(name), group, bytes, cfg)?;
        }
        for p in &plans.loopback {
            sink.loopback(make, p, bytes, cfg)?;
        }
    }
    let Sink { mut results, writer, loopback, failures, .. } = sink;
    results.provenance.finished_at = Some(rfc3339_now());
    writer.finish(&results).map_err(std::io::Error::other)?;
    Ok(LocalRun { results, loopback, failures })
}

/// The files a local run wrote (loopback.json only when a loopback probe ran).
pub fn files(out: &Path) -> Vec<PathBuf> {
    [RESULTS_FILE, CSV_FILE, JOURNAL_FILE, "loopback.json"].iter().map(|f| out.join(f)).filter(|p| p.exists()).collect()
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
