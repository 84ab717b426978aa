//! Transports: one trait for every link kind, one file per kind, and a registry enum.
//!
//! # The contract
//! A flow moves payloads from a **sender** to a **receiver**, usually in two agents on two
//! hosts (for CUDA P2P both ends live in one agent). The control plane (the `control` room,
//! one layer up) carries the setup; the data plane is the transport's own business:
//!
//! 1. The receiver's agent calls [`Transport::prepare_receiver`] with the [`FlowSpec`]. It
//!    allocates what the flow needs (a listening socket, a registered buffer of
//!    [`FlowSpec::max_bytes`], a queue pair) and returns a [`PreparedReceiver`]: an opaque
//!    **endpoint description** (`serde_json::Value`) plus the [`Receiver`] object. Socket
//!    transports put `{"addr": "IP:port"}` there; GPUDirect RDMA puts what perftest exchanges
//!    (QPN, PSN, LID/GID, rkey, remote address); CUDA P2P puts a process-local handle.
//! 2. The agent runs [`Receiver::serve`] on its own thread; it returns when the sender
//!    finishes (or the data plane fails).
//! 3. The coordinator hands the endpoint to the sender's agent, which calls
//!    [`Transport::connect_sender`] with it and gets a [`Sender`].
//! 4. Each [`Sender::transfer`] moves one payload of `bytes` and returns its time, measured
//!    on the sender from the first byte handed to the transport until the receiver's
//!    **completion acknowledgement** arrives (the payload is in the destination buffer).
//!    Transfers of one flow are sequential; concurrency comes from several flows.
//! 5. [`Sender::finish`] tells the receiver that no more transfers come and releases resources.
//!
//! Every blocking step honours [`FlowSpec::timeout_s`], so a dead peer is an error, never a hang.
//!
//! [`Transport::applicability`] says, before any of this, whether the transport can run on
//! this host (e.g. no `libcuda.so`, no RDMA device): a transport that does not apply is
//! *waived with a reason*, never failed.
//!
//! # Adding a transport
//! Add a variant to [`TransportKind`], a file with its implementation, and an arm in
//! [`TransportKind::instance`] (the match is exhaustive, so the compiler lists every place
//! that must learn about it).

pub mod cuda_p2p;
pub mod gpu_staged_tcp;
pub mod gpudirect_rdma;
pub mod hip_copy;
pub mod host_tcp;
pub mod lanes;
pub mod mooncake;
pub mod net;
pub mod nixl;
pub mod routes;
pub mod staged_tcp;
pub mod window;

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest staging chunk (`chunk_bytes` flow option), bytes (64 MiB); agents refuse larger
/// ones before a transport sees them (the control plane states the same bound).
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// Largest data-plane timeout, seconds (one hour).
pub const MAX_TIMEOUT_S: f64 = 3600.0;

/// Errors of the data plane. Each names the flow and what failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An OS call failed.
    #[error("flow {flow}: {what}: {source}")]
    Io {
        /// Flow id.
        flow: u64,
        /// What was being done (e.g. `connect to 10.1.0.3:40000`).
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A wait ran past the flow's timeout.
    #[error("flow {flow}: {what} timed out after {timeout_s:.1} s (is the peer agent alive and its data address reachable?)")]
    Timeout {
        /// Flow id.
        flow: u64,
        /// What was awaited.
        what: String,
        /// The timeout, seconds.
        timeout_s: f64,
    },
    /// The peer violated the transfer protocol or the endpoint description is malformed.
    #[error("flow {flow}: {message}")]
    Protocol {
        /// Flow id.
        flow: u64,
        /// What was wrong.
        message: String,
    },
    /// A device (GPU, RDMA NIC) failed during the flow.
    #[error("flow {flow}: {message}")]
    Device {
        /// Flow id.
        flow: u64,
        /// What failed, naming the device call.
        message: String,
    },
    /// The transport does not apply on this host.
    #[error("transport {kind} is waived here: {reason}")]
    Waived {
        /// The transport.
        kind: TransportKind,
        /// Why.
        reason: String,
    },
}

impl TransportError {
    /// An [`TransportError::Io`] for `flow`.
    pub fn io(flow: u64, what: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io { flow, what: what.into(), source }
    }

