//! A connection: device, protection domain, completion queue, several RC queue pairs and one
//! registered region. The sender posts a transfer's writes with a bounded number in flight per
//! queue pair and times it from the first post to the last completion (an RC completion means
//! the peer NIC acknowledged the data); the receiver awaits one immediate per queue pair.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sys as ffi;

use super::endpoint::{check_pair, Endpoint, MemoryKind, QpInfo};
use super::plan::{cap_to_port, imm_from_wire, write_plan, WriteOptions, RECEIVES_PER_QP};
use super::verbs::{wc_status_str, Cq, Device, Mr, Pd, Qp, RemoteBuf};
use super::{RdmaError, Unavailable};

/// How to open and run a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionOptions {
    /// RDMA device name (`mlx5_0`); the first device when `None`.
    pub device: Option<String>,
    /// Port number (1-based).
    pub port: u8,
    /// GID index for RoCE (or routed IB). `None` on IB uses the LID; on RoCE it means the
    /// port's RoCE v2 GID, found by type in sysfs ([`super::sysfs::pick_roce_v2`]).
    pub gid_index: Option<u8>,
    /// IP traffic class of GID-routed packets (DSCP << 2; RoCE fabrics map one to the
    /// lossless priority). 0 by default.
    pub traffic_class: u8,
    /// Queue pairs, write size and writes in flight.
    pub write: WriteOptions,
    /// Longest a transfer may take, seconds.
    pub timeout_s: f64,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            device: None,
            port: 1,
            gid_index: None,
            traffic_class: 0,
            write: WriteOptions::default(),
            timeout_s: 30.0,
        }
    }
}

/// The memory a connection registers.
pub enum Region {
    /// Host memory.
    Host {
        /// Start address.
        addr: *mut u8,
        /// Length, bytes.
        len: usize,
    },
    /// GPU memory: dmabuf when exported (fd, offset of the buffer in it), else `ibv_reg_mr`
    /// through nvidia-peermem.
    Gpu {
        /// Device address (the iova peers write to).
        addr: u64,
        /// Length, bytes.
        len: usize,
        /// Exported dmabuf and the buffer's offset inside it, or why there is none.
        dmabuf: Result<(OwnedFd, u64), String>,
        /// Sets `CU_POINTER_ATTRIBUTE_SYNC_MEMOPS` on the buffer; run before any plain
        /// `ibv_reg_mr` (nvidia-peermem) registration, so CUDA copies and NIC writes stay ordered.
        sync_memops: Box<dyn FnOnce() -> Result<(), String> + Send>,
    },
}

/// One side of an RDMA connection.
pub struct Connection {
    dev: Arc<Device>,
    cq: Arc<Cq>,
    qps: Vec<Qp>,
    mr: Mr,
    addr: u64,
    len: u64,
    memory: MemoryKind,
    opts: ConnectionOptions,
    remote: Option<Endpoint>,
    /// Receiver: which queue pairs have delivered the awaited transfer's immediate.
    seen: Vec<bool>,
}

/// A starting PSN that differs between runs (24 bits).
fn fresh_psn(salt: usize) -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (t ^ std::process::id().rotate_left(8) ^ (salt as u32).wrapping_mul(0x9e37_79b9)) & 0xff_ffff
}

