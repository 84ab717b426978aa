//! The libibverbs types linkcal uses, checked in (no bindgen, no rdma-core at build time).
//!
//! Generated once with bindgen 0.73.2 (clang 14) from Debian 12's `libibverbs-dev` 44.0-2
//! (rdma-core 44.0), `/usr/include/infiniband/verbs.h`, x86_64:
//!
//! ```text
//! echo '#include <infiniband/verbs.h>' > wrapper.h
//! bindgen wrapper.h --with-derive-default --no-prepend-enum-name --no-doc-comments \
//!   --allowlist-type 'ibv_(context|context_ops|cq|qp|mr|port_attr|gid|qp_init_attr|qp_cap|qp_attr|ah_attr|global_route|send_wr|recv_wr|sge|wc|access_flags|qp_attr_mask|send_flags|wc_flags|port_state|qp_state|qp_type|wr_opcode|wc_status|wc_opcode|mtu)' \
//!   --allowlist-type verbs_context --allowlist-type _compat_ibv_port_attr --allowlist-var 'IBV_LINK_LAYER_.*' \
//!   --opaque-type 'ibv_(device|pd|srq|ah|mw|comp_channel|mw_bind_info|...)' --blocklist-type '_*pthread_.*' \
//!   --bitfield-enum 'ibv_(access_flags|qp_attr_mask|send_flags|wc_flags)' \
//!   --constified-enum-module 'ibv_(qp_type|qp_state|port_state|wc_opcode|wr_opcode|wc_status|mtu)'
//! ```
//!
//! then trimmed by hand to what `rdma::verbs` and `rdma::loader` use: objects only handled by
//! pointer are opaque; the function pointers of `ibv_context_ops` and `verbs_context` that are
//! never called are pointer-sized slots (their names in the comments), flag enums are plain
//! constants, pthread types are libc's. Every size and offset below is the one bindgen recorded
//! for the header; the `layout!` lines at the end assert them at compile time (a wrong size or
//! offset does not build), and `rdma::loader`'s tests exercise the inline-call paths on fake
//! contexts. The layouts are ABI: rdma-core only appends fields (`verbs_context` grows at the
//! front), so they hold for every rdma-core since 22 (`ibv_reg_mr_iova2`, the newest call
//! required; `ibv_reg_dmabuf_mr` is optional, rdma-core 34).
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, missing_docs)]

use std::ffi::{c_int, c_uint, c_void};

use libc::{pthread_cond_t, pthread_mutex_t};

/// A function pointer the code never calls (kept for the layout; `None` or the provider's).
pub type Slot = Option<unsafe extern "C" fn()>;

/// `struct ibv_device` (only handled by pointer).
#[repr(C)]
pub struct ibv_device {
    _opaque: [u8; 0],
}
/// `struct ibv_pd` (only handled by pointer).
#[repr(C)]
pub struct ibv_pd {
    _opaque: [u8; 0],
}
/// `struct ibv_srq` (only handled by pointer).
#[repr(C)]
pub struct ibv_srq {
    _opaque: [u8; 0],
}
/// `struct ibv_comp_channel` (only handled by pointer).
#[repr(C)]
pub struct ibv_comp_channel {
    _opaque: [u8; 0],
}
/// `struct _compat_ibv_port_attr` (declared, never defined: the leading part of `ibv_port_attr`).
#[repr(C)]
pub struct _compat_ibv_port_attr {
    _opaque: [u8; 0],
}

