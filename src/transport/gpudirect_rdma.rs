//! RDMA WRITE between two agents' NICs: `gpudirect_rdma` (GPU memory at both ends, Path 2:
//! prefill GPU i -> NIC k -> IB -> decode GPU j) and `host_rdma` (host memory at both ends:
//! isolates the NICs and the cable from the GPUs' PCIe links).
//!
//! Setup follows perftest: the receiver opens its NIC, creates RC queue pairs, registers its
//! buffer (GPU memory through a dmabuf from CUDA, else `ibv_reg_mr` via nvidia-peermem) and
//! listens on a small TCP side channel; its endpoint description is `{"addr": ..., "rdma":
//! Endpoint}`. The sender connects its queue pairs to those, sends its own endpoint over the
//! side channel, and the receiver connects back and answers "ready".
//!
//! A transfer is the write plan of [`crate::rdma::plan`]: contiguous ranges per queue pair,
//! the last write of each with the transfer id as immediate. Its time runs from the first post
//! to the last send completion; an RC completion is the receiving NIC's acknowledgement that
//! the data is placed, so no software round trip is added (perftest's `ib_write_bw`
//! definition). The receiver confirms each transfer by its immediates and, at finish, checks
//! its count against the sender's summary.
//!
//! Flow options: `src_nic`, `dst_nic` (device names, default the first), `port` (1),
//! `gid_index` (RoCE / routed IB; on RoCE the RoCE v2 GID from sysfs by default),
//! `traffic_class` (0), `qps` (1), `write_bytes` (1 MiB, capped to the port's `max_msg_sz`),
//! `outstanding` (16) and, for `gpudirect_rdma`, `src_gpu`, `dst_gpu` (CUDA ordinal or PCI bus
//! id) or `src_memory` / `dst_memory` = `"host"` (that end in host memory: no GPU near its NIC).
//!
//! Buffers are allocated, registered and posted from short-lived threads pinned to the NIC's
//! NUMA node; the calling thread's affinity is never changed. Host memory is checked against
//! `RLIMIT_MEMLOCK` before it is allocated. The port's error counters (RNR NAKs, sequence
//! errors) are read around each flow and a rise is reported.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::host_tcp::{accept, connect, io_err, listen};
use super::{
    Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport, TransportError, TransportKind,
};
use crate::gpu::device::{contexts, GpuSelector};
use crate::gpu::memory::DeviceBuffer;
use crate::gpu::pci::GpuVendor;
use crate::gpu::{self, GpuError};
use crate::rdma::engine::Region;
use crate::rdma::memory::HostBuffer;
use crate::rdma::numa::on_nic_node;
use crate::rdma::sysfs::{counter_warning, read_counters};
use crate::rdma::{self, Connection, ConnectionOptions, Endpoint, NicSelector, RdmaError, WriteOptions};

/// Side-channel byte: the receiver's queue pairs are connected and receives are posted.
const READY: u8 = 0x52;
/// Side-channel tag of the sender's closing summary (then u64 transfers, u64 bytes, LE).
const SUMMARY: u8 = 0x46;

/// The RDMA transports: GPU memory (`gpudirect_rdma`) or host memory (`host_rdma`).
pub struct RdmaWrite {
    /// True for GPU memory at both ends.
    pub gpu: bool,
}

/// Connection options from flow options (`side` is `src` or `dst`), and the NIC selector to
/// resolve on the host that opens it.
pub fn connection_options(flow: &FlowSpec, side: &str) -> Result<(ConnectionOptions, Option<NicSelector>), String> {
    let o = &flow.options;
    let num = |key: &str, default: u64| -> Result<u64, String> {
        match o.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| format!("flow option '{key}' is {v}: expected a non-negative integer")),
        }
    };
    let nic = match o.get(format!("{side}_nic").as_str()) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<NicSelector>(v.clone()).map_err(|_| {
            format!("flow option '{side}_nic' is {v}: expected a device name such as \"mlx5_0\" or {{\"by_bus\": k}}")
        })?),
    };
    let gid_index = match o.get("gid_index") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(u8::try_from(num("gid_index", 0)?).map_err(|_| "flow option 'gid_index' must be 0..=255".to_string())?),
    };
    let write = WriteOptions {
        qps: num("qps", 1)? as usize,
        max_write_bytes: u32::try_from(num("write_bytes", 1 << 20)?)
            .map_err(|_| "flow option 'write_bytes' must fit 32 bits".to_string())?,
        outstanding: num("outstanding", 16)? as usize,
    };
    write.validate().map_err(|e| e.to_string())?;
    let port = u8::try_from(num("port", 1)?).map_err(|_| "flow option 'port' must be 1..=255".to_string())?;
    let traffic_class =
        u8::try_from(num("traffic_class", 0)?).map_err(|_| "flow option 'traffic_class' must be 0..=255".to_string())?;
    Ok((ConnectionOptions { device: None, port, gid_index, traffic_class, write, timeout_s: flow.timeout_s }, nic))
}

