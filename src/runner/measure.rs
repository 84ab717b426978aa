//! One measurement: set up the flows, warm up, run barrier-started windows until the stopping
//! rule says so, tear down, and summarise.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::control::{Client, Reply, Request, WindowResult, WindowSpec};
use crate::model::results::{Aggregate, FlowResult, Measurement, MeasurementKind, StopReason, Waiver};
use crate::spec::Experiment;
use crate::stats;
use crate::transport::{Applicability, FlowSpec, TransportKind};

pub use super::aggregate::{align, window_aggregate};
use super::fault;
use super::resolve::{resolve, Resolved};
use super::{RunError, RunOptions};

/// Connections to agents and what the run has learned about them.
pub struct Ctx<'a> {
    /// The rack.
    pub rack: &'a crate::model::RackFile,
    /// Its file (for error messages).
    pub rack_path: &'a std::path::Path,
    /// The run's token.
    pub token: String,
    /// Options.
    pub opts: &'a RunOptions,
    clients: HashMap<String, Client>,
    /// Agents of the measurement under way: probed when a reply is slow (the heartbeat).
    watch: Vec<crate::model::rack::HostEntry>,
    applies: HashMap<String, Vec<(TransportKind, Applicability)>>,
    next_flow: &'a std::sync::atomic::AtomicU64,
}

impl<'a> Ctx<'a> {
    /// A context with no connections yet.
    /// Flow ids come from `ids`, shared by every context of a run (so ids stay unique when
    /// experiments run at the same time).
    pub fn new(
        rack: &'a crate::model::RackFile,
        rack_path: &'a std::path::Path,
        token: String,
        opts: &'a RunOptions,
        ids: &'a std::sync::atomic::AtomicU64,
    ) -> Self {
        Ctx { rack, rack_path, token, opts, clients: HashMap::new(), watch: Vec::new(), applies: HashMap::new(), next_flow: ids }
    }

    fn client(&mut self, h: &crate::model::rack::HostEntry) -> Result<&mut Client, RunError> {
        if !self.clients.contains_key(&h.name) {
            let peers = crate::control::rack_peers(self.rack);
            let (c, hello) = Client::connect_in_rack(&h.name, &h.control_addr, &self.token, &peers, Duration::from_secs(5))?;
            if let Reply::Hello { transports, .. } = hello {
                self.applies.insert(h.name.clone(), transports);
            }
            self.clients.insert(h.name.clone(), c);
        }
        Ok(self.clients.get_mut(&h.name).expect("just inserted"))
    }

    /// Sends `req` to agent `h` and awaits its reply ([`Ctx::await_reply`]).
    fn call(&mut self, h: &crate::model::rack::HostEntry, req: &Request, timeout: Duration) -> Result<Reply, RunError> {
        self.client(h)?.send(req)?;
        self.await_reply(h, timeout)
    }

    /// Waits up to `timeout` for agent `h`'s reply. Whenever the connection stays quiet for
    /// [`fault::HEARTBEAT_S`], probes the measurement's agents ([`fault::first_gone`]) and gives
    /// up naming the first that is gone or does not answer: a dead or stopped agent is found
    /// within about `HEARTBEAT_S + PROBE_TIMEOUT_S` seconds, not at the end of `timeout`.
    fn await_reply(&mut self, h: &crate::model::rack::HostEntry, timeout: Duration) -> Result<Reply, RunError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(Duration::from_secs_f64(fault::HEARTBEAT_S));
            if slice.is_zero() || self.client(h)?.readable(slice) {
                return Ok(self.client(h)?.recv(left.max(Duration::from_millis(1)))?);
            }
            if let Some((host, _, finding)) = fault::first_gone(&self.watch, &self.token) {
                let waited_s = start.elapsed().as_secs_f64();
                return Err(RunError::Unresponsive { host, finding, waiting_on: h.name.clone(), waited_s });
            }
        }
    }

    /// The error for a reply of the wrong kind from agent `h`.
    fn unexpected(&mut self, h: &crate::model::rack::HostEntry, expected: &'static str, got: &Reply) -> RunError {
        match self.client(h) {
            Ok(c) => c.unexpected(expected, got).into(),
            Err(e) => e,
        }
    }

    /// Drops the connections to `hosts` (after a failure: their sessions end, and with them
    /// the flows they held; a later measurement connects afresh).
    fn forget(&mut self, hosts: &[crate::model::rack::HostEntry]) {
        for h in hosts {
            self.clients.remove(&h.name);
        }
    }

    /// Whether `kind` applies on agent `host` (as its hello said).
    fn applicability(&self, host: &str, kind: TransportKind) -> Applicability {
        self.applies.get(host).and_then(|v| v.iter().find(|(k, _)| *k == kind)).map(|(_, a)| a.clone()).unwrap_or(
            Applicability::Waived { reason: format!("agent {host} does not have transport {kind} (an older linkcal build?)") },
        )
    }

    /// Names of the agents contacted so far.
    pub fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.clients.keys().cloned().collect();
        v.sort();
        v
    }
}

