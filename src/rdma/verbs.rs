//! Owned verbs objects (device context, protection domain, completion queue, RC queue pair,
//! memory region), freed in dependency order through `Arc`s. Every call goes through the
//! run-time loaded table of [`super::loader`]; the data-path calls that are inline functions in
//! the C header (`ibv_post_send`, `ibv_post_recv`, `ibv_poll_cq`) go through the context's ops
//! table as the header's do.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::loader::{self, verbs, Verbs};
use super::sys as ffi;

use super::endpoint::{mtu_bytes, mtu_enum, Endpoint, Gid, LinkLayer};
use super::plan::WriteOp;
use super::{list_devices, RdmaError, Unavailable};

/// An open RDMA device and the attributes of the port in use.
pub struct Device {
    ctx: *mut ffi::ibv_context,
    v: &'static Verbs,
    /// Device name, e.g. `mlx5_0`.
    pub name: String,
    /// Port number (1-based).
    pub port: u8,
    /// Link layer of the port.
    pub link_layer: LinkLayer,
    /// Port LID.
    pub lid: u16,
    /// Active MTU, bytes.
    pub mtu_bytes: u32,
    /// Largest message the port takes (`max_msg_sz`), bytes.
    pub max_msg_bytes: u32,
}

// SAFETY: libibverbs contexts are thread-safe (the library locks internally); the pointer is
// owned by this value and closed once in Drop.
unsafe impl Send for Device {}
// SAFETY: as above; shared use only calls thread-safe verbs.
unsafe impl Sync for Device {}

impl Device {
    /// Opens device `name` (or the first one) and reads port `port`. A port that is not
    /// active is [`Unavailable::PortDown`].
    pub fn open(name: Option<&str>, port: u8) -> Result<Arc<Device>, RdmaError> {
        let v = verbs()?;
        let names = list_devices()?;
        let want = match name {
            Some(n) => names
                .iter()
                .position(|x| x == n)
                .ok_or_else(|| Unavailable::NoSuchDevice { name: n.into(), present: names.join(", ") })?,
            None => 0,
        };
        let mut count = 0;
        // SAFETY: the list is freed below and the chosen device pointer is only used by
        // ibv_open_device before that; the context it returns outlives the list.
        let ctx = unsafe {
            let list = (v.get_device_list)(&mut count);
            if list.is_null() || want >= count.max(0) as usize {
                if !list.is_null() {
                    (v.free_device_list)(list);
                }
                return Err(Unavailable::NoDevice(Some("device list changed while opening".into())).into());
            }
            let ctx = (v.open_device)(*list.add(want));
            (v.free_device_list)(list);
            ctx
        };
        if ctx.is_null() {
            return Err(RdmaError::last_os("ibv_open_device"));
        }
        let mut dev = Device {
            ctx,
            v,
            name: names[want].clone(),
            port,
            link_layer: LinkLayer::Infiniband,
            lid: 0,
            mtu_bytes: 256,
            max_msg_bytes: u32::MAX,
        };
        let mut attr = ffi::ibv_port_attr::default();
        // SAFETY: `ctx` is open; `attr` is the full struct the header's wrapper passes.
        let rc = unsafe { v.query_port(ctx, port, &mut attr) };
        if rc != 0 {
            return Err(RdmaError::from_ret("ibv_query_port", rc));
        }
        if attr.state != ffi::ibv_port_state::IBV_PORT_ACTIVE {
            return Err(Unavailable::PortDown { device: dev.name.clone(), port, state: attr.state }.into());
        }
        dev.link_layer =
            if attr.link_layer == ffi::IBV_LINK_LAYER_ETHERNET { LinkLayer::Ethernet } else { LinkLayer::Infiniband };
        dev.lid = attr.lid;
        dev.mtu_bytes = mtu_bytes(attr.active_mtu).unwrap_or(1024);
        dev.max_msg_bytes = attr.max_msg_sz;
        Ok(Arc::new(dev))
    }