/// Memory one end registers; kept alive as long as its connection (held only for its Drop).
#[allow(dead_code)]
enum Buffer {
    Gpu(Arc<DeviceBuffer>),
    Hip(Arc<crate::gpu::hip::memory::HipDeviceBuffer>),
    Host(HostBuffer),
}

/// Which GPU runtime a GPUDirect end uses: CUDA where it has devices, else HIP; neither is
/// a waiver naming both reasons.
pub fn gpu_vendor(cuda: Result<(), gpu::Unavailable>, hip: Result<(), gpu::Unavailable>) -> Result<GpuVendor, String> {
    match (cuda, hip) {
        (Ok(()), _) => Ok(GpuVendor::Nvidia),
        (Err(_), Ok(())) => Ok(GpuVendor::Amd),
        (Err(c), Err(h)) => Err(format!("{c}; {h}")),
    }
}

fn here() -> Result<GpuVendor, String> {
    gpu_vendor(gpu::driver_status().map(|_| ()), crate::gpu::hip::hip_status().map(|_| ()))
}

/// A connection and the memory it registered. Field order is drop order: the region is
/// deregistered before its memory is freed, on every path.
struct Bound {
    conn: Connection,
    _buf: Buffer,
}

impl RdmaWrite {
    fn kind_(&self) -> TransportKind {
        if self.gpu {
            TransportKind::GpudirectRdma
        } else {
            TransportKind::HostRdma
        }
    }

    fn rdma_err(&self, flow: u64) -> impl Fn(RdmaError) -> TransportError {
        let kind = self.kind_();
        move |e| match e {
            RdmaError::Unavailable(u) => TransportError::Waived { kind, reason: u.to_string() },
            RdmaError::Endpoint { .. } => TransportError::protocol(flow, e.to_string()),
            RdmaError::Timeout { what, seconds } => TransportError::Timeout { flow, what: what.into(), timeout_s: seconds },
            other => TransportError::Device { flow, message: other.to_string() },
        }
    }

    fn gpu_err(&self, flow: u64) -> impl Fn(GpuError) -> TransportError {
        super::cuda_p2p::gpu_err(self.kind_(), flow)
    }

    /// Allocates and registers this end's buffer and opens its connection, on a thread pinned
    /// to the NIC's NUMA node (the first touch of host memory places it there).
    fn open(&self, flow: &FlowSpec, side: &str) -> Result<Bound, TransportError> {
        let (mut opts, nic) = connection_options(flow, side).map_err(|m| TransportError::protocol(flow.id, m))?;
        if let Some(sel) = nic {
            let names = rdma::list_devices().map_err(|u| self.rdma_err(flow.id)(u.into()))?;
            opts.device = Some(sel.resolve(std::path::Path::new("/sys"), &names).map_err(|u| self.rdma_err(flow.id)(u.into()))?);
        }
        let host = !self.gpu || flow.options.get(format!("{side}_memory").as_str()).and_then(|v| v.as_str()) == Some("host");
        let len = (flow.max_bytes as usize).max(1);
        if host {
            rdma::memory::check_memlock_here(len as u64).map_err(|u| self.rdma_err(flow.id)(u.into()))?;
        }
        let node_of = opts.device.clone().unwrap_or_default();
        on_nic_node(&node_of, || if host { self.open_host(flow, opts, len) } else { self.open_gpu(flow, side, opts, len) }).0
    }

