//! One coordinator connection: the handshake under a deadline, then the session's requests,
//! each checked against the agent's limits and the rack's peer list before anything is
//! allocated or connected.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{AgentConfig, Slot};
use crate::control::auth::{self, Role};
use crate::control::refusal::Refusal;
use crate::control::{self, Reply, Request, WindowResult, WindowSpec, MAX_PEERS, MAX_REPLY, MAX_REQUEST, PROTOCOL_VERSION};
use crate::transport::{ReceiverStats, Sender, TransportError, TransportKind};

/// Write timeout of an authenticated session's replies.
const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the handshake of one accepted connection (holding a pending slot), then its session.
pub(super) fn serve_connection(cfg: &AgentConfig, stream: TcpStream, pending: Slot, sessions: &Arc<AtomicUsize>) {
    let mut s = Session::new(cfg, stream);
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.handshake_s);
    let authenticated = s.handshake(deadline);
    drop(pending);
    match authenticated {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            eprintln!("linkcal agent {}: handshake ended: {e}", cfg.name);
            return;
        }
    }
    let Some(_session) = Slot::take(sessions, cfg.max_sessions) else {
        let message = format!("agent {}: {} sessions already open; try again later", cfg.name, cfg.max_sessions);
        let _ = s.reply(&Reply::Error { message });
        return;
    };
    if let Err(e) = s.run() {
        eprintln!("linkcal agent {}: session ended: {e}", cfg.name);
    }
}

type ReceiverThread = JoinHandle<Result<ReceiverStats, TransportError>>;

/// One coordinator connection and the flows it set up.
struct Session<'a> {
    cfg: &'a AgentConfig,
    stream: TcpStream,
    /// Data-plane addresses `connect` may reach (from the coordinator's `peers`).
    peers: HashSet<IpAddr>,
    senders: HashMap<u64, Box<dyn Sender>>,
    receivers: HashMap<u64, ReceiverThread>,
    /// `max_bytes` of every open flow end, for the session's memory bound.
    open: HashMap<(u64, bool), u64>,
    armed: Vec<WindowSpec>,
}