    /// The GID at `index` of the port.
    pub fn gid(&self, index: u8) -> Result<Gid, RdmaError> {
        let mut gid = ffi::ibv_gid::default();
        // SAFETY: `gid` is a writable 16-byte union; the context is open.
        let rc = unsafe { (self.v.query_gid)(self.ctx, self.port, i32::from(index), &mut gid) };
        if rc != 0 {
            // ibv_query_gid returns -1 and leaves the cause in errno (not in its result).
            return Err(RdmaError::from_status("ibv_query_gid", rc, std::io::Error::last_os_error().raw_os_error()));
        }
        // SAFETY: every bit pattern of the union is a valid byte array.
        Ok(Gid(unsafe { gid.raw }))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once; every dependent object holds an Arc to this
        // device, so they are gone by now.
        unsafe { (self.v.close_device)(self.ctx) };
    }
}

/// A protection domain.
pub struct Pd {
    pd: *mut ffi::ibv_pd,
    dev: Arc<Device>,
}

// SAFETY: verbs objects are thread-safe; owned and freed once.
unsafe impl Send for Pd {}
// SAFETY: as above.
unsafe impl Sync for Pd {}

impl Pd {
    /// Allocates a protection domain on `dev`.
    pub fn new(dev: &Arc<Device>) -> Result<Arc<Pd>, RdmaError> {
        // SAFETY: the context is open for the life of `dev`.
        let pd = unsafe { (dev.v.alloc_pd)(dev.ctx) };
        if pd.is_null() {
            return Err(RdmaError::last_os("ibv_alloc_pd"));
        }
        Ok(Arc::new(Pd { pd, dev: dev.clone() }))
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once after every MR and QP (they hold Arcs).
        unsafe { (self.dev.v.dealloc_pd)(self.pd) };
    }
}

/// A completion queue.
pub struct Cq {
    cq: *mut ffi::ibv_cq,
    dev: Arc<Device>,
}

// SAFETY: verbs objects are thread-safe; owned and freed once.
unsafe impl Send for Cq {}
// SAFETY: as above.
unsafe impl Sync for Cq {}