struct Flow {
    id: u64,
    transport: TransportKind,
    r: Resolved,
    times: Vec<f64>,
    warmup: u64,
}

/// The id of `exp`'s measurement at `bytes` per flow: `solo/ROUTE/BYTES` or
/// `contended/SET/BYTES` (what `run --resume` matches finished measurements by).
pub fn measurement_id(exp: &Experiment, bytes: u64) -> String {
    match exp.flows.as_slice() {
        [one] => format!("solo/{one}/{bytes}"),
        _ => format!("contended/{}/{bytes}", exp.name),
    }
}

/// Runs one experiment at one payload size. `Ok(Err(waivers))` when the transport is waived
/// on one of its hosts.
pub fn measure(ctx: &mut Ctx, exp: &Experiment, bytes: u64) -> Result<Result<Measurement, Vec<Waiver>>, RunError> {
    let started_at = crate::model::provenance::rfc3339_now();
    let t0 = Instant::now();
    let mut flows = Vec::new();
    for p in &exp.flows {
        let r = resolve(ctx.rack, ctx.rack_path, p)?;
        let id = ctx.next_flow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        flows.push(Flow { id, transport: ctx.opts.transport_of(p.kind), r, times: Vec::new(), warmup: 0 });
    }
    ctx.watch = fault::hosts_of(&flows.iter().map(|f| f.r.clone()).collect::<Vec<_>>());
    let mut waivers = Vec::new();
    for f in &flows {
        for h in [&f.r.src, &f.r.dst] {
            ctx.client(h)?;
            if let Applicability::Waived { reason } = ctx.applicability(&h.name, f.transport) {
                waivers.push(Waiver { probe: f.transport.to_string(), path: Some(f.r.path), reason });
            }
        }
    }
    if !waivers.is_empty() {
        return Ok(Err(waivers));
    }
    let (stop, aggregates, makespans) = match run_flows(ctx, &mut flows, bytes) {
        Ok(r) => r,
        Err(e) => {
            // Closing could wait on the agent that failed: drop the sessions instead.
            let hosts = ctx.watch.clone();
            ctx.forget(&hosts);
            return Err(e);
        }
    };
    close(ctx, &flows)?;
    let contended = flows.len() > 1;
    let flow_results: Vec<FlowResult> =
        flows.iter().map(|f| flow_result(f, bytes, stop)).collect::<Option<_>>().ok_or_else(|| RunError::Agent {
            host: flows[0].r.src.name.clone(),
            message: format!("no transfer finished in {}", exp.name),
        })?;
    let aggregate = contended.then(|| {
        let p50s: Vec<f64> = flow_results.iter().map(|f| f.goodput_Bps.p50).collect();
        let max = p50s.iter().copied().fold(f64::MIN, f64::max);
        let min = p50s.iter().copied().fold(f64::MAX, f64::min);
        stats::summarize_rate(&aggregates).map(|sum| Aggregate {
            goodput_sum_Bps: sum,
            makespan_s: stats::summarize_time(&makespans),
            fairness_max_over_min: (min > 0.0).then(|| max / min),
        })
    });
    Ok(Ok(Measurement {
        id: measurement_id(exp, bytes),
        kind: if contended { MeasurementKind::Contended } else { MeasurementKind::Solo },
        set: contended.then(|| exp.name.clone()),
        transport: transport_names(&flows),
        kv_block_bytes: kv_block(ctx.opts, &flows).map(|b| b.0),
        kv_block_tokens: kv_block(ctx.opts, &flows).and_then(|b| b.1),
        started_at,
        duration_s: t0.elapsed().as_secs_f64(),
        flows: flow_results,
        aggregate: aggregate.flatten(),
    }))
}

