//! Host-memory TCP between two agents: the receiver listens on its data address, the sender
//! connects from its own, and each transfer is `header(len) + len bytes`, answered by a
//! one-byte completion acknowledgement once the receiver holds every byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::net::{self, ACK, FINISH};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};

/// Socket writes and reads move at most this many bytes per call.
pub const IO_CHUNK: usize = 4 << 20;

/// The host TCP transport.
pub struct HostTcp;

impl Transport for HostTcp {
    fn kind(&self) -> TransportKind {
        TransportKind::HostTcp
    }

    fn applicability(&self) -> Applicability {
        Applicability::Applies
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let (listener, addr) = listen(flow)?;
        let receiver = TcpReceiver { flow: flow.clone(), listener };
        Ok(PreparedReceiver { endpoint: serde_json::json!({ "addr": addr.to_string() }), receiver: Box::new(receiver) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let stream = connect(flow, endpoint)?;
        let chunk = (flow.max_bytes as usize).clamp(1, IO_CHUNK);
        let mut buf = vec![0u8; 8 + chunk];
        for (n, b) in buf.iter_mut().enumerate() {
            *b = (n % 251) as u8;
        }
        Ok(Box::new(TcpSender { flow: flow.id, timeout_s: flow.timeout_s, stream, buf }))
    }
}

/// Binds a listener on the flow's local data address (port chosen by the OS).
pub fn listen(flow: &FlowSpec) -> Result<(TcpListener, SocketAddr), TransportError> {
    let ip = net::parse_ip(flow.local_addr.as_deref()).ok_or_else(|| {
        TransportError::protocol(flow.id, format!("receiver needs a data address to listen on, got {:?}", flow.local_addr))
    })?;
    let listener =
        TcpListener::bind(SocketAddr::new(ip, 0)).map_err(|e| TransportError::io(flow.id, format!("listen on {ip}"), e))?;
    let addr = listener.local_addr().map_err(|e| TransportError::io(flow.id, "local address of listener", e))?;
    Ok((listener, addr))
}

/// Connects a sender to a `{"addr": ..}` endpoint from the flow's local address.
pub fn connect(flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<TcpStream, TransportError> {
    let dst = net::endpoint_addr(endpoint)
        .ok_or_else(|| TransportError::protocol(flow.id, format!("endpoint description {endpoint} has no valid \"addr\"")))?;
    let src = net::parse_ip(flow.local_addr.as_deref());
    let stream = net::connect_from(src, dst, flow.timeout())
        .map_err(|e| io_err(flow.id, flow.timeout_s, format!("connect to {dst}"), e))?;
    net::tune(&stream, flow.timeout(), flow.tcp_congestion.as_deref())
        .map_err(|e| TransportError::io(flow.id, "socket options", e))?;
    Ok(stream)
}

/// Accepts the sender's connection on a prepared listener.
pub fn accept(flow: &FlowSpec, listener: &TcpListener) -> Result<TcpStream, TransportError> {
    let stream = net::accept_timeout(listener, flow.timeout())
        .map_err(|e| io_err(flow.id, flow.timeout_s, "waiting for the sender", e))?;
    net::tune(&stream, flow.timeout(), flow.tcp_congestion.as_deref())
        .map_err(|e| TransportError::io(flow.id, "socket options", e))?;
    Ok(stream)
}

/// An I/O error, or a timeout when the OS says the wait ran out.
pub fn io_err(flow: u64, timeout_s: f64, what: impl Into<String>, e: std::io::Error) -> TransportError {
    if net::is_timeout(&e) {
        TransportError::Timeout { flow, what: what.into(), timeout_s }
    } else {
        TransportError::io(flow, what, e)
    }
}

/// Waits for the receiver's one-byte completion ack of a transfer (the end of its timing).
pub fn await_ack(stream: &mut TcpStream, flow: u64, timeout_s: f64) -> Result<(), TransportError> {
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).map_err(|e| io_err(flow, timeout_s, "waiting for the completion ack", e))?;
    if ack[0] != ACK {
        return Err(TransportError::protocol(flow, format!("expected ack byte {ACK:#x}, got {:#x}", ack[0])));
    }
    Ok(())
}

/// Tells the receiver no transfer follows and half-closes the connection.
pub fn send_finish(stream: &mut TcpStream, flow: u64, timeout_s: f64) -> Result<(), TransportError> {
    net::write_header(stream, FINISH).map_err(|e| io_err(flow, timeout_s, "send finish", e))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

struct TcpSender {
    flow: u64,
    timeout_s: f64,
    stream: TcpStream,
    /// 8 header bytes followed by one chunk of payload.
    buf: Vec<u8>,
}

impl Sender for TcpSender {
    fn delivery_probe(&self) -> Option<crate::transport::DeliveryProbe> {
        net::acked_probe(&self.stream)
    }

    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let (flow, t) = (self.flow, self.timeout_s);
        let chunk = self.buf.len() - 8;
        let start = Instant::now();
        self.buf[..8].copy_from_slice(&bytes.to_le_bytes());
        let first = (bytes as usize).min(chunk);
        let within = Duration::from_secs_f64(t);
        net::write_all_within(&mut self.stream, &self.buf[..8 + first], within).map_err(|e| io_err(flow, t, "send", e))?;
        let mut left = bytes - first as u64;
        while left > 0 {
            let n = (left as usize).min(chunk);
            net::write_all_within(&mut self.stream, &self.buf[8..8 + n], within).map_err(|e| io_err(flow, t, "send", e))?;
            left -= n as u64;
        }
        await_ack(&mut self.stream, flow, t)?;
        Ok(start.elapsed())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        send_finish(&mut self.stream, self.flow, self.timeout_s)
    }
}

struct TcpReceiver {
    flow: FlowSpec,
    listener: TcpListener,
}

impl Receiver for TcpReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let mut stream = accept(&self.flow, &self.listener)?;
        drop(self.listener);
        let (flow, t) = (self.flow.id, self.flow.timeout_s);
        let mut buf = vec![0u8; (self.flow.max_bytes as usize).clamp(1, IO_CHUNK)];
        let mut stats = ReceiverStats::default();
        loop {
            let len = match net::read_header(&mut stream).map_err(|e| io_err(flow, t, "read header", e))? {
                None | Some(FINISH) => return Ok(stats),
                Some(len) => len,
            };
            drain(&mut stream, len, &mut buf).map_err(|e| io_err(flow, t, format!("receive {len} bytes"), e))?;
            stream.write_all(&[ACK]).map_err(|e| io_err(flow, t, "send ack", e))?;
            stats.transfers += 1;
            stats.bytes += len;
        }
    }
}

