//! Faults during a run: an agent that died or stopped answering, and a flow that stopped
//! moving data. When a measurement fails, [`diagnose`] asks every agent the measurement used
//! to prove it is alive (a fresh control handshake, [`PROBE_TIMEOUT_S`]) and names the one that
//! is gone, with the routes and segment hops its flows were on. The run then skips what needs
//! that host (or, when every agent answers, those hops) and goes on ([`Blocked`]).
//!
//! Bounds, all in seconds:
//! - a quiet control connection is checked every [`HEARTBEAT_S`]: a dead or stopped agent is
//!   named within about `HEARTBEAT_S + PROBE_TIMEOUT_S` whatever the run was waiting for;
//! - a flow's data plane gives up after [`stall_bound_s`] without progress (the flow's
//!   `timeout_s`), so a link that stops carrying data is reported long before `--timeout`
//!   where the payload is small.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::control::{Client, ControlError};
use crate::error::Classified;
use crate::model::rack::HostEntry;
use crate::spec::{Hop, PathRef, SegmentId};

use super::resolve::Resolved;
use super::waves::Footprint;
use super::RunError;

/// How long a live agent may take to answer a probe (a new control connection and its
/// two-round-trip handshake), seconds. A live agent answers in milliseconds even while its
/// flows run (every session has its own thread); 2 s leaves room for a loaded management
/// network and host, and is well under the agent's own handshake deadline (5 s).
pub const PROBE_TIMEOUT_S: f64 = 2.0;
/// A control connection quiet this long while a reply is awaited makes the coordinator probe
/// the measurement's agents, seconds. Replies of a healthy run come every window
/// (0.15-0.25 s) or setup step (milliseconds), so 1 s of silence is worth a check; a probe costs
/// each agent one short-lived connection.
pub const HEARTBEAT_S: f64 = 1.0;
/// Slowest data rate a flow may run at before it counts as stalled, bytes per second: 1 MB/s,
/// 25x below the slowest link the emulated rack shapes (25 MB/s Ethernet) and about 1000x
/// below hardware links, shared by every flow of a contended set.
pub const STALL_FLOOR_BPS: f64 = 1e6;
/// Time a flow may spend on one blocking wait besides moving its payload, seconds: connection
/// setup and transport start-up (CUDA or UCX initialisation take up to a few seconds).
pub const STALL_MARGIN_S: f64 = 5.0;

/// How long a flow's data plane may wait without progress (the `timeout_s` each blocking wait
/// of a transfer gets), seconds: one payload of `bytes` for each of the `flows` sharing the
/// links, moved at [`STALL_FLOOR_BPS`], plus [`STALL_MARGIN_S`]; capped by `timeout_s` (the
/// run's data-plane timeout). 64 KiB solo: 5.07 s; 16 MiB solo: 21.8 s; above that, the cap.
pub fn stall_bound_s(bytes: u64, flows: usize, timeout_s: f64) -> f64 {
    let moving = bytes as f64 * flows.max(1) as f64 / STALL_FLOOR_BPS;
    (STALL_MARGIN_S + moving).min(timeout_s)
}

/// What became of a measurement's agent or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The agent is not there: its control address refuses or drops connections.
    AgentGone,
    /// The agent accepts connections but does not answer (stopped, hung or overloaded).
    AgentUnresponsive,
    /// Every agent answers, but a flow stopped moving data (or broke) on its hops.
    Route,
}

/// One route a fault hit: the route, its two agents and the segment hops it crosses.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRoute {
    /// Route kind, source and destination.
    pub path: PathRef,
    /// Sending agent.
    pub src: String,
    /// Receiving agent.
    pub dst: String,
    /// Segment traversals, in order.
    pub hops: Vec<Hop>,
}

impl std::fmt::Display for FaultRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hops: Vec<String> = self.hops.iter().map(Hop::to_string).collect();
        write!(f, "{} ({}->{}) over [{}]", self.path, self.src, self.dst, hops.join(", "))
    }
}