    /// A [`TransportError::Protocol`] for `flow`.
    pub fn protocol(flow: u64, message: impl Into<String>) -> Self {
        TransportError::Protocol { flow, message: message.into() }
    }
}

/// The registry of link kinds. Files: `host_tcp.rs`, `staged_tcp.rs`, `cuda_p2p.rs` (CUDA P2P
/// and the copy-engine H2D/D2H probes), `gpudirect_rdma.rs` (GPUDirect and host-memory
/// RDMA, with CUDA or HIP GPU memory), `gpu_staged_tcp.rs` (CUDA or HIP stager), `hip_copy.rs`
/// (the HIP copies), `nixl/` (the NIXL KV-transfer engine), `mooncake/` (Mooncake Transfer
/// Engine through a Python helper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// Host memory to host memory over TCP (what the emulated rack measures; iperf3's model).
    HostTcp,
    /// TCP with the staging copies of the GPU-staged path done in host memory:
    /// device buffer -> pinned buffer -> socket -> pinned buffer -> device buffer, chunked and
    /// pipelined.
    StagedTcp,
    /// GPU -> GPU copy-engine peer copy through the PCIe switch (CUDA, inside one agent).
    CudaP2p,
    /// GPU -> pinned host memory copy (one GPU's PCIe link, upstream).
    CudaD2h,
    /// Pinned host memory -> GPU copy (one GPU's PCIe link, downstream).
    CudaH2d,
    /// GPU memory -> NIC -> IB -> NIC -> GPU memory (RDMA WRITE, GPUDirect).
    GpudirectRdma,
    /// Host memory -> NIC -> IB -> NIC -> host memory (RDMA WRITE).
    HostRdma,
    /// GPU -> pinned host -> TCP -> pinned host -> GPU, chunked and double-buffered (CUDA).
    GpuStagedTcp,
    /// GPU -> GPU SDMA peer copy on AMD GPUs (HIP, inside one agent); over xGMI it is
    /// labelled outside the spec.
    HipP2p,
    /// AMD GPU -> pinned host memory (HIP; one GPU's PCIe link, upstream).
    HipD2h,
    /// Pinned host memory -> AMD GPU (HIP; one GPU's PCIe link, downstream).
    HipH2d,
    /// GPU-staged TCP with AMD GPUs at both ends (HIP stager, same pipeline).
    HipStagedTcp,
    /// KV blocks through the NIXL transfer engine (vLLM's NixlConnector, Dynamo): one
    /// descriptor per KV block, WRITE or READ with a notification; UCX (TCP, RDMA, GPU memory)
    /// or LIBFABRIC underneath. `libnixl_capi.so` is loaded at run time.
    Nixl,
    /// KV blocks through Mooncake Transfer Engine (SGLang, vLLM's MooncakeConnector): one
    /// slice per KV block, `batch_transfer_sync_write` over its TCP protocol in DRAM, driven by
    /// a Python helper from a venv with the wheel ([`mooncake`]).
    Mooncake,
}

impl TransportKind {
    /// Every kind.
    pub const ALL: [TransportKind; 14] = [
        TransportKind::HostTcp,
        TransportKind::StagedTcp,
        TransportKind::CudaP2p,
        TransportKind::CudaD2h,
        TransportKind::CudaH2d,
        TransportKind::GpudirectRdma,
        TransportKind::HostRdma,
        TransportKind::GpuStagedTcp,
        TransportKind::Nixl,
        TransportKind::Mooncake,
        TransportKind::HipP2p,
        TransportKind::HipD2h,
        TransportKind::HipH2d,
        TransportKind::HipStagedTcp,
    ];

