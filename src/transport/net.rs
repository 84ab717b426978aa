//! Socket helpers shared by the TCP transports and the control plane: connect from a chosen
//! source address with a timeout, accept with a timeout, and the per-transfer framing.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};

/// Transfer header value that means "no more transfers".
pub const FINISH: u64 = u64::MAX;
/// The receiver's completion acknowledgement byte.
pub const ACK: u8 = 0x06;

/// Connects to `dst`, binding `src` first when given, giving up after `timeout`.
pub fn connect_from(src: Option<IpAddr>, dst: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let Some(src) = src else {
        return TcpStream::connect_timeout(&dst, timeout);
    };
    let family = if dst.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(std::io::Error::from)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(src, 0))).map_err(std::io::Error::from)?;
    // SAFETY: `fd` is a freshly created, owned socket; ownership moves into the TcpStream.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    stream.set_nonblocking(true)?;
    match socket::connect(stream.as_raw_fd(), &SockaddrStorage::from(dst)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => wait_connected(&stream, timeout)?,
        Err(e) => return Err(e.into()),
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn wait_connected(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Accepts one connection on `listener`, giving up after `timeout`.
pub fn accept_timeout(listener: &TcpListener, timeout: Duration) -> std::io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection arrived"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prepares a data socket: no Nagle delay, read/write timeouts.
pub fn tune(stream: &TcpStream, timeout: Duration, congestion: Option<&str>) -> std::io::Result<()> {
    if let Some(cc) = congestion {
        set_congestion(stream, cc)?;
    }
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))
}

/// Longest congestion control name the kernel takes (`TCP_CA_NAME_MAX` - 1), bytes.
pub const CC_NAME_MAX: usize = 15;

/// Sets the socket's congestion control (`TCP_CONGESTION`). A root process may set any
/// algorithm the kernel has (`net.ipv4.tcp_available_congestion_control`), also one missing
/// from `tcp_allowed_congestion_control`, which only limits unprivileged sockets and the
/// defaults of child network namespaces.
pub fn set_congestion(stream: &TcpStream, name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if name.is_empty() || name.len() > CC_NAME_MAX || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("TCP congestion control {name:?}: not a kernel algorithm name (1-{CC_NAME_MAX} letters, digits or _)"),
        ));
    }
    // SAFETY: the fd is a live TCP socket owned by `stream`; the pointer and length describe
    // `name`'s bytes, which outlive the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("setting TCP congestion control {name:?}: {e}")));
    }
    Ok(())
}

/// The socket's congestion control (`TCP_CONGESTION`).
pub fn congestion(stream: &TcpStream) -> std::io::Result<String> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the fd is a live TCP socket; the kernel writes at most `len` bytes into `buf`.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_CONGESTION, buf.as_mut_ptr().cast(), &mut len)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let b = &buf[..(len as usize).min(buf.len())];
    Ok(String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or_default()).into_owned())
}

/// The network device holding the local address `ip` (None: no such local address).
pub fn device_of(ip: IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        let found = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in().map(|v| IpAddr::V4(v.ip())).or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
        });
        if found == Some(ip) {
            return Some(a.interface_name);
        }
    }
    None
}

/// Offset of `tcpi_bytes_acked` (u64) in Linux's `struct tcp_info` (include/uapi/linux/tcp.h:
/// 8 bytes of u8 fields, 24 u32 fields to `tcpi_total_retrans`, then the u64s
/// `tcpi_pacing_rate`, `tcpi_max_pacing_rate`, `tcpi_bytes_acked`; present since Linux 4.1).
const TCPI_BYTES_ACKED: usize = 120;