/// `enum ibv_mtu`.
pub mod ibv_mtu {
    pub type Type = std::ffi::c_uint;
    pub const IBV_MTU_256: Type = 1;
    pub const IBV_MTU_512: Type = 2;
    pub const IBV_MTU_1024: Type = 3;
    pub const IBV_MTU_2048: Type = 4;
    pub const IBV_MTU_4096: Type = 5;
}
/// `enum ibv_port_state`.
pub mod ibv_port_state {
    pub type Type = std::ffi::c_uint;
    pub const IBV_PORT_ACTIVE: Type = 4;
}
/// `enum ibv_qp_state`.
pub mod ibv_qp_state {
    pub type Type = std::ffi::c_uint;
    pub const IBV_QPS_INIT: Type = 1;
    pub const IBV_QPS_RTR: Type = 2;
    pub const IBV_QPS_RTS: Type = 3;
}
/// `enum ibv_qp_type`.
pub mod ibv_qp_type {
    pub type Type = std::ffi::c_uint;
    pub const IBV_QPT_RC: Type = 2;
}
/// `enum ibv_wr_opcode`.
pub mod ibv_wr_opcode {
    pub type Type = std::ffi::c_uint;
    pub const IBV_WR_RDMA_WRITE: Type = 0;
    pub const IBV_WR_RDMA_WRITE_WITH_IMM: Type = 1;
}
/// `enum ibv_wc_status` (`ibv_wc_status_str` names the others).
pub mod ibv_wc_status {
    pub type Type = std::ffi::c_uint;
    pub const IBV_WC_SUCCESS: Type = 0;
}
/// `enum ibv_access_flags`.
pub mod ibv_access_flags {
    pub const IBV_ACCESS_LOCAL_WRITE: std::ffi::c_uint = 1;
    pub const IBV_ACCESS_REMOTE_WRITE: std::ffi::c_uint = 2;
    /// `IBV_ACCESS_OPTIONAL_FIRST` (1 << 20).
    pub const IBV_ACCESS_RELAXED_ORDERING: std::ffi::c_uint = 1 << 20;
}
/// `IBV_ACCESS_OPTIONAL_RANGE` (verbs_api.h: bits 20 to 29, flags a provider may ignore).
pub const IBV_ACCESS_OPTIONAL_RANGE: c_uint = 0x3ff0_0000;
/// `enum ibv_qp_attr_mask`.
pub mod ibv_qp_attr_mask {
    pub const IBV_QP_STATE: std::ffi::c_int = 1;
    pub const IBV_QP_ACCESS_FLAGS: std::ffi::c_int = 8;
    pub const IBV_QP_PKEY_INDEX: std::ffi::c_int = 16;
    pub const IBV_QP_PORT: std::ffi::c_int = 32;
    pub const IBV_QP_AV: std::ffi::c_int = 128;
    pub const IBV_QP_PATH_MTU: std::ffi::c_int = 256;
    pub const IBV_QP_TIMEOUT: std::ffi::c_int = 512;
    pub const IBV_QP_RETRY_CNT: std::ffi::c_int = 1024;
    pub const IBV_QP_RNR_RETRY: std::ffi::c_int = 2048;
    pub const IBV_QP_RQ_PSN: std::ffi::c_int = 4096;
    pub const IBV_QP_MAX_QP_RD_ATOMIC: std::ffi::c_int = 8192;
    pub const IBV_QP_MIN_RNR_TIMER: std::ffi::c_int = 32768;
    pub const IBV_QP_SQ_PSN: std::ffi::c_int = 65536;
    pub const IBV_QP_MAX_DEST_RD_ATOMIC: std::ffi::c_int = 131072;
    pub const IBV_QP_DEST_QPN: std::ffi::c_int = 1048576;
}
/// `enum ibv_send_flags`.
pub const IBV_SEND_SIGNALED: c_uint = 2;
/// `enum ibv_wc_flags`.
pub const IBV_WC_WITH_IMM: c_uint = 2;
/// `IBV_LINK_LAYER_ETHERNET` (`IBV_LINK_LAYER_INFINIBAND` is 1).
pub const IBV_LINK_LAYER_ETHERNET: u8 = 2;

/// `union ibv_gid`: 16 raw bytes (or subnet prefix and interface id, big-endian).
#[repr(C)]
#[derive(Copy, Clone)]
pub union ibv_gid {
    pub raw: [u8; 16],
    pub global: [u64; 2],
}

/// `struct ibv_port_attr`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct ibv_port_attr {
    pub state: ibv_port_state::Type,
    pub max_mtu: ibv_mtu::Type,
    pub active_mtu: ibv_mtu::Type,
    pub gid_tbl_len: c_int,
    pub port_cap_flags: u32,
    pub max_msg_sz: u32,
    pub bad_pkey_cntr: u32,
    pub qkey_viol_cntr: u32,
    pub pkey_tbl_len: u16,
    pub lid: u16,
    pub sm_lid: u16,
    pub lmc: u8,
    pub max_vl_num: u8,
    pub sm_sl: u8,
    pub subnet_timeout: u8,
    pub init_type_reply: u8,
    pub active_width: u8,
    pub active_speed: u8,
    pub phys_state: u8,
    pub link_layer: u8,
    pub flags: u8,
    pub port_cap_flags2: u16,
}