impl Cq {
    /// A completion queue of `depth` entries.
    pub fn new(dev: &Arc<Device>, depth: usize) -> Result<Arc<Cq>, RdmaError> {
        // SAFETY: the context is open; no channel and no context pointer are attached.
        let cq = unsafe { (dev.v.create_cq)(dev.ctx, depth as i32, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        if cq.is_null() {
            return Err(RdmaError::last_os("ibv_create_cq"));
        }
        Ok(Arc::new(Cq { cq, dev: dev.clone() }))
    }

    /// Polls up to `wc.len()` completions; returns how many were written.
    pub fn poll(&self, wc: &mut [ffi::ibv_wc]) -> Result<usize, RdmaError> {
        // SAFETY: `cq` is live; `context` and its ops table are set by the provider for the
        // life of the CQ; `wc` has room for `wc.len()` entries.
        let n = unsafe { loader::poll_cq(self.cq, wc) }.ok_or_else(|| RdmaError::Invalid("provider has no poll_cq".into()))?;
        if n < 0 {
            return Err(RdmaError::from_ret("ibv_poll_cq", libc::EIO));
        }
        Ok(n as usize)
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once after its QPs (they hold Arcs).
        unsafe { (self.dev.v.destroy_cq)(self.cq) };
    }
}

/// A registered memory region (keeps the dmabuf descriptor it came from, if any).
pub struct Mr {
    mr: *mut ffi::ibv_mr,
    _pd: Arc<Pd>,
    _dmabuf: Option<OwnedFd>,
    /// How it was registered: `dmabuf` or `ibv_reg_mr`.
    pub method: &'static str,
}

// SAFETY: verbs objects are thread-safe; owned and freed once.
unsafe impl Send for Mr {}
// SAFETY: as above.
unsafe impl Sync for Mr {}

/// Access rights of every queue pair: local write (receives), remote write (the peer's writes).
fn qp_access() -> i32 {
    (ffi::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE | ffi::ibv_access_flags::IBV_ACCESS_REMOTE_WRITE) as i32
}

/// Access rights of every memory region: those of the queue pairs plus relaxed ordering (an
/// optional flag: providers without it ignore it; with it, PCIe writes into GPU memory may
/// pass each other, which GPUDirect needs for full rate on many root complexes).
pub fn mr_access() -> i32 {
    qp_access() | ffi::ibv_access_flags::IBV_ACCESS_RELAXED_ORDERING as i32
}

impl Mr {
    /// Registers `len` bytes at `addr` (host memory, or GPU memory through nvidia-peermem).
    ///
    /// # Safety
    /// `[addr, addr+len)` must stay allocated until the returned region is dropped.
    pub unsafe fn register(pd: &Arc<Pd>, addr: *mut u8, len: usize) -> Result<Mr, RdmaError> {
        // SAFETY: the caller keeps the range alive; the PD is live. With relaxed ordering (an
        // optional flag) this is ibv_reg_mr_iova2, as verbs.h's ibv_reg_mr macro makes it.
        let mr = unsafe { pd.dev.v.reg_mr(pd.pd, addr as *mut std::ffi::c_void, len, mr_access()) };
        if mr.is_null() {
            return Err(RdmaError::last_os("ibv_reg_mr"));
        }
        Ok(Mr { mr, _pd: pd.clone(), _dmabuf: None, method: "ibv_reg_mr" })
    }

    /// Registers `len` bytes at `offset` inside dmabuf `fd`, addressed by the peer as `iova`.
    pub fn register_dmabuf(pd: &Arc<Pd>, fd: OwnedFd, offset: u64, len: usize, iova: u64) -> Result<Mr, RdmaError> {
        let reg =
            pd.dev.v.reg_dmabuf_mr.ok_or_else(|| {
                RdmaError::Invalid(format!("{} has no ibv_reg_dmabuf_mr (rdma-core before 34)", loader::LIBRARY))
            })?;
        // SAFETY: the descriptor is valid (owned) and kept open as long as the region; the
        // kernel validates offset and length against the dmabuf.
        let mr = unsafe { reg(pd.pd, offset, len, iova, fd.as_raw_fd(), mr_access()) };
        if mr.is_null() {
            return Err(RdmaError::last_os("ibv_reg_dmabuf_mr"));
        }
        Ok(Mr { mr, _pd: pd.clone(), _dmabuf: Some(fd), method: "dmabuf" })
    }

    /// Local key.
    pub fn lkey(&self) -> u32 {
        // SAFETY: `mr` is live for the life of `self`.
        unsafe { (*self.mr).lkey }
    }

    /// Remote key.
    pub fn rkey(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.mr).rkey }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered in a constructor, deregistered once.
        unsafe { (self._pd.dev.v.dereg_mr)(self.mr) };
    }
}

/// The peer's registered buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBuf {
    /// Start address (iova) at the peer.
    pub base: u64,
    /// Remote key.
    pub rkey: u32,
}

/// An RC queue pair.
pub struct Qp {
    qp: *mut ffi::ibv_qp,
    _pd: Arc<Pd>,
    _cq: Arc<Cq>,
    /// Starting PSN of our send queue.
    pub psn: u32,
}

// SAFETY: verbs objects are thread-safe; owned and freed once.
unsafe impl Send for Qp {}
// SAFETY: as above.
unsafe impl Sync for Qp {}