/// A measurement lost an agent or a route. Names the host (when one is gone), the routes with
/// their hops, what the run saw, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// The agent at fault (None for [`FaultKind::Route`]).
    pub host: Option<String>,
    /// What the probe found, e.g. `refuses control connections (Connection refused)`.
    pub finding: String,
    /// The measurement's routes that needed the host (or stalled).
    pub routes: Vec<FaultRoute>,
    /// The error the run saw first (it may name the live peer that noticed).
    pub cause: String,
    /// What a check of the rack's links found on the routes' hops (a link down, routes
    /// missing: [`crate::runner::RunOptions::link_check`]); empty when none was made or it
    /// found nothing.
    pub links: Vec<String>,
}

impl Fault {
    fn describe(&self) -> String {
        let routes: Vec<String> = self.routes.iter().map(FaultRoute::to_string).collect();
        let routes = routes.join("; ");
        match (&self.kind, &self.host) {
            (FaultKind::Route, _) | (_, None) => format!(
                "route {routes} stopped moving data while every agent answers ({}){}; check the links of those hops, then `linkcal run --resume` measures what was skipped",
                self.cause,
                self.links_said()
            ),
            (kind, Some(h)) => format!(
                "agent {h} is {} ({}): route {routes} needed it (the run saw: {}); restart the agent on {h}, then `linkcal run --resume` measures what was skipped",
                state(*kind),
                self.finding,
                self.cause
            ),
        }
    }

    /// One line for each skipped measurement: the host and its state, or the stalled
    /// route's hops.
    pub fn summary(&self) -> String {
        let routes: Vec<String> = self.routes.iter().map(FaultRoute::to_string).collect();
        match &self.host {
            Some(h) if self.kind != FaultKind::Route => {
                format!("agent {h} is {} (found on route {})", state(self.kind), routes.join("; "))
            }
            _ => format!("route {} stopped moving data{}", routes.join("; "), self.links_said()),
        }
    }

    /// `; LINK FINDING; ...` for the links found wrong, or nothing.
    fn links_said(&self) -> String {
        self.links.iter().map(|l| format!("; {l}")).collect()
    }

    /// The segments of the fault's routes.
    pub fn segments(&self) -> BTreeSet<SegmentId> {
        self.routes.iter().flat_map(|r| r.hops.iter().map(|h| h.id)).collect()
    }
}

fn state(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::AgentGone => "gone",
        FaultKind::AgentUnresponsive => "not answering",
        FaultKind::Route => "answering",
    }
}

/// Whether an agent answered a probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// It completed a handshake (or answered with an error: alive, only not as expected).
    Alive,
    /// It is gone or does not answer: the kind and what was seen.
    Gone(FaultKind, String),
}