impl Connection {
    /// Opens the device, creates the queue pairs (in INIT) and registers `region`.
    ///
    /// # Safety
    /// The memory of `region` must stay allocated until the connection is dropped.
    pub unsafe fn new(mut opts: ConnectionOptions, region: Region) -> Result<Connection, RdmaError> {
        opts.write.validate()?;
        let dev = Device::open(opts.device.as_deref(), opts.port)?;
        opts.write = cap_to_port(opts.write, dev.max_msg_bytes);
        if dev.link_layer == super::LinkLayer::Ethernet && opts.gid_index.is_none() {
            let table = super::sysfs::gid_table(std::path::Path::new("/sys"), &dev.name, dev.port);
            let idx = super::sysfs::pick_roce_v2(&table)
                .ok_or_else(|| Unavailable::NoRoceV2Gid { device: dev.name.clone(), port: dev.port })?;
            opts.gid_index = Some(idx);
        }
        let pd = Pd::new(&dev)?;
        let q = opts.write.qps;
        let recv_depth = RECEIVES_PER_QP;
        let cq = Cq::new(&dev, q * (opts.write.outstanding + recv_depth))?;
        let qps =
            (0..q).map(|i| Qp::new(&pd, &cq, opts.write.outstanding, recv_depth, fresh_psn(i))).collect::<Result<Vec<_>, _>>()?;
        let (mr, addr, len, memory) = match region {
            // SAFETY: the caller keeps the host range alive for the connection's life.
            Region::Host { addr, len } => (unsafe { Mr::register(&pd, addr, len) }?, addr as u64, len as u64, MemoryKind::Host),
            Region::Gpu { addr, len, dmabuf, sync_memops } => {
                (register_gpu(&pd, addr, len, dmabuf, sync_memops)?, addr, len as u64, MemoryKind::Gpu)
            }
        };
        let seen = vec![false; q];
        Ok(Connection { dev, cq, qps, mr, addr, len, memory, opts, remote: None, seen })
    }