    /// The snake_case name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::HostTcp => "host_tcp",
            TransportKind::StagedTcp => "staged_tcp",
            TransportKind::CudaP2p => "cuda_p2p",
            TransportKind::CudaD2h => "cuda_d2h",
            TransportKind::CudaH2d => "cuda_h2d",
            TransportKind::GpudirectRdma => "gpudirect_rdma",
            TransportKind::HostRdma => "host_rdma",
            TransportKind::GpuStagedTcp => "gpu_staged_tcp",
            TransportKind::Nixl => "nixl",
            TransportKind::Mooncake => "mooncake",
            TransportKind::HipP2p => "hip_p2p",
            TransportKind::HipD2h => "hip_d2h",
            TransportKind::HipH2d => "hip_h2d",
            TransportKind::HipStagedTcp => "hip_staged_tcp",
        }
    }

    /// Parses a name as written by [`TransportKind::as_str`].
    pub fn parse(s: &str) -> Option<TransportKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether its sender connects to an `{"addr": "IP:port"}` endpoint over the network (the
    /// CUDA copies stay inside one agent).
    pub fn is_networked(self) -> bool {
        !matches!(
            self,
            TransportKind::CudaP2p
                | TransportKind::CudaD2h
                | TransportKind::CudaH2d
                | TransportKind::HipP2p
                | TransportKind::HipD2h
                | TransportKind::HipH2d
        )
    }

    /// Whether it is a KV-transfer engine (NIXL, Mooncake): payloads move as KV blocks, and
    /// `calibrate` compares it with host TCP instead of solving segments with it.
    pub fn is_kv_engine(self) -> bool {
        matches!(self, TransportKind::Nixl | TransportKind::Mooncake)
    }

    /// The implementation of this kind.
    pub fn instance(self) -> Box<dyn Transport> {
        match self {
            TransportKind::HostTcp => Box::new(host_tcp::HostTcp),
            TransportKind::StagedTcp => Box::new(staged_tcp::StagedTcp),
            TransportKind::CudaP2p => Box::new(cuda_p2p::CudaCopy(cuda_p2p::CopyKind::P2p)),
            TransportKind::CudaD2h => Box::new(cuda_p2p::CudaCopy(cuda_p2p::CopyKind::D2h)),
            TransportKind::CudaH2d => Box::new(cuda_p2p::CudaCopy(cuda_p2p::CopyKind::H2d)),
            TransportKind::GpudirectRdma => Box::new(gpudirect_rdma::RdmaWrite { gpu: true }),
            TransportKind::HostRdma => Box::new(gpudirect_rdma::RdmaWrite { gpu: false }),
            TransportKind::GpuStagedTcp => Box::new(gpu_staged_tcp::GpuStagedTcp(crate::gpu::pci::GpuVendor::Nvidia)),
            TransportKind::Nixl => Box::new(nixl::Nixl),
            TransportKind::Mooncake => Box::new(mooncake::Mooncake),
            TransportKind::HipP2p => Box::new(hip_copy::HipCopy(cuda_p2p::CopyKind::P2p)),
            TransportKind::HipD2h => Box::new(hip_copy::HipCopy(cuda_p2p::CopyKind::D2h)),
            TransportKind::HipH2d => Box::new(hip_copy::HipCopy(cuda_p2p::CopyKind::H2d)),
            TransportKind::HipStagedTcp => Box::new(gpu_staged_tcp::GpuStagedTcp(crate::gpu::pci::GpuVendor::Amd)),
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a transport can run here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Applicability {
    /// It can run.
    Applies,
    /// It cannot run here; the reason says why (e.g. `libcuda.so not found`).
    Waived {
        /// Why.
        reason: String,
    },
}

/// What both ends of a flow are told. Sent over the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowSpec {
    /// Flow id, unique within a run.
    pub id: u64,
    /// The transport.
    pub transport: TransportKind,
    /// This end's data-plane address (receiver: where to listen; sender: source to bind), if any.
    pub local_addr: Option<String>,
    /// Largest payload the flow will carry, bytes (receivers size their buffers by it).
    pub max_bytes: u64,
    /// Every blocking data-plane wait gives up after this, seconds.
    pub timeout_s: f64,
    /// Transport-specific options (e.g. GPU index, staging chunk size); `null` for defaults.
    #[serde(default)]
    pub options: serde_json::Value,
    /// TCP congestion control TCP transports set on their sockets (`TCP_CONGESTION`); null:
    /// the host's default.
    #[serde(default)]
    pub tcp_congestion: Option<String>,
}

impl FlowSpec {
    /// The timeout as a [`Duration`], held to 1 ms..=[`MAX_TIMEOUT_S`]
    /// (NaN counts as the least), so no value panics here; agents refuse such flows earlier.
    pub fn timeout(&self) -> Duration {
        let t = if self.timeout_s.is_nan() { 0.001 } else { self.timeout_s.clamp(0.001, MAX_TIMEOUT_S) };
        Duration::from_secs_f64(t)
    }
}

/// A prepared receiver and the endpoint description its sender needs.
pub struct PreparedReceiver {
    /// Opaque to the coordinator: handed verbatim to [`Transport::connect_sender`].
    pub endpoint: serde_json::Value,
    /// Serves the flow; run it on its own thread.
    pub receiver: Box<dyn Receiver>,
}

/// What a receiver saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReceiverStats {
    /// Transfers completed (acknowledged).
    pub transfers: u64,
    /// Payload bytes received.
    pub bytes: u64,
}

/// One link kind.
pub trait Transport: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> TransportKind;
    /// Whether it can run on this host; a transport that cannot is waived with the reason.
    fn applicability(&self) -> Applicability;
    /// Receiver side: allocate, listen, and describe the endpoint for the sender.
    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError>;
    /// Sender side: connect to the endpoint a receiver described.
    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError>;
    /// One sample of a multi-lane set ([`lanes`]): every sender (each connected by this
    /// transport) moves `copies` payloads of `bytes`, all lanes started from one gate. The
    /// default cannot hold lanes behind a device gate: one thread per lane, released by one
    /// barrier ([`lanes::by_threads`]).
    fn run_lanes(&self, senders: &mut [&mut dyn Sender], bytes: u64, copies: u32) -> Result<lanes::LaneRun, TransportError> {
        lanes::by_threads(senders, bytes, copies)
    }
}