impl<'a> Session<'a> {
    fn new(cfg: &'a AgentConfig, stream: TcpStream) -> Session<'a> {
        Session {
            cfg,
            stream,
            peers: HashSet::new(),
            senders: HashMap::new(),
            receivers: HashMap::new(),
            open: HashMap::new(),
            armed: Vec::new(),
        }
    }

    /// The handshake, all of it by `deadline`. `Ok(false)`: refused (the peer was told why)
    /// or closed.
    fn handshake(&mut self, deadline: Instant) -> std::io::Result<bool> {
        let _ = self.stream.set_nodelay(true);
        let name = self.cfg.name.clone();
        let refuse = |s: &mut Self, why: String| s.reply_by(&Reply::Error { message: format!("agent {name}: {why}") }, deadline);
        let (expected, client_nonce) = match self.read_by(deadline)? {
            Some(Ok(Request::Hello { version, .. })) if version != PROTOCOL_VERSION => {
                refuse(self, Refusal::Version(u64::from(version)).to_string())?;
                return Ok(false);
            }
            Some(Ok(Request::Hello { agent, client_nonce, .. })) => (agent, client_nonce),
            Some(Ok(_)) => return refuse(self, "the first message must be hello".into()).map(|_| false),
            Some(Err(why)) => return refuse(self, why.to_string()).map(|_| false),
            None => return Ok(false),
        };
        if expected != self.cfg.name {
            refuse(self, format!("the coordinator expects '{expected}' at this address: fix control_addr in the rack file"))?;
            return Ok(false);
        }
        if !auth::nonce_ok(&client_nonce) {
            return refuse(self, "malformed client nonce".into()).map(|_| false);
        }
        let nonce = auth::random_hex(auth::NONCE_BYTES)?;
        self.reply_by(&Reply::Challenge { agent: name.clone(), version: PROTOCOL_VERSION, nonce: nonce.clone() }, deadline)?;
        let good = match self.read_by(deadline)? {
            Some(Ok(Request::Auth { mac })) => {
                auth::mac_matches(&self.cfg.token, Role::Client, &nonce, &client_nonce, &name, &mac)
            }
            Some(_) => false,
            None => return Ok(false),
        };
        if !good {
            return refuse(self, "authentication failed (the coordinator's token differs from this agent's)".into())
                .map(|_| false);
        }
        let transports = TransportKind::ALL.iter().map(|k| (*k, k.instance().applicability())).collect();
        let proof = auth::mac(&self.cfg.token, Role::Agent, &nonce, &client_nonce, &name);
        let hello = Reply::Hello { agent: name, version: PROTOCOL_VERSION, transports, limits: self.cfg.limits, proof };
        self.reply_by(&hello, deadline)?;
        Ok(true)
    }

    /// Serves requests until the coordinator closes the connection.
    fn run(mut self) -> std::io::Result<()> {
        self.stream.set_write_timeout(Some(REPLY_WRITE_TIMEOUT))?;
        loop {
            let req = match control::recv_frame(&mut self.stream, MAX_REQUEST, None) {
                Ok(f) => control::decode_request(f).map_err(std::io::Error::other)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            let reply = self.handle(req);
            self.reply(&reply)?;
        }
    }

    /// The next handshake message by `deadline`: `None` when the peer closed, `Some(Err)` when
    /// it sent something that is not a request.
    fn read_by(&mut self, deadline: Instant) -> std::io::Result<Option<Result<Request, Refusal>>> {
        match control::recv_frame_by(&mut self.stream, MAX_REQUEST, deadline) {
            Ok(f) => Ok(Some(control::decode_request(f))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn reply_by(&mut self, r: &Reply, deadline: Instant) -> std::io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_write_timeout(Some(left))?;
        self.reply(r)
    }

    fn reply(&mut self, r: &Reply) -> std::io::Result<()> {
        control::send(&mut self.stream, r, MAX_REPLY)
    }

    fn handle(&mut self, req: Request) -> Reply {
        let name = self.cfg.name.clone();
        let err = move |e: String| Reply::Error { message: format!("agent {name}: {e}") };
        match req {
            Request::Hello { .. } | Request::Auth { .. } => err("already authenticated".into()),
            Request::Peers { addrs } if addrs.len() > MAX_PEERS => {
                err(Refusal::TooManyPeers { count: addrs.len(), max: MAX_PEERS }.to_string())
            }
            Request::Peers { addrs } => {
                self.peers = addrs.into_iter().collect();
                Reply::PeersSet { count: self.peers.len() }
            }
            Request::Prepare { flow } => match self.admit(&flow, false) {
                Err(e) => err(e.to_string()),
                Ok(()) => match flow.transport.instance().prepare_receiver(&flow) {
                    Ok(p) => {
                        let receiver = p.receiver;
                        self.receivers.insert(flow.id, std::thread::spawn(move || receiver.serve()));
                        self.open.insert((flow.id, false), flow.max_bytes);
                        Reply::Ready { endpoint: p.endpoint }
                    }
                    Err(e) => err(e.to_string()),
                },
            },
            Request::Connect { flow, endpoint } => {
                match self.admit(&flow, true).and_then(|()| self.target_allowed(&flow, &endpoint)) {
                    Err(e) => err(e.to_string()),
                    Ok(()) => match flow.transport.instance().connect_sender(&flow, &endpoint) {
                        Ok(s) => {
                            self.senders.insert(flow.id, s);
                            self.open.insert((flow.id, true), flow.max_bytes);
                            Reply::Connected
                        }
                        Err(e) => err(e.to_string()),
                    },
                }
            }
            Request::Arm { windows } => match self.check_windows(&windows) {
                Err(e) => err(e.to_string()),
                Ok(()) => {
                    self.armed = windows;
                    Reply::Armed
                }
            },
            Request::Go => match self.go() {
                Ok(results) => Reply::Done { results },
                Err(e) => err(e.to_string()),
            },
            Request::Describe => {
                Reply::Described { description: Box::new(crate::control::describe::HostDescription::local(&self.cfg.name)) }
            }
            Request::Close { flow_id } => match self.close(flow_id) {
                Ok(()) => Reply::Closed,
                Err(e) => err(e.to_string()),
            },
        }
    }

    /// Whether a new flow end fits the limits: its own bounds, a free id, the session's flow
    /// count and memory budget.
    fn admit(&self, flow: &crate::transport::FlowSpec, sender: bool) -> Result<(), Refusal> {
        let (l, id) = (&self.cfg.limits, flow.id);
        l.check_flow(flow)?;
        if self.open.contains_key(&(id, sender)) {
            return Err(Refusal::FlowOpen(id));
        }
        if self.open.len() >= l.max_flows as usize {
            return Err(Refusal::TooManyFlows { id, open: self.open.len() });
        }
        let open: u64 = self.open.values().sum();
        if open.saturating_add(flow.max_bytes) > l.max_open_bytes {
            return Err(Refusal::OverBudget { id, bytes: flow.max_bytes, open, limit: l.max_open_bytes });
        }
        Ok(())
    }

    /// A networked transport's sender may connect only to a rack peer's data address.
    fn target_allowed(&self, flow: &crate::transport::FlowSpec, endpoint: &serde_json::Value) -> Result<(), Refusal> {
        if !flow.transport.is_networked() {
            return Ok(());
        }
        let id = flow.id;
        let addr: SocketAddr =
            crate::transport::net::endpoint_addr(endpoint).ok_or_else(|| Refusal::Endpoint { id, endpoint: endpoint.clone() })?;
        if !self.peers.contains(&addr.ip()) {
            return Err(Refusal::NotPeer { id, addr, known: self.peers.len() });
        }
        Ok(())
    }

    fn check_windows(&self, windows: &[WindowSpec]) -> Result<(), Refusal> {
        let mut seen = HashSet::new();
        for w in windows {
            if !self.senders.contains_key(&w.flow_id) {
                return Err(Refusal::NotConnected(w.flow_id));
            }
            if !seen.insert(w.flow_id) {
                return Err(Refusal::TwoWindows(w.flow_id));
            }
            self.cfg.limits.check_window(w)?;
        }
        Ok(())
    }

    fn go(&mut self) -> Result<Vec<WindowResult>, TransportError> {
        let t0 = Instant::now();
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
        let windows = std::mem::take(&mut self.armed);
        let mut threads = Vec::new();
        for w in windows {
            let sender =
                self.senders.remove(&w.flow_id).ok_or_else(|| TransportError::protocol(w.flow_id, "go: flow not armed"))?;
            threads.push(std::thread::spawn(move || crate::transport::window::run_window(sender, w, t0, epoch)));
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for t in threads {
            let (id, sender, result) = t.join().map_err(|_| TransportError::protocol(0, "window thread panicked"))?;
            match result {
                Ok(r) => {
                    self.senders.insert(id, sender);
                    out.push(r);
                }
                Err(e) => {
                    self.open.remove(&(id, true));
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn close(&mut self, flow_id: u64) -> Result<(), TransportError> {
        self.open.remove(&(flow_id, true));
        self.open.remove(&(flow_id, false));
        if let Some(s) = self.senders.remove(&flow_id) {
            s.finish()?;
        }
        if let Some(h) = self.receivers.remove(&flow_id) {
            h.join().map_err(|_| TransportError::protocol(flow_id, "receiver thread panicked"))??;
        }
        Ok(())
    }
}