    /// How the region was registered (`dmabuf` or `ibv_reg_mr`).
    pub fn registration(&self) -> &'static str {
        self.mr.method
    }

    /// The device name.
    pub fn device_name(&self) -> &str {
        &self.dev.name
    }

    /// The port in use (1-based).
    pub fn port(&self) -> u8 {
        self.dev.port
    }

    /// The options in effect (GID index resolved, write size capped to the port).
    pub fn options(&self) -> &ConnectionOptions {
        &self.opts
    }

    /// What the peer needs to reach us.
    pub fn local_endpoint(&self) -> Result<Endpoint, RdmaError> {
        let gid = match (self.dev.link_layer, self.opts.gid_index) {
            (super::LinkLayer::Ethernet, idx) => Some(self.dev.gid(idx.unwrap_or(0))?),
            (super::LinkLayer::Infiniband, Some(idx)) => Some(self.dev.gid(idx)?),
            (super::LinkLayer::Infiniband, None) => None,
        };
        let e = Endpoint {
            device: self.dev.name.clone(),
            port: self.dev.port,
            link_layer: self.dev.link_layer,
            lid: self.dev.lid,
            gid,
            mtu_bytes: self.dev.mtu_bytes,
            qps: self.qps.iter().map(|q| QpInfo { qpn: q.qpn(), psn: q.psn }).collect(),
            addr: self.addr,
            len_bytes: self.len,
            rkey: self.mr.rkey(),
            memory: self.memory,
        };
        e.validate()?;
        Ok(e)
    }

    /// Connects queue pair q to the peer's queue pair q (RTR, RTS) and, on a receiver, posts
    /// the receives that absorb immediates.
    pub fn connect(&mut self, remote: Endpoint) -> Result<(), RdmaError> {
        remote.validate()?;
        check_pair(&self.local_endpoint()?, &remote, 0)?;
        let sgid = match self.dev.link_layer {
            super::LinkLayer::Ethernet => Some(self.opts.gid_index.unwrap_or(0)),
            super::LinkLayer::Infiniband => self.opts.gid_index,
        };
        for (q, r) in self.qps.iter().zip(&remote.qps) {
            q.connect(&remote, r.qpn, r.psn, self.dev.mtu_bytes, sgid, self.opts.traffic_class)?;
        }
        for (i, q) in self.qps.iter().enumerate() {
            for _ in 0..RECEIVES_PER_QP {
                q.post_recv(i as u64)?;
            }
        }
        self.remote = Some(remote);
        Ok(())
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.opts.timeout_s.max(0.001))
    }

    /// Sender: writes `total` bytes (from offset 0 of our region to offset 0 of the peer's) as
    /// transfer `id`; returns the time from the first post to the last completion.
    pub fn write(&mut self, total: u64, id: u32) -> Result<Duration, RdmaError> {
        let remote = self.remote.as_ref().ok_or_else(|| RdmaError::Invalid("write before connect".into()))?;
        if total > self.len || total > remote.len_bytes {
            return Err(RdmaError::Invalid(format!(
                "a {total}-byte transfer exceeds a registered buffer ({} here, {} at the peer)",
                self.len, remote.len_bytes
            )));
        }
        let plan = write_plan(total, id, &self.opts.write)?;
        let remote = RemoteBuf { base: remote.addr, rkey: remote.rkey };
        let window = self.opts.write.outstanding;
        let mut next = vec![0usize; plan.len()];
        let mut inflight = vec![0usize; plan.len()];
        let mut wc = vec![ffi::ibv_wc::default(); 64];
        let deadline = self.deadline();
        let start = Instant::now();
        loop {
            for (q, ops) in plan.iter().enumerate() {
                while inflight[q] < window && next[q] < ops.len() {
                    self.qps[q].post_write(q as u64, &self.mr, self.addr, remote, &ops[next[q]])?;
                    next[q] += 1;
                    inflight[q] += 1;
                }
            }
            if inflight.iter().all(|&n| n == 0) && next.iter().zip(&plan).all(|(n, p)| *n == p.len()) {
                return Ok(start.elapsed());
            }
            let n = self.cq.poll(&mut wc)?;
            for c in &wc[..n] {
                check_wc(c)?;
                let q = c.wr_id() as usize;
                inflight[q] = inflight[q].saturating_sub(1);
            }
            if n == 0 && Instant::now() > deadline {
                return Err(RdmaError::Timeout { what: "RDMA write completions", seconds: self.opts.timeout_s });
            }
        }
    }

    /// Receiver: waits for transfer `id`'s immediate on every queue pair (re-posting each
    /// receive it consumes); returns when the last one arrived.
    pub fn await_transfer(&mut self, id: u32) -> Result<Instant, RdmaError> {
        let deadline = self.deadline();
        loop {
            if self.progress(id)? {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                return Err(RdmaError::Timeout { what: "the transfer's immediates", seconds: self.opts.timeout_s });
            }
        }
    }

    /// Receiver: polls the completion queue once for transfer `id`; true when every queue pair
    /// has delivered its immediate (the state then resets for the next transfer). Lets a
    /// caller interleave other waits (e.g. a control socket) with the completion queue.
    pub fn progress(&mut self, id: u32) -> Result<bool, RdmaError> {
        // One completion at a time: a short next transfer's immediate may already sit behind
        // this one's last, and must stay queued for the next call.
        let mut wc = [ffi::ibv_wc::default(); 1];
        let n = self.cq.poll(&mut wc)?;
        for c in &wc[..n] {
            check_wc(c)?;
            let q = c.wr_id() as usize;
            let got = c.imm_data().map(imm_from_wire);
            if got != Some(id) {
                return Err(RdmaError::Invalid(format!(
                    "queue pair {q} delivered immediate {got:?} while awaiting transfer {id}"
                )));
            }
            if q >= self.seen.len() || std::mem::replace(&mut self.seen[q], true) {
                return Err(RdmaError::Invalid(format!("queue pair {q} delivered transfer {id} twice")));
            }
            self.qps[q].post_recv(q as u64)?;
        }
        if self.seen.iter().all(|&s| s) {
            self.seen.iter_mut().for_each(|s| *s = false);
            return Ok(true);
        }
        Ok(false)
    }
}

fn check_wc(c: &ffi::ibv_wc) -> Result<(), RdmaError> {
    match c.error() {
        None => Ok(()),
        Some((status, vendor)) => Err(RdmaError::Completion { status: wc_status_str(status), vendor, wr_id: c.wr_id() }),
    }
}

/// Registers GPU memory: dmabuf first (upstream kernel path), then `ibv_reg_mr` (needs the
/// nvidia-peermem module). Both failing is a waiver: GPUDirect RDMA is not set up here.
fn register_gpu(
    pd: &Arc<Pd>,
    addr: u64,
    len: usize,
    dmabuf: Result<(OwnedFd, u64), String>,
    sync_memops: Box<dyn FnOnce() -> Result<(), String> + Send>,
) -> Result<Mr, RdmaError> {
    let by_dmabuf = |fd, offset| Mr::register_dmabuf(pd, fd, offset, len, addr).map_err(|e| e.to_string());
    // SAFETY: the caller of `Connection::new` keeps the GPU allocation alive; registering a
    // device address only succeeds when nvidia-peermem recognises it.
    let by_reg_mr = || unsafe { Mr::register(pd, addr as *mut u8, len) }.map_err(|e| e.to_string());
    Ok(register_with_fallback(dmabuf, by_dmabuf, sync_memops, by_reg_mr)?)
}

