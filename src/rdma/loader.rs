//! libibverbs (`libibverbs.so.1`, rdma-core's user-space library) opened at run time with
//! `libloading`: the binary links no rdma-core, starts on a host without it, and a missing
//! library or symbol is an [`Unavailable`] (a waiver naming what to install), never a loader
//! error. Only the calls linkcal makes are in the table; each signature is the prototype in
//! Debian 12's `infiniband/verbs.h` (rdma-core 44.0), quoted beside it.
//!
//! The verbs that `verbs.h` defines inline (`ibv_post_send`, `ibv_post_recv`, `ibv_poll_cq`,
//! the `ibv_query_port` and `ibv_reg_mr` wrappers) are no exported symbols: [`query_port`],
//! [`reg_mr`], [`poll_cq`], [`post_send`] and [`post_recv`] do what the header's inline code does
//! (the context's ops table, the extended `verbs_context`).

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::mem::{offset_of, size_of};
use std::sync::OnceLock;

use super::sys::{
    _compat_ibv_port_attr, ibv_comp_channel, ibv_context, ibv_cq, ibv_device, ibv_gid, ibv_mr, ibv_pd, ibv_port_attr, ibv_qp,
    ibv_qp_attr, ibv_qp_init_attr, ibv_recv_wr, ibv_send_wr, ibv_wc, ibv_wc_status, verbs_context, IBV_ACCESS_OPTIONAL_RANGE,
};
use super::Unavailable;

/// The soname opened (rdma-core's ABI 1, the same on Debian, Ubuntu and RHEL).
pub const LIBRARY: &str = "libibverbs.so.1";

/// The libibverbs calls linkcal makes, resolved from the loaded library.
pub struct Verbs {
    /// `struct ibv_device **ibv_get_device_list(int *num_devices);`
    pub get_device_list: unsafe extern "C" fn(*mut c_int) -> *mut *mut ibv_device,
    /// `void ibv_free_device_list(struct ibv_device **list);`
    pub free_device_list: unsafe extern "C" fn(*mut *mut ibv_device),
    /// `const char *ibv_get_device_name(struct ibv_device *device);`
    pub get_device_name: unsafe extern "C" fn(*mut ibv_device) -> *const c_char,
    /// `struct ibv_context *ibv_open_device(struct ibv_device *device);`
    pub open_device: unsafe extern "C" fn(*mut ibv_device) -> *mut ibv_context,
    /// `int ibv_close_device(struct ibv_context *context);`
    pub close_device: unsafe extern "C" fn(*mut ibv_context) -> c_int,
    /// `int ibv_query_port(struct ibv_context *context, uint8_t port_num, struct _compat_ibv_port_attr *port_attr);`
    /// (the exported fallback of the inline wrapper; see [`query_port`]).
    query_port_compat: unsafe extern "C" fn(*mut ibv_context, u8, *mut _compat_ibv_port_attr) -> c_int,
    /// `int ibv_query_gid(struct ibv_context *context, uint8_t port_num, int index, union ibv_gid *gid);`
    pub query_gid: unsafe extern "C" fn(*mut ibv_context, u8, c_int, *mut ibv_gid) -> c_int,
    /// `struct ibv_pd *ibv_alloc_pd(struct ibv_context *context);`
    pub alloc_pd: unsafe extern "C" fn(*mut ibv_context) -> *mut ibv_pd,
    /// `int ibv_dealloc_pd(struct ibv_pd *pd);`
    pub dealloc_pd: unsafe extern "C" fn(*mut ibv_pd) -> c_int,
    /// `struct ibv_cq *ibv_create_cq(struct ibv_context *context, int cqe, void *cq_context, struct ibv_comp_channel *channel, int comp_vector);`
    pub create_cq: unsafe extern "C" fn(*mut ibv_context, c_int, *mut c_void, *mut ibv_comp_channel, c_int) -> *mut ibv_cq,
    /// `int ibv_destroy_cq(struct ibv_cq *cq);`
    pub destroy_cq: unsafe extern "C" fn(*mut ibv_cq) -> c_int,
    /// `struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access);`
    reg_mr_plain: unsafe extern "C" fn(*mut ibv_pd, *mut c_void, usize, c_int) -> *mut ibv_mr,
    /// `struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova, unsigned int access);`
    reg_mr_iova2: unsafe extern "C" fn(*mut ibv_pd, *mut c_void, usize, u64, c_uint) -> *mut ibv_mr,
    /// `struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access);`
    /// (rdma-core 34 and later: `None` before).
    pub reg_dmabuf_mr: Option<unsafe extern "C" fn(*mut ibv_pd, u64, usize, u64, c_int, c_int) -> *mut ibv_mr>,
    /// `int ibv_dereg_mr(struct ibv_mr *mr);`
    pub dereg_mr: unsafe extern "C" fn(*mut ibv_mr) -> c_int,
    /// `struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *qp_init_attr);`
    pub create_qp: unsafe extern "C" fn(*mut ibv_pd, *mut ibv_qp_init_attr) -> *mut ibv_qp,
    /// `int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask);`
    pub modify_qp: unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int) -> c_int,
    /// `int ibv_destroy_qp(struct ibv_qp *qp);`
    pub destroy_qp: unsafe extern "C" fn(*mut ibv_qp) -> c_int,
    /// `const char *ibv_wc_status_str(enum ibv_wc_status status);`
    pub wc_status_str: unsafe extern "C" fn(ibv_wc_status::Type) -> *const c_char,
    /// Keeps the library mapped for as long as the pointers above are used (the process).
    _lib: libloading::Library,
}