impl Qp {
    /// An RC queue pair with `send_depth` send and `recv_depth` receive entries, both
    /// completing on `cq`, moved to INIT with remote-write access.
    pub fn new(pd: &Arc<Pd>, cq: &Arc<Cq>, send_depth: usize, recv_depth: usize, psn: u32) -> Result<Qp, RdmaError> {
        let mut init = ffi::ibv_qp_init_attr {
            send_cq: cq.cq,
            recv_cq: cq.cq,
            cap: ffi::ibv_qp_cap {
                max_send_wr: send_depth as u32,
                max_recv_wr: recv_depth.max(1) as u32,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: 0,
            },
            qp_type: ffi::ibv_qp_type::IBV_QPT_RC,
            sq_sig_all: 0,
            qp_context: std::ptr::null_mut(),
            srq: std::ptr::null_mut(),
        };
        // SAFETY: `init` is a fully initialised attribute struct; PD and CQ are live.
        let qp = unsafe { (pd.dev.v.create_qp)(pd.pd, &mut init) };
        if qp.is_null() {
            return Err(RdmaError::last_os("ibv_create_qp"));
        }
        let q = Qp { qp, _pd: pd.clone(), _cq: cq.clone(), psn: psn & 0xff_ffff };
        let mut a = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_INIT,
            pkey_index: 0,
            port_num: pd.device().port,
            qp_access_flags: qp_access() as u32,
            ..Default::default()
        };
        use ffi::ibv_qp_attr_mask as M;
        q.modify(&mut a, M::IBV_QP_STATE | M::IBV_QP_PKEY_INDEX | M::IBV_QP_PORT | M::IBV_QP_ACCESS_FLAGS)?;
        Ok(q)
    }

    /// The queue pair number.
    pub fn qpn(&self) -> u32 {
        // SAFETY: `qp` is live for the life of `self`.
        unsafe { (*self.qp).qp_num }
    }

    fn modify(&self, attr: &mut ffi::ibv_qp_attr, mask: i32) -> Result<(), RdmaError> {
        // SAFETY: `attr` is initialised for every field named in `mask`; the QP is live.
        let rc = unsafe { (self._pd.dev.v.modify_qp)(self.qp, attr, mask) };
        if rc != 0 {
            return Err(RdmaError::from_ret("ibv_modify_qp", rc));
        }
        Ok(())
    }

    /// INIT -> RTR -> RTS against the peer's queue pair `remote_qpn`/`remote_psn`, addressed
    /// by `remote`'s LID (InfiniBand) or GID (RoCE, or IB with `sgid_index` given); on a GID
    /// path the packets carry `traffic_class` (DSCP << 2, the fabric's lossless class on RoCE).
    pub fn connect(
        &self,
        remote: &Endpoint,
        remote_qpn: u32,
        remote_psn: u32,
        local_mtu: u32,
        sgid_index: Option<u8>,
        traffic_class: u8,
    ) -> Result<(), RdmaError> {
        use ffi::ibv_qp_attr_mask as M;
        let port = self._pd.device().port;
        let mtu = super::endpoint::path_mtu(local_mtu, remote.mtu_bytes);
        let mut ah = ffi::ibv_ah_attr { dlid: remote.lid, sl: 0, src_path_bits: 0, port_num: port, ..Default::default() };
        let grh = remote.link_layer == LinkLayer::Ethernet || sgid_index.is_some();
        if grh {
            let gid = remote
                .gid
                .ok_or(RdmaError::Endpoint { field: "gid", message: "peer sent no GID but the path needs one".into() })?;
            ah.is_global = 1;
            ah.grh.dgid = ffi::ibv_gid { raw: gid.0 };
            ah.grh.sgid_index = sgid_index.unwrap_or(0);
            ah.grh.hop_limit = 64;
            ah.grh.traffic_class = traffic_class;
        }
        let mut rtr = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_RTR,
            path_mtu: mtu_enum(mtu).unwrap_or(ffi::ibv_mtu::IBV_MTU_1024),
            dest_qp_num: remote_qpn,
            rq_psn: remote_psn,
            max_dest_rd_atomic: 1,
            min_rnr_timer: 12,
            ah_attr: ah,
            ..Default::default()
        };
        self.modify(
            &mut rtr,
            M::IBV_QP_STATE
                | M::IBV_QP_AV
                | M::IBV_QP_PATH_MTU
                | M::IBV_QP_DEST_QPN
                | M::IBV_QP_RQ_PSN
                | M::IBV_QP_MAX_DEST_RD_ATOMIC
                | M::IBV_QP_MIN_RNR_TIMER,
        )?;
        let mut rts = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_RTS,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            sq_psn: self.psn,
            max_rd_atomic: 1,
            ..Default::default()
        };
        self.modify(
            &mut rts,
            M::IBV_QP_STATE
                | M::IBV_QP_TIMEOUT
                | M::IBV_QP_RETRY_CNT
                | M::IBV_QP_RNR_RETRY
                | M::IBV_QP_SQ_PSN
                | M::IBV_QP_MAX_QP_RD_ATOMIC,
        )
    }

    /// Posts one signaled RDMA WRITE of `op` (WITH_IMM when it carries an immediate): `op.len`
    /// bytes from `local_base + op.offset` (inside `mr`) to `remote.base + op.offset` under
    /// `remote.rkey`.
    pub fn post_write(&self, wr_id: u64, mr: &Mr, local_base: u64, remote: RemoteBuf, op: &WriteOp) -> Result<(), RdmaError> {
        let (local_addr, len, imm) = (local_base + op.offset, op.len, op.imm);
        let (remote_addr, rkey) = (remote.base + op.offset, remote.rkey);
        let mut sge = ffi::ibv_sge { addr: local_addr, length: len, lkey: mr.lkey() };
        // SAFETY: an all-zero work request is a valid starting point (null next, no SGEs).
        let mut wr: ffi::ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        wr.sg_list = &mut sge;
        wr.num_sge = i32::from(len > 0);
        wr.send_flags = ffi::IBV_SEND_SIGNALED;
        wr.wr.rdma = ffi::ibv_send_wr_rdma { remote_addr, rkey };
        match imm {
            Some(id) => {
                wr.opcode = ffi::ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM;
                wr.imm_data = super::plan::imm_to_wire(id);
            }
            None => wr.opcode = ffi::ibv_wr_opcode::IBV_WR_RDMA_WRITE,
        }
        let mut bad: *mut ffi::ibv_send_wr = std::ptr::null_mut();
        // SAFETY: `wr` and `sge` live across the call (the provider copies them into the send
        // queue); the QP, its context and the ops table are live.
        let rc = unsafe { loader::post_send(self.qp, &mut wr, &mut bad) }
            .ok_or_else(|| RdmaError::Invalid("provider has no post_send".into()))?;
        if rc != 0 {
            return Err(RdmaError::from_ret("ibv_post_send", rc));
        }
        Ok(())
    }

    /// Posts one receive with no buffer: it only absorbs a WRITE_WITH_IMM's immediate.
    pub fn post_recv(&self, wr_id: u64) -> Result<(), RdmaError> {
        let mut wr = ffi::ibv_recv_wr { wr_id, next: std::ptr::null_mut(), sg_list: std::ptr::null_mut(), num_sge: 0 };
        let mut bad: *mut ffi::ibv_recv_wr = std::ptr::null_mut();
        // SAFETY: as in `post_write`; a receive with no SGE is valid for immediates.
        let rc = unsafe { loader::post_recv(self.qp, &mut wr, &mut bad) }
            .ok_or_else(|| RdmaError::Invalid("provider has no post_recv".into()))?;
        if rc != 0 {
            return Err(RdmaError::from_ret("ibv_post_recv", rc));
        }
        Ok(())
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once before its CQ and PD (held by Arcs here).
        unsafe { (self._pd.dev.v.destroy_qp)(self.qp) };
    }
}