    fn open_host(&self, flow: &FlowSpec, opts: ConnectionOptions, len: usize) -> Result<Bound, TransportError> {
        let buf = HostBuffer::new(len, crate::gpu::memory::host_page_size()).map_err(self.rdma_err(flow.id))?;
        let region = Region::Host { addr: buf.as_mut_ptr(), len };
        // SAFETY: `buf` is returned with the connection in a `Bound`, whose field order drops
        // the connection (deregistering the region) before the memory.
        let conn = unsafe { Connection::new(opts, region) }.map_err(self.rdma_err(flow.id))?;
        Ok(Bound { conn, _buf: Buffer::Host(buf) })
    }

    fn open_gpu(&self, flow: &FlowSpec, side: &str, opts: ConnectionOptions, len: usize) -> Result<Bound, TransportError> {
        match here() {
            Ok(GpuVendor::Amd) => return self.open_hip(flow, side, opts, len),
            Ok(GpuVendor::Nvidia) => {}
            Err(reason) => return Err(TransportError::Waived { kind: self.kind_(), reason }),
        }
        let gerr = self.gpu_err(flow.id);
        let info = gpu::driver_status().map_err(|u| gerr(u.into()))?;
        let devices = gpu::enumerate().map_err(&gerr)?;
        let key = format!("{side}_gpu");
        let sel = GpuSelector::from_options(&flow.options, &key).map_err(&gerr)?;
        let sel = sel.ok_or_else(|| {
            TransportError::protocol(
                flow.id,
                format!("flow option '{key}' is required (a CUDA ordinal or PCI bus id), or '{side}_memory': \"host\""),
            )
        })?;
        let ordinal = sel.resolve(&devices).map_err(&gerr)?;
        let ctx = contexts(&[ordinal]).map_err(&gerr)?.remove(0);
        let buf = Arc::new(DeviceBuffer::new(&ctx, len, 0x5a).map_err(&gerr)?);
        let dmabuf = if devices[ordinal].dmabuf {
            buf.export_dmabuf(info.version).map_err(|e| e.to_string())
        } else {
            Err(format!("GPU {} reports no dmabuf support", devices[ordinal].pci))
        };
        let b = buf.clone();
        let sync_memops = Box::new(move || b.set_sync_memops().map_err(|e| e.to_string()));
        let region = Region::Gpu { addr: buf.ptr(), len, dmabuf, sync_memops };
        // SAFETY: as above: the Arc'd GPU buffer lives beside the connection and outlives it.
        let conn = unsafe { Connection::new(opts, region) }.map_err(self.rdma_err(flow.id))?;
        Ok(Bound { conn, _buf: Buffer::Gpu(buf) })
    }
}

impl RdmaWrite {
    /// An AMD GPU end: `hipMalloc` memory exported as a dmabuf through the HSA runtime, else
    /// plain `ibv_reg_mr` on the GPU address (the amdkfd peer-memory client); HIP needs no
    /// SYNC_MEMOPS step, its copies and NIC writes are ordered by the runtime.
    fn open_hip(&self, flow: &FlowSpec, side: &str, opts: ConnectionOptions, len: usize) -> Result<Bound, TransportError> {
        use crate::gpu::hip::{self, memory::HipDeviceBuffer};
        let gerr = self.gpu_err(flow.id);
        let devices = hip::enumerate().map_err(&gerr)?;
        let key = format!("{side}_gpu");
        let sel = GpuSelector::from_options(&flow.options, &key).map_err(&gerr)?.ok_or_else(|| {
            TransportError::protocol(
                flow.id,
                format!("flow option '{key}' is required (a HIP ordinal or PCI bus id), or '{side}_memory': \"host\""),
            )
        })?;
        let ordinal = sel.resolve(&devices).map_err(&gerr)?;
        let buf = Arc::new(HipDeviceBuffer::new(ordinal, len, 0x5a).map_err(&gerr)?);
        let dmabuf = buf.export_dmabuf().map_err(|e| e.to_string());
        let region = Region::Gpu { addr: buf.ptr() as u64, len, dmabuf, sync_memops: Box::new(|| Ok(())) };
        // SAFETY: the Arc'd GPU buffer lives beside the connection in `Bound` and outlives it.
        let conn = unsafe { Connection::new(opts, region) }.map_err(self.rdma_err(flow.id))?;
        Ok(Bound { conn, _buf: Buffer::Hip(buf) })
    }
}

