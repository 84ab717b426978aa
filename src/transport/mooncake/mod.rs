//! KV handoff through Mooncake Transfer Engine (SGLang's and vLLM's Mooncake connectors), over
//! its TCP protocol in DRAM.
//!
//! Mooncake publishes no Rust binding (its repository's binding links a CMake build; the
//! wheel's `engine.so` is a Python extension and exports no C API), so each end of a flow is
//! a small Python helper ([`HELPER`], shipped in this crate) that the agent starts from a venv
//! with the wheel ([`python`]). The receiver's helper starts an engine on the flow's data
//! address (P2P handshake: no metadata server), registers a buffer and reports its session id
//! (`ip:rpc_port`) and the buffer's address; they travel to the sender in the endpoint
//! description (linkcal's control plane), beside a TCP side channel for the transfer headers
//! and the flow's end. The sender's helper writes each payload as one slice per KV block
//! (`block_bytes`) with `batch_transfer_sync_write` and reports the call's time, measured
//! inside the helper (so the pipe to the helper does not count): from the call until the
//! engine reports every slice done, which over TCP is after the receiver wrote and answered.
//! No venv with `mooncake` -> the transport is waived with what to install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::host_tcp::{self, io_err, send_finish};
use super::net::{self, FINISH};
use super::nixl::layout::{blocks, DEFAULT_BLOCK_BYTES};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};

/// The helper each end runs (`python -c HELPER recv|send ...`).
pub const HELPER: &str = include_str!("helper.py");

/// The wheel linkcal's venv script installs.
pub const WHEEL: &str = "mooncake-transfer-engine-non-cuda==0.3.13.post1";

/// The Mooncake transport.
pub struct Mooncake;

/// The Python that imports `mooncake.engine`: `LINKCAL_MOONCAKE_VENV/bin/python3`, else
/// `VIRTUAL_ENV/bin/python3`. Found once per process; a miss is looked up again next time (an
/// import check per venv, tens of milliseconds). Err: what to install.
pub fn python() -> Result<PathBuf, String> {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = PY.get() {
        return Ok(p.clone());
    }
    let venvs: Vec<(&str, String)> =
        ["LINKCAL_MOONCAKE_VENV", "VIRTUAL_ENV"].into_iter().filter_map(|k| Some((k, std::env::var(k).ok()?))).collect();
    let mut tried = Vec::new();
    for (key, v) in &venvs {
        let py = PathBuf::from(v).join("bin/python3");
        match Command::new(&py).args(["-c", "import mooncake.engine"]).stdin(Stdio::null()).output() {
            Ok(o) if o.status.success() => return Ok(PY.get_or_init(|| py).clone()),
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                tried.push(format!("{key}={v}: {}", err.lines().last().unwrap_or("import failed")));
            }
            Err(e) => tried.push(format!("{key}={v}: {}: {e}", py.display())),
        }
    }
    Err(format!(
        "mooncake.engine not importable ({}): make a venv with scripts/mooncake-venv (pip install {WHEEL}; needs libibverbs1, \
         libnuma1, libcurl4) and start the agents with LINKCAL_MOONCAKE_VENV=<venv>",
        if tried.is_empty() { "neither LINKCAL_MOONCAKE_VENV nor VIRTUAL_ENV is set".into() } else { tried.join("; ") }
    ))
}

/// `block_bytes` of the flow's options (default: NIXL's default block, llama-3.1-70b's 16 tokens).
fn block_bytes(flow: &FlowSpec) -> Result<u64, TransportError> {
    match flow.options.get("block_bytes") {
        None | Some(Value::Null) => Ok(DEFAULT_BLOCK_BYTES),
        Some(v) => v.as_u64().filter(|b| *b > 0).ok_or_else(|| {
            TransportError::protocol(flow.id, format!("mooncake option block_bytes is {v}, not a positive integer"))
        }),
    }
}