/// The process's libibverbs, opened on first use (and the answer kept: a host does not gain
/// rdma-core mid-run).
pub fn verbs() -> Result<&'static Verbs, Unavailable> {
    static VERBS: OnceLock<Result<Verbs, Unavailable>> = OnceLock::new();
    VERBS.get_or_init(|| Verbs::load(LIBRARY)).as_ref().map_err(Clone::clone)
}

impl Verbs {
    /// Opens `library` (`RTLD_NOW | RTLD_LOCAL`) and resolves every call. A library that does
    /// not load is [`Unavailable::Library`]; one without a required call [`Unavailable::Symbol`].
    pub fn load(library: &str) -> Result<Verbs, Unavailable> {
        let flags = libc::RTLD_NOW | libc::RTLD_LOCAL;
        // SAFETY: loading runs libibverbs's initialisers, which only set up its own state (no
        // provider is loaded before ibv_get_device_list).
        let lib = unsafe { libloading::os::unix::Library::open(Some(library), flags) }
            .map_err(|e| library_error(library, &e.to_string()))?;
        let lib = libloading::Library::from(lib);
        // SAFETY: each symbol is typed with its prototype from verbs.h (quoted on the field);
        // the pointers are copied out and stay valid while `_lib` keeps the library mapped.
        unsafe {
            Ok(Verbs {
                get_device_list: sym(&lib, "ibv_get_device_list")?,
                free_device_list: sym(&lib, "ibv_free_device_list")?,
                get_device_name: sym(&lib, "ibv_get_device_name")?,
                open_device: sym(&lib, "ibv_open_device")?,
                close_device: sym(&lib, "ibv_close_device")?,
                query_port_compat: sym(&lib, "ibv_query_port")?,
                query_gid: sym(&lib, "ibv_query_gid")?,
                alloc_pd: sym(&lib, "ibv_alloc_pd")?,
                dealloc_pd: sym(&lib, "ibv_dealloc_pd")?,
                create_cq: sym(&lib, "ibv_create_cq")?,
                destroy_cq: sym(&lib, "ibv_destroy_cq")?,
                reg_mr_plain: sym(&lib, "ibv_reg_mr")?,
                reg_mr_iova2: sym(&lib, "ibv_reg_mr_iova2")?,
                reg_dmabuf_mr: sym(&lib, "ibv_reg_dmabuf_mr").ok(),
                dereg_mr: sym(&lib, "ibv_dereg_mr")?,
                create_qp: sym(&lib, "ibv_create_qp")?,
                modify_qp: sym(&lib, "ibv_modify_qp")?,
                destroy_qp: sym(&lib, "ibv_destroy_qp")?,
                wc_status_str: sym(&lib, "ibv_wc_status_str")?,
                _lib: lib,
            })
        }
    }