/// Warns on stderr when the port's error counters rose during a flow.
fn report_counters(conn: &Connection, before: &std::collections::BTreeMap<&'static str, u64>) {
    let after = read_counters(std::path::Path::new("/sys"), conn.device_name(), conn.port());
    if let Some(w) = counter_warning(conn.device_name(), before, &after) {
        eprintln!("linkcal: warning: {w}");
    }
}

impl Transport for RdmaWrite {
    fn kind(&self) -> TransportKind {
        self.kind_()
    }

    fn applicability(&self) -> Applicability {
        if let Err(u) = rdma::list_devices() {
            return Applicability::Waived { reason: u.to_string() };
        }
        if self.gpu {
            return match here() {
                Ok(GpuVendor::Nvidia) => super::cuda_p2p::cuda_applicability(1),
                Ok(GpuVendor::Amd) => super::hip_copy::hip_applicability(1),
                Err(reason) => Applicability::Waived { reason },
            };
        }
        Applicability::Applies
    }

    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        let bound = self.open(flow, "dst")?;
        let local = bound.conn.local_endpoint().map_err(self.rdma_err(flow.id))?;
        let (listener, addr) = listen(flow)?;
        let endpoint = serde_json::json!({ "addr": addr.to_string(), "rdma": local });
        let receiver = RdmaReceiver { kind: self.kind_(), flow: flow.clone(), bound, listener };
        Ok(PreparedReceiver { endpoint, receiver: Box::new(receiver) })
    }

    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        let remote = endpoint
            .get("rdma")
            .ok_or_else(|| TransportError::protocol(flow.id, format!("endpoint {endpoint} has no \"rdma\" description")))
            .and_then(|v| Endpoint::decode(&v.to_string()).map_err(self.rdma_err(flow.id)))?;
        let mut bound = self.open(flow, "src")?;
        bound.conn.connect(remote).map_err(self.rdma_err(flow.id))?;
        let mut stream = connect(flow, endpoint)?;
        let local = bound.conn.local_endpoint().map_err(self.rdma_err(flow.id))?.encode();
        let t = flow.timeout_s;
        stream
            .write_all(&(local.len() as u32).to_le_bytes())
            .and_then(|()| stream.write_all(local.as_bytes()))
            .map_err(|e| io_err(flow.id, t, "send endpoint", e))?;
        let mut ready = [0u8; 1];
        stream.read_exact(&mut ready).map_err(|e| io_err(flow.id, t, "waiting for the receiver's queue pairs", e))?;
        if ready[0] != READY {
            return Err(TransportError::protocol(flow.id, format!("expected ready byte {READY:#x}, got {:#x}", ready[0])));
        }
        let counters = read_counters(std::path::Path::new("/sys"), bound.conn.device_name(), bound.conn.port());
        Ok(Box::new(RdmaSender { kind: self.kind_(), flow: flow.id, timeout_s: t, bound, stream, next: 0, bytes: 0, counters }))
    }
}

struct RdmaSender {
    kind: TransportKind,
    flow: u64,
    timeout_s: f64,
    bound: Bound,
    stream: TcpStream,
    next: u32,
    bytes: u64,
    counters: std::collections::BTreeMap<&'static str, u64>,
}