/// Reads a flow's cumulative delivered bytes (see [`Sender::delivery_probe`]); None when the
/// reading fails.
pub type DeliveryProbe = Box<dyn FnMut() -> Option<u64> + Send>;

/// The sending end of a connected flow.
pub trait Sender: Send {
    /// Moves one payload of `bytes` and returns the time from start until the receiver's
    /// completion acknowledgement.
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError>;
    /// A probe of the bytes the receiver has acknowledged so far on this flow (cumulative),
    /// callable from another thread while transfers run, where the transport can tell (TCP:
    /// `tcpi_bytes_acked`). The runner samples it to count exactly what concurrent flows
    /// delivered over a common interval; without it, whole transfers are the unit.
    fn delivery_probe(&self) -> Option<DeliveryProbe> {
        None
    }
    /// Tells the receiver no more transfers come and releases the flow.
    fn finish(self: Box<Self>) -> Result<(), TransportError>;
    /// The sender as `Any`, for a transport's own [`Transport::run_lanes`] to reach its
    /// senders' devices; None (the default) where the transport has no multi-lane call.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// The receiving end of a flow.
pub trait Receiver: Send {
    /// Serves transfers until the sender finishes; returns what it received.
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in TransportKind::ALL {
            assert_eq!(TransportKind::parse(k.as_str()), Some(k));
            assert_eq!(k.instance().kind(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert_eq!(TransportKind::parse("nope"), None);
    }

    #[test]
    fn timeouts_never_panic() {
        let f = |timeout_s| FlowSpec {
            id: 1,
            transport: TransportKind::HostTcp,
            local_addr: None,
            max_bytes: 1,
            timeout_s,
            options: serde_json::Value::Null,
            tcp_congestion: None,
        };
        assert_eq!(f(2.5).timeout(), Duration::from_millis(2500));
        assert_eq!(f(1e308).timeout(), Duration::from_secs(3600));
        assert_eq!(f(f64::INFINITY).timeout(), Duration::from_secs(3600));
        assert_eq!(f(f64::NAN).timeout(), Duration::from_millis(1));
        assert_eq!(f(-1.0).timeout(), Duration::from_millis(1));
        assert!(TransportKind::HostTcp.is_networked() && !TransportKind::CudaP2p.is_networked());
        assert!(!TransportKind::HipH2d.is_networked() && TransportKind::HipStagedTcp.is_networked());
    }
}
