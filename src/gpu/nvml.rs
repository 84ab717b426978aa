//! NVML (`libnvidia-ml.so.1`, installed with every NVIDIA driver) opened at run time with
//! `dlopen`, for the one question CUDA cannot answer: does a peer copy between two GPUs run
//! over NVLink (directly or through NVSwitch) or over PCIe, and if PCIe, how far up the tree
//! (`nvidia-smi topo -m` asks NVML the same). Only the calls used are in the table; each
//! signature is copied from `nvml.h` (CUDA 12 toolkit, `targets/x86_64-linux/include/nvml.h`)
//! and quoted beside it. A missing library or symbol is an [`NvmlError`], never a loader
//! error; the catalogue turns it into a waiver or falls back to a topology file.
//!
//! [`pair_facts`] only gathers what NVML says about a pair ([`PairFacts`], plain data); the
//! decision (NVLink, switch-local PCIe, across the root complex) is made device-free in
//! `hwprobe::peer` (above this room).
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::gpu::dl::Lib;
use crate::gpu::PciAddr;

/// `nvmlReturn_t` (an int enum; 0 is `NVML_SUCCESS`).
pub type nvmlReturn_t = c_int;
/// `nvmlDevice_t` (`struct nvmlDevice_st*`, opaque).
pub type nvmlDevice_t = *mut c_void;

/// `NVML_SUCCESS`.
pub const NVML_SUCCESS: nvmlReturn_t = 0;
/// `NVML_FEATURE_ENABLED` (`nvmlEnableState_t`).
pub const NVML_FEATURE_ENABLED: c_int = 1;
/// `NVML_P2P_CAPS_INDEX_NVLINK` (`nvmlGpuP2PCapsIndex_t`): P2P over NVLink, direct or via NVSwitch.
pub const NVML_P2P_CAPS_INDEX_NVLINK: c_int = 2;
/// `NVML_P2P_STATUS_OK` (`nvmlGpuP2PStatus_t`).
pub const NVML_P2P_STATUS_OK: c_int = 0;
/// `NVML_NVLINK_DEVICE_TYPE_GPU` (`nvmlIntNvLinkDeviceType_t`).
pub const NVML_NVLINK_DEVICE_TYPE_GPU: c_int = 0x00;
/// `NVML_NVLINK_DEVICE_TYPE_SWITCH`.
pub const NVML_NVLINK_DEVICE_TYPE_SWITCH: c_int = 0x02;
/// `NVML_NVLINK_MAX_LINKS` (18 since Hopper; older GPUs report fewer and fail the rest).
pub const NVML_NVLINK_MAX_LINKS: c_uint = 18;

/// `nvmlGpuTopologyLevel_t`: `NVML_TOPOLOGY_INTERNAL` (one board).
pub const NVML_TOPOLOGY_INTERNAL: c_int = 0;
/// `NVML_TOPOLOGY_SINGLE`: one PCIe switch between them.
pub const NVML_TOPOLOGY_SINGLE: c_int = 10;
/// `NVML_TOPOLOGY_MULTIPLE`: several PCIe switches, no host bridge.
pub const NVML_TOPOLOGY_MULTIPLE: c_int = 20;
/// `NVML_TOPOLOGY_HOSTBRIDGE`: through one CPU host bridge.
pub const NVML_TOPOLOGY_HOSTBRIDGE: c_int = 30;
/// `NVML_TOPOLOGY_NODE`: across host bridges of one NUMA node.
pub const NVML_TOPOLOGY_NODE: c_int = 40;
/// `NVML_TOPOLOGY_SYSTEM`: across NUMA nodes (the SMP interconnect).
pub const NVML_TOPOLOGY_SYSTEM: c_int = 50;

