//! HIP backend for AMD GPUs (MI300X, MI250X, ...): the same pieces as the CUDA backend, over
//! the HIP runtime loaded at run time ([`ffi`]): devices matched to discovery by PCI bus id,
//! peer access both ways, device and pinned host buffers, dmabuf export through the HSA
//! runtime, a start gate ([`copy::GateKind`]), event-timed copies on non-blocking streams,
//! the staging pipeline of Path 3, and xGMI links read from the KFD topology ([`kfd`]).
//!
//! A host without ROCm gets [`Unavailable::HipLibrary`] ("libamdhip64.so not found") from
//! every entry point, never a loader error or a panic.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod copy;
pub mod ffi;
pub mod kfd;
pub mod memory;
pub mod staging;

use std::ffi::{c_char, c_int};

use super::{GpuError, PciAddr, Unavailable};

/// Maps a HIP return code to `Ok` or [`GpuError::Driver`] naming the call.
pub fn check(call: &'static str, code: ffi::hipError_t) -> Result<(), GpuError> {
    if code == ffi::HIP_SUCCESS {
        return Ok(());
    }
    let name = ffi::hip().map(|api| ffi::error_name(api, code)).unwrap_or_else(|_| format!("hipError {code}"));
    Err(GpuError::Driver { call, name })
}

/// What the HIP runtime offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HipInfo {
    /// HIP devices visible (GCDs on MI250X: two per package).
    pub devices: usize,
    /// Driver version as `hipDriverGetVersion` reports it.
    pub version: i32,
}

/// Checks that HIP can be used: library present, `hipInit`, device count. Never panics.
pub fn hip_status() -> Result<HipInfo, Unavailable> {
    let api = ffi::hip()?;
    // SAFETY: hipInit takes flags (must be 0) and has no pointer arguments.
    let rc = unsafe { (api.hipInit)(0) };
    if rc == ffi::HIP_ERROR_NO_DEVICE {
        return Err(Unavailable::HipNoDevice);
    }
    if rc != ffi::HIP_SUCCESS {
        return Err(Unavailable::HipInit(ffi::error_name(api, rc)));
    }
    let mut n: c_int = 0;
    // SAFETY: `n` is a writable int for the duration of the call.
    match unsafe { (api.hipGetDeviceCount)(&mut n) } {
        ffi::HIP_SUCCESS if n > 0 => {}
        ffi::HIP_SUCCESS | ffi::HIP_ERROR_NO_DEVICE => return Err(Unavailable::HipNoDevice),
        rc => return Err(Unavailable::HipInit(ffi::error_name(api, rc))),
    }
    let mut version: c_int = 0;
    // SAFETY: as above.
    let _ = unsafe { (api.hipDriverGetVersion)(&mut version) };
    Ok(HipInfo { devices: n as usize, version })
}

/// One HIP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HipDevice {
    /// HIP ordinal (the runtime's order; `HIP_VISIBLE_DEVICES` may renumber).
    pub ordinal: usize,
    /// Marketing name, e.g. `AMD Instinct MI300X`.
    pub name: String,
    /// PCI address, to match discovery's GPUs.
    pub pci: PciAddr,
    /// Whether the device can hold a stream on a memory value (`hipStreamWaitValue32`).
    pub stream_wait_value: bool,
}

impl super::device::BusDevice for HipDevice {
    fn ordinal(&self) -> usize {
        self.ordinal
    }
    fn pci(&self) -> PciAddr {
        self.pci
    }
}

/// A C string the runtime wrote into `buf` (NUL-terminated within it).
pub fn c_buf_str(buf: &[c_char]) -> Option<String> {
    let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
    std::ffi::CStr::from_bytes_until_nul(&bytes).ok().map(|s| s.to_string_lossy().into_owned())
}

/// Every HIP device, in ordinal order.
pub fn enumerate() -> Result<Vec<HipDevice>, GpuError> {
    let info = hip_status()?;
    (0..info.devices).map(describe).collect()
}

fn describe(ordinal: usize) -> Result<HipDevice, GpuError> {
    let api = ffi::hip()?;
    let d = ordinal as c_int;
    let mut bus = [0 as c_char; 64];
    // SAFETY: `bus` is writable for its length; the runtime writes a NUL-terminated string.
    check("hipDeviceGetPCIBusId", unsafe { (api.hipDeviceGetPCIBusId)(bus.as_mut_ptr(), bus.len() as c_int, d) })?;
    let bus = c_buf_str(&bus).ok_or_else(|| GpuError::Invalid(format!("HIP device {ordinal}: PCI bus id not NUL-terminated")))?;
    let pci = bus.parse().map_err(|e| GpuError::Invalid(format!("HIP device {ordinal}: {e}")))?;
    let mut name = [0 as c_char; 256];
    // SAFETY: as above.
    let named = unsafe { (api.hipDeviceGetName)(name.as_mut_ptr(), name.len() as c_int, d) } == ffi::HIP_SUCCESS;
    let name = if named { c_buf_str(&name).unwrap_or_default() } else { String::new() };
    let mut wait = 0;
    // SAFETY: `wait` is a writable int; the attribute id is from hip_runtime_api.h.
    let wait_ok = unsafe { (api.hipDeviceGetAttribute)(&mut wait, ffi::HIP_ATTR_CAN_USE_STREAM_WAIT_VALUE, d) };
    Ok(HipDevice { ordinal, name, pci, stream_wait_value: wait_ok == ffi::HIP_SUCCESS && wait != 0 })
}

