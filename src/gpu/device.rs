//! CUDA devices: enumeration with PCI bus ids (to match discovery), peer-access checks and
//! enabling, and the per-device facts a probe needs.

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext};

use super::{driver_status, error_name, CallContext, GpuError, PciAddr, Unavailable};

/// One CUDA device as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDevice {
    /// CUDA ordinal (the driver's order, not the bus order).
    pub ordinal: usize,
    /// Marketing name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// PCI address, used to match the device to discovery's GPUs.
    pub pci: PciAddr,
    /// Device memory, bytes.
    pub total_mem_bytes: u64,
    /// Whether the driver can export device memory as a dmabuf (for `ibv_reg_dmabuf_mr`).
    pub dmabuf: bool,
}

/// Every CUDA device, in ordinal order. Returns [`Unavailable`] (inside [`GpuError`]) when
/// there is no driver or no device.
pub fn enumerate() -> Result<Vec<CudaDevice>, GpuError> {
    let info = driver_status()?;
    (0..info.devices).map(describe).collect()
}

/// Describes device `ordinal` (the driver must be initialised: call [`driver_status`] first).
pub fn describe(ordinal: usize) -> Result<CudaDevice, GpuError> {
    let dev = result::device::get(ordinal as i32).call("cuDeviceGet")?;
    let name = result::device::get_name(dev).call("cuDeviceGetName")?;
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: `buf` is a writable array of `buf.len()` chars; the driver writes a
    // NUL-terminated string of at most that length.
    unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, dev) }.result().call("cuDeviceGetPCIBusId")?;
    let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
    let bus = std::ffi::CStr::from_bytes_until_nul(&bytes)
        .map_err(|_| GpuError::Invalid(format!("device {ordinal}: PCI bus id is not NUL-terminated")))?
        .to_string_lossy()
        .into_owned();
    let pci = bus.parse().map_err(|e| GpuError::Invalid(format!("device {ordinal}: {e}")))?;
    // SAFETY: `dev` is a valid device handle returned by cuDeviceGet above.
    let total_mem_bytes = unsafe { result::device::total_mem(dev) }.call("cuDeviceTotalMem")? as u64;
    // SAFETY: as above; the attribute is an int the driver fills in.
    let dmabuf = unsafe { result::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED) }
        .map(|v| v != 0)
        .unwrap_or(false);
    Ok(CudaDevice { ordinal, name, pci, total_mem_bytes, dmabuf })
}

/// A GPU as either backend enumerates it: its runtime ordinal and PCI address. Selectors
/// resolve against either vendor's list through it.
pub trait BusDevice {
    /// The runtime's ordinal (CUDA or HIP).
    fn ordinal(&self) -> usize;
    /// The PCI address.
    fn pci(&self) -> PciAddr;
}

impl BusDevice for CudaDevice {
    fn ordinal(&self) -> usize {
        self.ordinal
    }
    fn pci(&self) -> PciAddr {
        self.pci
    }
}

/// The runtime ordinal of the device at `pci`, if any.
pub fn ordinal_of<D: BusDevice>(devices: &[D], pci: PciAddr) -> Option<usize> {
    devices.iter().find(|d| d.pci() == pci).map(|d| d.ordinal())
}

/// Whether device `a` can access device `b`'s memory directly (cuDeviceCanAccessPeer).
pub fn can_access_peer(a: usize, b: usize) -> Result<bool, GpuError> {
    let da = result::device::get(a as i32).call("cuDeviceGet")?;
    let db = result::device::get(b as i32).call("cuDeviceGet")?;
    let mut can = 0;
    // SAFETY: `can` is a writable c_int; `da`, `db` are valid device handles.
    unsafe { sys::cuDeviceCanAccessPeer(&mut can, da, db) }.result().call("cuDeviceCanAccessPeer")?;
    Ok(can != 0)
}

