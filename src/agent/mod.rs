//! The agent: runs on every host (on the emulated rack, in every endpoint namespace), answers
//! the coordinator over the control plane, and runs the data plane of its flows through the
//! transports.
//!
//! What an unauthenticated peer can cost it is bounded: at most
//! [`AgentConfig::max_pending`] connections are in their handshake at once (one thread each;
//! more are closed at accept), each handshake has a deadline of
//! [`AgentConfig::handshake_s`] from accept, and when accept fails for lack of descriptors
//! or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the agent logs, backs off and goes on. An
//! authenticated session gets one thread, plus one per receiver and running sender window,
//! within the [`AgentLimits`] it states.

mod session;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{AgentLimits, HELLO_TIMEOUT_S};

/// Default most connections in their handshake at once.
pub const DEFAULT_MAX_PENDING: usize = 16;
/// Default most authenticated sessions at once.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Pause after an accept that failed for lack of resources, milliseconds.
const ACCEPT_BACKOFF_MS: u64 = 100;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name bound into the handshake (e.g. `gpu_p0`); the coordinator must expect this name.
    pub name: String,
    /// Control-plane address to listen on.
    pub listen: SocketAddr,
    /// The run's token; it authenticates the coordinator and never travels.
    pub token: String,
    /// Bounds on what a coordinator may ask, stated in the hello.
    pub limits: AgentLimits,
    /// Deadline of the whole handshake from accept, seconds.
    pub handshake_s: f64,
    /// Most connections in their handshake at once; more are closed at accept.
    pub max_pending: usize,
    /// Most authenticated sessions at once; more are refused with an error.
    pub max_sessions: usize,
}

impl AgentConfig {
    /// A configuration with the default limits.
    pub fn new(name: impl Into<String>, listen: SocketAddr, token: impl Into<String>) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            listen,
            token: token.into(),
            limits: AgentLimits::default(),
            handshake_s: HELLO_TIMEOUT_S,
            max_pending: DEFAULT_MAX_PENDING,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Binds the control address; the returned listener is handed to [`serve`].
pub fn bind(cfg: &AgentConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(cfg.listen)
}

/// Decrements a counter when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot of `counter` when fewer than `max` are taken.
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        if counter.fetch_add(1, Ordering::SeqCst) >= max {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs at most once a second, counting what it held back.
struct RateLog {
    last: Option<Instant>,
    held: u64,
}

impl RateLog {
    fn log(&mut self, name: &str, msg: impl FnOnce() -> String) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.held += 1;
            return;
        }
        let held = std::mem::take(&mut self.held);
        let more = if held > 0 { format!(" ({held} more like this held back)") } else { String::new() };
        eprintln!("linkcal agent {name}: {}{more}", msg());
        self.last = Some(Instant::now());
    }
}

/// Whether an accept error means "out of descriptors or memory now": back off and go on.
fn is_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Whether an accept error concerns only the one connection that was being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), Interrupted | ConnectionAborted | ConnectionReset | WouldBlock)
        || matches!(e.raw_os_error(), Some(libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::EHOSTUNREACH))
}

/// Serves coordinator connections until the listener fails for good.
pub fn serve(cfg: AgentConfig, listener: TcpListener) -> std::io::Result<()> {
    let cfg = Arc::new(cfg);
    let pending = Arc::new(AtomicUsize::new(0));
    let sessions = Arc::new(AtomicUsize::new(0));
    let mut log = RateLog { last: None, held: 0 };
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if is_exhaustion(&e) => {
                log.log(&cfg.name, || format!("accept: {e}; backing off {ACCEPT_BACKOFF_MS} ms and going on"));
                std::thread::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS));
                continue;
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => return Err(e),
        };
        let Some(slot) = Slot::take(&pending, cfg.max_pending) else {
            log.log(&cfg.name, || format!("{peer}: {} handshakes already in progress; connection closed", cfg.max_pending));
            continue;
        };
        let (cfg2, sessions2) = (cfg.clone(), sessions.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("session {peer}"))
            .spawn(move || session::serve_connection(&cfg2, stream, slot, &sessions2));
        if let Err(e) = spawned {
            log.log(&cfg.name, || format!("{peer}: cannot start a thread: {e}; connection closed"));
        }
    }
}

#[cfg(test)]
mod tests;