/// A running helper: its stdin, and its stdout's lines through a reader thread.
struct Helper {
    flow: u64,
    timeout: Duration,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Helper {
    fn start(flow: &FlowSpec, args: &[String]) -> Result<Helper, TransportError> {
        let py = python().map_err(|reason| TransportError::Waived { kind: TransportKind::Mooncake, reason })?;
        let mut child =
            Command::new(&py)
                .arg("-c")
                .arg(HELPER)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| TransportError::io(flow.id, format!("start the Mooncake helper with {}", py.display()), e))?;
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper { flow: flow.id, timeout: flow.timeout(), child, stdin, lines })
    }

    /// The helper's next message; its `error`, its exit, or the flow's timeout is an error.
    fn read(&mut self, what: &str) -> Result<Value, TransportError> {
        let line = self.lines.recv_timeout(self.timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => TransportError::Timeout {
                flow: self.flow,
                what: format!("Mooncake helper: {what}"),
                timeout_s: self.timeout.as_secs_f64(),
            },
            mpsc::RecvTimeoutError::Disconnected => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                TransportError::protocol(
                    self.flow,
                    format!("Mooncake helper exited ({status}) during {what}; the agent's log has its stderr"),
                )
            }
        })?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| TransportError::protocol(self.flow, format!("Mooncake helper said {line:?} during {what}: {e}")))?;
        match v.get("error").and_then(Value::as_str) {
            Some(err) => Err(TransportError::protocol(self.flow, format!("Mooncake helper, {what}: {err}"))),
            None => Ok(v),
        }
    }

    fn say(&mut self, line: &str) -> Result<(), TransportError> {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| TransportError::io(self.flow, "write to the Mooncake helper", e))
    }

    /// Asks the helper to quit and waits for it (killing it after the flow's timeout).
    fn quit(mut self) {
        let _ = self.say("quit");
        let deadline = std::time::Instant::now() + self.timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The engine's host: the flow's data address (loopback when it has none).
fn host(flow: &FlowSpec) -> String {
    net::parse_ip(flow.local_addr.as_deref()).map_or("127.0.0.1".into(), |ip| ip.to_string())
}

impl Transport for Mooncake {
    fn kind(&self) -> TransportKind {
        TransportKind::Mooncake
    }

    fn applicability(&self) -> Applicability {
        match python() {
            Ok(_) => Applicability::Applies,
            Err(reason) => Applicability::Waived { reason },
        }
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let mut helper = Helper::start(flow, &["recv".into(), host(flow), flow.max_bytes.max(1).to_string()])?;
        let hello = helper.read("starting the receiver's engine").map_err(|e| match e {
            TransportError::Protocol { message, .. } => TransportError::Waived { kind: TransportKind::Mooncake, reason: message },
            e => e,
        })?;
        let (listener, addr) = host_tcp::listen(flow)?;
        let endpoint = serde_json::json!({"session": hello["session"], "buffer": hello["addr"], "addr": addr.to_string()});
        Ok(PreparedReceiver { endpoint, receiver: Box::new(MooncakeReceiver { flow: flow.clone(), listener, helper }) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &Value) -> Result<Box<dyn Sender>, TransportError> {
        let (session, buffer) = match (endpoint["session"].as_str(), endpoint["buffer"].as_u64()) {
            (Some(s), Some(b)) => (s.to_string(), b),
            _ => return Err(TransportError::protocol(flow.id, format!("mooncake endpoint {endpoint} lacks session or buffer"))),
        };
        let block = block_bytes(flow)?;
        let args = ["send".into(), host(flow), flow.max_bytes.max(1).to_string(), block.to_string(), session, buffer.to_string()];
        let mut helper = Helper::start(flow, &args)?;
        helper.read("starting the sender's engine")?;
        let stream = host_tcp::connect(flow, endpoint)?;
        Ok(Box::new(MooncakeSender { flow: flow.clone(), block, stream, helper }))
    }
}

struct MooncakeSender {
    flow: FlowSpec,
    block: u64,
    stream: std::net::TcpStream,
    helper: Helper,
}

impl Sender for MooncakeSender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let (f, t) = (self.flow.id, self.flow.timeout_s);
        blocks(bytes, self.block).map_err(|m| TransportError::protocol(f, m))?;
        net::write_header(&mut self.stream, bytes).map_err(|e| io_err(f, t, "send header", e))?;
        self.helper.say(&serde_json::json!({ "bytes": bytes }).to_string())?;
        let r = self.helper.read("batch_transfer_sync_write")?;
        let s = r["time_s"].as_f64().filter(|s| s.is_finite() && *s > 0.0);
        s.map(Duration::from_secs_f64).ok_or_else(|| TransportError::protocol(f, format!("Mooncake helper reported {r}")))
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        send_finish(&mut self.stream, self.flow.id, self.flow.timeout_s)?;
        // Wait for the receiver to close, so its engine stays up until ours is done.
        let _ = self.stream.read(&mut [0u8; 1]);
        self.helper.quit();
        Ok(())
    }
}

struct MooncakeReceiver {
    flow: FlowSpec,
    listener: TcpListener,
    helper: Helper,
}

impl Receiver for MooncakeReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let MooncakeReceiver { flow, listener, helper } = *self;
        let (f, t) = (flow.id, flow.timeout_s);
        let mut stream = host_tcp::accept(&flow, &listener)?;
        drop(listener);
        let mut stats = ReceiverStats::default();
        loop {
            match net::read_header(&mut stream).map_err(|e| io_err(f, t, "read header", e))? {
                None | Some(FINISH) => break,
                Some(b) => {
                    stats.transfers += 1;
                    stats.bytes += b;
                }
            }
        }
        drop(stream);
        helper.quit();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests;