    /// `ibv_query_port` as verbs.h's inline `___ibv_query_port` does it: the provider's
    /// extended `query_port` with the full struct's size when the context is a
    /// `verbs_context` that has one, else the exported call on the zeroed struct (it fills the
    /// leading, compat part). Returns 0 or an errno.
    ///
    /// # Safety
    /// `ctx` must be an open context.
    pub unsafe fn query_port(&self, ctx: *mut ibv_context, port: u8, attr: &mut ibv_port_attr) -> c_int {
        // SAFETY: the caller's context is open; `verbs_context_of` checks it is extended.
        match unsafe { verbs_context_of(ctx) }.and_then(|v| {
            // SAFETY: `v` points at the live verbs_context around `ctx`.
            unsafe { (*v).query_port }
        }) {
            // SAFETY: the provider's op for this context, given the full struct and its size.
            Some(op) => unsafe { op(ctx, port, attr, size_of::<ibv_port_attr>()) },
            None => {
                *attr = ibv_port_attr::default();
                // SAFETY: `attr` is the full struct, which starts with the compat layout.
                unsafe { (self.query_port_compat)(ctx, port, (attr as *mut ibv_port_attr).cast()) }
            }
        }
    }

    /// `ibv_reg_mr` as verbs.h's `__ibv_reg_mr` does it: the plain call when `access` has no
    /// optional flag (`IBV_ACCESS_OPTIONAL_RANGE`, e.g. relaxed ordering), else
    /// `ibv_reg_mr_iova2` with the address as iova (optional flags are dropped by providers
    /// that do not support them). Null on failure, the cause in errno.
    ///
    /// # Safety
    /// `pd` must be live and `[addr, addr+len)` allocated until the region is deregistered.
    pub unsafe fn reg_mr(&self, pd: *mut ibv_pd, addr: *mut c_void, len: usize, access: c_int) -> *mut ibv_mr {
        if (access as c_uint) & IBV_ACCESS_OPTIONAL_RANGE == 0 {
            // SAFETY: the caller's guarantees are the call's preconditions.
            unsafe { (self.reg_mr_plain)(pd, addr, len, access) }
        } else {
            // SAFETY: as above; the iova is the address, as the header passes it.
            unsafe { (self.reg_mr_iova2)(pd, addr, len, addr as u64, access as c_uint) }
        }
    }
}

/// The waiver for a library that did not load: "not found" alone when the loader found no such
/// file, with the loader's message otherwise (a file that exists but fails, e.g. a missing
/// dependency or the wrong architecture).
fn library_error(library: &str, message: &str) -> Unavailable {
    let absent = message.contains("No such file or directory");
    Unavailable::Library { library: library.to_string(), detail: (!absent).then(|| message.to_string()) }
}

/// Resolves `name` as a `T` (a function pointer type).
///
/// # Safety
/// `T` must be the symbol's real type.
unsafe fn sym<T: Copy>(lib: &libloading::Library, name: &'static str) -> Result<T, Unavailable> {
    // SAFETY: the caller names the type; the value is copied out of the symbol.
    unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|_| Unavailable::Symbol { library: LIBRARY, symbol: name })
}

/// verbs.h's `verbs_get_ctx`: the `verbs_context` that contains `ctx` when the provider made an
/// extended context (`abi_compat == __VERBS_ABI_IS_EXTENDED`), else `None`.
///
/// # Safety
/// `ctx` must be an open context.
unsafe fn verbs_context_of(ctx: *mut ibv_context) -> Option<*mut verbs_context> {
    // SAFETY: `ctx` is live; `abi_compat` is a plain pointer field.
    if unsafe { (*ctx).abi_compat } as usize != usize::MAX {
        return None;
    }
    // SAFETY: an extended context is the last field of a verbs_context (verbs.h: "Must be
    // last field in the struct"); fields only grow at the front, so `sz` and `query_port`
    // sit at these offsets before `context` in every rdma-core.
    let v = unsafe { ctx.cast::<u8>().sub(offset_of!(verbs_context, context)) }.cast::<verbs_context>();
    // verbs_get_ctx_op: the provider's struct must reach back to the op.
    // SAFETY: `v` is the live verbs_context; `sz` sits right before `context`.
    let sz = unsafe { (*v).sz };
    (sz >= size_of::<verbs_context>() - offset_of!(verbs_context, query_port)).then_some(v)
}

/// verbs.h's inline `ibv_poll_cq`: `cq->context->ops.poll_cq`. Returns the number of
/// completions written to `wc` (at most `wc.len()`), or a negative value on error.
///
/// # Safety
/// `cq` must be a live completion queue.
pub unsafe fn poll_cq(cq: *mut ibv_cq, wc: &mut [ibv_wc]) -> Option<c_int> {
    // SAFETY: a live CQ's context and ops table are set by the provider for its life.
    let op = unsafe { (*(*cq).context).ops.poll_cq }?;
    // SAFETY: `wc` has room for `wc.len()` entries.
    Some(unsafe { op(cq, wc.len() as c_int, wc.as_mut_ptr()) })
}

