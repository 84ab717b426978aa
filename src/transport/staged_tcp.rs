//! TCP with the staging copies of the GPU-staged path, done here in host memory:
//! device buffer -> pinned buffer -> socket -> pinned buffer -> device buffer, in chunks, with
//! two pinned buffers per end so a copy overlaps the socket I/O of the previous chunk.
//!
//! The "device" side is the [`DeviceBuffer`] trait: [`HostBuffer`] implements it with plain
//! memory (what this file's transport uses); a GPU implementation (cudarc async copies into
//! pinned memory) plugs into the same [`StagedSender`] / [`StagedReceiver`] pipeline.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::host_tcp::{accept, await_ack, connect, io_err, listen, send_finish};
use super::net::{self, ACK, FINISH};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};

/// Default staging chunk, bytes (option `chunk_bytes` overrides).
pub const DEFAULT_CHUNK: usize = 1 << 20;
/// Pinned buffers per end (double buffering).
pub const PINNED_BUFFERS: usize = 2;

/// Memory the payload lives in before and after the network ("device" memory).
pub trait DeviceBuffer: Send {
    /// Capacity, bytes.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `dst.len()` bytes at `offset` out of the device buffer into pinned memory.
    fn copy_out(&mut self, offset: usize, dst: &mut [u8]) -> Result<(), String>;
    /// Copies `src` into the device buffer at `offset`.
    fn copy_in(&mut self, offset: usize, src: &[u8]) -> Result<(), String>;
}

/// A "device" buffer in host memory: the staging copies are real memcpys.
pub struct HostBuffer(Vec<u8>);

impl HostBuffer {
    /// A buffer of `len` bytes with a recognisable pattern.
    pub fn new(len: usize) -> Self {
        HostBuffer((0..len).map(|n| (n % 253) as u8).collect())
    }
}

impl DeviceBuffer for HostBuffer {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn copy_out(&mut self, offset: usize, dst: &mut [u8]) -> Result<(), String> {
        let src = self.0.get(offset..offset + dst.len()).ok_or("copy_out beyond the device buffer")?;
        dst.copy_from_slice(src);
        Ok(())
    }
    fn copy_in(&mut self, offset: usize, src: &[u8]) -> Result<(), String> {
        let dst = self.0.get_mut(offset..offset + src.len()).ok_or("copy_in beyond the device buffer")?;
        dst.copy_from_slice(src);
        Ok(())
    }
}

/// The host-staged TCP transport.
pub struct StagedTcp;

/// Staging chunk size from the flow options (`{"chunk_bytes": N}`), else the default; held to
/// 1..=[`crate::transport::MAX_CHUNK_BYTES`] (agents refuse larger ones before this).
pub fn chunk_of(flow: &FlowSpec) -> usize {
    let max = crate::transport::MAX_CHUNK_BYTES;
    flow.options.get("chunk_bytes").and_then(|v| v.as_u64()).map(|n| n.clamp(1, max) as usize).unwrap_or(DEFAULT_CHUNK)
}

impl Transport for StagedTcp {
    fn kind(&self) -> TransportKind {
        TransportKind::StagedTcp
    }

