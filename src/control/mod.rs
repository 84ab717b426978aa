//! The control plane between the coordinator (`linkcal run`) and the agents: typed, versioned
//! messages as length-prefixed JSON over TCP on the management network, separate from the data
//! plane. Every message has a size bound and every wait a timeout.
//!
//! # Handshake (protocol 2)
//! 1. coordinator -> `hello {version, agent, client_nonce}`: the agent name the rack file
//!    expects at this address and a fresh random nonce;
//! 2. agent -> `challenge {agent, version, nonce}`: its own name and a fresh nonce of its own
//!    (an agent of another name refuses with an error naming both);
//! 3. coordinator -> `auth {mac}`: HMAC-SHA256 of the token over both nonces and the agent's
//!    name (see [`auth`]); the token itself never travels;
//! 4. agent -> `hello {agent, version, transports, limits, proof}`: the agent's own MAC, which
//!    the coordinator checks, and the [`AgentLimits`] it enforces;
//! 5. coordinator -> `peers {addrs}`: the rack's data-plane addresses; the agent connects flows
//!    only to those (answer `peers_set`).
//!
//! The agent gives the whole handshake [`HELLO_TIMEOUT_S`] (a deadline, not a per-read
//! timeout) and serves a bounded number of unauthenticated connections at once.

pub mod auth;
pub mod describe;
pub mod limits;
pub mod netns;
pub mod refusal;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

/// A window's spec and result travel in `arm` and `done`; they are the data plane's ([`crate::transport::window`]).
pub use crate::transport::window::{WindowResult, WindowSpec};
pub use auth::read_token;
pub use limits::AgentLimits;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::transport::{Applicability, FlowSpec, TransportKind};

/// Protocol version; a peer with another version is refused with a message saying so.
/// 2: challenge-response authentication (no token on the wire), agent name bound into the
/// handshake, stated limits, the rack's peer list.
pub const PROTOCOL_VERSION: u32 = 2;
/// Largest request, bytes.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest reply (per-transfer timings of a window), bytes.
pub const MAX_REPLY: usize = 32 << 20;
/// How long the whole handshake may take on the agent, seconds (a deadline from accept).
pub const HELLO_TIMEOUT_S: f64 = 5.0;
/// Most data-plane peer addresses in a `peers` message.
pub const MAX_PEERS: usize = 4096;

/// Control-plane failures; each names the host.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting failed.
    #[error(
        "agent {host} at {addr}: cannot connect: {source} (is the agent running? on the emulated rack: `linkcal emulate status`)"
    )]
    Connect {
        /// Agent name.
        host: String,
        /// Its control address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection broke or a wait ran out.
    #[error("agent {host}: {what}: {source}")]
    Io {
        /// Agent name.
        host: String,
        /// What was being done.
        what: String,
        /// The OS error (TimedOut / WouldBlock for timeouts, UnexpectedEof when it died).
        source: std::io::Error,
    },
    /// A message exceeded its size bound.
    #[error("agent {host}: message of {size} bytes exceeds the bound of {max} bytes")]
    TooLarge {
        /// Agent name.
        host: String,
        /// Announced size.
        size: usize,
        /// Bound.
        max: usize,
    },
    /// A message did not decode.
    #[error("agent {host}: malformed message: {message}")]
    Malformed {
        /// Agent name.
        host: String,
        /// Decoder error.
        message: String,
    },
    /// The agent answered with an error.
    #[error("agent {host}: {message}")]
    Remote {
        /// Agent name.
        host: String,
        /// The agent's error message.
        message: String,
    },
    /// An answer of the wrong kind.
    #[error("agent {host}: expected {expected}, got {got}")]
    Unexpected {
        /// Agent name.
        host: String,
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: String,
    },
}

impl ControlError {
    /// The agent the error is about.
    pub fn host(&self) -> &str {
        match self {
            ControlError::Connect { host, .. }
            | ControlError::Io { host, .. }
            | ControlError::TooLarge { host, .. }
            | ControlError::Malformed { host, .. }
            | ControlError::Remote { host, .. }
            | ControlError::Unexpected { host, .. } => host,
        }
    }
}