impl Sender for RdmaSender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        let kind = self.kind;
        let flow = self.flow;
        let next = self.next;
        // Posted from a short-lived thread on the NIC's node; timed inside `write`, so the
        // thread start is not in the figure, and the caller's affinity is untouched.
        let conn = &mut self.bound.conn;
        let nic = conn.device_name().to_string();
        let d = on_nic_node(&nic, || conn.write(bytes, next))
            .0
            .map_err(|e| RdmaWrite { gpu: kind == TransportKind::GpudirectRdma }.rdma_err(flow)(e))?;
        self.next = self.next.wrapping_add(1);
        self.bytes += bytes;
        Ok(d)
    }

    fn finish(mut self: Box<Self>) -> Result<(), TransportError> {
        let mut msg = vec![SUMMARY];
        msg.extend_from_slice(&u64::from(self.next).to_le_bytes());
        msg.extend_from_slice(&self.bytes.to_le_bytes());
        self.stream.write_all(&msg).map_err(|e| io_err(self.flow, self.timeout_s, "send the closing summary", e))?;
        report_counters(&self.bound.conn, &self.counters);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

struct RdmaReceiver {
    kind: TransportKind,
    flow: FlowSpec,
    bound: Bound,
    listener: TcpListener,
}

/// Parses the sender's closing summary: `(transfers, bytes)`.
pub fn parse_summary(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() != 17 || b[0] != SUMMARY {
        return None;
    }
    Some((u64::from_le_bytes(b[1..9].try_into().ok()?), u64::from_le_bytes(b[9..17].try_into().ok()?)))
}

impl Receiver for RdmaReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let nic = self.bound.conn.device_name().to_string();
        // Receives are posted and polled from a thread on the NIC's node.
        on_nic_node(&nic, move || (*self).serve_here()).0
    }
}