/// The order of GPU registration: the dmabuf (when exported), else `sync_memops` then plain
/// `ibv_reg_mr`. SYNC_MEMOPS is set on every path that reaches `ibv_reg_mr`, including a
/// dmabuf that was exported but refused by the NIC.
pub fn register_with_fallback<F, M>(
    dmabuf: Result<(F, u64), String>,
    by_dmabuf: impl FnOnce(F, u64) -> Result<M, String>,
    sync_memops: impl FnOnce() -> Result<(), String>,
    by_reg_mr: impl FnOnce() -> Result<M, String>,
) -> Result<M, Unavailable> {
    let dmabuf_err = match dmabuf {
        Ok((fd, offset)) => match by_dmabuf(fd, offset) {
            Ok(mr) => return Ok(mr),
            Err(e) => e,
        },
        Err(why) => why,
    };
    let plain = sync_memops().map_err(|e| format!("CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: {e}")).and_then(|()| by_reg_mr());
    plain.map_err(|peermem| Unavailable::NoGpuDirect { dmabuf: dmabuf_err, peermem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psns_fit_24_bits_and_vary_by_queue_pair() {
        let a: Vec<u32> = (0..8).map(fresh_psn).collect();
        assert!(a.iter().all(|&p| p < 1 << 24));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn a_refused_dmabuf_falls_back_with_sync_memops_first() {
        use std::cell::RefCell;
        let log = RefCell::new(Vec::new());
        let step = |s: &'static str| log.borrow_mut().push(s);
        // Exported, but the NIC refuses the dmabuf: SYNC_MEMOPS, then ibv_reg_mr.
        let r = register_with_fallback(
            Ok((7, 0)),
            |_fd: i32, _| -> Result<u32, String> {
                step("dmabuf");
                Err("EOPNOTSUPP".into())
            },
            || {
                step("sync_memops");
                Ok(())
            },
            || Ok::<u32, String>(step_ret(&log, "reg_mr")),
        );
        assert_eq!(r, Ok(1));
        assert_eq!(*log.borrow(), ["dmabuf", "sync_memops", "reg_mr"]);
        log.borrow_mut().clear();
        // Accepted dmabuf: nothing else.
        let r = register_with_fallback(
            Ok((7, 0)),
            |_fd: i32, _| Ok::<u32, String>(step_ret(&log, "dmabuf")),
            || {
                step("sync_memops");
                Ok(())
            },
            || Ok(9),
        );
        assert_eq!(r, Ok(1));
        assert_eq!(*log.borrow(), ["dmabuf"]);
        // Both refused: a waiver naming both causes.
        let r =
            register_with_fallback(Err::<(i32, u64), _>("no dmabuf".into()), |_, _| Ok(0u32), || Ok(()), || Err("EFAULT".into()));
        let w = r.unwrap_err().to_string();
        assert!(w.contains("no dmabuf") && w.contains("EFAULT"), "{w}");
    }

    fn step_ret(log: &std::cell::RefCell<Vec<&'static str>>, s: &'static str) -> u32 {
        log.borrow_mut().push(s);
        1
    }

    #[test]
    fn opening_without_a_device_is_a_waiver() {
        let mut buf = vec![0u8; 4096];
        let region = Region::Host { addr: buf.as_mut_ptr(), len: buf.len() };
        // SAFETY: `buf` outlives the (failed or dropped) connection.
        match unsafe { Connection::new(ConnectionOptions::default(), region) } {
            Err(RdmaError::Unavailable(u)) => assert!(u.to_string().contains("RDMA")),
            Err(e) => panic!("no device must be a waiver, got {e}"),
            Ok(c) => assert!(c.local_endpoint().is_ok(), "a machine with RDMA must describe itself"),
        }
    }
}