/// `nvmlPciInfo_t` as `nvml.h` declares it since the v2 PCI info (`busIdLegacy` first), the
/// layout `nvmlDeviceGetNvLinkRemotePciInfo_v2` fills.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nvmlPciInfo_t {
    /// `char busIdLegacy[NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE]` (16).
    pub busIdLegacy: [c_char; 16],
    /// `unsigned int domain`.
    pub domain: c_uint,
    /// `unsigned int bus` (0 to 0xff).
    pub bus: c_uint,
    /// `unsigned int device` (0 to 31).
    pub device: c_uint,
    /// `unsigned int pciDeviceId` (device id << 16 | vendor id).
    pub pciDeviceId: c_uint,
    /// `unsigned int pciSubSystemId`.
    pub pciSubSystemId: c_uint,
    /// `char busId[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE]` (32).
    pub busId: [c_char; 32],
}

/// Why NVML gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlError {
    /// The library is not on the loader path.
    #[error("{library} not found (NVML ships with the NVIDIA driver)")]
    Library {
        /// The soname tried first.
        library: &'static str,
    },
    /// A call the driver's NVML does not export (a driver older than the call).
    #[error("NVML has no {0} (driver too old)")]
    Symbol(&'static str),
    /// A call returned an error.
    #[error("{call} failed: {name}")]
    Call {
        /// The NVML call.
        call: &'static str,
        /// `nvmlErrorString`'s text, or the number.
        name: String,
    },
}

/// `nvmlInit_v2`'s type.
type InitFn = unsafe extern "C" fn() -> nvmlReturn_t;
/// `nvmlErrorString`'s type.
type ErrorStringFn = unsafe extern "C" fn(nvmlReturn_t) -> *const c_char;
/// `nvmlDeviceGetHandleByPciBusId_v2`'s type.
type HandleFn = unsafe extern "C" fn(*const c_char, *mut nvmlDevice_t) -> nvmlReturn_t;
/// The type of `nvmlDeviceGetNvLinkState` and `nvmlDeviceGetNvLinkRemoteDeviceType` (an int enum out).
type LinkEnumFn = unsafe extern "C" fn(nvmlDevice_t, c_uint, *mut c_int) -> nvmlReturn_t;
/// `nvmlDeviceGetNvLinkRemotePciInfo_v2`'s type.
type RemotePciFn = unsafe extern "C" fn(nvmlDevice_t, c_uint, *mut nvmlPciInfo_t) -> nvmlReturn_t;
/// `nvmlDeviceGetTopologyCommonAncestor`'s type.
type AncestorFn = unsafe extern "C" fn(nvmlDevice_t, nvmlDevice_t, *mut c_int) -> nvmlReturn_t;
/// `nvmlDeviceGetP2PStatus`'s type.
type P2pFn = unsafe extern "C" fn(nvmlDevice_t, nvmlDevice_t, c_int, *mut c_int) -> nvmlReturn_t;

/// The NVML calls linkcal makes (signatures from `nvml.h`).
pub struct Nvml {
    /// `nvmlReturn_t nvmlInit_v2(void);`
    init: InitFn,
    /// `const char* nvmlErrorString(nvmlReturn_t result);`
    error_string: ErrorStringFn,
    /// `nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device);`
    handle_by_bus_id: HandleFn,
    /// `nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive);`
    nvlink_state: LinkEnumFn,
    /// `nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci);`
    nvlink_remote_pci: RemotePciFn,
    /// `nvmlReturn_t nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link, nvmlIntNvLinkDeviceType_t *pNvLinkDeviceType);`
    /// (R460 and later; `None` before.)
    nvlink_remote_type: Option<LinkEnumFn>,
    /// `nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuTopologyLevel_t *pathInfo);`
    common_ancestor: AncestorFn,
    /// `nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuP2PCapsIndex_t p2pIndex, nvmlGpuP2PStatus_t *p2pStatus);`
    p2p_status: P2pFn,
}

