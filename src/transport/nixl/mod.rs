//! KV handoff through NIXL, the transfer engine of vLLM's NixlConnector and NVIDIA Dynamo.
//!
//! Both agents create a NIXL agent with one backend (UCX by default), register a KV buffer of
//! [`FlowSpec::max_bytes`] (host memory, or GPU memory with `mem: vram`) and describe it as
//! blocks of `block_bytes` ([`layout`]). The receiver's metadata travels in the endpoint
//! description (through the coordinator: linkcal's control plane), the sender's over the
//! flow's side channel, a TCP connection that also carries each transfer's header and the
//! completion acknowledgement, exactly as in `host_tcp`:
//!
//! - `op: write` (default): the sender sends the header, `make_xfer_req(WRITE)` over the
//!   payload's blocks with a notification, posts it and polls it to completion; the receiver
//!   polls its notifications until the message arrives, then acknowledges.
//! - `op: read` (vLLM's direction): the sender sends the header; the receiver reads the
//!   sender's blocks with a notification, polls to completion and acknowledges; the sender
//!   polls for the notification (how vLLM's prefill side learns the blocks are free), then
//!   takes the acknowledgement.
//!
//! A transfer's time runs from the header (before the request is built, so the per-block
//! descriptor cost counts) to the acknowledgement. UCX's environment is set by linkcal
//! ([`loader::ucx_env`]); the library is found at run time ([`loader`]) and its absence is a
//! waiver.

pub mod engine;
pub mod layout;
pub mod loader;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use engine::{End, PeerBuffer};
use layout::{blocks, NixlOptions, Op};

use super::host_tcp::{self, await_ack, io_err, send_finish};
use super::net::{self, ACK, FINISH};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};

/// The side-channel frame with the sender's buffer is at most this long, bytes.
const MAX_HELLO: u64 = 1 << 20;

/// The NIXL transport.
pub struct Nixl;

impl Transport for Nixl {
    fn kind(&self) -> TransportKind {
        TransportKind::Nixl
    }

