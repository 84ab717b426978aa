//! Runs this host's applicable hardware probes in one process, through the transports' own
//! trait (receiver prepared and served on a thread, sender connected to its endpoint), and
//! writes the results files the emulated rack writes, through [`ResultsDir`]: `journal.jsonl`
//! (each measurement made durable before the next starts), `results.json`, `results.csv`.
//!
//! Measured here, as the routes they are: copy-engine P2P between neighbouring GPUs (Path 1,
//! solo and both directions at once), GPU -> host and host -> GPU per GPU (solo, and all GPUs
//! at once: the switch uplink). RDMA between two NICs of the same host and GPU staging through
//! a local socket do not cross a spec route, so they go to `loopback.json`, labelled as such.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{routes::local_flow, Probe, ProbeKind, Status};
use crate::control::WindowResult;
use crate::model::provenance::{rfc3339_now, Provenance};
use crate::model::results::{
    Aggregate, FlowResult, Measurement, MeasurementKind, RackSummary, Results, StopReason, Summary, Waiver, RESULTS_SCHEMA,
};
use crate::model::rundir::{ResultsDir, RunWriter, Start, CSV_FILE, JOURNAL_FILE, RESULTS_FILE};
use crate::runner::aggregate::window_aggregate;
use crate::spec::{HopOptions, PathRef, RackShape, Route, RouteKind};
use crate::stats;
use crate::transport::{FlowSpec, ReceiverStats, Sender, Transport, TransportError, TransportKind};

/// Makes the transport of a kind: [`TransportKind::instance`], or a stand-in in tests.
pub type Factory = fn(TransportKind) -> Box<dyn Transport>;

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

/// Times of one flow: warmup transfers done, measured seconds per transfer, why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowTimes {
    /// Warmup transfers.
    pub warmup: u64,
    /// Seconds per measured transfer.
    pub times: Vec<f64>,
    /// When each measured transfer started, seconds since the set began (contended sets).
    pub starts: Vec<f64>,
    /// Why repetition stopped.
    pub stop: StopReason,
}

struct Open {
    sender: Box<dyn Sender>,
    serve: std::thread::JoinHandle<Result<ReceiverStats, TransportError>>,
}

