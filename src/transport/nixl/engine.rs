//! One end of a NIXL flow: an agent with one backend, the KV buffer registered with it, and
//! the prepped descriptor lists of its blocks (local, and the peer's once its metadata is
//! loaded), driven as vLLM's NixlConnector drives NIXL: `prep_xfer_dlist` once per side,
//! then per transfer `make_xfer_req` over the block indices with a notification message,
//! `post_xfer_req`, and polling (`get_xfer_status` on the initiator, `get_notifs` on the
//! target) until done.

use std::sync::Arc;
use std::time::Instant;

use nixl_sys::{
    Agent, MemType, MemoryRegion, NixlDescriptor, NixlError, NotificationMap, OptArgs, RegistrationHandle, XferDescList,
    XferDlistHandle, XferOp, XferStatus,
};

use super::layout::{block_descs, Mem, NixlOptions, Op};
use crate::gpu::device::{contexts, GpuSelector};
use crate::gpu::memory::DeviceBuffer;
use crate::rdma::memory::HostBuffer;
use crate::transport::{TransportError, TransportKind};

/// The memory behind a registration, held only to be freed after the agent.
#[allow(dead_code)]
enum Memory {
    Host(HostBuffer),
    Gpu(Arc<DeviceBuffer>),
}

/// A registered range as NIXL sees it.
#[derive(Debug)]
struct Region {
    addr: usize,
    len: usize,
    mem: MemType,
    dev: u64,
}

impl MemoryRegion for Region {
    unsafe fn as_ptr(&self) -> *const u8 {
        self.addr as *const u8
    }
    fn size(&self) -> usize {
        self.len
    }
}

impl NixlDescriptor for Region {
    fn mem_type(&self) -> MemType {
        self.mem
    }
    fn device_id(&self) -> u64 {
        self.dev
    }
}

/// Where a peer's registered buffer is (sent in the endpoint or over the side channel).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerBuffer {
    /// The peer agent's name.
    pub agent: String,
    /// Its serialized agent metadata (`get_local_md`), hex.
    pub md: String,
    /// Base address of its KV buffer (host or device address).
    pub base: u64,
    /// Length, bytes.
    pub len: u64,
    /// CUDA ordinal for VRAM, 0 for DRAM.
    pub dev: u64,
}

/// One end's NIXL state. Fields drop in order: the prepped lists (which hold raw agent
/// pointers) before the registration, the registration before the agent, the memory last.
pub struct End {
    local: Option<XferDlistHandle>,
    remote: Option<XferDlistHandle>,
    reg: Option<RegistrationHandle>,
    agent: Agent,
    remote_name: Option<String>,
    region: Region,
    _mem: Memory,
    /// The flow's options.
    pub opts: NixlOptions,
    flow: u64,
}

// SAFETY: an `End` is created on one thread and then used by exactly one thread at a time (the
// agent's flow thread owns its Sender or Receiver); NIXL agents and their handles are not
// bound to the thread that created them. The raw pointers inside the prepped lists point into
// the agent, which this struct keeps alive until after they are released.
unsafe impl Send for End {}

