//! GPU backends. CUDA (cudarc driver API, loaded at run time): device enumeration matched by PCI bus
//! id, peer access, device and pinned host buffers, dmabuf export, a spin-kernel start gate and
//! event-timed copy-engine copies (peer, H2D, D2H), plus the double-buffered staging pipeline
//! of the GPU-staged TCP path. AMD GPUs use [`hip`], the same pieces over the HIP runtime,
//! also loaded at run time, so one binary serves both vendors.
//!
//! Nothing here needs a CUDA toolkit at build time. At run time every entry point first calls
//! [`driver_status`], which checks that `libcuda.so` can be loaded before touching any cudarc
//! function (cudarc panics instead of returning an error when the library is missing).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cache;
pub mod copy;
pub mod device;
pub mod dl;
pub mod gate;
pub mod hip;
pub mod memory;
pub mod nvml;
/// PCI addresses: moved down to [`crate::pci`] (the RDMA backend uses them too); this path stays.
pub use crate::pci;
pub mod staging;

use cudarc::driver::{result::DriverError, sys};

pub use device::{enumerate, CudaDevice};
pub use pci::PciAddr;

/// A CUDA call that failed: which call, and the driver's error name.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A driver call returned an error.
    #[error("{call} failed: {name}")]
    Driver {
        /// The driver call, e.g. `cuMemAlloc`.
        call: &'static str,
        /// The driver's error name, e.g. `CUDA_ERROR_OUT_OF_MEMORY`.
        name: String,
    },
    /// The device or its driver is not there or not usable (a waiver, not a failure).
    #[error("{0}")]
    Unavailable(#[from] Unavailable),
    /// A caller asked for something impossible (zero-length buffer, unknown ordinal).
    #[error("{0}")]
    Invalid(String),
    /// The start gate released but a copy did not finish in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long, seconds.
        seconds: f64,
    },
    /// Host I/O inside a GPU pipeline (the TCP side of the staged path).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl GpuError {
    /// Wraps a cudarc error with the name of the call that returned it.
    pub fn driver(call: &'static str, e: DriverError) -> GpuError {
        GpuError::Driver { call, name: error_name(e.0) }
    }
}

/// Extension to name the failing call on a cudarc result.
pub trait CallContext<T> {
    /// Maps the error to [`GpuError::Driver`] naming `call`.
    fn call(self, call: &'static str) -> Result<T, GpuError>;
}

impl<T> CallContext<T> for Result<T, DriverError> {
    fn call(self, call: &'static str) -> Result<T, GpuError> {
        self.map_err(|e| GpuError::driver(call, e))
    }
}

/// The enum name of a `CUresult` (its `Debug` form is the C enumerator, e.g.
/// `CUDA_ERROR_NO_DEVICE`). Needs no driver call, so it works in error paths of any state.
pub fn error_name(code: sys::CUresult) -> String {
    format!("{code:?}")
}

/// Why a GPU probe does not apply on this machine. Each is reported as a waiver with its
/// message, never as a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The CUDA driver library cannot be loaded.
    #[error("libcuda.so not found")]
    NoLibrary,
    /// `cuInit` failed (no kernel driver loaded, or driver/library mismatch).
    #[error("CUDA driver did not initialise: {0}")]
    InitFailed(String),
    /// The driver loaded but sees no device.
    #[error("no CUDA device")]
    NoDevice,
    /// Fewer GPUs than the probe needs.
    #[error("needs {need} CUDA GPUs, found {have}")]
    TooFewGpus {
        /// GPUs needed.
        need: usize,
        /// GPUs found.
        have: usize,
    },
    /// A GPU index beyond the devices present.
    #[error("GPU {index} does not exist (found {have} CUDA GPUs)")]
    NoSuchGpu {
        /// Index asked for.
        index: usize,
        /// GPUs found.
        have: usize,
    },
    /// The two GPUs of a P2P probe cannot reach each other directly.
    #[error("GPU {a} and {b} cannot access each other as peers")]
    NoPeerAccess {
        /// First GPU ordinal.
        a: usize,
        /// Second GPU ordinal.
        b: usize,
    },
    /// A HIP or HSA runtime library cannot be loaded (`libamdhip64.so`, `libhsa-runtime64.so`).
    #[error("{library} not found")]
    HipLibrary {
        /// The library's plain name.
        library: &'static str,
    },
    /// The ROCm runtime lacks a call linkcal makes (older than ROCm 6.0).
    #[error("the ROCm runtime lacks {0}; install ROCm 6.0 or later")]
    HipSymbol(String),
    /// `hipInit` failed (no amdgpu/KFD kernel driver, or no permission on /dev/kfd).
    #[error("HIP runtime did not initialise: {0} (is the amdgpu driver loaded and /dev/kfd accessible?)")]
    HipInit(String),
    /// The HIP runtime loaded but sees no device.
    #[error("no HIP device")]
    HipNoDevice,
    /// Fewer AMD GPUs than the probe needs.
    #[error("needs {need} HIP GPUs, found {have}")]
    HipTooFew {
        /// GPUs needed.
        need: usize,
        /// GPUs found.
        have: usize,
    },
    /// Several copies must start together but the device cannot hold a stream on a value.
    #[error("no start gate on HIP device {device}: hipStreamWaitValue32 unsupported (hipDeviceAttributeCanUseStreamWaitValue = 0); run the copies one at a time")]
    NoStartGate {
        /// HIP ordinal.
        device: usize,
    },
    /// The installed driver lacks an entry point the probe needs (older than the CUDA 12.8 API
    /// cudarc was built against).
    #[error("the CUDA driver lacks a needed entry point ({0}); update the NVIDIA driver")]
    MissingSymbol(String),
}

