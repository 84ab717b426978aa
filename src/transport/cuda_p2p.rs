//! Copy-engine copies inside one agent, behind the trait: `cuda_p2p` (GPU -> GPU through the
//! PCIe switch, Path 1), `cuda_d2h` and `cuda_h2d` (GPU <-> pinned host memory: one GPU's PCIe
//! link per direction, the isolation probes). Both ends live in the same process: the
//! receiver registers its buffer in a process-local table and its endpoint description is
//! `{"pid": P, "handle": H}`; the sender looks the buffer up, so a sender in another process
//! is a protocol error, not a crash.
//!
//! Each transfer is `loops` copies enqueued behind the start gate and timed by CUDA events:
//! the time the copy engine took, without enqueue overhead. The copy lands in the receiver's
//! buffer before the end event completes, which is the completion acknowledgement here. A
//! contended set runs as one multi-lane operation ([`Transport::run_lanes`]): every lane's
//! copies behind one gate, released by one host write.
//!
//! Flow options: `src_gpu`, `dst_gpu` (CUDA ordinal or PCI bus id; `cuda_d2h` has no
//! `dst_gpu`, `cuda_h2d` no `src_gpu`), `loops` (copies behind one gate per transfer, 1 to
//! 64, default 1: the transfer's time is their event interval divided by the count, as
//! nvbandwidth's loop count).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cudarc::driver::CudaContext;

use super::lanes::{LaneGate, LaneRun, LaneSample};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};
use crate::gpu::copy::{run_lanes, CopyOptions, Lane, Side};
use crate::gpu::device::{contexts, enable_peer_pair, GpuSelector};
use crate::gpu::gate::Gate;
use crate::gpu::memory::{DeviceBuffer, PinnedBuffer};
use crate::gpu::{self, GpuError};

/// Which copy this transport makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// GPU -> GPU (peer copy).
    P2p,
    /// GPU -> host.
    D2h,
    /// Host -> GPU.
    H2d,
}

impl CopyKind {
    /// Whether the source and destination are GPUs.
    pub fn ends(self) -> (bool, bool) {
        match self {
            CopyKind::P2p => (true, true),
            CopyKind::D2h => (true, false),
            CopyKind::H2d => (false, true),
        }
    }

    fn transport(self) -> TransportKind {
        match self {
            CopyKind::P2p => TransportKind::CudaP2p,
            CopyKind::D2h => TransportKind::CudaD2h,
            CopyKind::H2d => TransportKind::CudaH2d,
        }
    }
}

/// The copy-engine transports.
pub struct CudaCopy(pub CopyKind);

/// Maps a GPU error onto the flow: "not available" becomes a waiver, the rest a device error.
pub fn gpu_err(kind: TransportKind, flow: u64) -> impl Fn(GpuError) -> TransportError {
    move |e| match e {
        GpuError::Unavailable(u) => TransportError::Waived { kind, reason: u.to_string() },
        other => TransportError::Device { flow, message: other.to_string() },
    }
}

/// Whether CUDA can run here (library, driver, at least `need` devices).
pub fn cuda_applicability(need: usize) -> Applicability {
    match gpu::driver_status() {
        Err(u) => Applicability::Waived { reason: u.to_string() },
        Ok(info) if info.devices < need => {
            Applicability::Waived { reason: gpu::Unavailable::TooFewGpus { need, have: info.devices }.to_string() }
        }
        Ok(_) => Applicability::Applies,
    }
}

/// Copies per transfer from the `loops` option (1 by default).
pub fn loops_of(flow: &FlowSpec) -> Result<u32, String> {
    match flow.options.get("loops") {
        None | Some(serde_json::Value::Null) => Ok(1),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u64::from(crate::gpu::copy::MAX_LOOPS)).contains(&n) => Ok(n as u32),
            _ => Err(format!("flow option 'loops' is {v}: expected 1..={}", crate::gpu::copy::MAX_LOOPS)),
        },
    }
}

/// The source and destination GPU ordinals a flow names, checked against the copy kind.
pub fn flow_gpus(kind: CopyKind, flow: &FlowSpec) -> Result<(Option<usize>, Option<usize>), GpuError> {
    pick_gpus(kind, flow, &gpu::enumerate()?)
}

