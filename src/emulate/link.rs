//! What makes the emulated links exact on any host: offloads off on every data link (tbf then
//! shapes each frame as itself, never a 64 KiB GSO super-packet), the TCP congestion control
//! applied even where the host does not allow it in child namespaces, and the check that the
//! configured rates are within what this host's veth links carry.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{netns, EmulateError};
use crate::error::InputError;

/// `SIOCETHTOOL` ioctl request.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// Legacy ethtool commands that set one offload on or off.
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Turns TSO, GSO and GRO off on `ifaces` inside namespace `ns` (what `ethtool -K IF tso off
/// gso off gro off` does, without needing ethtool).
pub fn offloads_off(ns: &str, ifaces: &[String]) -> Result<(), EmulateError> {
    let (ns_owned, ifaces) = (ns.to_string(), ifaces.to_vec());
    std::thread::spawn(move || -> Result<(), EmulateError> {
        netns::enter(&ns_owned)?;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| EmulateError::Io { path: format!("a control socket in {ns_owned}"), source: e })?;
        for ifname in &ifaces {
            for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO] {
                ethtool_set(&sock, ifname, cmd, 0).map_err(|e| EmulateError::Command {
                    command: format!("ethtool -K {ifname} (in {ns_owned}) tso/gso/gro off"),
                    stderr: e.to_string(),
                })?;
            }
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(EmulateError::Enter { netns: ns.into(), message: "offload thread panicked".into() }))
}

fn ethtool_set(sock: &std::net::UdpSocket, ifname: &str, cmd: u32, value: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: std::ptr::null_mut(), _pad: [0; 16] };
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("interface name {ifname:?}")));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    let mut v = EthtoolValue { cmd, data: value };
    req.data = &mut v;
    // SAFETY: `req` is a properly laid out `struct ifreq` whose data pointer refers to `v`,
    // both alive for the duration of the call; the fd is a live socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How the congestion control was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcMode {
    /// Every namespace's default (`net.ipv4.tcp_congestion_control`).
    NamespaceDefault,
    /// Not allowed as a child namespace's default: every flow sets it on its sockets.
    PerSocket,
}

impl CcMode {
    /// As recorded in the rack file.
    pub fn as_str(self) -> &'static str {
        match self {
            CcMode::NamespaceDefault => "namespace default",
            CcMode::PerSocket => "per socket (not in net.ipv4.tcp_allowed_congestion_control: agents set TCP_CONGESTION)",
        }
    }
}

/// The host's available congestion controls (`net.ipv4.tcp_available_congestion_control`).
pub fn available_cc() -> Vec<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Checks `cc` is an algorithm this kernel has; the error names the rates file field.
pub fn check_cc(cc: &str, rates_file: Option<&Path>) -> Result<(), InputError> {
    let avail = available_cc();
    if avail.iter().any(|a| a == cc) {
        return Ok(());
    }
    let src = rates_file.map(|p| p.to_path_buf()).unwrap_or_else(|| "(default rates)".into());
    Err(InputError::field(
        src,
        "tcp_congestion_control",
        format!(
            "is {cc:?}, which this kernel does not have (net.ipv4.tcp_available_congestion_control: {}): name one of \
             those, or load its module first (modprobe tcp_{cc})",
            avail.join(" ")
        ),
    ))
}