/// Checks both directions and enables peer access from each context to the other. A pair
/// that cannot reach each other is [`Unavailable::NoPeerAccess`] (a waiver): without peer
/// access `cuMemcpyPeer` silently stages through host memory and would measure the wrong link.
pub fn enable_peer_pair(ca: &Arc<CudaContext>, cb: &Arc<CudaContext>) -> Result<(), GpuError> {
    let (a, b) = (ca.ordinal(), cb.ordinal());
    if a == b {
        return Err(GpuError::Invalid(format!("peer copy needs two different GPUs, got {a} twice")));
    }
    if !can_access_peer(a, b)? || !can_access_peer(b, a)? {
        return Err(Unavailable::NoPeerAccess { a, b }.into());
    }
    enable_peer(ca, cb)?;
    enable_peer(cb, ca)
}

/// Lets `from`'s context access `to`'s memory. Already-enabled is success.
fn enable_peer(from: &Arc<CudaContext>, to: &Arc<CudaContext>) -> Result<(), GpuError> {
    from.bind_to_thread().call("cuCtxSetCurrent")?;
    // SAFETY: `from` is current on this thread; `to.cu_ctx()` is a live context kept alive by
    // the Arc for the duration of the call. Flags must be 0.
    match unsafe { sys::cuCtxEnablePeerAccess(to.cu_ctx(), 0) } {
        sys::CUresult::CUDA_SUCCESS | sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED => Ok(()),
        code => Err(GpuError::Driver { call: "cuCtxEnablePeerAccess", name: error_name(code) }),
    }
}

/// The NUMA node of CUDA device `ordinal` (its PCI function's `numa_node` in sysfs), or
/// `None` when the driver or the platform does not say.
pub fn numa_node(ordinal: usize) -> Option<u32> {
    let dev = enumerate().ok()?.into_iter().find(|d| d.ordinal == ordinal)?;
    crate::rdma::numa::pci_numa_node(std::path::Path::new("/sys"), &dev.pci.to_string())
}

/// Each device's retained primary context, made once per run.
static CONTEXTS: super::cache::PerDevice<Arc<CudaContext>> = super::cache::PerDevice::new();

/// The primary context of each requested ordinal, checking they exist first, with cudarc's
/// event tracking off (timing loops order their own work). One context per device per run:
/// every flow on a device shares it.
pub fn contexts(ordinals: &[usize]) -> Result<Vec<Arc<CudaContext>>, GpuError> {
    let info = driver_status()?;
    let mut out = Vec::with_capacity(ordinals.len());
    for &o in ordinals {
        if o >= info.devices {
            return Err(Unavailable::NoSuchGpu { index: o, have: info.devices }.into());
        }
        let ctx = CONTEXTS.get_or_try_init(o, || {
            let ctx = CudaContext::new(o).call("cuDevicePrimaryCtxRetain")?;
            // SAFETY: linkcal never creates cudarc `CudaSlice`s; its buffers are raw allocations
            // ordered explicitly with streams and events, so cudarc's per-slice event tracking
            // (and the context-wide synchronise it does when the first extra stream is made,
            // which would wait on a held start gate) is not wanted.
            unsafe { ctx.disable_event_tracking() };
            Ok::<_, GpuError>(ctx)
        })?;
        out.push(ctx);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ordinals_by_bus_id_not_position() {
        let dev = |ordinal, bus: &str| CudaDevice {
            ordinal,
            name: "x".into(),
            pci: bus.parse().unwrap(),
            total_mem_bytes: 1,
            dmabuf: true,
        };
        // CUDA's default order is fastest-first, so ordinal 0 can sit on a later bus.
        let devs = vec![dev(0, "0000:b1:00.0"), dev(1, "0000:1b:00.0")];
        assert_eq!(ordinal_of(&devs, "1b:00.0".parse().unwrap()), Some(1));
        assert_eq!(ordinal_of(&devs, "00000000:B1:00.0".parse().unwrap()), Some(0));
        assert_eq!(ordinal_of(&devs, "0000:3b:00.0".parse().unwrap()), None);
    }

    #[test]
    fn enumerate_waives_without_a_driver() {
        match enumerate() {
            Ok(devs) => assert!(!devs.is_empty()),
            Err(GpuError::Unavailable(u)) => assert!(!u.to_string().is_empty()),
            Err(e) => panic!("a missing device must be Unavailable, got {e}"),
        }
    }
}

/// A GPU named in flow options: a CUDA ordinal (`0`), a PCI bus id (`"0000:1b:00.0"`), or
/// the n-th GPU in PCI order (`{"by_bus": n}`: spec GPU n as discovery numbers them). CUDA's
/// own ordinal order differs from the bus order, so the last two are the safe forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum GpuSelector {
    /// CUDA ordinal.
    Ordinal(usize),
    /// PCI address.
    Bus(PciAddr),
    /// Position in PCI address order.
    BusOrder {
        /// Index among the GPUs sorted by PCI address.
        by_bus: usize,
    },
}