/// Reads exactly `len` bytes into `buf`, chunk by chunk.
pub fn drain(stream: &mut TcpStream, mut len: u64, buf: &mut [u8]) -> std::io::Result<()> {
    while len > 0 {
        let want = (len as usize).min(buf.len());
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "sender closed mid-transfer"));
        }
        len -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn flow(id: u64, transport: TransportKind, max: u64) -> FlowSpec {
        FlowSpec {
            id,
            transport,
            local_addr: Some("127.0.0.1".into()),
            max_bytes: max,
            timeout_s: 5.0,
            options: serde_json::Value::Null,
            tcp_congestion: None,
        }
    }

    /// Runs `sizes` over loopback and checks the receiver saw every byte.
    pub(crate) fn round_trip(kind: TransportKind, sizes: &[u64]) {
        let t = kind.instance();
        let f = flow(7, kind, *sizes.iter().max().unwrap());
        let prepared = t.prepare_receiver(&f).unwrap();
        let server = std::thread::spawn(move || prepared.receiver.serve());
        let mut s = t.connect_sender(&f, &prepared.endpoint).unwrap();
        for &n in sizes {
            let d = s.transfer(n).unwrap();
            assert!(d > Duration::ZERO);
        }
        s.finish().unwrap();
        let stats = server.join().unwrap().unwrap();
        assert_eq!(stats.transfers, sizes.len() as u64);
        assert_eq!(stats.bytes, sizes.iter().sum::<u64>());
    }

    #[test]
    fn loopback_transfers_every_byte() {
        round_trip(TransportKind::HostTcp, &[1, 4096, 5 << 20, 0, 123_457]);
    }

    #[test]
    fn dead_peer_is_an_error_not_a_hang() {
        let t = HostTcp;
        let mut f = flow(1, TransportKind::HostTcp, 1 << 20);
        f.timeout_s = 0.3;
        let prepared = t.prepare_receiver(&f).unwrap();
        // Nobody serves: connect succeeds (backlog) but the ack never comes.
        let mut s = t.connect_sender(&f, &prepared.endpoint).unwrap();
        let e = s.transfer(1000).unwrap_err();
        assert!(matches!(e, TransportError::Timeout { .. }), "{e}");
        let e = t.connect_sender(&f, &serde_json::json!({"addr": 5})).err().unwrap();
        assert!(e.to_string().contains("no valid"), "{e}");
    }
}
