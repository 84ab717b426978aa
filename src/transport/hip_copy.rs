//! SDMA copies on AMD GPUs inside one agent, behind the same trait and endpoint table as the
//! CUDA copies ([`super::cuda_p2p`]): `hip_p2p` (GPU -> GPU, Path 1, or an xGMI link the
//! catalogue labels as outside the spec), `hip_d2h` and `hip_h2d` (one GPU's PCIe link per
//! direction). Each transfer is `loops` copies on a non-blocking stream behind the start
//! gate ([`crate::gpu::hip::copy`]), timed by HIP events.
//!
//! Flow options: as the CUDA copies (`src_gpu`, `dst_gpu` as a HIP ordinal or PCI bus id,
//! `loops`).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::cuda_p2p::{claim, gpu_err, loops_of, pick_gpus, register, CopyKind, Event};
use super::{Applicability, FlowSpec, PreparedReceiver, Sender, Transport, TransportError, TransportKind};
use crate::gpu::copy::CopyOptions;
use crate::gpu::hip::copy::{choose_gate, run_lanes, GateKind, HipGate, HipLane, HipSide};
use crate::gpu::hip::memory::{HipDeviceBuffer, HipPinned};
use crate::gpu::hip::{self, HipDevice};
use crate::gpu::{GpuError, Unavailable};

/// The HIP copy transports.
pub struct HipCopy(pub CopyKind);

impl HipCopy {
    fn transport(&self) -> TransportKind {
        match self.0 {
            CopyKind::P2p => TransportKind::HipP2p,
            CopyKind::D2h => TransportKind::HipD2h,
            CopyKind::H2d => TransportKind::HipH2d,
        }
    }
}

/// Whether HIP can run here with at least `need` devices.
pub fn hip_applicability(need: usize) -> Applicability {
    match hip::hip_status() {
        Err(u) => Applicability::Waived { reason: u.to_string() },
        Ok(i) if i.devices < need => {
            Applicability::Waived { reason: Unavailable::HipTooFew { need, have: i.devices }.to_string() }
        }
        Ok(_) => Applicability::Applies,
    }
}

fn share(side: &HipSide) -> HipSide {
    match side {
        HipSide::Device(d) => HipSide::Device(d.clone()),
        HipSide::Host(h) => HipSide::Host(h.clone()),
    }
}

fn alloc_side(device: usize, on_gpu: bool, len: usize, fill: u8) -> Result<HipSide, GpuError> {
    let len = len.max(1);
    Ok(if on_gpu {
        HipSide::Device(Arc::new(HipDeviceBuffer::new(device, len, fill)?))
    } else {
        HipSide::Host(Arc::new(HipPinned::new(device, len)?))
    })
}

fn wait_support(devices: &[HipDevice], ordinal: usize) -> bool {
    devices.iter().any(|d| d.ordinal == ordinal && d.stream_wait_value)
}

impl Transport for HipCopy {
    fn kind(&self) -> TransportKind {
        self.transport()
    }