/// The KV block (bytes, tokens when known) of a measurement whose flows include a KV engine's.
fn kv_block(o: &RunOptions, flows: &[Flow]) -> Option<(u64, Option<u64>)> {
    flows.iter().any(|f| f.transport.is_kv_engine()).then(|| {
        let bytes = o.nixl.get("block_bytes").and_then(|b| b.as_u64());
        (bytes.unwrap_or(crate::transport::nixl::layout::DEFAULT_BLOCK_BYTES), o.kv_block_tokens)
    })
}

/// The transports of a measurement's flows, e.g. `host_tcp` or `cuda_p2p+gpudirect_rdma`.
fn transport_names(flows: &[Flow]) -> String {
    let mut v: Vec<&str> = flows.iter().map(|f| f.transport.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join("+")
}

fn flow_result(f: &Flow, bytes: u64, stop: StopReason) -> Option<FlowResult> {
    let goodputs: Vec<f64> = f.times.iter().map(|t| bytes as f64 / t).collect();
    Some(FlowResult {
        path: f.r.path,
        segments: f.r.segments.clone(),
        payload_bytes: bytes,
        goodput_Bps: stats::summarize_rate(&goodputs)?,
        transfer_time_s: stats::summarize_time(&f.times)?,
        samples: f.times.len() as u64,
        warmup: f.warmup,
        stop,
        transfer_times_s: f.times.clone(),
    })
}

type Outcome = (StopReason, Vec<f64>, Vec<f64>);

fn run_flows(ctx: &mut Ctx, flows: &mut [Flow], bytes: u64) -> Result<Outcome, RunError> {
    let o = ctx.opts;
    let stall_s = fault::stall_bound_s(bytes, flows.len(), o.timeout_s);
    for f in flows.iter() {
        // Hardware transports name their GPUs and NICs (by bus order) in the flow options.
        let options = match f.transport {
            TransportKind::Nixl => crate::transport::routes::nixl_options(&o.nixl, &f.r.path, &ctx.rack.shape),
            TransportKind::Mooncake => serde_json::json!({"block_bytes": o.nixl.get("block_bytes")}),
            t => crate::transport::routes::flow_options(t, &f.r.path, &ctx.rack.shape),
        };
        let spec = |local: Option<String>| FlowSpec {
            id: f.id,
            transport: f.transport,
            local_addr: local,
            max_bytes: bytes.max(1),
            timeout_s: stall_s,
            options: options.clone(),
            tcp_congestion: ctx.rack.tcp_congestion_control.clone(),
        };
        let endpoint = match ctx.call(&f.r.dst, &Request::Prepare { flow: spec(Some(f.r.dst_addr.clone())) }, setup_timeout(o))? {
            Reply::Ready { endpoint } => endpoint,
            other => return Err(ctx.unexpected(&f.r.dst, "ready", &other)),
        };
        match ctx.call(&f.r.src, &Request::Connect { flow: spec(f.r.src_addr.clone()), endpoint }, setup_timeout(o))? {
            Reply::Connected => {}
            other => return Err(ctx.unexpected(&f.r.src, "connected", &other)),
        }
    }
    let n = flows.len() as f64;
    // A window's reply is due after its own length, one more payload per flow at the stall
    // floor rate, and the agents' stall bound on top (so an agent's own report of a stalled
    // flow, which names what it waited for, comes first).
    let window_timeout = |dur: f64| Duration::from_secs_f64(dur + n * bytes as f64 / fault::STALL_FLOOR_BPS + stall_s);
    if o.warmup > 0 {
        let mut wb = bytes.min(o.warmup_max_bytes).max(1);
        // KV engines move whole KV blocks: warm them up with the payload itself (a multiple of them).
        if flows.iter().any(|f| f.transport.is_kv_engine()) {
            wb = bytes.max(1);
        }
        let windows = flows.iter().map(|f| (f, window(f.id, bytes, o.warmup, wb, 0, 0, 0.0))).collect();
        let res = barrier(ctx, windows, window_timeout(o.warmup as f64 * wb as f64 * n / 1e6))?;
        for f in flows.iter_mut() {
            f.warmup = res.get(&f.id).map(|r| r.warmup_done as u64).unwrap_or(0);
        }
    }
    let start = Instant::now();
    let (mut aggregates, mut makespans) = (Vec::new(), Vec::new());
    // Contended: first a few bursts (every flow sends one payload, released together); their
    // span is the makespan of a round (streaming windows keep the fast flows sending, so their
    // first transfers measure the split, not a burst). The streaming windows give the rates.
    let bursts = if flows.len() > 1 { BURSTS } else { 0 };
    for _ in 0..bursts {
        let windows = flows.iter().map(|f| (f, window(f.id, bytes, 0, 0, 1, 1, 0.0))).collect();
        let res = barrier(ctx, windows, window_timeout(0.0))?;
        let firsts: Vec<(f64, f64)> =
            res.values().filter_map(|r| Some((*r.starts_s.first()?, r.starts_s[0] + r.times_s.first()?))).collect();
        if firsts.len() == flows.len() {
            let first = firsts.iter().map(|x| x.0).fold(f64::MAX, f64::min);
            makespans.push(firsts.iter().map(|x| x.1).fold(f64::MIN, f64::max) - first);
        }
    }
    loop {
        let have = flows.iter().map(|f| f.times.len() as u32).min().unwrap_or(0);
        let left = o.max_samples.saturating_sub(have).max(1);
        let min_count = if flows.len() > 1 { o.contended_min_count.min(left) } else { 1 };
        let windows = flows.iter().map(|f| (f, window(f.id, bytes, 0, 0, min_count, left, o.window_s))).collect();
        let res = barrier(ctx, windows, window_timeout(o.window_s))?;
        let per_flow: Vec<&WindowResult> = flows.iter().filter_map(|f| res.get(&f.id)).collect();
        if let Some((sum, span)) = window_aggregate(&per_flow, bytes) {
            aggregates.push(sum);
            if bursts == 0 {
                makespans.push(span);
            }
        }
        for f in flows.iter_mut() {
            if let Some(r) = res.get(&f.id) {
                f.times.extend(&r.times_s);
            }
        }
        let times: Vec<&[f64]> = flows.iter().map(|f| f.times.as_slice()).collect();
        let sums = if flows.len() > 1 { aggregates.as_slice() } else { &[] };
        if let Some(stop) = o.stop_rule().decide(&times, bytes, sums, start.elapsed().as_secs_f64()) {
            return Ok((stop, aggregates, makespans));
        }
    }
}

/// Burst rounds per contended measurement (each gives one makespan).
const BURSTS: usize = 3;

fn setup_timeout(o: &RunOptions) -> Duration {
    Duration::from_secs_f64(o.timeout_s + 5.0)
}

fn window(
    flow_id: u64,
    bytes: u64,
    warmup: u32,
    warmup_bytes: u64,
    min_count: u32,
    max_count: u32,
    duration_s: f64,
) -> WindowSpec {
    WindowSpec { flow_id, bytes, warmup, warmup_bytes, min_count, max_count, duration_s }
}

/// Arms every sender, releases them together, collects their results by flow id.
fn barrier(ctx: &mut Ctx, windows: Vec<(&Flow, WindowSpec)>, timeout: Duration) -> Result<HashMap<u64, WindowResult>, RunError> {
    let mut by_host: BTreeMap<String, (crate::model::rack::HostEntry, Vec<WindowSpec>)> = BTreeMap::new();
    for (f, w) in windows {
        by_host.entry(f.r.src.name.clone()).or_insert_with(|| (f.r.src.clone(), Vec::new())).1.push(w);
    }
    let setup = setup_timeout(ctx.opts);
    for (h, ws) in by_host.values() {
        match ctx.call(h, &Request::Arm { windows: ws.clone() }, setup)? {
            Reply::Armed => {}
            other => return Err(ctx.unexpected(h, "armed", &other)),
        }
    }
    for (h, _) in by_host.values() {
        ctx.client(h)?.send(&Request::Go)?;
    }
    let mut out = HashMap::new();
    let deadline = Instant::now() + timeout;
    for (h, _) in by_host.values() {
        let left = deadline.saturating_duration_since(Instant::now());
        let reply = ctx.await_reply(h, left).map_err(|e| match e {
            RunError::Control(source) => RunError::DataPlane { source },
            e => e,
        })?;
        match reply {
            Reply::Done { results } => out.extend(results.into_iter().map(|r| (r.flow_id, r))),
            other => return Err(ctx.unexpected(h, "done", &other)),
        }
    }
    align(&mut out);
    Ok(out)
}

fn close(ctx: &mut Ctx, flows: &[Flow]) -> Result<(), RunError> {
    let mut first = None;
    let t = setup_timeout(ctx.opts);
    for f in flows {
        for h in [&f.r.src, &f.r.dst] {
            let r = ctx.call(h, &Request::Close { flow_id: f.id }, t);
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