/// Coordinator -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First message: protocol version, the agent the coordinator expects, and its nonce.
    Hello {
        /// [`PROTOCOL_VERSION`] of the coordinator.
        version: u32,
        /// Name of the host the rack file puts at this address.
        agent: String,
        /// Fresh random hex ([`auth::NONCE_BYTES`] bytes).
        client_nonce: String,
    },
    /// Answer to the agent's challenge: HMAC-SHA256(token, client label, both nonces, name).
    Auth {
        /// Hex MAC ([`auth::mac`] with [`auth::Role::Client`]).
        mac: String,
    },
    /// The rack's data-plane addresses: the only targets `connect` may reach.
    Peers {
        /// Data addresses of the rack's hosts.
        addrs: Vec<IpAddr>,
    },
    /// Receiver side: prepare a flow and describe its endpoint.
    Prepare {
        /// The flow.
        flow: FlowSpec,
    },
    /// Sender side: connect a flow to an endpoint.
    Connect {
        /// The flow.
        flow: FlowSpec,
        /// The receiver's endpoint description.
        endpoint: serde_json::Value,
    },
    /// Sender side: get ready to run these windows (flows of this agent); answer `armed`.
    Arm {
        /// One window per flow.
        windows: Vec<WindowSpec>,
    },
    /// Barrier release: run the armed windows now; answer `done`.
    Go,
    /// Ends a flow on this agent (sender: finishes it; receiver: waits for its thread).
    Close {
        /// Flow id.
        flow_id: u64,
    },
    /// Describe this host (live discovery, RDMA ports, interfaces); answer `described`.
    /// What `linkcal rack init` and `rack check` ask each host.
    Describe,
}

/// Agent -> coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `hello`: the agent's name and nonce.
    Challenge {
        /// Agent name.
        agent: String,
        /// [`PROTOCOL_VERSION`] of the agent.
        version: u32,
        /// Fresh random hex ([`auth::NONCE_BYTES`] bytes).
        nonce: String,
    },
    /// Answer to a good `auth`.
    Hello {
        /// Agent name.
        agent: String,
        /// [`PROTOCOL_VERSION`] of the agent.
        version: u32,
        /// Transports this agent has and whether each applies here.
        transports: Vec<(TransportKind, Applicability)>,
        /// The bounds this agent enforces on flows and windows.
        limits: AgentLimits,
        /// Hex MAC ([`auth::mac`] with [`auth::Role::Agent`]): the agent holds the token too.
        proof: String,
    },
    /// Peer list stored.
    PeersSet {
        /// Addresses stored.
        count: usize,
    },
    /// Receiver prepared.
    Ready {
        /// Endpoint description for the sender.
        endpoint: serde_json::Value,
    },
    /// Sender connected.
    Connected,
    /// Windows armed.
    Armed,
    /// Windows ran.
    Done {
        /// One result per armed window.
        results: Vec<WindowResult>,
    },
    /// Flow closed.
    Closed,
    /// The host as its agent sees it.
    Described {
        /// GPUs, NICs, RDMA ports, interfaces, NUMA.
        description: Box<describe::HostDescription>,
    },
    /// The request failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Writes one message: 4-byte big-endian length, then JSON.
pub fn send<T: Serialize>(stream: &mut TcpStream, msg: &T, max: usize) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {} bytes exceeds {max}", body.len()),
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame)
}

/// A received frame: its JSON body, or the announced size when it exceeds the bound.
pub enum Frame {
    /// The message body.
    Body(Vec<u8>),
    /// Announced size over the bound (the connection must be dropped).
    TooLarge(usize),
}

/// A frame as a request, or why it is not one (the agent's answer to a bad frame).
pub fn decode_request(f: Frame) -> Result<Request, refusal::Refusal> {
    use refusal::Refusal;
    match f {
        Frame::Body(b) => serde_json::from_slice(&b).map_err(|e| {
            let version = serde_json::from_slice::<serde_json::Value>(&b).ok().and_then(|v| v.get("version")?.as_u64());
            match version {
                Some(v) if v != u64::from(PROTOCOL_VERSION) => Refusal::Version(v),
                _ => Refusal::Malformed(e.to_string()),
            }
        }),
        Frame::TooLarge(size) => Err(Refusal::TooLarge { size, max: MAX_REQUEST }),
    }
}

/// Reads one frame within `timeout` (None = wait forever).
pub fn recv_frame(stream: &mut TcpStream, max: usize, timeout: Option<Duration>) -> std::io::Result<Frame> {
    stream.set_read_timeout(timeout)?;
    read_frame(stream, max)
}

/// Reads one frame from any reader: a 4-byte big-endian length, then that many bytes (nothing
/// is allocated for a length over `max`: [`Frame::TooLarge`]).
pub fn read_frame(stream: &mut impl Read, max: usize) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Ok(Frame::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Frame::Body(body))
}

/// Reads one whole frame by `deadline`: a peer trickling bytes cannot stretch the wait (each
/// read waits only for what is left of it). Past the deadline: `TimedOut`.
pub fn recv_frame_by(stream: &mut TcpStream, max: usize, deadline: Instant) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    read_exact_by(stream, &mut len, deadline)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Ok(Frame::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    read_exact_by(stream, &mut body, deadline)?;
    Ok(Frame::Body(body))
}

fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline passed"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Compares tokens in time independent of where they differ.
pub fn token_matches(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token (hex of 16 bytes from /dev/urandom).
pub fn new_token() -> std::io::Result<String> {
    auth::random_hex(16)
}

/// The data-plane addresses of a rack: every host's `data_addr` and every route's endpoint
/// addresses (the emulated rack gives routes addresses of their own). What its agents may
/// connect flows to.
pub fn rack_peers(rack: &crate::model::RackFile) -> Vec<IpAddr> {
    let hosts = rack.hosts.iter().map(|h| Some(h.data_addr.as_str()));
    let routes = rack.routes.iter().flat_map(|r| [Some(r.dst_addr.as_str()), r.src_addr.as_deref()]);
    let mut v: Vec<IpAddr> = hosts.chain(routes).flatten().filter_map(|a| a.parse().ok()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The coordinator's connection to one agent.
pub struct Client {
    /// Agent name (for error messages).
    pub host: String,
    stream: TcpStream,
}

impl Client {
    /// Connects and authenticates to the agent `host` (see the module docs), without a peer
    /// list: the agent then refuses every `connect` (enough to check that it is alive).
    pub fn connect(host: &str, addr: &str, token: &str, timeout: Duration) -> Result<(Client, Reply), ControlError> {
        Client::connect_in_rack(host, addr, token, &[], timeout)
    }

    /// Connects, authenticates to the agent `host` and tells it the rack's data-plane `peers`.
    /// Fails when the agent at `addr` has another name, speaks another protocol version, refuses
    /// the MAC, or cannot prove that it holds the token. Returns the agent's `hello`.
    pub fn connect_in_rack(
        host: &str,
        addr: &str,
        token: &str,
        peers: &[IpAddr],
        timeout: Duration,
    ) -> Result<(Client, Reply), ControlError> {
        let connect_err = |source| ControlError::Connect { host: host.into(), addr: addr.into(), source };
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| connect_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP:port address")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(connect_err)?;
        let mut c = Client { host: host.into(), stream };
        let hello = c.handshake(addr, token, timeout)?;
        match c.call(&Request::Peers { addrs: peers.to_vec() }, timeout)? {
            Reply::PeersSet { .. } => Ok((c, hello)),
            other => Err(c.unexpected("peers_set", &other)),
        }
    }

    fn handshake(&mut self, addr: &str, token: &str, timeout: Duration) -> Result<Reply, ControlError> {
        let host = self.host.clone();
        let remote = |message: String| ControlError::Remote { host: host.clone(), message };
        let client_nonce = auth::random_hex(auth::NONCE_BYTES).map_err(|source| ControlError::Io {
            host: self.host.clone(),
            what: "read /dev/urandom".into(),
            source,
        })?;
        let hello = Request::Hello { version: PROTOCOL_VERSION, agent: self.host.clone(), client_nonce: client_nonce.clone() };
        let (agent, nonce) = match self.call(&hello, timeout)? {
            Reply::Challenge { version, .. } if version != PROTOCOL_VERSION => {
                return Err(remote(format!(
                    "speaks control protocol {version}, this coordinator {PROTOCOL_VERSION}: use the same linkcal build"
                )))
            }
            Reply::Challenge { agent, nonce, .. } => (agent, nonce),
            other => return Err(self.unexpected("challenge", &other)),
        };
        if agent != self.host {
            return Err(remote(format!(
                "the agent at {addr} is '{agent}', not '{}': fix control_addr in the rack file",
                self.host
            )));
        }
        if !auth::nonce_ok(&nonce) {
            return Err(remote("sent a malformed challenge nonce".into()));
        }
        let mac = auth::mac(token, auth::Role::Client, &nonce, &client_nonce, &agent);
        let hello = self.call(&Request::Auth { mac }, timeout)?;
        match &hello {
            Reply::Hello { agent: a, version, proof, .. }
                if *a == agent
                    && *version == PROTOCOL_VERSION
                    && auth::mac_matches(token, auth::Role::Agent, &nonce, &client_nonce, &agent, proof) =>
            {
                Ok(hello)
            }
            Reply::Hello { .. } => Err(remote(format!(
                "the agent at {addr} could not prove that it holds the run's token: is it an agent of this rack?"
            ))),
            other => Err(self.unexpected("hello", other)),
        }
    }

    /// Sends a request and waits up to `timeout` for the reply; `error` replies become errors.
    pub fn call(&mut self, req: &Request, timeout: Duration) -> Result<Reply, ControlError> {
        self.send(req)?;
        self.recv(timeout)
    }

    /// Sends a request without waiting.
    pub fn send(&mut self, req: &Request) -> Result<(), ControlError> {
        send(&mut self.stream, req, MAX_REQUEST).map_err(|source| ControlError::Io {
            host: self.host.clone(),
            what: "send".into(),
            source,
        })
    }

    /// Waits up to `timeout` for a reply.
    pub fn recv(&mut self, timeout: Duration) -> Result<Reply, ControlError> {
        let host = self.host.clone();
        let io = |what: String, source| ControlError::Io { host: host.clone(), what, source };
        let frame = recv_frame(&mut self.stream, MAX_REPLY, Some(timeout)).map_err(|e| {
            let what = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("no reply within {:.1} s", timeout.as_secs_f64())
                }
                std::io::ErrorKind::UnexpectedEof => "connection closed (the agent died, or refused the handshake)".into(),
                _ => "receive".into(),
            };
            io(what, e)
        })?;
        let body = match frame {
            Frame::Body(b) => b,
            Frame::TooLarge(size) => return Err(ControlError::TooLarge { host, size, max: MAX_REPLY }),
        };
        match serde_json::from_slice::<Reply>(&body) {
            Ok(Reply::Error { message }) => Err(ControlError::Remote { host, message }),
            Ok(r) => Ok(r),
            Err(e) => Err(ControlError::Malformed { host, message: e.to_string() }),
        }
    }

    /// Waits up to `timeout` for something to read (a reply, or the connection's end) without
    /// consuming it; false when the connection stayed quiet that long.
    pub fn readable(&mut self, timeout: Duration) -> bool {
        if self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).is_err() {
            return true;
        }
        !matches!(
            self.stream.peek(&mut [0u8; 1]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        )
    }

    /// Asks the agent to describe its host (live discovery may take a few seconds).
    pub fn describe(&mut self, timeout: Duration) -> Result<describe::HostDescription, ControlError> {
        match self.call(&Request::Describe, timeout)? {
            Reply::Described { description } => Ok(*description),
            other => Err(self.unexpected("described", &other)),
        }
    }

    /// The error for a reply of the wrong kind.
    pub fn unexpected(&self, expected: &'static str, got: &Reply) -> ControlError {
        let got = serde_json::to_value(got).ok().and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
        ControlError::Unexpected { host: self.host.clone(), expected, got: got.unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert_eq!(new_token().unwrap().len(), 32);
    }

    #[test]
    fn frames_round_trip_and_bound() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        send(&mut a, &Request::Go, MAX_REQUEST).unwrap();
        let Frame::Body(body) = recv_frame(&mut b, MAX_REQUEST, Some(Duration::from_secs(1))).unwrap() else { panic!() };
        assert_eq!(serde_json::from_slice::<Request>(&body).unwrap(), Request::Go);
        assert!(send(&mut a, &"x".repeat(100), 10).is_err());
        a.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
        assert!(matches!(recv_frame(&mut b, MAX_REQUEST, Some(Duration::from_secs(1))).unwrap(), Frame::TooLarge(_)));
        let e = recv_frame(&mut b, MAX_REQUEST, Some(Duration::from_millis(20))).err().unwrap();
        assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    }

    #[test]
    fn rack_peers_are_host_and_route_addresses() {
        let host = |name: &str, data: &str| crate::model::rack::HostEntry {
            name: name.into(),
            role: crate::model::rack::HostRole::PrefillGpu,
            index: 0,
            control_addr: "127.0.0.1:1".into(),
            data_addr: data.into(),
            netns: None,
        };
        let route = crate::model::rack::RouteEndpoints {
            path: crate::spec::PathRef { kind: crate::spec::RouteKind::PrefillInterRank, src: 0, dst: 1 },
            src_host: "a".into(),
            dst_host: "b".into(),
            src_addr: Some("10.2.0.1".into()),
            dst_addr: "10.2.0.2".into(),
            segments: vec![],
        };
        let rack = crate::model::RackFile {
            schema: crate::model::RACK_SCHEMA.into(),
            shape: crate::spec::RackShape::new(2, 1, 1).unwrap(),
            emulated: true,
            tcp_congestion_control: None,
            emulation: None,
            payload_scale: 1.0,
            mtu_bytes: None,
            token_file: "t".into(),
            hosts: vec![host("a", "10.1.0.1"), host("b", "10.1.0.1"), host("c", "not an ip")],
            control_netns: None,
            routes: vec![route],
            composed: None,
        };
        let want: Vec<IpAddr> = ["10.1.0.1", "10.2.0.1", "10.2.0.2"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(rack_peers(&rack), want);
    }

    #[test]
    fn messages_are_tagged() {
        let v = serde_json::to_value(Request::Close { flow_id: 3 }).unwrap();
        assert_eq!(v, serde_json::json!({"type": "close", "flow_id": 3}));
    }
}