/// The source and destination ordinals a flow names among `devices` (either vendor's).
pub fn pick_gpus<D: crate::gpu::device::BusDevice>(
    kind: CopyKind,
    flow: &FlowSpec,
    devices: &[D],
) -> Result<(Option<usize>, Option<usize>), GpuError> {
    let pick = |key: &str, wanted: bool| -> Result<Option<usize>, GpuError> {
        match (GpuSelector::from_options(&flow.options, key)?, wanted) {
            (Some(s), true) => s.resolve(devices).map(Some),
            (None, true) => Err(GpuError::Invalid(format!("flow option '{key}' is required (a GPU ordinal or PCI bus id)"))),
            (Some(_), false) => {
                Err(GpuError::Invalid(format!("flow option '{key}' does not apply to this copy: that end is host memory")))
            }
            (None, false) => Ok(None),
        }
    };
    let (s, d) = kind.ends();
    Ok((pick("src_gpu", s)?, pick("dst_gpu", d)?))
}

/// What the receiver learns from its sender.
pub(super) enum Event {
    Transfer(u64),
    Finish,
}

/// A prepared receiver's destination, waiting for its sender in this process: the buffer (a
/// vendor's `Side`, type-erased so CUDA and HIP copies share the table) and the channel the
/// sender reports on.
struct Entry {
    dst: Box<dyn std::any::Any + Send>,
    events: mpsc::Sender<Event>,
}

fn table() -> &'static Mutex<HashMap<u64, Entry>> {
    static T: OnceLock<Mutex<HashMap<u64, Entry>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Registers a destination for the sender (`for_sender`, a shared handle to the buffer) and
/// returns the endpoint and the receiver, which keeps `keep` (the buffer) alive until served.
pub(super) fn register(
    flow: &FlowSpec,
    for_sender: Box<dyn std::any::Any + Send>,
    keep: Box<dyn std::any::Any + Send>,
) -> PreparedReceiver {
    let (tx, rx) = mpsc::channel();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let handle = NEXT.fetch_add(1, Ordering::Relaxed);
    table().lock().expect("copy endpoint table").insert(handle, Entry { dst: for_sender, events: tx });
    let endpoint = serde_json::json!({ "pid": std::process::id(), "handle": handle });
    let receiver = CopyReceiver { flow: flow.id, timeout: flow.timeout(), events: rx, _dst: keep, handle };
    PreparedReceiver { endpoint, receiver: Box::new(receiver) }
}

/// The destination a receiver of this process registered under the endpoint's handle, and
/// its channel; a foreign or unknown endpoint is a protocol error naming why.
pub(super) fn claim(
    kind: TransportKind,
    flow: &FlowSpec,
    endpoint: &serde_json::Value,
) -> Result<(Box<dyn std::any::Any + Send>, mpsc::Sender<Event>), TransportError> {
    let pid = endpoint.get("pid").and_then(|v| v.as_u64());
    let handle = endpoint.get("handle").and_then(|v| v.as_u64());
    let (Some(pid), Some(handle)) = (pid, handle) else {
        return Err(TransportError::protocol(flow.id, format!("endpoint {endpoint} lacks pid/handle")));
    };
    if pid != u64::from(std::process::id()) {
        return Err(TransportError::protocol(
            flow.id,
            format!("{kind} runs inside one agent: the receiver is in process {pid}, this is {}", std::process::id()),
        ));
    }
    let entry = table().lock().expect("copy endpoint table").remove(&handle);
    let entry = entry.ok_or_else(|| TransportError::protocol(flow.id, format!("no prepared receiver with handle {handle}")))?;
    Ok((entry.dst, entry.events))
}

fn share(side: &Side) -> Side {
    match side {
        Side::Device(d) => Side::Device(d.clone()),
        Side::Host(h) => Side::Host(h.clone()),
    }
}

/// Allocates one end of a copy: device memory on `gpu`, or pinned host memory (allocated
/// through `ctx`, portable to every context).
fn alloc_side(ctx: &Arc<CudaContext>, on_gpu: bool, len: usize, fill: u8) -> Result<Side, GpuError> {
    let len = len.max(1);
    Ok(if on_gpu {
        Side::Device(Arc::new(DeviceBuffer::new(ctx, len, fill)?))
    } else {
        Side::Host(Arc::new(PinnedBuffer::new(ctx, len)?))
    })
}

impl Transport for CudaCopy {
    fn kind(&self) -> TransportKind {
        self.0.transport()
    }