/// Makes `ordinal` the calling thread's current device (HIP's per-thread device state).
pub fn set_device(ordinal: usize) -> Result<(), GpuError> {
    let api = ffi::hip()?;
    // SAFETY: plain int argument.
    check("hipSetDevice", unsafe { (api.hipSetDevice)(ordinal as c_int) })
}

/// Whether device `a` can access device `b`'s memory (`hipDeviceCanAccessPeer`).
pub fn can_access_peer(a: usize, b: usize) -> Result<bool, GpuError> {
    let api = ffi::hip()?;
    let mut can = 0;
    // SAFETY: `can` is a writable int.
    check("hipDeviceCanAccessPeer", unsafe { (api.hipDeviceCanAccessPeer)(&mut can, a as c_int, b as c_int) })?;
    Ok(can != 0)
}

/// Checks both directions and enables peer access each way. Without it `hipMemcpyPeerAsync`
/// stages through host memory and would measure the wrong link, so a pair that cannot reach
/// each other is [`Unavailable::NoPeerAccess`] (a waiver).
pub fn enable_peer_pair(a: usize, b: usize) -> Result<(), GpuError> {
    if a == b {
        return Err(GpuError::Invalid(format!("peer copy needs two different GPUs, got {a} twice")));
    }
    if !can_access_peer(a, b)? || !can_access_peer(b, a)? {
        return Err(Unavailable::NoPeerAccess { a, b }.into());
    }
    let api = ffi::hip()?;
    for (from, to) in [(a, b), (b, a)] {
        set_device(from)?;
        // SAFETY: plain arguments; flags must be 0.
        match unsafe { (api.hipDeviceEnablePeerAccess)(to as c_int, 0) } {
            ffi::HIP_SUCCESS | ffi::HIP_ERROR_PEER_ACCESS_ALREADY_ENABLED => {}
            rc => check("hipDeviceEnablePeerAccess", rc)?,
        }
    }
    Ok(())
}

/// The NUMA node of HIP device `ordinal` (its PCI function's `numa_node` in sysfs).
pub fn numa_node(ordinal: usize) -> Option<u32> {
    let dev = enumerate().ok()?.into_iter().find(|d| d.ordinal == ordinal)?;
    crate::rdma::numa::pci_numa_node(std::path::Path::new("/sys"), &dev.pci.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::device::{ordinal_of, GpuSelector};

    fn dev(ordinal: usize, bus: &str) -> HipDevice {
        HipDevice { ordinal, name: "AMD Instinct MI250X".into(), pci: bus.parse().unwrap(), stream_wait_value: true }
    }

    #[test]
    fn hip_bus_ids_parse_and_match_discovery() {
        // hipDeviceGetPCIBusId writes `0000:c1:00.0` (domain, lower case); hwloc writes the same.
        let c: Vec<c_char> = b"0000:c1:00.0\0garbage".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_buf_str(&c).as_deref(), Some("0000:c1:00.0"));
        assert_eq!(c_buf_str(&[b'x' as c_char; 4]), None, "no NUL, no string");
        // HIP's order is not the bus order (HIP_VISIBLE_DEVICES, or ROCm's own numbering).
        let devs = vec![dev(0, "0000:d1:00.0"), dev(1, "0000:c1:00.0"), dev(2, "0000:c6:00.0")];
        assert_eq!(ordinal_of(&devs, "c1:00.0".parse().unwrap()), Some(1));
        assert_eq!(ordinal_of(&devs, "0000:D1:00.0".parse().unwrap()), Some(0));
        assert_eq!(ordinal_of(&devs, "0000:de:00.0".parse().unwrap()), None);
        // Spec GPU n is the n-th by bus id: c1 (ordinal 1), c6 (2), d1 (0).
        let by = |n| GpuSelector::BusOrder { by_bus: n }.resolve(&devs).unwrap();
        assert_eq!([by(0), by(1), by(2)], [1, 2, 0]);
        assert!(GpuSelector::Bus("0000:de:00.0".parse().unwrap()).resolve(&devs).is_err());
    }

    #[test]
    fn without_rocm_every_entry_point_is_the_library_waiver() {
        if ffi::hip().is_ok() {
            return; // a ROCm host
        }
        let want = Unavailable::HipLibrary { library: "libamdhip64.so" };
        assert_eq!(hip_status(), Err(want.clone()));
        assert!(matches!(enumerate(), Err(GpuError::Unavailable(u)) if u == want));
        assert!(matches!(enable_peer_pair(0, 1), Err(GpuError::Unavailable(u)) if u == want));
        assert!(matches!(enable_peer_pair(0, 0), Err(GpuError::Invalid(_))));
        assert_eq!(numa_node(0), None);
    }
}