/// `struct ibv_wc`: one work completion.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct ibv_wc {
    pub wr_id: u64,
    pub status: ibv_wc_status::Type,
    pub opcode: c_uint,
    pub vendor_err: u32,
    pub byte_len: u32,
    /// `union { __be32 imm_data; uint32_t invalidated_rkey; }`
    pub imm_data: u32,
    pub qp_num: u32,
    pub src_qp: u32,
    pub wc_flags: c_uint,
    pub pkey_index: u16,
    pub slid: u16,
    pub sl: u8,
    pub dlid_path_bits: u8,
}

/// `struct ibv_mr`.
#[repr(C)]
pub struct ibv_mr {
    pub context: *mut ibv_context,
    pub pd: *mut ibv_pd,
    pub addr: *mut c_void,
    pub length: usize,
    pub handle: u32,
    pub lkey: u32,
    pub rkey: u32,
}

/// `struct ibv_global_route`.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct ibv_global_route {
    pub dgid: ibv_gid,
    pub flow_label: u32,
    pub sgid_index: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

/// `struct ibv_ah_attr`.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct ibv_ah_attr {
    pub grh: ibv_global_route,
    pub dlid: u16,
    pub sl: u8,
    pub src_path_bits: u8,
    pub static_rate: u8,
    pub is_global: u8,
    pub port_num: u8,
}

/// `struct ibv_qp_cap`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct ibv_qp_cap {
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_send_sge: u32,
    pub max_recv_sge: u32,
    pub max_inline_data: u32,
}

/// `struct ibv_qp_init_attr`.
#[repr(C)]
pub struct ibv_qp_init_attr {
    pub qp_context: *mut c_void,
    pub send_cq: *mut ibv_cq,
    pub recv_cq: *mut ibv_cq,
    pub srq: *mut ibv_srq,
    pub cap: ibv_qp_cap,
    pub qp_type: ibv_qp_type::Type,
    pub sq_sig_all: c_int,
}

/// `struct ibv_qp_attr`.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct ibv_qp_attr {
    pub qp_state: ibv_qp_state::Type,
    pub cur_qp_state: ibv_qp_state::Type,
    pub path_mtu: ibv_mtu::Type,
    /// `enum ibv_mig_state`.
    pub path_mig_state: c_uint,
    pub qkey: u32,
    pub rq_psn: u32,
    pub sq_psn: u32,
    pub dest_qp_num: u32,
    pub qp_access_flags: c_uint,
    pub cap: ibv_qp_cap,
    pub ah_attr: ibv_ah_attr,
    pub alt_ah_attr: ibv_ah_attr,
    pub pkey_index: u16,
    pub alt_pkey_index: u16,
    pub en_sqd_async_notify: u8,
    pub sq_draining: u8,
    pub max_rd_atomic: u8,
    pub max_dest_rd_atomic: u8,
    pub min_rnr_timer: u8,
    pub port_num: u8,
    pub timeout: u8,
    pub retry_cnt: u8,
    pub rnr_retry: u8,
    pub alt_port_num: u8,
    pub alt_timeout: u8,
    pub rate_limit: u32,
}

/// `struct ibv_sge`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct ibv_sge {
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// `struct ibv_send_wr`.
#[repr(C)]
pub struct ibv_send_wr {
    pub wr_id: u64,
    pub next: *mut ibv_send_wr,
    pub sg_list: *mut ibv_sge,
    pub num_sge: c_int,
    pub opcode: ibv_wr_opcode::Type,
    pub send_flags: c_uint,
    /// `union { __be32 imm_data; uint32_t invalidate_rkey; }`
    pub imm_data: u32,
    /// `union { rdma, atomic, ud } wr`.
    pub wr: ibv_send_wr_wr,
    /// `union { struct { uint32_t remote_srqn; } xrc; } qp_type`.
    pub qp_type: u32,
    /// `union { bind_mw, tso }` (unused: six 8-byte words).
    pub bind_mw_or_tso: [u64; 6],
}