    fn applicability(&self) -> Applicability {
        cuda_applicability(if self.0 == CopyKind::P2p { 2 } else { 1 })
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let err = gpu_err(self.kind(), flow.id);
        let (src, dst) = flow_gpus(self.0, flow).map_err(&err)?;
        let owner = dst.or(src).expect("every copy kind has a GPU end");
        let ctx = contexts(&[owner]).map_err(&err)?.remove(0);
        let side = alloc_side(&ctx, dst.is_some(), flow.max_bytes as usize, 0).map_err(&err)?;
        Ok(register(flow, Box::new(share(&side)), Box::new(side)))
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let err = gpu_err(self.kind(), flow.id);
        let loops = loops_of(flow).map_err(|m| TransportError::protocol(flow.id, m))?;
        let (dst_side, events) = claim(self.kind(), flow, endpoint)?;
        let dst_side = *dst_side
            .downcast::<Side>()
            .map_err(|_| TransportError::protocol(flow.id, "the receiver's buffer is not a CUDA buffer"))?;
        let (src, dst) = flow_gpus(self.0, flow).map_err(&err)?;
        let driver = src.or(dst).expect("every copy kind has a GPU end");
        let ctx = contexts(&[driver]).map_err(&err)?.remove(0);
        if let (Some(_), Some(d)) = (src, dst) {
            let peer = contexts(&[d]).map_err(&err)?.remove(0);
            enable_peer_pair(&ctx, &peer).map_err(&err)?;
        }
        let src_side = alloc_side(&ctx, src.is_some(), flow.max_bytes as usize, 0xa5).map_err(&err)?;
        let lane = Lane::new(&ctx, src_side, dst_side).map_err(&err)?;
        let gate = Gate::new(&ctx, flow.timeout_s.max(1.0)).map_err(&err)?;
        Ok(Box::new(CopySender { kind: self.kind(), flow: flow.id, timeout_s: flow.timeout_s, loops, gate, lane, events }))
    }

    /// All lanes behind one gate ([`gated_lanes`]); senders of another transport fall back to
    /// the default (threads and a barrier).
    fn run_lanes(&self, senders: &mut [&mut dyn Sender], bytes: u64, copies: u32) -> Result<LaneRun, TransportError> {
        match gated_lanes(senders, bytes, copies.clamp(1, crate::gpu::copy::MAX_LOOPS)) {
            Some(r) => r,
            None => super::lanes::by_threads(senders, bytes, copies),
        }
    }
}

struct CopySender {
    kind: TransportKind,
    flow: u64,
    timeout_s: f64,
    loops: u32,
    gate: Gate,
    lane: Lane,
    events: mpsc::Sender<Event>,
}

