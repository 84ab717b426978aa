//! The agent: runs on every host (on the emulated rack, in every endpoint namespace), answers
//! the coordinator over the control plane, and runs the data plane of its flows through the
//! transports. One thread per coordinator connection; one thread per receiver and per running
//! sender window.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::{
    self, Frame, Reply, Request, WindowResult, WindowSpec, HELLO_TIMEOUT_S, MAX_REPLY, MAX_REQUEST, PROTOCOL_VERSION,
};
use crate::transport::{ReceiverStats, Sender, TransportError, TransportKind};

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name reported to the coordinator (e.g. `gpu_p0`).
    pub name: String,
    /// Control-plane address to listen on.
    pub listen: SocketAddr,
    /// The run's token; connections without it are refused.
    pub token: String,
}

/// Binds the control address; the returned listener is handed to [`serve`].
pub fn bind(cfg: &AgentConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(cfg.listen)
}

/// Serves coordinator connections forever (one thread each).
pub fn serve(cfg: AgentConfig, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            if let Err(e) = Session::new(cfg, stream).run() {
                eprintln!("linkcal agent: session ended: {e}");
            }
        });
    }
}

type ReceiverThread = JoinHandle<Result<ReceiverStats, TransportError>>;

/// One coordinator connection and the flows it set up.
struct Session {
    cfg: AgentConfig,
    stream: TcpStream,
    senders: HashMap<u64, Box<dyn Sender>>,
    receivers: HashMap<u64, ReceiverThread>,
    armed: Vec<WindowSpec>,
}

impl Session {
    fn new(cfg: AgentConfig, stream: TcpStream) -> Session {
        Session { cfg, stream, senders: HashMap::new(), receivers: HashMap::new(), armed: Vec::new() }
    }

    fn run(mut self) -> std::io::Result<()> {
        let _ = self.stream.set_nodelay(true);
        self.stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        match self.read(Some(Duration::from_secs_f64(HELLO_TIMEOUT_S)))? {
            Some(Request::Hello { version, token }) => {
                if !control::token_matches(&token, &self.cfg.token) {
                    return self.reply(&Reply::Error { message: format!("agent {}: token refused", self.cfg.name) });
                }
                if version != PROTOCOL_VERSION {
                    let message =
                        format!("agent {} speaks control protocol {PROTOCOL_VERSION}, coordinator {version}", self.cfg.name);
                    return self.reply(&Reply::Error { message });
                }
                let transports = TransportKind::ALL.iter().map(|k| (*k, k.instance().applicability())).collect();
                self.reply(&Reply::Hello { agent: self.cfg.name.clone(), version: PROTOCOL_VERSION, transports })?;
            }
            Some(_) => return self.reply(&Reply::Error { message: "the first message must be hello".into() }),
            None => return Ok(()),
        }
        while let Some(req) = self.read(None)? {
            let reply = self.handle(req);
            self.reply(&reply)?;
        }
        Ok(())
    }

