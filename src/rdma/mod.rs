//! RDMA backend (raw ibverbs, libibverbs loaded at run time): device listing, RC queue pairs taken through
//! INIT/RTR/RTS, memory registration (dmabuf, else plain `ibv_reg_mr` which covers GPU memory
//! through nvidia-peermem), RDMA WRITE with the last write of each queue pair carrying
//! immediate data, the endpoint description exchanged over the control plane, and pinning the
//! sending thread to the NIC's NUMA node.
//!
//! Nothing here runs without an RDMA device; [`list_devices`] turns "no device" (including the
//! ENOSYS a kernel without RDMA support gives, and a host without `libibverbs.so.1`) into
//! [`Unavailable`], which probes report as a waiver. The binary links no rdma-core:
//! [`loader`] opens `libibverbs.so.1` on first use and [`sys`] holds the C types.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod endpoint;
pub mod engine;
pub mod loader;
pub mod memory;
pub mod numa;
pub mod plan;
pub mod select;
pub mod sys;
pub mod sysfs;
pub mod verbs;

pub use endpoint::{Endpoint, Gid, LinkLayer, MemoryKind, QpInfo};
pub use engine::{Connection, ConnectionOptions};
pub use plan::{write_plan, WriteOp, WriteOptions};
pub use select::NicSelector;

/// RDMA errors: a verbs call that failed, a bad endpoint from the peer, a failed completion.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    /// A verbs call failed with an errno.
    #[error("{call} failed: {source}")]
    Verbs {
        /// The call, e.g. `ibv_create_qp`.
        call: &'static str,
        /// The OS error (errno).
        source: std::io::Error,
    },
    /// The peer's endpoint (or ours) is unusable; names the field.
    #[error("endpoint field '{field}': {message}")]
    Endpoint {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A work completion reported an error.
    #[error("work completion failed: {status} (vendor error {vendor:#x}) on wr {wr_id}")]
    Completion {
        /// Status string from `ibv_wc_status_str`.
        status: String,
        /// Vendor syndrome.
        vendor: u32,
        /// The work request id.
        wr_id: u64,
    },
    /// Completions did not arrive in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long, seconds.
        seconds: f64,
    },
    /// A caller asked for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// No usable device (a waiver, not a failure).
    #[error("{0}")]
    Unavailable(#[from] Unavailable),
}

impl RdmaError {
    /// The current errno as a verbs error for `call`.
    pub fn last_os(call: &'static str) -> RdmaError {
        RdmaError::Verbs { call, source: std::io::Error::last_os_error() }
    }

    /// A verbs call that returned an errno value directly (as `ibv_modify_qp` does).
    pub fn from_ret(call: &'static str, ret: i32) -> RdmaError {
        RdmaError::Verbs { call, source: std::io::Error::from_raw_os_error(ret.abs()) }
    }

    /// A verbs call that returned `ret`: a positive errno itself, or -1 with the cause in
    /// `errno` (as `ibv_query_gid` does; reading -1 as an errno would say EPERM).
    pub fn from_status(call: &'static str, ret: i32, errno: Option<i32>) -> RdmaError {
        let source = match (ret, errno) {
            (r, _) if r > 0 => std::io::Error::from_raw_os_error(r),
            (_, Some(e)) if e > 0 => std::io::Error::from_raw_os_error(e),
            (r, _) => std::io::Error::other(format!("returned {r} without an errno (empty or out-of-range entry?)")),
        };
        RdmaError::Verbs { call, source }
    }
}