impl Sender for CopySender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let opt = CopyOptions { bytes: bytes as usize, loops: self.loops, samples: 1, warmup: 0, timeout_s: self.timeout_s };
        let t = run_lanes(&self.gate, &[&self.lane], &opt).map_err(gpu_err(self.kind, self.flow))?;
        let _ = self.events.send(Event::Transfer(bytes));
        Ok(Duration::from_secs_f64(t[0][0]))
    }

    fn finish(self: Box<Self>) -> Result<(), TransportError> {
        let _ = self.events.send(Event::Finish);
        Ok(())
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

/// One sample of a multi-lane set of copy-engine senders: every lane's `copies` copies are
/// enqueued behind the FIRST sender's gate (one flag; each lane's stream held by a spin kernel
/// on its own GPU) and released by one host write, so the lanes start together; each lane's
/// time is its own event interval. Each lane counts as one transfer for its receiver. None
/// when a sender is not a CUDA copy sender.
fn gated_lanes(senders: &mut [&mut dyn Sender], bytes: u64, copies: u32) -> Option<Result<LaneRun, TransportError>> {
    let mut cs = Vec::with_capacity(senders.len());
    for s in senders.iter_mut() {
        cs.push(s.as_any_mut()?.downcast_mut::<CopySender>()?);
    }
    let first = cs.first()?;
    let (kind, flow) = (first.kind, first.flow);
    let timeout_s = cs.iter().map(|c| c.timeout_s).fold(0.0, f64::max);
    let opt = CopyOptions { bytes: bytes as usize, loops: copies, samples: 1, warmup: 0, timeout_s };
    let lanes: Vec<&Lane> = cs.iter().map(|c| &c.lane).collect();
    let times = match run_lanes(&first.gate, &lanes, &opt) {
        Ok(t) => t,
        Err(e) => return Some(Err(gpu_err(kind, flow)(e))),
    };
    for c in &cs {
        let _ = c.events.send(Event::Transfer(bytes));
    }
    let lanes =
        times.iter().map(|t| LaneSample { start_s: 0.0, elapsed_s: t[0] * f64::from(copies), copies, transfers: 1 }).collect();
    Some(Ok(LaneRun { gate: LaneGate::Device, lanes }))
}

struct CopyReceiver {
    flow: u64,
    timeout: Duration,
    events: mpsc::Receiver<Event>,
    /// Keeps the destination alive until the sender is done with it.
    _dst: Box<dyn std::any::Any + Send>,
    handle: u64,
}

impl Receiver for CopyReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let mut stats = ReceiverStats::default();
        let result = loop {
            match self.events.recv_timeout(self.timeout) {
                Ok(Event::Transfer(b)) => {
                    stats.transfers += 1;
                    stats.bytes += b;
                }
                Ok(Event::Finish) => break Ok(stats),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Err(TransportError::Timeout {
                        flow: self.flow,
                        what: "the next copy from the sender".into(),
                        timeout_s: self.timeout.as_secs_f64(),
                    })
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(TransportError::protocol(self.flow, "the sender went away without finishing"))
                }
            }
        };
        // A sender that never connected leaves its entry behind.
        table().lock().expect("copy endpoint table").remove(&self.handle);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(options: serde_json::Value) -> FlowSpec {
        FlowSpec {
            id: 9,
            transport: TransportKind::CudaP2p,
            local_addr: None,
            max_bytes: 1 << 20,
            timeout_s: 1.0,
            options,
            tcp_congestion: None,
        }
    }

    #[test]
    fn loop_counts() {
        assert_eq!(loops_of(&flow(serde_json::Value::Null)).unwrap(), 1);
        assert_eq!(loops_of(&flow(serde_json::json!({"loops": 16}))).unwrap(), 16);
        for bad in [serde_json::json!({"loops": 0}), serde_json::json!({"loops": 65}), serde_json::json!({"loops": "x"})] {
            assert!(loops_of(&flow(bad)).unwrap_err().contains("loops"));
        }
    }

    #[test]
    fn copy_kinds_name_their_transports_and_ends() {
        assert_eq!(CudaCopy(CopyKind::P2p).kind(), TransportKind::CudaP2p);
        assert_eq!(CudaCopy(CopyKind::D2h).kind().as_str(), "cuda_d2h");
        assert_eq!(CudaCopy(CopyKind::H2d).kind().as_str(), "cuda_h2d");
        assert_eq!(CopyKind::D2h.ends(), (true, false));
    }

    #[test]
    fn without_cuda_every_step_is_a_waiver_not_a_crash() {
        if gpu::driver_status().is_ok() {
            return; // a real GPU machine: the hardware smoke test covers it
        }
        for kind in [CopyKind::P2p, CopyKind::D2h, CopyKind::H2d] {
            let t = CudaCopy(kind);
            let Applicability::Waived { reason } = t.applicability() else { panic!("applies without a driver") };
            assert!(!reason.is_empty());
            let f = flow(serde_json::json!({"src_gpu": 0, "dst_gpu": 1}));
            match t.prepare_receiver(&f) {
                Err(TransportError::Waived { kind: k, reason: r }) => {
                    assert_eq!(k, t.kind());
                    assert_eq!(r, reason);
                }
                Err(e) => panic!("expected a waiver, got {e}"),
                Ok(_) => panic!("prepared a CUDA receiver without CUDA"),
            }
        }
    }

    #[test]
    fn senders_of_other_transports_run_as_threaded_lanes_not_behind_the_gate() {
        // No CUDA sender among them: the copy transport's multi-lane call says it could not
        // hold them behind one gate (threads and a barrier), and still runs every copy.
        let (mut a, mut b) = (super::super::lanes::tests::sleepy(1, None), super::super::lanes::tests::sleepy(1, None));
        let run = CudaCopy(CopyKind::P2p).run_lanes(&mut [&mut a, &mut b], 1, 8).unwrap();
        assert_eq!(run.gate, LaneGate::Threads);
        assert_eq!((a.made, b.made), (8, 8));
    }

    #[test]
    fn senders_refuse_foreign_or_unknown_endpoints() {
        let t = CudaCopy(CopyKind::P2p);
        let f = flow(serde_json::Value::Null);
        let other = serde_json::json!({"pid": u64::from(std::process::id()) + 1, "handle": 1});
        assert!(
            matches!(t.connect_sender(&f, &other), Err(TransportError::Protocol { message, .. }) if message.contains("inside one agent"))
        );
        let unknown = serde_json::json!({"pid": std::process::id(), "handle": u64::MAX});
        assert!(
            matches!(t.connect_sender(&f, &unknown), Err(TransportError::Protocol { message, .. }) if message.contains("no prepared receiver"))
        );
        assert!(matches!(t.connect_sender(&f, &serde_json::json!({})), Err(TransportError::Protocol { .. })));
    }
}