/// Makes `cc` the default of namespace `ns` where the host allows it; else the flows set it
/// per socket (root may, whatever the allowed list says), and the host is left unchanged.
pub fn apply_cc(ns: &str, cc: &str) -> Result<CcMode, EmulateError> {
    match netns::sysctl(ns, &[("net/ipv4/tcp_congestion_control", cc)]) {
        Ok(()) => Ok(CcMode::NamespaceDefault),
        Err(EmulateError::Io { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => Ok(CcMode::PerSocket),
        Err(e) => Err(e),
    }
}

/// Measures what one veth hop carries here (TCP, offloads off, `mtu`), B/s of line rate:
/// two throw-away namespaces `{prefix}_capa` / `{prefix}_capb` (removed by `down` after a
/// crash), 48 MiB through one veth pair, its threads at the agents' niceness (what the
/// agents' flows will get). A host busy for a moment reads low: up to [`CAPACITY_TRIES`]
/// tries, stopping once one reaches `enough_Bps`; the best is returned.
#[allow(non_snake_case)]
pub fn veth_capacity(prefix: &str, mtu: u64, enough_Bps: f64) -> Result<f64, EmulateError> {
    let (a, b) = (format!("{prefix}_capa"), format!("{prefix}_capb"));
    let mut best: f64 = 0.0;
    for _ in 0..CAPACITY_TRIES {
        let r = measure_pair(&a, &b, mtu);
        let _ = netns::batch("ip", None, &[format!("netns del {a}"), format!("netns del {b}")]);
        best = best.max(r?);
        if best >= enough_Bps {
            break;
        }
    }
    Ok(best)
}

/// Tries of [`veth_capacity`] at most.
pub const CAPACITY_TRIES: usize = 3;

/// Puts the calling thread at the agents' niceness (best effort: without CAP_SYS_NICE it stays).
fn at_agent_nice() {
    // SAFETY: setpriority(2) on this thread's own id; no memory is passed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, super::AGENT_NICE);
    }
}

fn measure_pair(a: &str, b: &str, mtu: u64) -> Result<f64, EmulateError> {
    netns::batch("ip", None, &[format!("netns add {a}"), format!("netns add {b}")])?;
    netns::batch("ip", None, &[format!("link add cap0 netns {a} mtu {mtu} type veth peer name cap1 netns {b} mtu {mtu}")])?;
    netns::batch("ip", Some(a), &["link set lo up".into(), "addr add 10.254.0.1/30 dev cap0".into(), "link set cap0 up".into()])?;
    netns::batch("ip", Some(b), &["link set lo up".into(), "addr add 10.254.0.2/30 dev cap1".into(), "link set cap1 up".into()])?;
    offloads_off(a, &["cap0".into()])?;
    offloads_off(b, &["cap1".into()])?;
    let total: usize = 48 << 20;
    let b_owned = b.to_string();
    let where_b = format!("a capacity probe socket in {b}");
    let bind_err = move |e: std::io::Error| EmulateError::Io { path: where_b.clone(), source: e };
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || -> Result<f64, EmulateError> {
        netns::enter(&b_owned)?;
        at_agent_nice();
        let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::new(10, 254, 0, 2), 0))).map_err(&bind_err)?;
        let _ = tx.send(l.local_addr().map_err(&bind_err)?);
        let (mut s, _) = l.accept().map_err(&bind_err)?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(&bind_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut got, mut t0) = (0usize, None);
        while got < total {
            let n = s.read(&mut buf).map_err(&bind_err)?;
            if n == 0 {
                break;
            }
            t0.get_or_insert_with(Instant::now);
            got += n;
        }
        let dt = t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        // Line rate: payload (MTU-52 per frame) scaled to frames (MTU+14).
        Ok(if dt > 0.0 { got as f64 / dt * (mtu as f64 + 14.0) / (mtu as f64 - 52.0) } else { 0.0 })
    });
    let a_owned = a.to_string();
    let client = std::thread::spawn(move || -> Result<(), EmulateError> {
        netns::enter(&a_owned)?;
        at_agent_nice();
        let err = |e: std::io::Error| EmulateError::Io { path: format!("a capacity probe socket in {a_owned}"), source: e };
        let addr = rx.recv_timeout(Duration::from_secs(5)).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(err)?;
        s.set_write_timeout(Some(Duration::from_secs(10))).map_err(err)?;
        let buf = vec![7u8; 1 << 20];
        for _ in 0..total / buf.len() {
            s.write_all(&buf).map_err(err)?;
        }
        Ok(())
    });
    let sent = client.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    let got = server.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    sent?;
    got
}

/// Share of the measured single-hop veth capacity a segment direction may be configured at:
/// a route crosses up to seven shaped hops and several flows share the host's CPUs.
pub const MAX_SHARE_OF_VETH: f64 = 0.25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_matches_the_kernel() {
        // struct ifreq is 40 bytes on 64-bit Linux: 16 name + 24 union.
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
    }

    #[test]
    fn unknown_cc_names_the_field_and_the_choices() {
        let e = check_cc("nosuchcc", Some(Path::new("r.json"))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tcp_congestion_control"));
        let avail = available_cc();
        if let Some(first) = avail.first() {
            assert!(e.message.contains(first.as_str()), "{e}");
            check_cc(first, None).unwrap();
        }
    }
}