/// What the driver offers: library present, initialised, device count, driver version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverInfo {
    /// CUDA devices visible.
    pub devices: usize,
    /// Driver API version as the driver reports it (e.g. 12080 for 12.8).
    pub version: i32,
}

/// Checks that the CUDA driver can be used, in the only safe order: library present, then
/// `cuInit`, then the device count. Never panics on a machine without CUDA.
pub fn driver_status() -> Result<DriverInfo, Unavailable> {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate library names and drops
    // the handles; loading libcuda runs its initialisers, which is what any CUDA program does.
    if !unsafe { sys::is_culib_present() } {
        return Err(Unavailable::NoLibrary);
    }
    guard_symbols(|| {
        if let Err(e) = cudarc::driver::result::init() {
            return match e.0 {
                sys::CUresult::CUDA_ERROR_NO_DEVICE => Err(Unavailable::NoDevice),
                code => Err(Unavailable::InitFailed(error_name(code))),
            };
        }
        let devices = match cudarc::driver::result::device::get_count() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) | Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => return Err(Unavailable::NoDevice),
            Err(e) => return Err(Unavailable::InitFailed(error_name(e.0))),
        };
        let mut version = 0;
        // SAFETY: `version` is a valid, writable c_int for the duration of the call.
        unsafe { sys::cuDriverGetVersion(&mut version) }.result().map_err(|e| Unavailable::InitFailed(error_name(e.0)))?;
        Ok(DriverInfo { devices, version })
    })
}

/// Runs `f`, turning cudarc's "Missing symbol" panic (a driver older than the API it was built
/// for) into [`Unavailable::MissingSymbol`]. Other panics propagate unchanged.
pub fn guard_symbols<T>(f: impl FnOnce() -> Result<T, Unavailable>) -> Result<T, Unavailable> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            match missing_symbol_name(&msg) {
                Some(sym) => Err(Unavailable::MissingSymbol(sym)),
                None => std::panic::resume_unwind(payload),
            }
        }
    }
}

/// The symbol named in cudarc's panic message `Missing symbol NAME: ...`, if it is one.
pub fn missing_symbol_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("Missing symbol ")?;
    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiver_reasons_read_as_the_issue_says() {
        assert_eq!(Unavailable::NoLibrary.to_string(), "libcuda.so not found");
        assert_eq!(Unavailable::NoPeerAccess { a: 0, b: 1 }.to_string(), "GPU 0 and 1 cannot access each other as peers");
        assert_eq!(Unavailable::HipLibrary { library: "libamdhip64.so" }.to_string(), "waived: libamdhip64.so not found"[8..]);
        assert_eq!(Unavailable::HipTooFew { need: 2, have: 1 }.to_string(), "needs 2 HIP GPUs, found 1");
        assert_eq!(Unavailable::TooFewGpus { need: 2, have: 1 }.to_string(), "needs 2 CUDA GPUs, found 1");
    }

    #[test]
    fn error_names_are_the_c_enumerators() {
        assert_eq!(error_name(sys::CUresult::CUDA_ERROR_NO_DEVICE), "CUDA_ERROR_NO_DEVICE");
        let e = GpuError::driver("cuMemAlloc", DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        assert_eq!(e.to_string(), "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY");
    }

    #[test]
    fn missing_symbol_panics_become_waivers() {
        assert_eq!(
            missing_symbol_name("Missing symbol cuMemGetHandleForAddressRange: undefined").as_deref(),
            Some("cuMemGetHandleForAddressRange")
        );
        assert_eq!(missing_symbol_name("index out of bounds"), None);
        let r: Result<(), _> = guard_symbols(|| panic!("Missing symbol cuFoo_v2: not found"));
        assert_eq!(r, Err(Unavailable::MissingSymbol("cuFoo_v2".into())));
        let other = std::panic::catch_unwind(|| guard_symbols::<()>(|| panic!("something else")));
        assert!(other.is_err(), "unrelated panics must propagate");
    }

    #[test]
    fn driver_status_never_panics_here() {
        // On a machine with no libcuda this is the waiver the probes report; with a driver it
        // is a device count. Either way it must return, not panic.
        match driver_status() {
            Err(Unavailable::NoLibrary) => {
                // SAFETY: only dlopen attempts, as in `driver_status`.
                let present = unsafe { sys::is_culib_present() };
                assert!(!present);
            }
            Err(other) => assert!(!other.to_string().is_empty()),
            Ok(info) => assert!(info.devices > 0),
        }
    }
}
