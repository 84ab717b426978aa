//! Path 3 as real hardware runs it without GPUDirect: GPU memory -> pinned (not
//! write-combined) host slots -> TCP -> pinned slots -> GPU memory, chunked and pipelined with
//! double buffering (the copy of chunk n+1 overlaps the socket transfer of chunk n), using the
//! pipeline of [`crate::gpu::staging`] with CUDA async copies.
//!
//! Framing is the host TCP transports': `header(len) + len bytes` per transfer, answered by a
//! one-byte completion acknowledgement once the last chunk is in the receiver's GPU memory.
//!
//! Flow options: `src_gpu`, `dst_gpu` (GPU ordinal or PCI bus id), `chunk_bytes` (default
//! 1 MiB). `gpu_staged_tcp` stages with CUDA, `hip_staged_tcp` with HIP (AMD GPUs); the
//! pipeline, framing and timing are the same.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cuda_p2p::{cuda_applicability, gpu_err};
use super::host_tcp::{accept, await_ack, connect, io_err, listen, send_finish};
use super::net::{self, ACK, FINISH};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};
use crate::gpu::device::{contexts, GpuSelector};
use crate::gpu::hip::{self, memory::HipDeviceBuffer, staging::HipStager};
use crate::gpu::memory::DeviceBuffer;
use crate::gpu::pci::GpuVendor;
use crate::gpu::staging::{receive_staged, send_staged, CudaStager, Stager};
use crate::gpu::{self, GpuError};

/// Default staging chunk, bytes.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// The GPU-staged TCP transport, staging with the vendor's runtime (CUDA or HIP).
pub struct GpuStagedTcp(pub GpuVendor);

/// A stager of either vendor.
type AnyStager = Box<dyn Stager + Send>;

/// The staging chunk from flow options (`chunk_bytes`), checked.
pub fn chunk_bytes(flow: &FlowSpec) -> Result<usize, String> {
    match flow.options.get("chunk_bytes") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_CHUNK),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=crate::transport::MAX_CHUNK_BYTES).contains(&n) => Ok(n as usize),
            _ => Err(format!("flow option 'chunk_bytes' is {v}: expected 1..={} bytes", crate::transport::MAX_CHUNK_BYTES)),
        },
    }
}

/// Opens the GPU named by `key` and a staging pipeline of `chunk` bytes over a buffer of
/// `len` bytes on it, with `vendor`'s runtime.
fn stager(vendor: GpuVendor, flow: &FlowSpec, key: &str, len: usize, chunk: usize, fill: u8) -> Result<AnyStager, GpuError> {
    let sel = GpuSelector::from_options(&flow.options, key)?
        .ok_or_else(|| GpuError::Invalid(format!("flow option '{key}' is required (a GPU ordinal or PCI bus id)")))?;
    Ok(match vendor {
        GpuVendor::Nvidia => {
            let ctx = contexts(&[sel.resolve(&gpu::enumerate()?)?])?.remove(0);
            let buf = Arc::new(DeviceBuffer::new(&ctx, len.max(1), fill)?);
            Box::new(CudaStager::new(&ctx, buf, chunk)?)
        }
        GpuVendor::Amd => {
            let ordinal = sel.resolve(&hip::enumerate()?)?;
            let buf = Arc::new(HipDeviceBuffer::new(ordinal, len.max(1), fill)?);
            Box::new(HipStager::new(buf, chunk)?)
        }
    })
}

impl Transport for GpuStagedTcp {
    fn kind(&self) -> TransportKind {
        match self.0 {
            GpuVendor::Nvidia => TransportKind::GpuStagedTcp,
            GpuVendor::Amd => TransportKind::HipStagedTcp,
        }
    }