/// `ibv_send_wr.wr` (`rdma` used; `atomic`, the largest member, sets the size).
#[repr(C)]
#[derive(Copy, Clone)]
pub union ibv_send_wr_wr {
    pub rdma: ibv_send_wr_rdma,
    /// `struct { uint64_t remote_addr, compare_add, swap; uint32_t rkey; } atomic`.
    pub atomic: [u64; 4],
}

/// `ibv_send_wr.wr.rdma`.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct ibv_send_wr_rdma {
    pub remote_addr: u64,
    pub rkey: u32,
}

/// `struct ibv_recv_wr`.
#[repr(C)]
pub struct ibv_recv_wr {
    pub wr_id: u64,
    pub next: *mut ibv_recv_wr,
    pub sg_list: *mut ibv_sge,
    pub num_sge: c_int,
}

/// `struct ibv_qp`.
#[repr(C)]
pub struct ibv_qp {
    pub context: *mut ibv_context,
    pub qp_context: *mut c_void,
    pub pd: *mut ibv_pd,
    pub send_cq: *mut ibv_cq,
    pub recv_cq: *mut ibv_cq,
    pub srq: *mut ibv_srq,
    pub handle: u32,
    pub qp_num: u32,
    pub state: ibv_qp_state::Type,
    pub qp_type: ibv_qp_type::Type,
    pub mutex: pthread_mutex_t,
    pub cond: pthread_cond_t,
    pub events_completed: u32,
}

/// `struct ibv_cq`.
#[repr(C)]
pub struct ibv_cq {
    pub context: *mut ibv_context,
    pub channel: *mut ibv_comp_channel,
    pub cq_context: *mut c_void,
    pub handle: u32,
    pub cqe: c_int,
    pub mutex: pthread_mutex_t,
    pub cond: pthread_cond_t,
    pub comp_events_completed: u32,
    pub async_events_completed: u32,
}

/// `int (*poll_cq)(struct ibv_cq *cq, int num_entries, struct ibv_wc *wc);`
pub type PollCqFn = unsafe extern "C" fn(*mut ibv_cq, c_int, *mut ibv_wc) -> c_int;
/// `int (*post_send)(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr);`
pub type PostSendFn = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_send_wr, *mut *mut ibv_send_wr) -> c_int;
/// `int (*post_recv)(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);`
pub type PostRecvFn = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> c_int;
/// `int (*query_port)(struct ibv_context *, uint8_t port_num, struct ibv_port_attr *, size_t port_attr_len);`
pub type QueryPortFn = unsafe extern "C" fn(*mut ibv_context, u8, *mut ibv_port_attr, usize) -> c_int;

/// `struct ibv_context_ops`: the data-path calls verbs.h inlines.
#[repr(C)]
pub struct ibv_context_ops {
    /// `_compat_query_device` .. `_compat_create_cq` (11 slots).
    pub _before_poll_cq: [Slot; 11],
    pub poll_cq: Option<PollCqFn>,
    /// `req_notify_cq`, `_compat_cq_event` .. `_compat_destroy_qp` (13 slots).
    pub _before_post_send: [Slot; 13],
    pub post_send: Option<PostSendFn>,
    pub post_recv: Option<PostRecvFn>,
    /// `_compat_create_ah` .. `_compat_async_event` (5 slots).
    pub _after_post_recv: [Slot; 5],
}

/// `struct ibv_context`.
#[repr(C)]
pub struct ibv_context {
    pub device: *mut ibv_device,
    pub ops: ibv_context_ops,
    pub cmd_fd: c_int,
    pub async_fd: c_int,
    pub num_comp_vectors: c_int,
    pub mutex: pthread_mutex_t,
    /// `__VERBS_ABI_IS_EXTENDED` (all ones) when the context is the tail of a `verbs_context`.
    pub abi_compat: *mut c_void,
}