    /// Next request; `None` when the coordinator closed the connection.
    fn read(&mut self, timeout: Option<Duration>) -> std::io::Result<Option<Request>> {
        let frame = match control::recv_frame(&mut self.stream, MAX_REQUEST, timeout) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        match frame {
            Frame::Body(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
            Frame::TooLarge(n) => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("request of {n} bytes over the bound")))
            }
        }
    }

    fn reply(&mut self, r: &Reply) -> std::io::Result<()> {
        control::send(&mut self.stream, r, MAX_REPLY)
    }

    fn handle(&mut self, req: Request) -> Reply {
        let name = self.cfg.name.clone();
        let err = move |e: String| Reply::Error { message: format!("agent {name}: {e}") };
        match req {
            Request::Hello { .. } => err("hello sent twice".into()),
            Request::Prepare { flow } => match flow.transport.instance().prepare_receiver(&flow) {
                Ok(p) => {
                    let receiver = p.receiver;
                    self.receivers.insert(flow.id, std::thread::spawn(move || receiver.serve()));
                    Reply::Ready { endpoint: p.endpoint }
                }
                Err(e) => err(e.to_string()),
            },
            Request::Connect { flow, endpoint } => match flow.transport.instance().connect_sender(&flow, &endpoint) {
                Ok(s) => {
                    self.senders.insert(flow.id, s);
                    Reply::Connected
                }
                Err(e) => err(e.to_string()),
            },
            Request::Arm { windows } => match windows.iter().find(|w| !self.senders.contains_key(&w.flow_id)) {
                Some(w) => err(format!("arm: flow {} is not connected here", w.flow_id)),
                None => {
                    self.armed = windows;
                    Reply::Armed
                }
            },
            Request::Go => match self.go() {
                Ok(results) => Reply::Done { results },
                Err(e) => err(e.to_string()),
            },
            Request::Close { flow_id } => match self.close(flow_id) {
                Ok(()) => Reply::Closed,
                Err(e) => err(e.to_string()),
            },
        }
    }

    /// Runs every armed window at once, timed from this instant.
    fn go(&mut self) -> Result<Vec<WindowResult>, TransportError> {
        let t0 = Instant::now();
        let windows = std::mem::take(&mut self.armed);
        let mut threads = Vec::new();
        for w in windows {
            let sender =
                self.senders.remove(&w.flow_id).ok_or_else(|| TransportError::protocol(w.flow_id, "go: flow not armed"))?;
            threads.push(std::thread::spawn(move || run_window(sender, w, t0)));
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
        if let Some(s) = self.senders.remove(&flow_id) {
            s.finish()?;
        }
        if let Some(h) = self.receivers.remove(&flow_id) {
            h.join().map_err(|_| TransportError::protocol(flow_id, "receiver thread panicked"))??;
        }
        Ok(())
    }
}

/// Runs one window of one flow: warmup, then timed transfers.
pub fn run_window(
    mut sender: Box<dyn Sender>,
    w: WindowSpec,
    t0: Instant,
) -> (u64, Box<dyn Sender>, Result<WindowResult, TransportError>) {
    let mut r = WindowResult { flow_id: w.flow_id, starts_s: Vec::new(), times_s: Vec::new(), warmup_done: 0 };
    for _ in 0..w.warmup {
        if let Err(e) = sender.transfer(w.warmup_bytes) {
            return (w.flow_id, sender, Err(e));
        }
        r.warmup_done += 1;
    }
    while (r.times_s.len() as u32) < w.max_count {
        let start = t0.elapsed().as_secs_f64();
        match sender.transfer(w.bytes) {
            Ok(d) => {
                r.starts_s.push(start);
                r.times_s.push(d.as_secs_f64());
            }
            Err(e) => return (w.flow_id, sender, Err(e)),
        }
        if r.times_s.len() as u32 >= w.min_count && t0.elapsed().as_secs_f64() >= w.duration_s {
            break;
        }
    }
    (w.flow_id, sender, Ok(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Client, ControlError};

    #[test]
    fn refuses_a_wrong_token_and_serves_the_right_one() {
        let cfg = AgentConfig { name: "a0".into(), listen: "127.0.0.1:0".parse().unwrap(), token: "right".into() };
        let listener = bind(&cfg).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || serve(cfg, listener));
        let t = Duration::from_secs(5);
        let e = Client::connect("a0", &addr, "wrong", t).err().unwrap();
        assert!(matches!(e, ControlError::Remote { .. }) && e.to_string().contains("token refused"), "{e}");
        let (mut c, hello) = Client::connect("a0", &addr, "right", t).unwrap();
        assert!(matches!(hello, Reply::Hello { ref agent, .. } if agent == "a0"));
        // Arming a flow that was never connected is an error naming the agent, not a hang.
        let e = c.call(&Request::Arm { windows: vec![run_window_spec(9)] }, t).unwrap_err();
        assert!(e.to_string().contains("agent a0") && e.to_string().contains("flow 9"), "{e}");
    }

    fn run_window_spec(flow_id: u64) -> WindowSpec {
        WindowSpec { flow_id, bytes: 1, warmup: 0, warmup_bytes: 1, min_count: 1, max_count: 1, duration_s: 0.0 }
    }
}