/// Bytes of this socket's stream the peer has acknowledged (`TCP_INFO` `tcpi_bytes_acked`):
/// what the receiver's kernel holds, counted on the sender's clock. None where the kernel's
/// `tcp_info` is too old to carry it or the call fails.
pub fn bytes_acked(stream: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the fd is a live TCP socket; the kernel writes at most `len` bytes into `buf`.
    let rc =
        unsafe { libc::getsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 || (len as usize) < TCPI_BYTES_ACKED + 8 {
        return None;
    }
    let b: [u8; 8] = buf[TCPI_BYTES_ACKED..TCPI_BYTES_ACKED + 8].try_into().ok()?;
    Some(u64::from_ne_bytes(b))
}

/// A [`crate::transport::DeliveryProbe`] reading [`bytes_acked`] on a clone of `stream`.
pub fn acked_probe(stream: &TcpStream) -> Option<crate::transport::DeliveryProbe> {
    let s = stream.try_clone().ok()?;
    bytes_acked(&s)?;
    Some(Box::new(move || bytes_acked(&s)))
}

/// Writes all of `buf` to `stream` within `timeout` from now, the write timeout set to what
/// is left before each `write` call. `write_all` under a socket write timeout waits the whole
/// timeout in every call that blocks, and a call that queued a few bytes before blocking
/// returns them as progress: a link that goes down under a flow then held it for twice its
/// stall bound. Leaves the socket's write timeout at `timeout` afterwards.
pub fn write_all_within(stream: &mut TcpStream, buf: &[u8], timeout: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut off = 0;
    let written = (|| {
        while off < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no room to send within the timeout"));
            }
            stream.set_write_timeout(Some(left))?;
            match stream.write(&buf[off..]) {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })();
    stream.set_write_timeout(Some(timeout))?;
    written
}

/// Writes a transfer header (payload length, or [`FINISH`]).
pub fn write_header(w: &mut impl Write, len: u64) -> std::io::Result<()> {
    w.write_all(&len.to_le_bytes())
}

/// Reads a transfer header; `Ok(None)` on a clean end of stream.
pub fn read_header(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut b[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "stream ended inside a header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(u64::from_le_bytes(b)))
}

/// Parses `{"addr": "IP:port"}` endpoint descriptions.
pub fn endpoint_addr(endpoint: &serde_json::Value) -> Option<SocketAddr> {
    endpoint.get("addr")?.as_str()?.parse().ok()
}

/// Parses an optional IP address string.
pub fn parse_ip(s: Option<&str>) -> Option<IpAddr> {
    s.and_then(|a| a.parse().ok())
}

/// Maps a read/write error to timeout or I/O, for error messages.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_from_binds_source_and_times_out_on_accept() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = connect_from(Some("127.0.0.1".parse().unwrap()), addr, Duration::from_secs(2)).unwrap();
        let s = accept_timeout(&l, Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
        let e = accept_timeout(&l, Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[test]
    fn headers_round_trip() {
        let mut v = Vec::new();
        write_header(&mut v, 12345).unwrap();
        write_header(&mut v, FINISH).unwrap();
        let mut r = &v[..];
        assert_eq!(read_header(&mut r).unwrap(), Some(12345));
        assert_eq!(read_header(&mut r).unwrap(), Some(FINISH));
        assert_eq!(read_header(&mut r).unwrap(), None);
        let mut short = &v[..3];
        assert!(read_header(&mut short).is_err());
    }

    #[test]
    fn bytes_acked_counts_what_the_peer_received() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = connect_from(None, l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
        let mut s = accept_timeout(&l, Duration::from_secs(2)).unwrap();
        let mut probe = acked_probe(&c).expect("Linux >= 4.1 reports tcpi_bytes_acked");
        // The kernel counts the SYN as one acknowledged byte: read the base, count from it.
        let base = probe().unwrap();
        assert!(base <= 1, "nothing sent yet: {base}");
        const N: usize = 3 << 20;
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; N];
            s.read_exact(&mut buf).unwrap();
        });
        c.write_all(&vec![7u8; N]).unwrap();
        reader.join().unwrap();
        // The peer acknowledges everything it read; its last ACK may trail the read.
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe() != Some(base + N as u64) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(probe(), Some(base + N as u64));
    }

    #[test]
    fn a_peer_that_stops_reading_stops_a_write_within_its_timeout_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = connect_from(None, l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
        let _s = accept_timeout(&l, Duration::from_secs(2)).unwrap(); // never reads
                                                                      // Far more than both socket buffers hold: the first `write` queues some, then blocks.
        let buf = vec![7u8; 256 << 20];
        let timeout = Duration::from_millis(600);
        let t = Instant::now();
        let e = write_all_within(&mut c, &buf, timeout).unwrap_err();
        let took = t.elapsed();
        assert!(is_timeout(&e), "{e}");
        // `write_all` would wait the timeout twice (a partial write, then a blocked one).
        assert!(took >= timeout && took < timeout * 3 / 2, "{took:?}");
        assert_eq!(c.write_timeout().unwrap(), Some(timeout));
    }

    #[test]
    fn the_loopback_address_lives_on_lo() {
        let lo = device_of("127.0.0.1".parse().unwrap()).expect("127.0.0.1 is local");
        assert_eq!(lo, "lo");
        // 192.0.2.0/24 is reserved for documentation: never a local address.
        assert_eq!(device_of("192.0.2.1".parse().unwrap()), None);
    }
}