impl RdmaReceiver {
    fn serve_here(self) -> Result<ReceiverStats, TransportError> {
        let RdmaReceiver { kind, flow, mut bound, listener } = self;
        let conn = &mut bound.conn;
        let (id, t) = (flow.id, flow.timeout_s);
        let rerr = RdmaWrite { gpu: kind == TransportKind::GpudirectRdma }.rdma_err(id);
        let counters = read_counters(std::path::Path::new("/sys"), conn.device_name(), conn.port());
        let mut stream = accept(&flow, &listener)?;
        drop(listener);
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).map_err(|e| io_err(id, t, "read the sender's endpoint", e))?;
        let n = u32::from_le_bytes(len) as usize;
        if n > 1 << 20 {
            return Err(TransportError::protocol(id, format!("sender endpoint of {n} bytes")));
        }
        let mut text = vec![0u8; n];
        stream.read_exact(&mut text).map_err(|e| io_err(id, t, "read the sender's endpoint", e))?;
        let remote = Endpoint::decode(&String::from_utf8_lossy(&text)).map_err(&rerr)?;
        conn.connect(remote).map_err(&rerr)?;
        stream.write_all(&[READY]).map_err(|e| io_err(id, t, "send ready", e))?;
        stream.set_nonblocking(true).map_err(|e| TransportError::io(id, "socket options", e))?;
        let mut stats = ReceiverStats::default();
        let mut summary = Vec::with_capacity(17);
        let mut last = Instant::now();
        loop {
            if conn.progress(stats.transfers as u32).map_err(&rerr)? {
                stats.transfers += 1;
                last = Instant::now();
                continue;
            }
            let mut b = [0u8; 17];
            match stream.read(&mut b[..17 - summary.len()]) {
                Ok(0) if summary.len() < 17 => return Err(TransportError::protocol(id, "the sender closed without a summary")),
                Ok(k) => summary.extend_from_slice(&b[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(TransportError::io(id, "read the closing summary", e)),
            }
            if summary.len() == 17 {
                let (sent, bytes) =
                    parse_summary(&summary).ok_or_else(|| TransportError::protocol(id, "malformed closing summary"))?;
                let r = finish_count(conn, &mut stats, sent, bytes, id, t, &rerr);
                report_counters(conn, &counters);
                return r;
            }
            if last.elapsed().as_secs_f64() > t {
                return Err(TransportError::Timeout { flow: id, what: "the next RDMA transfer".into(), timeout_s: t });
            }
        }
    }
}

/// After the summary: the last immediates may still be in the queue; drain them, then check
/// the count.
fn finish_count(
    conn: &mut Connection,
    stats: &mut ReceiverStats,
    sent: u64,
    bytes: u64,
    id: u64,
    t: f64,
    rerr: &impl Fn(RdmaError) -> TransportError,
) -> Result<ReceiverStats, TransportError> {
    let deadline = Instant::now() + Duration::from_secs_f64(t);
    while stats.transfers < sent {
        if conn.progress(stats.transfers as u32).map_err(rerr)? {
            stats.transfers += 1;
        } else if Instant::now() > deadline {
            return Err(TransportError::protocol(id, format!("sender reports {sent} transfers, {} arrived", stats.transfers)));
        }
    }
    if stats.transfers != sent {
        return Err(TransportError::protocol(id, format!("sender reports {sent} transfers, {} arrived", stats.transfers)));
    }
    stats.bytes = bytes;
    Ok(*stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(options: serde_json::Value) -> FlowSpec {
        FlowSpec {
            id: 3,
            transport: TransportKind::HostRdma,
            local_addr: Some("127.0.0.1".into()),
            max_bytes: 1 << 20,
            timeout_s: 1.0,
            options,
            tcp_congestion: None,
        }
    }

    #[test]
    fn options_map_onto_connection_settings() {
        let f = flow(
            serde_json::json!({"src_nic": "mlx5_2", "dst_nic": {"by_bus": 1}, "gid_index": 3, "qps": 4, "write_bytes": 65536, "outstanding": 32, "port": 2, "traffic_class": 106}),
        );
        let (s, nic) = connection_options(&f, "src").unwrap();
        assert_eq!(nic, Some(NicSelector::Name("mlx5_2".into())));
        assert_eq!(connection_options(&f, "dst").unwrap().1, Some(NicSelector::BusOrder { by_bus: 1 }));
        assert_eq!((s.port, s.gid_index, s.traffic_class), (2, Some(3), 106));
        assert_eq!(s.write, WriteOptions { qps: 4, max_write_bytes: 65536, outstanding: 32 });
        assert_eq!(s.timeout_s, 1.0);
        let (d, nic) = connection_options(&flow(serde_json::Value::Null), "src").unwrap();
        assert_eq!((d.device, nic, d.gid_index, d.write), (None, None, None, WriteOptions::default()));
        for bad in [
            serde_json::json!({"qps": 0}),
            serde_json::json!({"qps": "x"}),
            serde_json::json!({"gid_index": 300}),
            serde_json::json!({"traffic_class": 256}),
            serde_json::json!({"src_nic": 5}),
            serde_json::json!({"write_bytes": 1u64 << 40}),
        ] {
            assert!(connection_options(&flow(bad.clone()), "src").is_err(), "{bad}");
        }
    }

    #[test]
    fn summary_frames() {
        let mut m = vec![SUMMARY];
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&(1u64 << 33).to_le_bytes());
        assert_eq!(parse_summary(&m), Some((7, 1 << 33)));
        assert_eq!(parse_summary(&m[..16]), None);
        m[0] = 0;
        assert_eq!(parse_summary(&m), None);
    }

    #[test]
    fn without_an_rdma_device_both_kinds_are_waived() {
        if rdma::list_devices().is_ok() {
            return; // a machine with RDMA: the hardware smoke test covers it
        }
        for gpu in [false, true] {
            let t = RdmaWrite { gpu };
            let Applicability::Waived { reason } = t.applicability() else { panic!("applies without a device") };
            assert!(reason.starts_with("no RDMA device"), "{reason}");
            let f = flow(serde_json::json!({"dst_gpu": 0}));
            match t.prepare_receiver(&f) {
                Err(TransportError::Waived { kind, reason }) => {
                    assert_eq!(kind, t.kind());
                    assert!(!reason.is_empty());
                }
                Err(e) => panic!("expected a waiver, got {e}"),
                Ok(_) => panic!("prepared without a device"),
            }
        }
    }

    #[test]
    fn gpudirect_uses_cuda_first_then_hip_else_names_both_reasons() {
        use crate::gpu::Unavailable as U;
        let hip_missing = || Err(U::HipLibrary { library: "libamdhip64.so" });
        assert_eq!(gpu_vendor(Ok(()), Ok(())), Ok(GpuVendor::Nvidia));
        assert_eq!(gpu_vendor(Ok(()), hip_missing()), Ok(GpuVendor::Nvidia));
        assert_eq!(gpu_vendor(Err(U::NoLibrary), Ok(())), Ok(GpuVendor::Amd));
        assert_eq!(
            gpu_vendor(Err(U::NoLibrary), hip_missing()),
            Err("libcuda.so not found; libamdhip64.so not found".to_string())
        );
    }
}