/// Why an RDMA probe does not apply here (reported as a waiver).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// libibverbs is not installed (or does not load): the binary itself runs without it.
    #[error("{library} not found: install rdma-core / libibverbs1{}", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Library {
        /// The soname tried.
        library: String,
        /// The loader's message when the file exists but does not load (none when absent).
        detail: Option<String>,
    },
    /// The installed libibverbs lacks a call linkcal needs (an rdma-core older than 22).
    #[error("{library} has no {symbol}: rdma-core too old (linkcal needs rdma-core 22 or later)")]
    Symbol {
        /// The soname.
        library: &'static str,
        /// The missing function.
        symbol: &'static str,
    },
    /// No RDMA device: none listed, or the kernel has no RDMA support.
    #[error("no RDMA device{}", .0.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NoDevice(Option<String>),
    /// The named device is not present.
    #[error("RDMA device '{name}' not found (present: {present})")]
    NoSuchDevice {
        /// The name asked for.
        name: String,
        /// Devices present, comma-separated.
        present: String,
    },
    /// The port is not active.
    #[error("RDMA device {device} port {port} is not active (state {state})")]
    PortDown {
        /// Device name.
        device: String,
        /// Port number.
        port: u8,
        /// Port state number from verbs.
        state: u32,
    },
    /// The port is Ethernet (RoCE) and its GID table has no RoCE v2 entry.
    #[error("RDMA device {device} port {port} is RoCE but has no RoCE v2 GID (no IP address on its netdev?); give --gid-index to use another")]
    NoRoceV2Gid {
        /// Device name.
        device: String,
        /// Port number.
        port: u8,
    },
    /// The locked-memory limit is below what registering the buffer pins.
    #[error("RLIMIT_MEMLOCK is {limit} bytes but registering the {need}-byte buffer pins it all: raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity / /etc/security/limits.conf) or run as root")]
    Memlock {
        /// The soft limit, bytes.
        limit: u64,
        /// Bytes the registration needs.
        need: u64,
    },
    /// GPU memory could not be registered by either method.
    #[error("GPU memory cannot be registered with the NIC (dmabuf: {dmabuf}; ibv_reg_mr: {peermem}); load nvidia-peermem or use a kernel and driver with dmabuf support")]
    NoGpuDirect {
        /// Why dmabuf registration failed.
        dmabuf: String,
        /// Why plain registration failed.
        peermem: String,
    },
}

/// Names of the RDMA devices present (`mlx5_0`, ...). An empty list, or the ENOSYS/ENODEV a
/// kernel without RDMA support returns, is [`Unavailable::NoDevice`].
pub fn list_devices() -> Result<Vec<String>, Unavailable> {
    let v = loader::verbs()?;
    let mut n: std::ffi::c_int = 0;
    // SAFETY: `n` is a writable int; the returned list is freed below with
    // ibv_free_device_list and not used afterwards.
    let list = unsafe { (v.get_device_list)(&mut n) };
    if list.is_null() {
        let err = std::io::Error::last_os_error();
        return Err(Unavailable::NoDevice(Some(no_device_detail(&err))));
    }
    let mut names = Vec::with_capacity(n.max(0) as usize);
    for i in 0..n.max(0) as usize {
        // SAFETY: the list has `n` valid device pointers; the name is a NUL-terminated string
        // owned by the device, copied out before the list is freed.
        let name = unsafe {
            let dev = *list.add(i);
            std::ffi::CStr::from_ptr((v.get_device_name)(dev)).to_string_lossy().into_owned()
        };
        names.push(name);
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once.
    unsafe { (v.free_device_list)(list) };
    if names.is_empty() {
        return Err(Unavailable::NoDevice(None));
    }
    Ok(names)
}

/// The detail shown with "no RDMA device" for the errno `ibv_get_device_list` left.
pub fn no_device_detail(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => "kernel without RDMA support: ibv_get_device_list returned ENOSYS".into(),
        Some(libc::ENODEV) | Some(libc::ENOENT) | None | Some(0) => "no RDMA devices present".into(),
        Some(_) => format!("ibv_get_device_list: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiver_reasons() {
        assert_eq!(Unavailable::NoDevice(None).to_string(), "no RDMA device");
        let enosys = std::io::Error::from_raw_os_error(libc::ENOSYS);
        let u = Unavailable::NoDevice(Some(no_device_detail(&enosys)));
        assert!(u.to_string().starts_with("no RDMA device (kernel without RDMA support"), "{u}");
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(no_device_detail(&eperm).contains("ibv_get_device_list"));
        let e = RdmaError::from_ret("ibv_modify_qp", libc::EINVAL);
        assert!(e.to_string().starts_with("ibv_modify_qp failed: Invalid argument"), "{e}");
        // ibv_query_gid's -1 is not EPERM: the cause is errno.
        let e = RdmaError::from_status("ibv_query_gid", -1, Some(libc::EINVAL));
        assert!(e.to_string().starts_with("ibv_query_gid failed: Invalid argument"), "{e}");
        let e = RdmaError::from_status("ibv_query_gid", -1, Some(0));
        assert!(!e.to_string().contains("not permitted") && e.to_string().contains("without an errno"), "{e}");
        let e = RdmaError::from_status("ibv_query_port", libc::ENODEV, Some(libc::EINVAL));
        assert!(e.to_string().contains("No such device"), "{e}");
    }

    #[test]
    fn listing_devices_never_crashes() {
        match list_devices() {
            Ok(names) => assert!(names.iter().all(|n| !n.is_empty())),
            // No device here, or no libibverbs at all: both are waivers with their reason.
            Err(u @ Unavailable::Library { .. }) => assert!(u.to_string().contains("install rdma-core"), "{u}"),
            Err(u) => assert!(u.to_string().starts_with("no RDMA device"), "{u}"),
        }
    }
}