    fn applicability(&self) -> Applicability {
        hip_applicability(if self.0 == CopyKind::P2p { 2 } else { 1 })
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let err = gpu_err(self.kind(), flow.id);
        let devices = hip::enumerate().map_err(&err)?;
        let (src, dst) = pick_gpus(self.0, flow, &devices).map_err(&err)?;
        let owner = dst.or(src).expect("every copy kind has a GPU end");
        let side = alloc_side(owner, dst.is_some(), flow.max_bytes as usize, 0).map_err(&err)?;
        Ok(register(flow, Box::new(share(&side)), Box::new(side)))
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let err = gpu_err(self.kind(), flow.id);
        let loops = loops_of(flow).map_err(|m| TransportError::protocol(flow.id, m))?;
        let (dst, events) = claim(self.kind(), flow, endpoint)?;
        let dst = *dst
            .downcast::<HipSide>()
            .map_err(|_| TransportError::protocol(flow.id, "the receiver's buffer is not a HIP buffer"))?;
        let devices = hip::enumerate().map_err(&err)?;
        let (src, dst_gpu) = pick_gpus(self.0, flow, &devices).map_err(&err)?;
        let driver = src.or(dst_gpu).expect("every copy kind has a GPU end");
        if let (Some(a), Some(b)) = (src, dst_gpu) {
            hip::enable_peer_pair(a, b).map_err(&err)?;
        }
        let src_side = alloc_side(driver, src.is_some(), flow.max_bytes as usize, 0xa5).map_err(&err)?;
        let lane = HipLane::new(driver, src_side, dst).map_err(&err)?;
        let gate = match choose_gate(&[(driver, wait_support(&devices, driver))]).map_err(|u| err(u.into()))? {
            GateKind::StreamWait => Some(HipGate::new(driver).map_err(&err)?),
            GateKind::Ungated => None,
        };
        Ok(Box::new(HipCopySender { kind: self.kind(), flow: flow.id, timeout_s: flow.timeout_s, loops, gate, lane, events }))
    }
}

struct HipCopySender {
    kind: TransportKind,
    flow: u64,
    timeout_s: f64,
    loops: u32,
    gate: Option<HipGate>,
    lane: HipLane,
    events: mpsc::Sender<Event>,
}

impl Sender for HipCopySender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let opt = CopyOptions { bytes: bytes as usize, loops: self.loops, samples: 1, warmup: 0, timeout_s: self.timeout_s };
        let t = run_lanes(self.gate.as_ref(), std::slice::from_ref(&self.lane), &opt).map_err(gpu_err(self.kind, self.flow))?;
        let _ = self.events.send(Event::Transfer(bytes));
        Ok(Duration::from_secs_f64(t[0][0]))
    }

    fn finish(self: Box<Self>) -> Result<(), TransportError> {
        let _ = self.events.send(Event::Finish);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(options: serde_json::Value) -> FlowSpec {
        FlowSpec {
            id: 7,
            transport: TransportKind::HipP2p,
            local_addr: None,
            max_bytes: 1 << 20,
            timeout_s: 1.0,
            options,
            tcp_congestion: None,
        }
    }

    #[test]
    fn hip_kinds_name_their_transports() {
        assert_eq!(HipCopy(CopyKind::P2p).kind().as_str(), "hip_p2p");
        assert_eq!(HipCopy(CopyKind::D2h).kind().as_str(), "hip_d2h");
        assert_eq!(HipCopy(CopyKind::H2d).kind().as_str(), "hip_h2d");
    }

    #[test]
    fn without_rocm_every_step_is_the_library_waiver() {
        if hip::hip_status().is_ok() {
            return; // a ROCm host: the hardware smoke test covers it
        }
        for kind in [CopyKind::P2p, CopyKind::D2h, CopyKind::H2d] {
            let t = HipCopy(kind);
            let Applicability::Waived { reason } = t.applicability() else { panic!("applies without ROCm") };
            assert_eq!(reason, "libamdhip64.so not found");
            match t.prepare_receiver(&flow(serde_json::json!({"src_gpu": 0, "dst_gpu": 1}))) {
                Err(TransportError::Waived { kind: k, reason: r }) => assert_eq!((k, r.as_str()), (t.kind(), reason.as_str())),
                Err(e) => panic!("expected a waiver, got {e}"),
                Ok(_) => panic!("prepared a HIP receiver without ROCm"),
            }
        }
    }

    #[test]
    fn senders_refuse_endpoints_of_other_processes() {
        let t = HipCopy(CopyKind::D2h);
        let other = serde_json::json!({"pid": u64::from(std::process::id()) + 1, "handle": 1});
        let e = t.connect_sender(&flow(serde_json::Value::Null), &other).err().unwrap();
        assert!(matches!(e, TransportError::Protocol { message, .. } if message.contains("hip_d2h runs inside one agent")));
    }
}