/// A NIXL call that failed, as a device error of the flow.
pub fn nerr(flow: u64, call: &'static str) -> impl Fn(NixlError) -> TransportError {
    move |e| TransportError::Device { flow, message: format!("NIXL {call}: {e}") }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl End {
    /// Creates the agent (`name`) and backend, allocates `len` bytes of the flow's memory kind
    /// on `gpu_key`'s GPU (VRAM) or in host memory, registers it and preps its block list.
    pub fn new(flow: u64, opts: NixlOptions, name: &str, len: u64, gpu_key: &str) -> Result<End, TransportError> {
        let agent = Agent::new(name).map_err(nerr(flow, "createAgent"))?;
        let (_, params) = agent.get_plugin_params(&opts.backend).map_err(|e| waived(&opts.backend, "getPluginParams", e))?;
        agent.create_backend(&opts.backend, &params).map_err(|e| waived(&opts.backend, "createBackend", e))?;
        let (mem, region) = allocate(flow, &opts, len, gpu_key)?;
        let mut end = End { local: None, remote: None, reg: None, agent, remote_name: None, region, _mem: mem, opts, flow };
        end.reg = Some(end.agent.register_memory(&end.region, None).map_err(nerr(flow, "registerMem"))?);
        let descs = end.dlist(end.region.addr, end.region.len as u64, end.region.dev)?;
        end.local = Some(end.agent.prepare_xfer_dlist("", &descs, None).map_err(nerr(flow, "prepXferDlist(local)"))?);
        Ok(end)
    }

    fn dlist(&self, base: usize, len: u64, dev: u64) -> Result<XferDescList<'static>, TransportError> {
        let mut l = XferDescList::new(self.region.mem).map_err(nerr(self.flow, "createXferDlist"))?;
        for (addr, n) in block_descs(base, len, self.opts.block_bytes) {
            l.add_desc(addr, n, dev);
        }
        Ok(l)
    }

    /// This end as its peer needs it.
    pub fn describe(&self) -> Result<PeerBuffer, TransportError> {
        let md = self.agent.get_local_md().map_err(nerr(self.flow, "getLocalMD"))?;
        Ok(PeerBuffer {
            agent: self.agent.name(),
            md: hex(&md),
            base: self.region.addr as u64,
            len: self.region.len as u64,
            dev: self.region.dev,
        })
    }

    /// Loads the peer's metadata and preps its block list (the initiator's remote side).
    pub fn add_peer(&mut self, peer: &PeerBuffer) -> Result<(), TransportError> {
        let md = unhex(&peer.md).ok_or_else(|| TransportError::protocol(self.flow, "peer NIXL metadata is not hex"))?;
        let name = self.agent.load_remote_md(&md).map_err(nerr(self.flow, "loadRemoteMD"))?;
        if name != peer.agent {
            return Err(TransportError::protocol(
                self.flow,
                format!("peer metadata names agent {name}, expected {}", peer.agent),
            ));
        }
        let descs = self.dlist(peer.base as usize, peer.len, peer.dev)?;
        self.remote = Some(self.agent.prepare_xfer_dlist(&name, &descs, None).map_err(nerr(self.flow, "prepXferDlist(remote)"))?);
        self.agent.make_connection(&name, None).map_err(nerr(self.flow, "makeConnection"))?;
        self.remote_name = Some(name);
        Ok(())
    }

    /// Moves blocks `0..blocks` with `op` (this end initiates) and the notification `msg`,
    /// waiting until NIXL reports the request complete or `deadline` passes.
    pub fn transfer(&self, op: Op, blocks: usize, msg: &str, deadline: Instant, timeout_s: f64) -> Result<(), TransportError> {
        let f = self.flow;
        let (Some(local), Some(remote)) = (&self.local, &self.remote) else {
            return Err(TransportError::protocol(f, "NIXL transfer before the peer's metadata was loaded"));
        };
        let have = self.region.len / self.opts.block_bytes as usize;
        if blocks > have {
            return Err(TransportError::protocol(f, format!("{blocks} blocks asked, {have} registered")));
        }
        let idx: Vec<i32> = (0..blocks as i32).collect();
        let mut args = OptArgs::new().map_err(nerr(f, "optArgs"))?;
        args.set_notification_message(msg.as_bytes()).map_err(nerr(f, "optArgs.notifMsg"))?;
        args.set_has_notification(true).map_err(nerr(f, "optArgs.hasNotif"))?;
        // vLLM's blocks are scattered over layers and the free list; keep one descriptor each.
        args.set_skip_descriptor_merge(true).map_err(nerr(f, "optArgs.skipDescMerge"))?;
        let xop = if op == Op::Write { XferOp::Write } else { XferOp::Read };
        let req = self.agent.make_xfer_req(xop, local, &idx, remote, &idx, Some(&args)).map_err(nerr(f, "makeXferReq"))?;
        if self.agent.post_xfer_req(&req, Some(&args)).map_err(nerr(f, "postXferReq"))? {
            while self.agent.get_xfer_status(&req).map_err(nerr(f, "getXferStatus"))? == XferStatus::InProgress {
                if Instant::now() > deadline {
                    return Err(TransportError::Timeout { flow: f, what: "NIXL transfer completion".into(), timeout_s });
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Polls notifications until `msg` arrives from the peer or `deadline` passes.
    pub fn await_notification(&self, msg: &str, deadline: Instant, timeout_s: f64) -> Result<(), TransportError> {
        let f = self.flow;
        let mut map = NotificationMap::new().map_err(nerr(f, "createNotifMap"))?;
        loop {
            self.agent.get_notifications(&mut map, None).map_err(nerr(f, "getNotifs"))?;
            let got = map.take_notifs().map_err(nerr(f, "getNotifs"))?;
            if got.values().flatten().any(|m| m == msg) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TransportError::Timeout { flow: f, what: format!("NIXL notification {msg}"), timeout_s });
            }
            std::thread::yield_now();
        }
    }
}

fn waived(backend: &str, call: &str, e: NixlError) -> TransportError {
    TransportError::Waived {
        kind: TransportKind::Nixl,
        reason: format!("NIXL backend {backend} did not start ({call}: {e}); is the plugin in the wheel and its fabric present?"),
    }
}

fn allocate(flow: u64, opts: &NixlOptions, len: u64, gpu_key: &str) -> Result<(Memory, Region), TransportError> {
    let len = len.max(opts.block_bytes) as usize;
    match opts.mem {
        Mem::Dram => {
            let buf = HostBuffer::new(len, crate::gpu::memory::host_page_size())
                .map_err(|e| TransportError::Device { flow, message: format!("host buffer of {len} B: {e}") })?;
            let region = Region { addr: buf.as_mut_ptr() as usize, len, mem: MemType::Dram, dev: 0 };
            Ok((Memory::Host(buf), region))
        }
        Mem::Vram => {
            let gerr = |e: crate::gpu::GpuError| match e {
                crate::gpu::GpuError::Unavailable(u) => {
                    TransportError::Waived { kind: TransportKind::Nixl, reason: format!("mem vram: {u}") }
                }
                e => TransportError::Device { flow, message: e.to_string() },
            };
            crate::gpu::driver_status().map_err(|u| gerr(u.into()))?;
            let devices = crate::gpu::enumerate().map_err(gerr)?;
            let options = serde_json::json!({ "gpu": if gpu_key == "src_gpu" { &opts.src_gpu } else { &opts.dst_gpu } });
            let sel = GpuSelector::from_options(&options, "gpu")
                .map_err(gerr)?
                .ok_or_else(|| TransportError::protocol(flow, format!("nixl with mem vram needs the flow option '{gpu_key}'")))?;
            let ordinal = sel.resolve(&devices).map_err(gerr)?;
            let ctx = contexts(&[ordinal]).map_err(gerr)?.remove(0);
            let buf = Arc::new(DeviceBuffer::new(&ctx, len, 0x5a).map_err(gerr)?);
            let region = Region { addr: buf.ptr() as usize, len, mem: MemType::Vram, dev: ordinal as u64 };
            Ok((Memory::Gpu(buf), region))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_hex_round_trips() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(super::unhex(&super::hex(&b)), Some(b));
        assert_eq!(super::unhex("abc"), None);
        assert_eq!(super::unhex("zz"), None);
    }
}