/// `struct verbs_context`: the extended context a provider allocates around `ibv_context`.
#[repr(C)]
pub struct verbs_context {
    pub query_port: Option<QueryPortFn>,
    /// `advise_mr` .. `create_cq_ex` (25 slots).
    pub _ops: [Slot; 25],
    /// `struct verbs_ex_private *priv`.
    pub priv_: *mut c_void,
    /// `query_device_ex` .. `close_xrcd` (11 slots).
    pub _ops_ex: [Slot; 11],
    pub _ABI_placeholder3: u64,
    /// Size of the provider's `verbs_context`, bytes ("must be immediately before struct ibv_context").
    pub sz: usize,
    pub context: ibv_context,
}

/// `Default` as bindgen gives it for these C structs: all zero bytes.
macro_rules! zeroed_default {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: a C struct of integers, raw pointers, unions of those and optional
                // function pointers: all-zero bytes is a valid value (null, None, 0).
                unsafe { std::mem::zeroed() }
            }
        }
    )*};
}
zeroed_default!(ibv_gid, ibv_wc, ibv_global_route, ibv_ah_attr, ibv_qp_init_attr, ibv_qp_attr, ibv_send_wr, ibv_recv_wr);

/// `(size, align)` and `[(field, offset)]` as bindgen recorded them for rdma-core 44.0, x86_64.
macro_rules! layout {
    ($t:ty, $size:expr, $align:expr, [$($f:ident = $off:expr),* $(,)?]) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $size && std::mem::align_of::<$t>() == $align);
        $(const _: () = assert!(std::mem::offset_of!($t, $f) == $off);)*
    };
}
layout!(ibv_gid, 16, 8, [raw = 0]);
layout!(ibv_port_attr, 52, 4, [state = 0, active_mtu = 8, max_msg_sz = 20, lid = 34, link_layer = 46, port_cap_flags2 = 48]);
layout!(ibv_wc, 48, 8, [wr_id = 0, status = 8, vendor_err = 16, imm_data = 24, qp_num = 28, wc_flags = 36, dlid_path_bits = 45]);
layout!(ibv_mr, 48, 8, [context = 0, lkey = 36, rkey = 40]);
layout!(ibv_global_route, 24, 8, [dgid = 0, flow_label = 16, sgid_index = 20, hop_limit = 21, traffic_class = 22]);
layout!(ibv_ah_attr, 32, 8, [grh = 0, dlid = 24, sl = 26, src_path_bits = 27, static_rate = 28, is_global = 29, port_num = 30]);
layout!(ibv_qp_cap, 20, 4, [max_send_wr = 0, max_inline_data = 16]);
layout!(ibv_qp_init_attr, 64, 8, [qp_context = 0, send_cq = 8, recv_cq = 16, srq = 24, cap = 32, qp_type = 52, sq_sig_all = 56]);
layout!(
    ibv_qp_attr,
    144,
    8,
    [
        qp_state = 0,
        path_mtu = 8,
        rq_psn = 20,
        sq_psn = 24,
        dest_qp_num = 28,
        qp_access_flags = 32,
        cap = 36,
        ah_attr = 56,
        alt_ah_attr = 88,
        pkey_index = 120,
        max_rd_atomic = 126,
        max_dest_rd_atomic = 127,
        min_rnr_timer = 128,
        port_num = 129,
        timeout = 130,
        retry_cnt = 131,
        rnr_retry = 132,
        rate_limit = 136,
    ]
);
layout!(ibv_sge, 16, 8, [addr = 0, length = 8, lkey = 12]);
layout!(
    ibv_send_wr,
    128,
    8,
    [
        wr_id = 0,
        next = 8,
        sg_list = 16,
        num_sge = 24,
        opcode = 28,
        send_flags = 32,
        imm_data = 36,
        wr = 40,
        qp_type = 72,
        bind_mw_or_tso = 80
    ]
);
layout!(ibv_send_wr_rdma, 16, 8, [remote_addr = 0, rkey = 8]);
layout!(ibv_recv_wr, 32, 8, [wr_id = 0, next = 8, sg_list = 16, num_sge = 24]);
/// What glibc's `pthread_mutex_t` adds to the x86_64 figures above and below it: 40 bytes on
/// x86_64, 48 on aarch64 (`pthread_cond_t` is 48 on both), so every field after a mutex, and
/// the struct, is 8 bytes further on aarch64. Checked for aarch64 by compiling Debian 12's
/// verbs.h with `zig cc -target aarch64-linux-gnu.2.31` (offsetof/sizeof: ibv_qp cond 112,
/// events_completed 160, size 168; ibv_cq cond 80, async_events_completed 132, size 136;
/// ibv_context abi_compat 328, size 336; verbs_context size 656).
const M: usize = std::mem::size_of::<pthread_mutex_t>() - 40;
layout!(ibv_qp, 160 + M, 8, [context = 0, qp_num = 52, mutex = 64, cond = 104 + M, events_completed = 152 + M]);
layout!(ibv_cq, 128 + M, 8, [context = 0, mutex = 32, cond = 72 + M, async_events_completed = 124 + M]);
layout!(ibv_context_ops, 256, 8, [poll_cq = 88, post_send = 200, post_recv = 208]);
layout!(ibv_context, 328 + M, 8, [device = 0, ops = 8, cmd_fd = 264, mutex = 280, abi_compat = 320 + M]);
layout!(verbs_context, 648 + M, 8, [query_port = 0, priv_ = 208, _ABI_placeholder3 = 304, sz = 312, context = 320]);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// `(C struct, size, [(field, offset)])` for the structs the code reads or fills.
    macro_rules! shapes {
        ($($t:ident { $($f:ident),* })*) => {
            vec![$((stringify!($t), size_of::<$t>(), vec![$((stringify!($f), offset_of!($t, $f))),*])),*]
        };
    }

    /// The layouts checked against the installed header: a C program compiled against
    /// `infiniband/verbs.h` prints `sizeof`/`offsetof` of each, which must match these. Runs where
    /// a C compiler and the header are (CI: `scripts/setup` installs `libibverbs-dev` for this);
    /// elsewhere the `layout!` asserts above still hold the bindgen numbers.
    #[test]
    fn trimmed_structs_match_the_installed_verbs_header() {
        let shapes = shapes! {
            ibv_port_attr { state, active_mtu, max_msg_sz, lid, link_layer, port_cap_flags2 }
            ibv_wc { wr_id, status, vendor_err, imm_data, wc_flags }
            ibv_mr { lkey, rkey }
            ibv_global_route { dgid, sgid_index, hop_limit, traffic_class }
            ibv_ah_attr { grh, dlid, is_global, port_num }
            ibv_qp_init_attr { send_cq, recv_cq, cap, qp_type, sq_sig_all }
            ibv_qp_attr { qp_state, path_mtu, rq_psn, sq_psn, dest_qp_num, qp_access_flags, ah_attr, pkey_index,
                          max_rd_atomic, max_dest_rd_atomic, min_rnr_timer, port_num, timeout, retry_cnt, rnr_retry }
            ibv_sge { addr, length, lkey }
            ibv_send_wr { wr_id, next, sg_list, num_sge, opcode, send_flags, imm_data, wr, qp_type }
            ibv_recv_wr { wr_id, next, sg_list, num_sge }
            ibv_qp { context, qp_num }
            ibv_cq { context }
            ibv_context_ops { poll_cq, post_send, post_recv }
            ibv_context { ops, abi_compat }
            verbs_context { query_port, sz, context }
        };
        let header = std::path::Path::new("/usr/include/infiniband/verbs.h");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if !header.exists() || std::process::Command::new(&cc).arg("--version").output().is_err() {
            eprintln!("skipped: no {} or no C compiler ({cc})", header.display());
            return;
        }
        let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <infiniband/verbs.h>\nint main(void) {\n");
        let mut want = String::new();
        for (t, size, fields) in &shapes {
            c += &format!("printf(\"{t} %zu\\n\", sizeof(struct {t}));\n");
            want += &format!("{t} {size}\n");
            for (f, off) in fields {
                c += &format!("printf(\"{t}.{f} %zu\\n\", offsetof(struct {t}, {f}));\n");
                want += &format!("{t}.{f} {off}\n");
            }
        }
        c += "return 0;\n}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("layout.c"), c).unwrap();
        let exe = dir.path().join("layout");
        let built = std::process::Command::new(&cc).arg(dir.path().join("layout.c")).arg("-o").arg(&exe).output().unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let got = std::process::Command::new(&exe).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&got.stdout), want);
    }
}