/// Sonames tried: the driver's runtime name first (no `-dev` package gives the bare `.so`).
pub const CANDIDATES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// Transmutes symbol `$name` of `$lib` to the function-pointer type of the field it fills.
macro_rules! sym {
    ($lib:expr, $name:literal, $ty:ty) => {{
        let p = $lib.sym($name).ok_or(NvmlError::Symbol($name))?;
        // SAFETY: the symbol is the NVML entry point whose `nvml.h` signature is quoted on the
        // field this fills; the function-pointer type is that signature.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

impl Nvml {
    fn load() -> Result<Nvml, NvmlError> {
        let lib = Lib::open(&CANDIDATES).ok_or(NvmlError::Library { library: CANDIDATES[0] })?;
        let optional = lib.sym("nvmlDeviceGetNvLinkRemoteDeviceType").map(|p| {
            // SAFETY: as in `sym!`: the signature quoted on `nvlink_remote_type`.
            unsafe { std::mem::transmute::<*mut c_void, LinkEnumFn>(p) }
        });
        let n = Nvml {
            init: sym!(lib, "nvmlInit_v2", InitFn),
            error_string: sym!(lib, "nvmlErrorString", ErrorStringFn),
            handle_by_bus_id: sym!(lib, "nvmlDeviceGetHandleByPciBusId_v2", HandleFn),
            nvlink_state: sym!(lib, "nvmlDeviceGetNvLinkState", LinkEnumFn),
            nvlink_remote_pci: sym!(lib, "nvmlDeviceGetNvLinkRemotePciInfo_v2", RemotePciFn),
            nvlink_remote_type: optional,
            common_ancestor: sym!(lib, "nvmlDeviceGetTopologyCommonAncestor", AncestorFn),
            p2p_status: sym!(lib, "nvmlDeviceGetP2PStatus", P2pFn),
        };
        // SAFETY: nvmlInit_v2 takes no arguments; it is reference counted and never undone here.
        n.check("nvmlInit_v2", unsafe { (n.init)() })?;
        Ok(n)
    }

    fn check(&self, call: &'static str, rc: nvmlReturn_t) -> Result<(), NvmlError> {
        if rc == NVML_SUCCESS {
            return Ok(());
        }
        // SAFETY: nvmlErrorString returns a static NUL-terminated string (or null) for any code.
        let p = unsafe { (self.error_string)(rc) };
        let name = if p.is_null() {
            format!("NVML error {rc}")
        } else {
            // SAFETY: non-null, NUL-terminated and static (owned by the library).
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        Err(NvmlError::Call { call, name })
    }

    fn handle(&self, pci: PciAddr) -> Result<nvmlDevice_t, NvmlError> {
        let id = CString::new(pci.to_string()).expect("a PCI address has no NUL");
        let mut h: nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: `id` is a valid C string and `h` a valid out-pointer for the call.
        self.check("nvmlDeviceGetHandleByPciBusId_v2", unsafe { (self.handle_by_bus_id)(id.as_ptr(), &mut h) })?;
        Ok(h)
    }

    /// The far ends of `dev`'s active NVLinks (links the GPU lacks fail and are skipped).
    fn remote_ends(&self, dev: nvmlDevice_t) -> Vec<RemoteEnd> {
        let mut out = Vec::new();
        for link in 0..NVML_NVLINK_MAX_LINKS {
            let mut state: c_int = 0;
            // SAFETY: `dev` is a live handle from NVML; `state` is a valid out-pointer.
            if unsafe { (self.nvlink_state)(dev, link, &mut state) } != NVML_SUCCESS || state != NVML_FEATURE_ENABLED {
                continue;
            }
            let mut ty: c_int = -1;
            let typed = self.nvlink_remote_type.is_some_and(|f| {
                // SAFETY: as above; `ty` is a valid out-pointer.
                unsafe { f(dev, link, &mut ty) == NVML_SUCCESS }
            });
            if typed && ty == NVML_NVLINK_DEVICE_TYPE_SWITCH {
                out.push(RemoteEnd::Switch);
                continue;
            }
            // SAFETY: nvmlPciInfo_t is plain C data; all-zero is a valid value to be overwritten.
            let mut pci: nvmlPciInfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `dev` is live and `pci` a valid out-pointer of the v2 layout.
            if unsafe { (self.nvlink_remote_pci)(dev, link, &mut pci) } != NVML_SUCCESS {
                out.push(RemoteEnd::Unknown);
                continue;
            }
            let addr = PciAddr { domain: pci.domain, bus: pci.bus as u8, device: pci.device as u8, function: 0 };
            out.push(if !typed || ty == NVML_NVLINK_DEVICE_TYPE_GPU { RemoteEnd::Device(addr) } else { RemoteEnd::Unknown });
        }
        out
    }
}

/// The far end of one active NVLink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteEnd {
    /// A device at this PCI address (a GPU; on drivers without the device-type call, possibly
    /// an NVSwitch or NPU).
    Device(PciAddr),
    /// An NVSwitch.
    Switch,
    /// Something NVML would not describe.
    Unknown,
}

/// What NVML says about GPU pair (a, b); plain data, decided on in `hwprobe::peer` (above this room).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PairFacts {
    /// `nvmlDeviceGetP2PStatus(a, b, NVML_P2P_CAPS_INDEX_NVLINK)` is `NVML_P2P_STATUS_OK`
    /// (`None`: the call failed).
    pub p2p_nvlink: Option<bool>,
    /// The far ends of a's active NVLinks.
    pub links_a: Vec<RemoteEnd>,
    /// `nvmlDeviceGetTopologyCommonAncestor(a, b)` (`nvmlGpuTopologyLevel_t`; `None`: failed).
    pub ancestor: Option<i32>,
}

/// NVML, loaded and initialised once per process (a failure is remembered).
pub fn nvml() -> Result<&'static Nvml, NvmlError> {
    static NVML: OnceLock<Result<Nvml, NvmlError>> = OnceLock::new();
    NVML.get_or_init(Nvml::load).as_ref().map_err(Clone::clone)
}

/// Asks NVML about the pair at PCI addresses `a` and `b`.
pub fn pair_facts(a: PciAddr, b: PciAddr) -> Result<PairFacts, NvmlError> {
    let n = nvml()?;
    let (ha, hb) = (n.handle(a)?, n.handle(b)?);
    let mut status: c_int = -1;
    // SAFETY: both handles are live; `status` is a valid out-pointer.
    let p2p = unsafe { (n.p2p_status)(ha, hb, NVML_P2P_CAPS_INDEX_NVLINK, &mut status) };
    let mut level: c_int = -1;
    // SAFETY: as above; `level` is a valid out-pointer.
    let anc = unsafe { (n.common_ancestor)(ha, hb, &mut level) };
    Ok(PairFacts {
        p2p_nvlink: (p2p == NVML_SUCCESS).then_some(status == NVML_P2P_STATUS_OK),
        links_a: n.remote_ends(ha),
        ancestor: (anc == NVML_SUCCESS).then_some(level),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_info_has_the_nvml_h_layout() {
        // 16 legacy id bytes, five unsigned ints, 32 id bytes: 68 bytes, 4-aligned, `domain` at 16.
        assert_eq!(std::mem::size_of::<nvmlPciInfo_t>(), 16 + 5 * 4 + 32);
        assert_eq!(std::mem::offset_of!(nvmlPciInfo_t, domain), 16);
        assert_eq!(std::mem::offset_of!(nvmlPciInfo_t, busId), 36);
    }

    #[test]
    fn without_the_driver_nvml_is_a_named_error() {
        if nvml().is_ok() {
            return; // an NVIDIA host: the hardware smoke test covers it
        }
        let e = nvml().err().unwrap();
        if let NvmlError::Library { library } = e {
            assert_eq!(library, "libnvidia-ml.so.1");
            assert_eq!(e.to_string(), "libnvidia-ml.so.1 not found (NVML ships with the NVIDIA driver)");
        }
        let a: PciAddr = "0000:1b:00.0".parse().unwrap();
        assert!(pair_facts(a, a).is_err(), "no facts without NVML");
    }
}