    fn applicability(&self) -> Applicability {
        match loader::load() {
            Ok(_) => Applicability::Applies,
            Err(e) => Applicability::Waived { reason: e.to_string() },
        }
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let end = open(flow, "rx", "dst_gpu")?;
        let (listener, addr) = host_tcp::listen(flow)?;
        let mut endpoint = serde_json::to_value(end.describe()?).expect("a PeerBuffer serializes");
        endpoint["addr"] = serde_json::json!(addr.to_string());
        Ok(PreparedReceiver { endpoint, receiver: Box::new(NixlReceiver { flow: flow.clone(), listener, end }) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let peer: PeerBuffer = serde_json::from_value(endpoint.clone())
            .map_err(|e| TransportError::protocol(flow.id, format!("nixl endpoint {endpoint}: {e}")))?;
        let mut end = open(flow, "tx", "src_gpu")?;
        if end.opts.op == Op::Write {
            end.add_peer(&peer)?;
        }
        let mut stream = host_tcp::connect(flow, endpoint)?;
        let hello = serde_json::to_vec(&end.describe()?).expect("a PeerBuffer serializes");
        net::write_header(&mut stream, hello.len() as u64)
            .and_then(|_| stream.write_all(&hello))
            .map_err(|e| io_err(flow.id, flow.timeout_s, "send NIXL metadata", e))?;
        Ok(Box::new(NixlSender { flow: flow.clone(), stream, end, seq: 0 }))
    }
}

/// Checks the library, sets UCX's environment and opens this end of the flow.
fn open(flow: &FlowSpec, side: &str, gpu_key: &str) -> Result<End, TransportError> {
    loader::load().map_err(|e| TransportError::Waived { kind: TransportKind::Nixl, reason: e.to_string() })?;
    let opts = NixlOptions::from_value(&flow.options).map_err(|m| TransportError::protocol(flow.id, m))?;
    if opts.backend == "UCX" {
        let device = net::parse_ip(flow.local_addr.as_deref()).and_then(net::device_of);
        let tls = loader::set_ucx_env_once(&opts.ucx_tls, device.as_deref());
        if tls != opts.ucx_tls {
            return Err(TransportError::protocol(
                flow.id,
                format!("this agent's UCX runs with UCX_TLS={tls}; a flow asking for {} needs a fresh agent", opts.ucx_tls),
            ));
        }
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("linkcal-{side}-{}-{}-{n}", std::process::id(), flow.id);
    End::new(flow.id, opts, &name, flow.max_bytes, gpu_key)
}

fn notif(flow: u64, seq: u64) -> String {
    format!("linkcal:{flow}:{seq}")
}

struct NixlSender {
    flow: FlowSpec,
    stream: TcpStream,
    end: End,
    seq: u64,
}

impl Sender for NixlSender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let (f, t) = (self.flow.id, self.flow.timeout_s);
        let n = blocks(bytes, self.end.opts.block_bytes).map_err(|m| TransportError::protocol(f, m))? as usize;
        self.seq += 1;
        let msg = notif(f, self.seq);
        let start = Instant::now();
        let deadline = start + self.flow.timeout();
        net::write_header(&mut self.stream, bytes).map_err(|e| io_err(f, t, "send header", e))?;
        if self.end.opts.op == Op::Write {
            self.end.transfer(Op::Write, n, &msg, deadline, t)?;
            await_ack(&mut self.stream, f, t)?;
            return Ok(start.elapsed());
        }
        // The READ progresses through this end's worker too: poll for the notification the
        // receiver sends when its read completed, then take its acknowledgement.
        self.end.await_notification(&msg, deadline, t)?;
        await_ack(&mut self.stream, f, t)?;
        Ok(start.elapsed())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        send_finish(&mut self.stream, self.flow.id, self.flow.timeout_s)?;
        // Wait for the receiver to close, so its agent stops using ours before ours goes.
        let _ = self.stream.read(&mut [0u8; 1]);
        Ok(())
    }
}

struct NixlReceiver {
    flow: FlowSpec,
    listener: TcpListener,
    end: End,
}

impl Receiver for NixlReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let NixlReceiver { flow, listener, mut end } = *self;
        let (f, t) = (flow.id, flow.timeout_s);
        let mut stream = host_tcp::accept(&flow, &listener)?;
        drop(listener);
        let peer = read_hello(&mut stream, f, t)?;
        if end.opts.op == Op::Read {
            end.add_peer(&peer)?;
        }
        let mut stats = ReceiverStats::default();
        loop {
            let bytes = match net::read_header(&mut stream).map_err(|e| io_err(f, t, "read header", e))? {
                None | Some(FINISH) => return Ok(stats),
                Some(b) => b,
            };
            let n = blocks(bytes, end.opts.block_bytes).map_err(|m| TransportError::protocol(f, m))? as usize;
            let msg = notif(f, stats.transfers + 1);
            let deadline = Instant::now() + flow.timeout();
            match end.opts.op {
                Op::Write => end.await_notification(&msg, deadline, t)?,
                Op::Read => end.transfer(Op::Read, n, &msg, deadline, t)?,
            }
            stream.write_all(&[ACK]).map_err(|e| io_err(f, t, "send ack", e))?;
            stats.transfers += 1;
            stats.bytes += bytes;
        }
    }
}

fn read_hello(stream: &mut TcpStream, f: u64, t: f64) -> Result<PeerBuffer, TransportError> {
    let len = net::read_header(stream).map_err(|e| io_err(f, t, "read NIXL metadata", e))?.unwrap_or(0);
    if len == 0 || len > MAX_HELLO {
        return Err(TransportError::protocol(f, format!("sender's NIXL metadata frame of {len} B (expected 1..={MAX_HELLO})")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).map_err(|e| io_err(f, t, "read NIXL metadata", e))?;
    serde_json::from_slice(&buf).map_err(|e| TransportError::protocol(f, format!("sender's NIXL metadata: {e}")))
}

#[cfg(test)]
mod tests;
