//! One measurement through the agents: the agents' [`FlowDriver`] (flows set up over the
//! control plane, barrier-started windows) under the one measurement loop ([`engine`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::control::{Client, Reply, Request, WindowResult, WindowSpec};
use crate::model::results::{Measurement, Waiver};
use crate::spec::Experiment;
use crate::transport::{Applicability, FlowSpec, TransportKind};

pub use super::aggregate::{align, window_aggregate};
use super::engine::{self, EngineOptions, FlowDriver, Label, SystemClock, Window};
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
        self.await_reply_by(h, start, start + timeout)
    }

    /// Awaits agent `h`'s reply to a request sent at `start`, until `deadline`.
    fn await_reply_by(
        &mut self,
        h: &crate::model::rack::HostEntry,
        start: Instant,
        deadline: Instant,
    ) -> Result<Reply, RunError> {
        let timeout = deadline.saturating_duration_since(start);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(Duration::from_secs_f64(fault::HEARTBEAT_S));
            // Past the deadline a reply already waiting still counts (a barrier's later hosts
            // share the deadline of the first); with none, say the whole time waited (a recv
            // of the 1 ms left would report "no reply within 0.0 s").
            if slice.is_zero() && !self.client(h)?.readable(Duration::from_millis(1)) {
                return Err(crate::control::ControlError::Io {
                    host: h.name.clone(),
                    what: format!("no reply within {:.1} s", timeout.as_secs_f64()),
                    source: std::io::ErrorKind::TimedOut.into(),
                }
                .into());
            }
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
}

/// The id of `exp`'s measurement at `bytes` per flow: `solo/ROUTE/BYTES` or
/// `contended/SET/BYTES` (what `run --resume` matches finished measurements by).
pub fn measurement_id(exp: &Experiment, bytes: u64) -> String {
    match exp.flows.as_slice() {
        [one] => format!("solo/{one}/{bytes}"),
        _ => format!("contended/{}/{bytes}", exp.name),
    }
}

impl RunOptions {
    /// The measurement loop's options: the stop rule, warmup, windows, and burst rounds for
    /// the makespans of contended sets.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            stop: self.stop_rule(),
            warmup: self.warmup,
            warmup_max_bytes: self.warmup_max_bytes,
            warmup_full: false,
            window_s: self.window_s,
            contended_min_count: self.contended_min_count,
            bursts: BURSTS,
        }
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
        flows.push(Flow { id, transport: ctx.opts.transport_of(p.kind), r });
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
    let mut o = ctx.opts.engine();
    // KV engines move whole KV blocks: warm them up with the payload itself (a multiple of them).
    o.warmup_full = flows.iter().any(|f| f.transport.is_kv_engine());
    let kv = kv_block(ctx.opts, &flows);
    let mut driver = Agents { ctx, flows: &flows, stall_s: 0.0 };
    let out = engine::measure(&mut driver, &o, bytes, &SystemClock::new())?;
    let label = Label {
        id: measurement_id(exp, bytes),
        set: (flows.len() > 1).then(|| exp.name.clone()),
        transport: transport_names(&flows),
        kv_block: kv,
        started_at,
        duration_s: t0.elapsed().as_secs_f64(),
    };
    let routes: Vec<_> = flows.iter().map(|f| (f.r.path, f.r.segments.clone())).collect();
    engine::measurement(label, &routes, bytes, &out).map(Ok).ok_or_else(|| RunError::Agent {
        host: flows[0].r.src.name.clone(),
        message: format!("no transfer finished in {}", exp.name),
    })
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

/// The agents' flow driver: flows set up over the control plane, windows armed on every
/// sender's agent and released together ([`barrier`]), results put on one time line.
struct Agents<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    flows: &'c [Flow],
    /// The agents' stall bound of this measurement, seconds.
    stall_s: f64,
}

impl FlowDriver for Agents<'_, '_> {
    type Error = RunError;

    fn flows(&self) -> usize {
        self.flows.len()
    }

    fn open(&mut self, bytes: u64) -> Result<(), RunError> {
        let o = self.ctx.opts;
        let ctx = &mut *self.ctx;
        self.stall_s = fault::stall_bound_s(bytes, self.flows.len(), o.timeout_s);
        for f in self.flows {
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
                timeout_s: self.stall_s,
                options: options.clone(),
                tcp_congestion: ctx.rack.tcp_congestion_control.clone(),
            };
            let endpoint =
                match ctx.call(&f.r.dst, &Request::Prepare { flow: spec(Some(f.r.dst_addr.clone())) }, setup_timeout(o))? {
                    Reply::Ready { endpoint } => endpoint,
                    other => return Err(ctx.unexpected(&f.r.dst, "ready", &other)),
                };
            match ctx.call(&f.r.src, &Request::Connect { flow: spec(f.r.src_addr.clone()), endpoint }, setup_timeout(o))? {
                Reply::Connected => {}
                other => return Err(ctx.unexpected(&f.r.src, "connected", &other)),
            }
        }
        Ok(())
    }

    /// A window's reply is due after its own length (its warmup at 1 MB/s per flow), one more
    /// payload per flow at the stall floor rate, and the agents' stall bound on top (so an
    /// agent's own report of a stalled flow, which names what it waited for, comes first).
    fn window(&mut self, w: &Window) -> Result<Vec<WindowResult>, RunError> {
        let n = self.flows.len() as f64;
        let dur = if w.warmup > 0 { f64::from(w.warmup) * w.warmup_bytes as f64 * n / 1e6 } else { w.duration_s };
        let timeout = Duration::from_secs_f64(dur + n * w.bytes as f64 / fault::STALL_FLOOR_BPS + self.stall_s);
        let windows = self.flows.iter().map(|f| (f, w.of_flow(f.id))).collect();
        let mut res = barrier(self.ctx, windows, timeout)?;
        Ok(self.flows.iter().map(|f| res.remove(&f.id).unwrap_or_else(|| WindowResult::empty(f.id))).collect())
    }

    fn close(&mut self) -> Result<(), RunError> {
        close(self.ctx, self.flows)
    }

    fn abort(&mut self) {
        // Closing could wait on the agent that failed: drop the sessions instead.
        let hosts = self.ctx.watch.clone();
        self.ctx.forget(&hosts);
    }
}

/// Burst rounds per contended measurement (each gives one makespan).
const BURSTS: u32 = 3;

fn setup_timeout(o: &RunOptions) -> Duration {
    Duration::from_secs_f64(o.timeout_s + 5.0)
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
    let start = Instant::now();
    let deadline = start + timeout;
    for (h, _) in by_host.values() {
        let reply = ctx.await_reply_by(h, start, deadline).map_err(|e| match e {
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