impl GpuSelector {
    /// Reads `key` from a JSON options object: absent or null is `None`.
    pub fn from_options(options: &serde_json::Value, key: &str) -> Result<Option<GpuSelector>, GpuError> {
        match options.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
                GpuError::Invalid(format!(
                    "option '{key}' is {v}: expected a CUDA ordinal or a PCI bus id such as \"0000:1b:00.0\""
                ))
            }),
        }
    }

    /// The runtime ordinal (CUDA or HIP) among `devices`.
    pub fn resolve<D: BusDevice>(&self, devices: &[D]) -> Result<usize, GpuError> {
        match *self {
            GpuSelector::Ordinal(o) if o < devices.len() => Ok(o),
            GpuSelector::Ordinal(o) => Err(Unavailable::NoSuchGpu { index: o, have: devices.len() }.into()),
            GpuSelector::Bus(a) => ordinal_of(devices, a).ok_or_else(|| GpuError::Invalid(format!("no GPU at {a} on this host"))),
            GpuSelector::BusOrder { by_bus } => {
                let mut by: Vec<&D> = devices.iter().collect();
                by.sort_by_key(|d| d.pci());
                by.get(by_bus)
                    .map(|d| d.ordinal())
                    .ok_or_else(|| Unavailable::NoSuchGpu { index: by_bus, have: devices.len() }.into())
            }
        }
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    #[test]
    fn selectors_from_options() {
        let o = serde_json::json!({"src_gpu": 1, "dst_gpu": "0000:1B:00.0", "none": null, "bad": [1]});
        assert_eq!(GpuSelector::from_options(&o, "src_gpu").unwrap(), Some(GpuSelector::Ordinal(1)));
        assert_eq!(GpuSelector::from_options(&o, "dst_gpu").unwrap(), Some(GpuSelector::Bus("1b:00.0".parse().unwrap())));
        assert_eq!(GpuSelector::from_options(&o, "none").unwrap(), None);
        assert_eq!(GpuSelector::from_options(&o, "missing").unwrap(), None);
        assert!(GpuSelector::from_options(&o, "bad").unwrap_err().to_string().contains("option 'bad'"));
        let devs =
            vec![CudaDevice { ordinal: 0, name: "x".into(), pci: "b1:00.0".parse().unwrap(), total_mem_bytes: 1, dmabuf: false }];
        assert_eq!(GpuSelector::Bus("b1:00.0".parse().unwrap()).resolve(&devs).unwrap(), 0);
        assert!(GpuSelector::Bus("1b:00.0".parse().unwrap()).resolve(&devs).is_err());
        assert!(matches!(
            GpuSelector::Ordinal(3).resolve(&devs),
            Err(GpuError::Unavailable(Unavailable::NoSuchGpu { index: 3, have: 1 }))
        ));
    }
}
