//! The in-process flow driver (`probe --run`): both ends of every flow in this process, through
//! the transports' own trait (receiver prepared and served on a thread, sender connected to
//! its endpoint). A solo flow's window is the agents' window executor run here
//! ([`run_window`]); a contended set's measured window is ONE multi-lane operation per sample
//! ([`Transport::run_lanes`]: every lane started from one gate, at least
//! [`MIN_COPIES_PER_SAMPLE`] copies per lane per sample).

use std::thread::JoinHandle;
use std::time::Instant;

use super::engine::{FlowDriver, Window};
use crate::control::WindowResult;
use crate::transport::lanes::{LaneRun, MIN_COPIES_PER_SAMPLE};
use crate::transport::window::run_window;
use crate::transport::{FlowSpec, ReceiverStats, Sender, Transport, TransportError, TransportKind};

/// Makes the transport of a kind: [`TransportKind::instance`], or a stand-in in tests.
pub type Factory = fn(TransportKind) -> Box<dyn Transport>;

/// One flow to run here.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalFlow {
    /// Flow id.
    pub id: u64,
    /// Transport.
    pub kind: TransportKind,
    /// Flow options (the transport's; `loops` also sets the copies per lane per sample).
    pub options: serde_json::Value,
}

/// Copies per lane per sample of a contended set: the flow's `loops`, at least
/// [`MIN_COPIES_PER_SAMPLE`].
pub fn copies_per_sample(options: &serde_json::Value) -> u32 {
    let loops = options.get("loops").and_then(|v| v.as_u64()).unwrap_or(1);
    u32::try_from(loops).unwrap_or(u32::MAX).max(MIN_COPIES_PER_SAMPLE)
}

struct Open {
    sender: Option<Box<dyn Sender>>,
    serve: JoinHandle<Result<ReceiverStats, TransportError>>,
    /// Transfers the sender made (the receiver must count as many).
    transfers: u64,
}

/// Flows of one measurement inside this process.
pub struct InProcess {
    make: Factory,
    flows: Vec<LocalFlow>,
    timeout_s: f64,
    open: Vec<Open>,
}

impl InProcess {
    /// A driver for `flows`; every blocking wait gives up after `timeout_s`.
    pub fn new(make: Factory, flows: Vec<LocalFlow>, timeout_s: f64) -> Self {
        InProcess { make, flows, timeout_s, open: Vec::new() }
    }

    fn open_one(&self, f: &LocalFlow, bytes: u64) -> Result<Open, TransportError> {
        let flow = FlowSpec {
            id: f.id,
            transport: f.kind,
            local_addr: Some("127.0.0.1".into()),
            max_bytes: bytes,
            timeout_s: self.timeout_s,
            options: f.options.clone(),
            tcp_congestion: None,
        };
        let t = (self.make)(f.kind);
        let prepared = t.prepare_receiver(&flow)?;
        let receiver = prepared.receiver;
        let serve = std::thread::spawn(move || receiver.serve());
        match t.connect_sender(&flow, &prepared.endpoint) {
            Ok(sender) => Ok(Open { sender: Some(sender), serve, transfers: 0 }),
            Err(e) => {
                // The receiver gives up on its own timeout; do not leave its thread behind.
                let _ = serve.join();
                Err(e)
            }
        }
    }