/// Opens a fresh control connection to `host` and completes the handshake within
/// [`PROBE_TIMEOUT_S`].
pub fn probe(host: &HostEntry, token: &str) -> Liveness {
    match Client::connect(&host.name, &host.control_addr, token, Duration::from_secs_f64(PROBE_TIMEOUT_S)) {
        Ok(_) => Liveness::Alive,
        Err(ControlError::Connect { source, .. }) => Liveness::Gone(
            if is_timeout(&source) { FaultKind::AgentUnresponsive } else { FaultKind::AgentGone },
            format!("its control address {} refuses connections: {source}", host.control_addr),
        ),
        Err(ControlError::Io { source, .. }) if is_timeout(&source) => Liveness::Gone(
            FaultKind::AgentUnresponsive,
            format!(
                "it accepts connections at {} but did not answer a handshake within {PROBE_TIMEOUT_S} s: stopped (SIGSTOP), hung or overloaded",
                host.control_addr
            ),
        ),
        Err(ControlError::Io { source, what, .. }) => Liveness::Gone(
            FaultKind::AgentGone,
            format!("its control address {} drops connections ({what}: {source})", host.control_addr),
        ),
        Err(_) => Liveness::Alive,
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

/// Probes `hosts` at the same time; returns the first (in order) that is gone.
pub fn first_gone(hosts: &[HostEntry], token: &str) -> Option<(String, FaultKind, String)> {
    let found: Vec<Liveness> = std::thread::scope(|s| {
        let probes: Vec<_> = hosts.iter().map(|h| s.spawn(move || probe(h, token))).collect();
        probes.into_iter().map(|p| p.join().unwrap_or(Liveness::Alive)).collect()
    });
    hosts.iter().zip(found).find_map(|(h, l)| match l {
        Liveness::Gone(kind, why) => Some((h.name.clone(), kind, why)),
        Liveness::Alive => None,
    })
}

/// The distinct agents of `flows`, senders and receivers, in order.
pub fn hosts_of(flows: &[Resolved]) -> Vec<HostEntry> {
    let mut seen = BTreeSet::new();
    flows.iter().flat_map(|r| [&r.src, &r.dst]).filter(|h| seen.insert(h.name.clone())).cloned().collect()
}

/// Turns a failed measurement's error into a [`Fault`] when it is one: an agent of the
/// measurement is gone or does not answer (named by the heartbeat or by probing them all now),
/// or every agent answers but a flow broke or stalled while moving data. Other errors (bad
/// input, a transport that cannot start, a run directory that cannot be written) come back as
/// they were: they end the run.
pub fn diagnose(err: RunError, flows: &[Resolved], token: &str) -> Result<Fault, RunError> {
    if err.is_bad_input() || matches!(err, RunError::RunDir(_) | RunError::Netns(_)) {
        return Err(err);
    }
    let (cause, gone) = match &err {
        RunError::Unresponsive { host, finding, waiting_on, waited_s } => (
            format!("no reply from agent {waiting_on} for {waited_s:.1} s"),
            Some((host.clone(), FaultKind::AgentUnresponsive, finding.clone())),
        ),
        _ => (err.to_string(), first_gone(&hosts_of(flows), token)),
    };
    if let Some((host, kind, finding)) = gone {
        let routes = flows.iter().filter(|r| r.src.name == host || r.dst.name == host).map(route).collect();
        return Ok(Fault { kind, host: Some(host), finding, routes, cause, links: Vec::new() });
    }
    if !err.in_data_plane() {
        return Err(err);
    }
    let at = err.host().map(str::to_string);
    let mut routes: Vec<FaultRoute> =
        flows.iter().filter(|r| at.as_deref().is_some_and(|h| r.src.name == h || r.dst.name == h)).map(route).collect();
    if routes.is_empty() {
        routes = flows.iter().map(route).collect();
    }
    Ok(Fault { kind: FaultKind::Route, host: None, finding: "every agent answers".into(), routes, cause, links: Vec::new() })
}

fn route(r: &Resolved) -> FaultRoute {
    FaultRoute { path: r.path, src: r.src.name.clone(), dst: r.dst.name.clone(), hops: r.segments.clone() }
}

/// What earlier faults rule out for the rest of a run: hosts that are gone and segments that
/// stalled, each with the fault that found it.
#[derive(Debug, Default)]
pub struct Blocked {
    hosts: BTreeMap<String, String>,
    segments: BTreeMap<SegmentId, String>,
}

impl Blocked {
    /// Records a fault: its host when one is gone, else its routes' segments.
    pub fn add(&mut self, f: &Fault) {
        match &f.host {
            Some(h) => {
                self.hosts.entry(h.clone()).or_insert_with(|| f.summary());
            }
            None => {
                for s in f.segments() {
                    self.segments.entry(s).or_insert_with(|| f.summary());
                }
            }
        }
    }

    /// Why an experiment of footprint `fp` cannot run: (the gone host, if that is why; reason).
    pub fn blocks(&self, fp: &Footprint) -> Option<(Option<String>, String)> {
        if let Some((h, why)) = self.hosts.iter().find(|(h, _)| fp.hosts.contains(*h)) {
            return Some((Some(h.clone()), format!("needs agent {h}: {why}")));
        }
        self.segments.iter().find(|(s, _)| fp.segments.contains(*s)).map(|(s, why)| (None, format!("crosses segment {s}: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_bound_follows_the_payload_and_the_cap() {
        assert!((stall_bound_s(64 << 10, 1, 30.0) - (STALL_MARGIN_S + 65536.0 / STALL_FLOOR_BPS)).abs() < 1e-9);
        let two = stall_bound_s(1 << 20, 2, 30.0);
        assert!((two - (STALL_MARGIN_S + 2.0 * 1048576.0 / STALL_FLOOR_BPS)).abs() < 1e-9, "{two}");
        assert_eq!(stall_bound_s(64 << 20, 1, 30.0), 30.0);
        assert_eq!(stall_bound_s(0, 0, 1.0), 1.0);
    }

    #[test]
    fn faults_block_their_host_or_their_hops_for_the_rest_of_the_run() {
        let hop = |s: &str| s.parse::<Hop>().unwrap();
        let path = PathRef { kind: crate::spec::RouteKind::PrefillToDecode, src: 0, dst: 1 };
        let route = FaultRoute {
            path,
            src: "gpu_p0".into(),
            dst: "gpu_d1".into(),
            hops: vec![hop("GPU_P[0]_PCI up"), hop("IB_Cable_D[1] down")],
        };
        let fp = |hosts: &[&str], segs: &[&str]| Footprint {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            segments: segs.iter().map(|s| hop(&format!("{s} up")).id).collect(),
        };
        let gone = Fault {
            kind: FaultKind::AgentGone,
            host: Some("gpu_d1".into()),
            finding: "refuses connections".into(),
            routes: vec![route.clone()],
            cause: "agent gpu_p0: send: Connection reset by peer".into(),
            links: Vec::new(),
        };
        let text = gone.to_string();
        assert!(text.starts_with("agent gpu_d1 is gone (refuses connections): route prefill_to_decode:0->1 (gpu_p0->gpu_d1) over [GPU_P[0]_PCI up, IB_Cable_D[1] down]"), "{text}");
        let mut b = Blocked::default();
        b.add(&gone);
        let (host, why) = b.blocks(&fp(&["gpu_p1", "gpu_d1"], &[])).unwrap();
        assert_eq!(host.as_deref(), Some("gpu_d1"));
        assert!(why.contains("gpu_d1 is gone"), "{why}");
        // A host-level fault leaves the hops to other hosts alone.
        assert_eq!(b.blocks(&fp(&["gpu_p0", "gpu_d0"], &["GPU_P[0]_PCI"])), None);
        // A stalled route (every agent answers) blocks what crosses its hops.
        let stalled = Fault {
            kind: FaultKind::Route,
            host: None,
            finding: String::new(),
            routes: vec![route],
            cause: "timed out".into(),
            links: Vec::new(),
        };
        assert!(stalled.to_string().contains("stopped moving data while every agent answers"), "{stalled}");
        let mut b = Blocked::default();
        b.add(&stalled);
        let (host, why) = b.blocks(&fp(&["gpu_p0", "gpu_d0"], &["GPU_P[0]_PCI"])).unwrap();
        assert!(host.is_none() && why.contains("GPU_P[0]_PCI"), "{why}");
        assert_eq!(b.blocks(&fp(&["gpu_p1", "gpu_d0"], &["GPU_P[1]_PCI"])), None);
    }

    #[test]
    fn a_closed_port_is_gone_and_a_silent_listener_does_not_answer() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let host = |a: &str| HostEntry {
            name: "gpu_d1".into(),
            role: crate::model::rack::HostRole::DecodeGpu,
            index: 1,
            control_addr: a.into(),
            data_addr: "127.0.0.1".into(),
            netns: None,
        };
        match probe(&host(&addr), "t") {
            Liveness::Gone(FaultKind::AgentGone, why) => assert!(why.contains(&addr), "{why}"),
            other => panic!("{other:?}"),
        }
        // Accepts (the kernel's backlog) but never answers: what a stopped agent looks like.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let t = std::time::Instant::now();
        let (name, kind, why) = first_gone(&[host(&addr)], "t").unwrap();
        assert_eq!((name.as_str(), kind), ("gpu_d1", FaultKind::AgentUnresponsive), "{why}");
        assert!(t.elapsed().as_secs_f64() < PROBE_TIMEOUT_S + 1.0, "{:?}", t.elapsed());
    }
}