/// The status string of a failed completion.
pub fn wc_status_str(status: ffi::ibv_wc_status::Type) -> String {
    let Ok(v) = verbs() else { return format!("status {status}") };
    // SAFETY: ibv_wc_status_str returns a static NUL-terminated string for any value.
    unsafe { std::ffi::CStr::from_ptr((v.wc_status_str)(status)) }.to_string_lossy().into_owned()
}

impl ffi::ibv_wc {
    /// The work request id the completion belongs to.
    pub fn wr_id(&self) -> u64 {
        self.wr_id
    }

    /// `Some((status, vendor syndrome))` when the work request failed.
    pub fn error(&self) -> Option<(ffi::ibv_wc_status::Type, u32)> {
        (self.status != ffi::ibv_wc_status::IBV_WC_SUCCESS).then_some((self.status, self.vendor_err))
    }

    /// The immediate data (as sent, network order) of a successful completion that carries one.
    pub fn imm_data(&self) -> Option<u32> {
        (self.error().is_none() && self.wc_flags & ffi::IBV_WC_WITH_IMM != 0).then_some(self.imm_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_ask_for_relaxed_ordering_and_queue_pairs_do_not() {
        let ro = ffi::ibv_access_flags::IBV_ACCESS_RELAXED_ORDERING as i32;
        assert_ne!(mr_access() & ro, 0, "memory regions are registered with relaxed ordering");
        assert_eq!(qp_access() & ro, 0, "an optional MR flag is not a QP access flag");
        assert_eq!(mr_access() & qp_access(), qp_access());
    }
}