    /// Every flow's window on its own thread, timed from one instant (the agents' `go`).
    fn threads(&mut self, w: &Window) -> Result<Vec<WindowResult>, TransportError> {
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for (f, o) in self.flows.iter().zip(&mut self.open) {
            let sender = o.sender.take().ok_or_else(|| TransportError::protocol(f.id, "flow failed earlier"))?;
            let spec = w.of_flow(f.id);
            handles.push(std::thread::spawn(move || run_window(sender, spec, t0, None)));
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for (h, o) in handles.into_iter().zip(&mut self.open) {
            let (_, sender, r) = h.join().map_err(|_| TransportError::protocol(0, "window thread panicked"))?;
            o.sender = Some(sender);
            match r {
                Ok(r) => {
                    o.transfers += u64::from(r.warmup_done) + r.times_s.len() as u64;
                    out.push(r);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(out), Err)
    }

    /// A contended set's measured window: multi-lane samples (one gate each) until the
    /// window's count and duration are reached.
    fn lanes(&mut self, w: &Window) -> Result<Vec<WindowResult>, TransportError> {
        let kind = self.flows[0].kind;
        let t = (self.make)(kind);
        let copies = self.flows.iter().map(|f| copies_per_sample(&f.options)).max().unwrap_or(MIN_COPIES_PER_SAMPLE);
        let mut out: Vec<WindowResult> =
            self.flows.iter().map(|f| WindowResult { copies, ..WindowResult::empty(f.id) }).collect();
        let t0 = Instant::now();
        let mut moved = vec![0u64; self.flows.len()];
        for n in 1..=w.max_count.max(1) {
            let origin = t0.elapsed().as_secs_f64();
            let run = self.sample(&*t, kind, w.bytes, copies)?;
            for (((r, lane), o), m) in out.iter_mut().zip(&run.lanes).zip(&mut self.open).zip(&mut moved) {
                let start = origin + lane.start_s;
                r.starts_s.push(start);
                r.times_s.push(lane.elapsed_s / f64::from(lane.copies.max(1)));
                r.delivered.push((start, *m));
                *m += w.bytes * u64::from(lane.copies);
                r.delivered.push((start + lane.elapsed_s, *m));
                r.copies = lane.copies.max(1);
                o.transfers += lane.transfers;
            }
            if n >= w.min_count && t0.elapsed().as_secs_f64() >= w.duration_s {
                break;
            }
        }
        Ok(out)
    }

    /// One multi-lane sample over every flow's sender.
    fn sample(&mut self, t: &dyn Transport, kind: TransportKind, bytes: u64, copies: u32) -> Result<LaneRun, TransportError> {
        let mut senders: Vec<&mut dyn Sender> = Vec::new();
        for (f, o) in self.flows.iter().zip(&mut self.open) {
            let s = o.sender.as_mut().ok_or_else(|| TransportError::protocol(f.id, "flow failed earlier"))?;
            senders.push(s.as_mut());
        }
        let same = self.flows.iter().all(|f| f.kind == kind);
        let run = if same {
            t.run_lanes(&mut senders, bytes, copies)?
        } else {
            crate::transport::lanes::by_threads(&mut senders, bytes, copies)?
        };
        if run.lanes.len() != senders.len() {
            return Err(TransportError::protocol(
                self.flows[0].id,
                format!("{} lanes ran of {}", run.lanes.len(), senders.len()),
            ));
        }
        Ok(run)
    }
}

impl FlowDriver for InProcess {
    type Error = TransportError;

    fn flows(&self) -> usize {
        self.flows.len()
    }

    fn open(&mut self, bytes: u64) -> Result<(), TransportError> {
        for n in 0..self.flows.len() {
            let o = self.open_one(&self.flows[n], bytes)?;
            self.open.push(o);
        }
        Ok(())
    }

    fn window(&mut self, w: &Window) -> Result<Vec<WindowResult>, TransportError> {
        if self.flows.len() > 1 && w.warmup == 0 {
            self.lanes(w)
        } else {
            self.threads(w)
        }
    }

    fn close(&mut self) -> Result<(), TransportError> {
        let mut first_err = None;
        for (f, o) in self.flows.iter().zip(std::mem::take(&mut self.open)) {
            if let Err(e) = finish(f.id, o) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn abort(&mut self) {
        for o in std::mem::take(&mut self.open) {
            if let Some(s) = o.sender {
                let _ = s.finish();
            }
            let _ = o.serve.join();
        }
    }
}

/// Finishes a flow and checks its receiver counted every transfer the sender made.
fn finish(id: u64, o: Open) -> Result<(), TransportError> {
    let sender = o.sender.ok_or_else(|| TransportError::protocol(id, "flow failed earlier"))?;
    sender.finish()?;
    let stats = o.serve.join().map_err(|_| TransportError::protocol(id, "receiver thread panicked"))??;
    if stats.transfers != o.transfers {
        return Err(TransportError::protocol(
            id,
            format!("receiver saw {} transfers, the sender made {}", stats.transfers, o.transfers),
        ));
    }
    Ok(())
}
