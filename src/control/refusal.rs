//! Why an agent refuses a request: every bound a flow or window breaks, every handshake step
//! that fails. The agent answers `Reply::Error` with the refusal's text, prefixed by its name.

use std::net::SocketAddr;

use super::PROTOCOL_VERSION;

/// A request the agent will not carry out, with the field and the bound it breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A flow's `max_bytes` outside 1..=the agent's limit.
    #[error(
        "flow {id}: max_bytes {bytes} is outside 1..={limit} bytes (this agent's limit; `linkcal agent --max-bytes` raises it)"
    )]
    MaxBytes {
        /// Flow id.
        id: u64,
        /// The requested bytes.
        bytes: u64,
        /// The agent's limit, bytes.
        limit: u64,
    },
    /// A flow's data-plane timeout not a finite time in (0, limit] seconds.
    #[error("flow {id}: timeout_s {timeout_s} is not a finite time in (0, {limit_s}] s")]
    Timeout {
        /// Flow id.
        id: u64,
        /// The requested timeout, seconds.
        timeout_s: f64,
        /// The agent's limit, seconds.
        limit_s: f64,
    },
    /// A flow's `chunk_bytes` option not an integer in 1..=limit.
    #[error("flow {id}: option chunk_bytes {value} is outside 1..={limit} bytes")]
    ChunkBytes {
        /// Flow id.
        id: u64,
        /// The option as sent.
        value: serde_json::Value,
        /// The agent's limit, bytes.
        limit: u64,
    },
    /// A flow's `tcp_congestion` is not a congestion-control name.
    #[error("flow {id}: tcp_congestion {name:?} is not a congestion-control name")]
    Congestion {
        /// Flow id.
        id: u64,
        /// The name as sent.
        name: String,
    },
    /// The flow id is open already in this session.
    #[error("flow {0} is already open here")]
    FlowOpen(u64),
    /// The session holds the most flows it may.
    #[error("flow {id}: {open} flows already open in this session (limit)")]
    TooManyFlows {
        /// Flow id.
        id: u64,
        /// Flows open now.
        open: usize,
    },
    /// The flow's `max_bytes` would take the session over its memory budget.
    #[error("flow {id}: max_bytes {bytes} on top of {open} B of open flows exceeds this session's {limit} B")]
    OverBudget {
        /// Flow id.
        id: u64,
        /// The requested bytes.
        bytes: u64,
        /// Bytes of the flows open now.
        open: u64,
        /// The session's budget, bytes.
        limit: u64,
    },
    /// A sender's endpoint carries no usable address.
    #[error("flow {id}: endpoint description {endpoint} has no valid \"addr\"")]
    Endpoint {
        /// Flow id.
        id: u64,
        /// The endpoint as sent.
        endpoint: serde_json::Value,
    },
    /// A sender's target is not a data-plane address of the rack's hosts.
    #[error("flow {id}: connect to {addr} refused: {} is not a data-plane address of this rack's hosts ({known} known)", .addr.ip())]
    NotPeer {
        /// Flow id.
        id: u64,
        /// The target.
        addr: SocketAddr,
        /// Peers the coordinator named.
        known: usize,
    },
    /// A window's payload or warmup payload outside 1..=limit bytes.
    #[error("arm: window of flow {id}: payload {bytes} B / warmup {warmup_bytes} B outside 1..={limit} bytes")]
    WindowBytes {
        /// Flow id.
        id: u64,
        /// Payload, bytes.
        bytes: u64,
        /// Warmup payload, bytes.
        warmup_bytes: u64,
        /// The agent's limit, bytes.
        limit: u64,
    },
    /// A window's counts out of order or over the limits.
    #[error("arm: window of flow {id}: counts min {min} max {max} warmup {warmup} outside min <= max <= {max_count}, warmup <= {max_warmup}")]
    WindowCounts {
        /// Flow id.
        id: u64,
        /// Least transfers.
        min: u32,
        /// Most transfers.
        max: u32,
        /// Warmup transfers.
        warmup: u32,
        /// The agent's limit of transfers.
        max_count: u32,
        /// The agent's limit of warmup transfers.
        max_warmup: u32,
    },
    /// A window's length not in [0, limit] seconds.
    #[error("arm: window of flow {id}: duration_s {duration_s} is not in [0, {limit_s}] s")]
    WindowLength {
        /// Flow id.
        id: u64,
        /// Requested length, seconds.
        duration_s: f64,
        /// The agent's limit, seconds.
        limit_s: f64,
    },
    /// A window for a flow with no sender here.
    #[error("arm: flow {0} is not connected here")]
    NotConnected(u64),
    /// Two windows for one flow.
    #[error("arm: flow {0} has two windows")]
    TwoWindows(u64),
    /// More peers than an agent keeps.
    #[error("{count} peers: at most {max}")]
    TooManyPeers {
        /// Peers sent.
        count: usize,
        /// The most an agent keeps.
        max: usize,
    },
    /// A frame that is not a request of this protocol.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A frame of another protocol version.
    #[error("speaks control protocol {PROTOCOL_VERSION}, the coordinator {0}: use the same linkcal build")]
    Version(u64),
    /// A frame over the size bound.
    #[error("request of {size} bytes over the bound of {max}")]
    TooLarge {
        /// Announced size, bytes.
        size: usize,
        /// The bound, bytes.
        max: usize,
    },
}