    fn applicability(&self) -> Applicability {
        Applicability::Applies
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let (listener, addr) = listen(flow)?;
        let device = HostBuffer::new(flow.max_bytes as usize);
        let receiver = StagedReceiver { flow: flow.clone(), listener, device, chunk: chunk_of(flow) };
        Ok(PreparedReceiver { endpoint: serde_json::json!({ "addr": addr.to_string() }), receiver: Box::new(receiver) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let stream = connect(flow, endpoint)?;
        let device = HostBuffer::new(flow.max_bytes as usize);
        Ok(Box::new(StagedSender::new(flow, stream, device)))
    }
}

/// Sender: a staging thread copies device chunks into free pinned buffers while the socket
/// sends the previous one.
pub struct StagedSender<B: DeviceBuffer> {
    flow: u64,
    timeout_s: f64,
    stream: TcpStream,
    device: B,
    pinned: Vec<Vec<u8>>,
}

impl<B: DeviceBuffer> StagedSender<B> {
    /// A sender over a connected stream.
    pub fn new(flow: &FlowSpec, stream: TcpStream, device: B) -> Self {
        let chunk = chunk_of(flow);
        let pinned = (0..PINNED_BUFFERS).map(|_| vec![0u8; chunk]).collect();
        StagedSender { flow: flow.id, timeout_s: flow.timeout_s, stream, device, pinned }
    }
}

impl<B: DeviceBuffer> Sender for StagedSender<B> {
    fn delivery_probe(&self) -> Option<crate::transport::DeliveryProbe> {
        net::acked_probe(&self.stream)
    }

    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let (flow, t) = (self.flow, self.timeout_s);
        if bytes as usize > self.device.len() {
            return Err(TransportError::protocol(
                flow,
                format!("payload {bytes} B exceeds the flow's max_bytes {}", self.device.len()),
            ));
        }
        let start = Instant::now();
        net::write_header(&mut self.stream, bytes).map_err(|e| io_err(flow, t, "send header", e))?;
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let (full_tx, full_rx) = mpsc::channel::<Result<(Vec<u8>, usize), String>>();
        for b in self.pinned.drain(..) {
            let _ = free_tx.send(b);
        }
        let device = &mut self.device;
        let stream = &mut self.stream;
        let result = std::thread::scope(|s| {
            // Owned here so an early error return drops them and the helper thread ends.
            let (free_tx, full_rx) = (free_tx, full_rx);
            let stager = s.spawn(move || {
                let mut off = 0usize;
                while off < bytes as usize {
                    let Ok(mut buf) = free_rx.recv() else { break };
                    let n = (bytes as usize - off).min(buf.len());
                    let r = device.copy_out(off, &mut buf[..n]).map(|()| (buf, n));
                    let failed = r.is_err();
                    if full_tx.send(r).is_err() || failed {
                        break;
                    }
                    off += n;
                }
                free_rx
            });
            let mut sent = 0u64;
            while sent < bytes {
                let (buf, n) = match full_rx.recv() {
                    Ok(Ok(x)) => x,
                    Ok(Err(e)) => return Err(TransportError::protocol(flow, format!("staging copy: {e}"))),
                    Err(_) => return Err(TransportError::protocol(flow, "staging thread stopped")),
                };
                net::write_all_within(stream, &buf[..n], Duration::from_secs_f64(t)).map_err(|e| io_err(flow, t, "send", e))?;
                sent += n as u64;
                let _ = free_tx.send(buf);
            }
            drop(free_tx);
            let free_rx = stager.join().map_err(|_| TransportError::protocol(flow, "staging thread panicked"))?;
            Ok(free_rx.try_iter().collect::<Vec<_>>())
        });
        self.pinned = result?;
        await_ack(&mut self.stream, flow, t)?;
        Ok(start.elapsed())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        send_finish(&mut self.stream, self.flow, self.timeout_s)
    }
}

/// Receiver: the socket fills pinned buffers while a copy thread moves the previous one into
/// the device buffer; the ack goes out once the last copy is done.
pub struct StagedReceiver<B: DeviceBuffer> {
    flow: FlowSpec,
    listener: TcpListener,
    device: B,
    chunk: usize,
}

impl<B: DeviceBuffer> StagedReceiver<B> {
    /// A receiver over a bound listener.
    pub fn new(flow: &FlowSpec, listener: TcpListener, device: B) -> Self {
        StagedReceiver { flow: flow.clone(), listener, device, chunk: chunk_of(flow) }
    }
}

impl<B: DeviceBuffer> Receiver for StagedReceiver<B> {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let StagedReceiver { flow, listener, mut device, chunk } = *self;
        let mut stream = accept(&flow, &listener)?;
        drop(listener);
        let (id, t) = (flow.id, flow.timeout_s);
        let mut pinned: Vec<Vec<u8>> = (0..PINNED_BUFFERS).map(|_| vec![0u8; chunk]).collect();
        let mut stats = ReceiverStats::default();
        loop {
            let len = match net::read_header(&mut stream).map_err(|e| io_err(id, t, "read header", e))? {
                None | Some(FINISH) => return Ok(stats),
                Some(len) => len,
            };
            if len as usize > device.len() {
                return Err(TransportError::protocol(
                    id,
                    format!("payload {len} B exceeds the flow's max_bytes {}", device.len()),
                ));
            }
            pinned = receive_one(id, t, &mut stream, &mut device, pinned, len)?;
            stream.write_all(&[ACK]).map_err(|e| io_err(id, t, "send ack", e))?;
            stats.transfers += 1;
            stats.bytes += len;
        }
    }
}

fn receive_one<B: DeviceBuffer>(
    id: u64,
    t: f64,
    stream: &mut TcpStream,
    device: &mut B,
    pinned: Vec<Vec<u8>>,
    len: u64,
) -> Result<Vec<Vec<u8>>, TransportError> {
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let (full_tx, full_rx) = mpsc::channel::<(Vec<u8>, usize, usize)>();
    for b in pinned {
        let _ = free_tx.send(b);
    }
    std::thread::scope(|s| {
        // Owned here so an early error return drops it and the copy thread ends.
        let full_tx = full_tx;
        let copier = s.spawn(move || -> Result<(), String> {
            for (buf, off, n) in full_rx {
                device.copy_in(off, &buf[..n])?;
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut off = 0usize;
        while off < len as usize {
            let mut buf = free_rx.recv().map_err(|_| TransportError::protocol(id, "staging copy thread stopped"))?;
            let n = (len as usize - off).min(buf.len());
            stream.read_exact(&mut buf[..n]).map_err(|e| io_err(id, t, format!("receive {len} bytes"), e))?;
            full_tx.send((buf, off, n)).map_err(|_| TransportError::protocol(id, "staging copy thread stopped"))?;
            off += n;
        }
        drop(full_tx);
        copier
            .join()
            .map_err(|_| TransportError::protocol(id, "staging copy thread panicked"))?
            .map_err(|e| TransportError::protocol(id, format!("staging copy: {e}")))?;
        Ok(free_rx.try_iter().collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_transfers_every_byte() {
        super::super::host_tcp::tests::round_trip(TransportKind::StagedTcp, &[1, 4096, (3 << 20) + 5, 0, 1 << 20]);
    }

    #[test]
    fn host_buffer_bounds() {
        let mut b = HostBuffer::new(10);
        let mut out = [0u8; 4];
        b.copy_out(6, &mut out).unwrap();
        assert_eq!(out, [6, 7, 8, 9]);
        assert!(b.copy_out(8, &mut out).is_err());
        b.copy_in(0, &[9, 9]).unwrap();
        b.copy_out(0, &mut out).unwrap();
        assert_eq!(out, [9, 9, 2, 3]);
    }
}