fn open(make: Factory, plan: &FlowPlan, id: u64, bytes: u64, cfg: &RunConfig) -> Result<Open, TransportError> {
    let mut options = plan.options.clone();
    if let Some(o) = options.as_object_mut() {
        for (k, v) in &cfg.options {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let flow = FlowSpec {
        id,
        transport: plan.kind,
        local_addr: Some("127.0.0.1".into()),
        max_bytes: bytes,
        timeout_s: cfg.timeout_s,
        options,
        tcp_congestion: None,
    };
    let t = make(plan.kind);
    let prepared = t.prepare_receiver(&flow)?;
    let receiver = prepared.receiver;
    let serve = std::thread::spawn(move || receiver.serve());
    match t.connect_sender(&flow, &prepared.endpoint) {
        Ok(sender) => Ok(Open { sender, serve }),
        Err(e) => {
            // The receiver gives up on its own timeout; do not leave its thread behind.
            let _ = serve.join();
            Err(e)
        }
    }
}

fn close(o: Open, id: u64, transfers: u64) -> Result<(), TransportError> {
    o.sender.finish()?;
    let stats = o.serve.join().map_err(|_| TransportError::protocol(id, "receiver thread panicked"))??;
    if stats.transfers != transfers {
        return Err(TransportError::protocol(
            id,
            format!("receiver saw {} transfers, the sender made {transfers}", stats.transfers),
        ));
    }
    Ok(())
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
}

/// Runs one flow alone: warmup, then transfers until the stopping rule.
pub fn solo(make: Factory, plan: &FlowPlan, id: u64, bytes: u64, cfg: &RunConfig) -> Result<FlowTimes, TransportError> {
    let mut o = open(make, plan, id, bytes, cfg)?;
    let run = (|| {
        for _ in 0..cfg.warmup {
            o.sender.transfer(bytes)?;
        }
        let started = Instant::now();
        let mut times = Vec::new();
        loop {
            times.push(o.sender.transfer(bytes)?.as_secs_f64());
            if let Some(stop) = cfg.stop_rule().decide(&[&times], bytes, &[], started.elapsed().as_secs_f64()) {
                return Ok(FlowTimes { warmup: u64::from(cfg.warmup), times, starts: Vec::new(), stop });
            }
        }
    })();
    match run {
        Ok(t) => {
            close(o, id, t.warmup + t.times.len() as u64)?;
            Ok(t)
        }
        Err(e) => {
            let _ = o.sender.finish();
            let _ = o.serve.join();
            Err(e)
        }
    }
}

/// Rounds of a contended run: a fixed count every flow knows in advance, so no flow waits at
/// the barrier for one that already stopped.
pub fn contended_rounds(cfg: &RunConfig) -> u32 {
    (cfg.min_samples.max(1) * 4).min(cfg.max_samples.max(1))
}

/// Runs flows together: each round starts every flow's transfer on one barrier, and every
/// transfer's start is kept (on one clock) for [`aggregate`]. A flow that fails keeps meeting
/// the barrier (without transferring) so the others finish, then its error is returned.
pub fn contended(
    make: Factory,
    plans: &[FlowPlan],
    first_id: u64,
    bytes: u64,
    cfg: &RunConfig,
) -> Result<Vec<FlowTimes>, TransportError> {
    let mut opened = Vec::new();
    for (n, p) in plans.iter().enumerate() {
        match open(make, p, first_id + n as u64, bytes, cfg) {
            Ok(o) => opened.push(o),
            Err(e) => {
                for o in opened {
                    let _ = o.sender.finish();
                    let _ = o.serve.join();
                }
                return Err(e);
            }
        }
    }
    let rounds = contended_rounds(cfg);
    let barrier = Arc::new(Barrier::new(plans.len()));
    let origin = Instant::now();
    type Timed = Result<(Vec<f64>, Vec<f64>), TransportError>;
    let outcomes: Vec<(Open, Timed)> = std::thread::scope(|s| {
        let handles: Vec<_> = opened
            .into_iter()
            .map(|mut o| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    let mut err = None;
                    for _ in 0..cfg.warmup {
                        if let Err(e) = o.sender.transfer(bytes) {
                            err = Some(e);
                            break;
                        }
                    }
                    let (mut times, mut starts) = (Vec::new(), Vec::new());
                    for _ in 0..rounds {
                        barrier.wait();
                        if err.is_none() {
                            let start = origin.elapsed().as_secs_f64();
                            match o.sender.transfer(bytes) {
                                Ok(d) => {
                                    times.push(d.as_secs_f64());
                                    starts.push(start);
                                }
                                Err(e) => err = Some(e),
                            }
                        }
                    }
                    (o, err.map_or(Ok((times, starts)), Err))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("flow threads do not panic")).collect()
    });
    let mut flows = Vec::new();
    let mut first_err = None;
    for (n, (o, r)) in outcomes.into_iter().enumerate() {
        let id = first_id + n as u64;
        match r {
            Ok((times, starts)) => {
                if let Err(e) = close(o, id, u64::from(cfg.warmup) + times.len() as u64) {
                    first_err.get_or_insert(e);
                }
                flows.push(FlowTimes { warmup: u64::from(cfg.warmup), times, starts, stop: StopReason::SampleCap });
            }
            Err(e) => {
                let _ = o.sender.finish();
                let _ = o.serve.join();
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(flows),
    }
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

/// A flow result from its times (`None` when nothing was measured).
pub fn flow_result(path: PathRef, bytes: u64, t: &FlowTimes) -> Option<FlowResult> {
    let goodputs: Vec<f64> = t.times.iter().map(|s| bytes as f64 / s.max(1e-12)).collect();
    Some(FlowResult {
        path,
        segments: segments(&path),
        payload_bytes: bytes,
        goodput_Bps: stats::summarize_rate(&goodputs)?,
        transfer_time_s: stats::summarize_time(&t.times)?,
        samples: t.times.len() as u64,
        warmup: t.warmup,
        stop: t.stop,
        transfer_times_s: t.times.clone(),
    })
}

/// Aggregate of concurrent flows, as the runner defines it ([`window_aggregate`]): each round
/// is a window of one transfer per flow, whose sum is the rate carried while all were active
/// and whose makespan runs from the first start to the last end (start skew included).
pub fn aggregate(bytes: u64, flows: &[FlowTimes]) -> Option<Aggregate> {
    let rounds = flows.iter().map(|f| f.times.len().min(f.starts.len())).min()?;
    let (mut sums, mut makespans) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let windows: Vec<WindowResult> = flows
            .iter()
            .enumerate()
            .map(|(n, f)| WindowResult {
                flow_id: n as u64,
                starts_s: vec![f.starts[r]],
                times_s: vec![f.times[r]],
                warmup_done: 0,
                go_epoch_s: None,
                delivered: Vec::new(),
            })
            .collect();
        if let Some((sum, span)) = window_aggregate(&windows.iter().collect::<Vec<_>>(), bytes) {
            sums.push(sum);
            makespans.push(span);
        }
    }
    let p50: Vec<f64> = flows
        .iter()
        .filter_map(|f| {
            stats::summarize_rate(&f.times.iter().map(|s| bytes as f64 / s.max(1e-12)).collect::<Vec<_>>()).map(|s| s.p50)
        })
        .collect();
    let (max, min) = (p50.iter().copied().fold(f64::MIN, f64::max), p50.iter().copied().fold(f64::MAX, f64::min));
    Some(Aggregate {
        goodput_sum_Bps: stats::summarize_rate(&sums)?,
        makespan_s: stats::summarize_time(&makespans),
        fairness_max_over_min: (min > 0.0).then(|| max / min),
    })
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
pub struct Outcome {
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

    fn solo(&mut self, make: Factory, p: &FlowPlan, bytes: u64, cfg: &RunConfig) -> std::io::Result<()> {
        let (t0, started_at) = (Instant::now(), rfc3339_now());
        let id = self.ids(1);
        let path = p.path.expect("solo plans measure routes");
        match solo(make, p, id, bytes, cfg) {
            Ok(t) => match flow_result(path, bytes, &t) {
                Some(f) => self.keep(Measurement {
                    id: format!("solo/{path}/{bytes}"),
                    kind: MeasurementKind::Solo,
                    set: None,
                    transport: p.kind.to_string(),
                    kv_block_bytes: None,
                    kv_block_tokens: None,
                    started_at,
                    duration_s: t0.elapsed().as_secs_f64(),
                    flows: vec![f],
                    aggregate: None,
                }),
                None => Ok(()),
            },
            Err(e) => {
                self.note(&p.label, p.path, p.kind, e);
                Ok(())
            }
        }
    }

    fn set(&mut self, make: Factory, name: &str, group: &[FlowPlan], bytes: u64, cfg: &RunConfig) -> std::io::Result<()> {
        let (t0, started_at) = (Instant::now(), rfc3339_now());
        let id = self.ids(group.len());
        match contended(make, group, id, bytes, cfg) {
            Ok(flows) => {
                let fr: Option<Vec<FlowResult>> = group.iter().zip(&flows).map(|(p, t)| flow_result(p.path?, bytes, t)).collect();
                match fr {
                    Some(fr) => self.keep(Measurement {
                        id: format!("contended/{name}/{bytes}"),
                        kind: MeasurementKind::Contended,
                        set: Some(name.to_string()),
                        transport: group[0].kind.to_string(),
                        kv_block_bytes: None,
                        kv_block_tokens: None,
                        started_at,
                        duration_s: t0.elapsed().as_secs_f64(),
                        flows: fr,
                        aggregate: aggregate(bytes, &flows),
                    }),
                    None => Ok(()),
                }
            }
            Err(e) => {
                self.note(name, None, group[0].kind, e);
                Ok(())
            }
        }
    }

    fn loopback(&mut self, make: Factory, p: &FlowPlan, bytes: u64, cfg: &RunConfig) -> std::io::Result<()> {
        let id = self.ids(1);
        match solo(make, p, id, bytes, cfg) {
            Ok(t) => {
                let g: Vec<f64> = t.times.iter().map(|s| bytes as f64 / s.max(1e-12)).collect();
                self.loopback.push(Loopback {
                    probe: p.label.clone(),
                    transport: p.kind.to_string(),
                    payload_bytes: bytes,
                    goodput_Bps: stats::summarize_rate(&g),
                    transfer_times_s: t.times,
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
pub fn run(make: Factory, catalogue: &[Probe], shape: RackShape, cfg: &RunConfig, out: &Path) -> std::io::Result<Outcome> {
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
            sink.solo(make, p, bytes, cfg)?;
        }
        for (name, group) in &plans.sets {
            sink.set(make, name, group, bytes, cfg)?;
        }
        for p in &plans.loopback {
            sink.loopback(make, p, bytes, cfg)?;
        }
    }
    let Sink { mut results, writer, loopback, failures, .. } = sink;
    results.provenance.finished_at = Some(rfc3339_now());
    writer.finish(&results).map_err(std::io::Error::other)?;
    Ok(Outcome { results, loopback, failures })
}

/// The files a local run wrote (loopback.json only when a loopback probe ran).
pub fn files(out: &Path) -> Vec<PathBuf> {
    [RESULTS_FILE, CSV_FILE, JOURNAL_FILE, "loopback.json"].iter().map(|f| out.join(f)).filter(|p| p.exists()).collect()
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