    fn applicability(&self) -> Applicability {
        match self.0 {
            GpuVendor::Nvidia => cuda_applicability(1),
            GpuVendor::Amd => super::hip_copy::hip_applicability(1),
        }
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let chunk = chunk_bytes(flow).map_err(|m| TransportError::protocol(flow.id, m))?;
        let stager = stager(self.0, flow, "dst_gpu", flow.max_bytes as usize, chunk, 0).map_err(gpu_err(self.kind(), flow.id))?;
        let (listener, addr) = listen(flow)?;
        let receiver = StagedReceiver { flow: flow.clone(), listener, stager, chunk };
        Ok(PreparedReceiver { endpoint: serde_json::json!({ "addr": addr.to_string() }), receiver: Box::new(receiver) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let chunk = chunk_bytes(flow).map_err(|m| TransportError::protocol(flow.id, m))?;
        let stager =
            stager(self.0, flow, "src_gpu", flow.max_bytes as usize, chunk, 0xc3).map_err(gpu_err(self.kind(), flow.id))?;
        let stream = connect(flow, endpoint)?;
        Ok(Box::new(StagedSender { flow: flow.id, timeout_s: flow.timeout_s, max: flow.max_bytes, stream, stager, chunk }))
    }
}

struct StagedSender {
    flow: u64,
    timeout_s: f64,
    max: u64,
    stream: TcpStream,
    stager: AnyStager,
    chunk: usize,
}

impl Sender for StagedSender {
    fn delivery_probe(&self) -> Option<crate::transport::DeliveryProbe> {
        net::acked_probe(&self.stream)
    }

    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let (flow, t) = (self.flow, self.timeout_s);
        if bytes > self.max {
            return Err(TransportError::protocol(flow, format!("payload {bytes} B exceeds the flow's max_bytes {}", self.max)));
        }
        let start = Instant::now();
        net::write_header(&mut self.stream, bytes).map_err(|e| io_err(flow, t, "send header", e))?;
        send_staged(&mut *self.stager, &mut self.stream, bytes as usize, self.chunk).map_err(|e| staging_err(flow, t, e))?;
        await_ack(&mut self.stream, flow, t)?;
        Ok(start.elapsed())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        send_finish(&mut self.stream, self.flow, self.timeout_s)
    }
}

/// A staging failure: socket errors keep their timeout meaning, GPU errors are device errors.
fn staging_err(flow: u64, t: f64, e: GpuError) -> TransportError {
    match e {
        GpuError::Io { what, source } => io_err(flow, t, what, source),
        other => TransportError::Device { flow, message: other.to_string() },
    }
}

struct StagedReceiver {
    flow: FlowSpec,
    listener: TcpListener,
    stager: AnyStager,
    chunk: usize,
}

impl Receiver for StagedReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let StagedReceiver { flow, listener, mut stager, chunk } = *self;
        let mut stream = accept(&flow, &listener)?;
        drop(listener);
        let (id, t) = (flow.id, flow.timeout_s);
        let mut stats = ReceiverStats::default();
        loop {
            let len = match net::read_header(&mut stream).map_err(|e| io_err(id, t, "read header", e))? {
                None | Some(FINISH) => return Ok(stats),
                Some(len) => len,
            };
            if len > flow.max_bytes {
                return Err(TransportError::protocol(
                    id,
                    format!("payload {len} B exceeds the flow's max_bytes {}", flow.max_bytes),
                ));
            }
            receive_staged(&mut *stager, &mut stream, len as usize, chunk).map_err(|e| staging_err(id, t, e))?;
            stream.write_all(&[ACK]).map_err(|e| io_err(id, t, "send ack", e))?;
            stats.transfers += 1;
            stats.bytes += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(options: serde_json::Value) -> FlowSpec {
        FlowSpec {
            id: 5,
            transport: TransportKind::GpuStagedTcp,
            local_addr: Some("127.0.0.1".into()),
            max_bytes: 1 << 20,
            timeout_s: 1.0,
            options,
            tcp_congestion: None,
        }
    }

    #[test]
    fn chunk_option() {
        assert_eq!(chunk_bytes(&flow(serde_json::Value::Null)).unwrap(), DEFAULT_CHUNK);
        assert_eq!(chunk_bytes(&flow(serde_json::json!({"chunk_bytes": 4096}))).unwrap(), 4096);
        for bad in [
            serde_json::json!({"chunk_bytes": 0}),
            serde_json::json!({"chunk_bytes": "1M"}),
            serde_json::json!({"chunk_bytes": -1}),
        ] {
            assert!(chunk_bytes(&flow(bad)).unwrap_err().contains("chunk_bytes"));
        }
    }

    #[test]
    fn without_cuda_it_is_waived_before_any_socket_opens() {
        if gpu::driver_status().is_ok() {
            return; // a real GPU machine: the hardware smoke test covers it
        }
        let t = GpuStagedTcp(GpuVendor::Nvidia);
        assert!(matches!(t.applicability(), Applicability::Waived { .. }));
        match t.prepare_receiver(&flow(serde_json::json!({"src_gpu": 0, "dst_gpu": 1}))) {
            Err(TransportError::Waived { kind: TransportKind::GpuStagedTcp, reason }) => assert!(!reason.is_empty()),
            Err(e) => panic!("expected a waiver, got {e}"),
            Ok(_) => panic!("prepared without CUDA"),
        }
    }

    #[test]
    fn the_hip_stager_is_waived_without_rocm_before_any_socket_opens() {
        if hip::hip_status().is_ok() {
            return; // a ROCm host
        }
        let t = GpuStagedTcp(GpuVendor::Amd);
        assert_eq!(t.kind(), TransportKind::HipStagedTcp);
        assert_eq!(t.applicability(), Applicability::Waived { reason: "libamdhip64.so not found".into() });
        match t.prepare_receiver(&flow(serde_json::json!({"dst_gpu": 0}))) {
            Err(TransportError::Waived { kind: TransportKind::HipStagedTcp, reason }) => {
                assert_eq!(reason, "libamdhip64.so not found")
            }
            Err(e) => panic!("expected a waiver, got {e}"),
            Ok(_) => panic!("prepared without ROCm"),
        }
    }
}