/// verbs.h's inline `ibv_post_send`: `qp->context->ops.post_send`. Returns 0 or an errno.
///
/// # Safety
/// `qp` must be live; `wr` and what it points at must be valid for the call.
pub unsafe fn post_send(qp: *mut ibv_qp, wr: *mut ibv_send_wr, bad: *mut *mut ibv_send_wr) -> Option<c_int> {
    // SAFETY: as in `poll_cq`.
    let op = unsafe { (*(*qp).context).ops.post_send }?;
    // SAFETY: the caller's guarantees.
    Some(unsafe { op(qp, wr, bad) })
}

/// verbs.h's inline `ibv_post_recv`: `qp->context->ops.post_recv`. Returns 0 or an errno.
///
/// # Safety
/// As [`post_send`].
pub unsafe fn post_recv(qp: *mut ibv_qp, wr: *mut ibv_recv_wr, bad: *mut *mut ibv_recv_wr) -> Option<c_int> {
    // SAFETY: as in `poll_cq`.
    let op = unsafe { (*(*qp).context).ops.post_recv }?;
    // SAFETY: the caller's guarantees.
    Some(unsafe { op(qp, wr, bad) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_missing_library_is_a_waiver_naming_what_to_install() {
        let err = Verbs::load("liblinkcal-no-such-verbs.so.1").err().expect("no such library");
        assert_eq!(err.to_string(), "liblinkcal-no-such-verbs.so.1 not found: install rdma-core / libibverbs1");
        // A file that is there but does not load keeps the loader's reason.
        let u = library_error(LIBRARY, "libibverbs.so.1: wrong ELF class: ELFCLASS32");
        assert_eq!(
            u.to_string(),
            "libibverbs.so.1 not found: install rdma-core / libibverbs1 (libibverbs.so.1: wrong ELF class: ELFCLASS32)"
        );
    }

    #[test]
    fn a_library_without_the_verbs_is_a_symbol_waiver() {
        // libc loads but exports no verbs: the first call of the table is named.
        let err = Verbs::load("libc.so.6").err().expect("libc has no verbs");
        assert_eq!(err, Unavailable::Symbol { library: LIBRARY, symbol: "ibv_get_device_list" });
        assert!(err.to_string().contains("has no ibv_get_device_list"), "{err}");
    }

    /// Where libibverbs would be installed (Debian/Ubuntu multiarch, RHEL lib64).
    fn installed() -> bool {
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .iter()
            .any(|d| std::path::Path::new(d).join(LIBRARY).exists())
    }

    #[test]
    fn every_call_resolves_from_the_installed_library_and_lists_the_sysfs_devices() {
        let v = match Verbs::load(LIBRARY) {
            Ok(v) => v,
            Err(u) => {
                assert!(!installed(), "{LIBRARY} is installed but did not load: {u}");
                assert!(matches!(u, Unavailable::Library { .. }), "{u}");
                return;
            }
        };
        assert!(v.reg_dmabuf_mr.is_some() || !installed(), "rdma-core 34+ exports ibv_reg_dmabuf_mr");
        let mut n: c_int = -1;
        // SAFETY: a real call into the loaded library; the list is freed below.
        let list = unsafe { (v.get_device_list)(&mut n) };
        let sysfs = std::fs::read_dir("/sys/class/infiniband").map(|d| d.count()).unwrap_or(0);
        if list.is_null() {
            // No RDMA in the kernel: the list is null (ENOSYS) and sysfs has no devices.
            assert_eq!(sysfs, 0, "ibv_get_device_list failed with devices in sysfs");
        } else {
            assert_eq!(n as usize, sysfs, "ibv_get_device_list sees the devices of /sys/class/infiniband");
            // SAFETY: the list came from ibv_get_device_list and is freed once.
            unsafe { (v.free_device_list)(list) };
        }
        // SAFETY: ibv_wc_status_str returns a static string for any status.
        let s = unsafe { std::ffi::CStr::from_ptr((v.wc_status_str)(ibv_wc_status::IBV_WC_SUCCESS)) };
        assert_eq!(s.to_str().unwrap(), "success");
    }

    static PLAIN: AtomicUsize = AtomicUsize::new(0);
    static IOVA2: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn fake_reg_mr(_: *mut ibv_pd, _: *mut c_void, _: usize, _: c_int) -> *mut ibv_mr {
        PLAIN.fetch_add(1, Ordering::SeqCst);
        std::ptr::null_mut()
    }
    unsafe extern "C" fn fake_reg_mr_iova2(_: *mut ibv_pd, a: *mut c_void, _: usize, iova: u64, _: c_uint) -> *mut ibv_mr {
        assert_eq!(a as u64, iova, "the iova is the address, as verbs.h passes it");
        IOVA2.fetch_add(1, Ordering::SeqCst);
        std::ptr::null_mut()
    }

    #[test]
    fn reg_mr_takes_iova2_for_optional_flags_as_the_header_does() {
        let Ok(mut v) = Verbs::load(LIBRARY) else { return assert!(!installed()) };
        v.reg_mr_plain = fake_reg_mr;
        v.reg_mr_iova2 = fake_reg_mr_iova2;
        let addr = 0x1000 as *mut c_void;
        // SAFETY: the fakes do not touch memory.
        unsafe {
            v.reg_mr(std::ptr::null_mut(), addr, 64, 3);
            v.reg_mr(std::ptr::null_mut(), addr, 64, 3 | (1 << 20));
        }
        assert_eq!((PLAIN.load(Ordering::SeqCst), IOVA2.load(Ordering::SeqCst)), (1, 1));
    }

    unsafe extern "C" fn fake_query_port(_: *mut ibv_context, port: u8, attr: *mut ibv_port_attr, len: usize) -> c_int {
        assert_eq!(len, size_of::<ibv_port_attr>(), "the extended op gets the full struct's size");
        // SAFETY: the caller passes a writable struct.
        unsafe { (*attr).lid = u16::from(port) + 100 };
        0
    }
    unsafe extern "C" fn fake_poll_cq(_: *mut ibv_cq, n: c_int, wc: *mut ibv_wc) -> c_int {
        // SAFETY: the caller passes room for `n` completions.
        unsafe { (*wc).wr_id = 7 };
        n - 1
    }

    /// A provider's extended context with `query_port` set and `sz` as given.
    fn extended(sz: usize) -> Box<verbs_context> {
        // SAFETY: all-zero is a valid verbs_context (null pointers, None ops).
        let mut v: Box<verbs_context> = Box::new(unsafe { std::mem::zeroed() });
        v.query_port = Some(fake_query_port);
        v.sz = sz;
        v.context.abi_compat = usize::MAX as *mut c_void;
        v
    }

    #[test]
    fn the_extended_context_is_found_before_ibv_context_as_verbs_get_ctx_does() {
        let mut full = extended(size_of::<verbs_context>());
        let ctx: *mut ibv_context = &mut full.context;
        // SAFETY: `ctx` is the tail of a live verbs_context.
        let found = unsafe { verbs_context_of(ctx) }.expect("extended");
        assert_eq!(found as usize, &*full as *const verbs_context as usize);
        // A provider struct too small to reach `query_port`, and a legacy context: no op.
        let mut short = extended(size_of::<verbs_context>() - 8);
        // SAFETY: as above.
        assert!(unsafe { verbs_context_of(&mut short.context) }.is_none());
        let mut legacy = extended(size_of::<verbs_context>());
        legacy.context.abi_compat = std::ptr::null_mut();
        // SAFETY: as above.
        assert!(unsafe { verbs_context_of(&mut legacy.context) }.is_none());
        // query_port takes the provider's op on the extended context.
        let Ok(v) = Verbs::load(LIBRARY) else { return assert!(!installed()) };
        let mut attr = ibv_port_attr::default();
        // SAFETY: the fake op only writes `attr`.
        assert_eq!(unsafe { v.query_port(ctx, 1, &mut attr) }, 0);
        assert_eq!(attr.lid, 101);
    }

    #[test]
    fn poll_cq_goes_through_the_contexts_ops_table() {
        let mut vctx = extended(size_of::<verbs_context>());
        // SAFETY: all-zero is a valid ibv_cq (null pointers).
        let mut cq: ibv_cq = unsafe { std::mem::zeroed() };
        cq.context = &mut vctx.context;
        let mut wc = [ibv_wc::default(); 4];
        // SAFETY: the CQ's context is live; no poll_cq op yet.
        assert_eq!(unsafe { poll_cq(&mut cq, &mut wc) }, None, "a provider without poll_cq is no call");
        vctx.context.ops.poll_cq = Some(fake_poll_cq);
        // SAFETY: as above, with the fake op.
        assert_eq!(unsafe { poll_cq(&mut cq, &mut wc) }, Some(3));
        assert_eq!(wc[0].wr_id, 7);
    }
}
