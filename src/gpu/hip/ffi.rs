//! The HIP runtime (`libamdhip64.so`) and the HSA runtime's dmabuf export
//! (`libhsa-runtime64.so`), opened at run time with `dlopen` (libc, as the NIXL loader does;
//! no new dependency, no ROCm at build time). Only the calls linkcal makes are in the table;
//! each signature is copied from the ROCm headers named beside it
//! (`include/hip/hip_runtime_api.h` of ROCm/HIP, `hsa_ext_amd.h` of ROCm/ROCR-Runtime).
//! A missing library is [`Unavailable::HipLibrary`]; a missing symbol (a ROCm older than the
//! call) is [`Unavailable::HipSymbol`]. Neither is ever a loader error.
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use crate::gpu::dl::Lib;
use crate::gpu::Unavailable;

/// `hipError_t` (an int enum).
pub type hipError_t = c_int;
/// `hipStream_t` (opaque pointer).
pub type hipStream_t = *mut c_void;
/// `hipEvent_t` (opaque pointer).
pub type hipEvent_t = *mut c_void;
/// `hsa_status_t` (an int enum; 0 is `HSA_STATUS_SUCCESS`).
pub type hsa_status_t = c_int;

/// `hipSuccess`.
pub const HIP_SUCCESS: hipError_t = 0;
/// `hipErrorNoDevice`.
pub const HIP_ERROR_NO_DEVICE: hipError_t = 100;
/// `hipErrorNotReady` (hipEventQuery: not yet complete).
pub const HIP_ERROR_NOT_READY: hipError_t = 600;
/// `hipErrorPeerAccessAlreadyEnabled`.
pub const HIP_ERROR_PEER_ACCESS_ALREADY_ENABLED: hipError_t = 704;
/// `hipStreamNonBlocking`: the stream does not synchronise with the null stream.
pub const HIP_STREAM_NON_BLOCKING: c_uint = 0x1;
/// `hipHostMallocPortable`: pinned for every device, not only the current one.
pub const HIP_HOST_MALLOC_PORTABLE: c_uint = 0x1;
/// `hipHostMallocNonCoherent`: cached on the host, not coherent with the GPU during kernels.
pub const HIP_HOST_MALLOC_NON_COHERENT: c_uint = 0x8000_0000;
/// `hipMallocSignalMemory` (hipExtMallocWithFlags): memory backed by an HSA signal, the kind
/// `hipStreamWaitValue32` is documented for.
pub const HIP_MALLOC_SIGNAL_MEMORY: c_uint = 0x2;
/// `hipStreamWaitValueGte`: wait until `*ptr >= value` (after the mask).
pub const HIP_STREAM_WAIT_VALUE_GTE: c_uint = 0x0;
/// `hipMemcpyHostToDevice`.
pub const HIP_MEMCPY_HOST_TO_DEVICE: c_int = 1;
/// `hipMemcpyDeviceToHost`.
pub const HIP_MEMCPY_DEVICE_TO_HOST: c_int = 2;
/// `hipDeviceAttributeCanUseStreamWaitValue` (AMD-specific range, `hipDeviceAttributeAmdSpecificBegin` + 13).
pub const HIP_ATTR_CAN_USE_STREAM_WAIT_VALUE: c_int = 10013;

/// Library names tried in order: the unversioned development link, then the ROCm 6 and 5
/// sonames, then `$ROCM_PATH/lib` and `/opt/rocm/lib` for hosts whose loader path lacks ROCm.
fn candidates(base: &str) -> Vec<String> {
    let mut v = vec![format!("{base}.so"), format!("{base}.so.6"), format!("{base}.so.5")];
    for root in [std::env::var("ROCM_PATH").ok(), Some("/opt/rocm".to_string())].into_iter().flatten() {
        v.push(format!("{root}/lib/{base}.so"));
    }
    v
}

/// Declares the table and its loader: each entry is `name: fn(args) -> ret` with the C name.
macro_rules! table {
    ($(#[$m:meta])* $ty:ident from $lib:literal { $($(#[$fm:meta])* $f:ident: fn($($a:ty),*) -> $r:ty;)* }) => {
        $(#[$m])*
        pub struct $ty { $($(#[$fm])* pub $f: unsafe extern "C" fn($($a),*) -> $r,)* }
        impl $ty {
            fn load() -> Result<$ty, Unavailable> {
                let lib = Lib::open(&candidates($lib)).ok_or(Unavailable::HipLibrary { library: concat!($lib, ".so") })?;
                // SAFETY: each symbol is transmuted to the signature its ROCm header declares
                // (cited on the field); a wrong signature would be undefined behaviour, so the
                // list is kept to the calls used and each one is checked against the header.
                Ok($ty { $($f: unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($a),*) -> $r>(lib.sym(stringify!($f)).ok_or_else(|| Unavailable::HipSymbol(stringify!($f).into()))?) },)* })
            }
        }
    };
}

table! {
    /// The HIP runtime calls linkcal makes (signatures from `hip/hip_runtime_api.h`).
    Hip from "libamdhip64" {
        /// `hipError_t hipInit(unsigned int flags);`
        hipInit: fn(c_uint) -> hipError_t;
        /// `hipError_t hipGetDeviceCount(int* count);`
        hipGetDeviceCount: fn(*mut c_int) -> hipError_t;
        /// `hipError_t hipDriverGetVersion(int* driverVersion);`
        hipDriverGetVersion: fn(*mut c_int) -> hipError_t;
        /// `const char* hipGetErrorName(hipError_t hip_error);`
        hipGetErrorName: fn(hipError_t) -> *const c_char;
        /// `hipError_t hipDeviceGetPCIBusId(char* pciBusId, int len, int device);`
        hipDeviceGetPCIBusId: fn(*mut c_char, c_int, c_int) -> hipError_t;
        /// `hipError_t hipDeviceGetName(char* name, int len, hipDevice_t device);`
        hipDeviceGetName: fn(*mut c_char, c_int, c_int) -> hipError_t;
        /// `hipError_t hipDeviceGetAttribute(int* pi, hipDeviceAttribute_t attr, int deviceId);`
        hipDeviceGetAttribute: fn(*mut c_int, c_int, c_int) -> hipError_t;
        /// `hipError_t hipSetDevice(int deviceId);`
        hipSetDevice: fn(c_int) -> hipError_t;
        /// `hipError_t hipDeviceCanAccessPeer(int* canAccessPeer, int deviceId, int peerDeviceId);`
        hipDeviceCanAccessPeer: fn(*mut c_int, c_int, c_int) -> hipError_t;
        /// `hipError_t hipDeviceEnablePeerAccess(int peerDeviceId, unsigned int flags);`
        hipDeviceEnablePeerAccess: fn(c_int, c_uint) -> hipError_t;
        /// `hipError_t hipMalloc(void** ptr, size_t size);`
        hipMalloc: fn(*mut *mut c_void, usize) -> hipError_t;
        /// `hipError_t hipExtMallocWithFlags(void** ptr, size_t sizeBytes, unsigned int flags);`
        hipExtMallocWithFlags: fn(*mut *mut c_void, usize, c_uint) -> hipError_t;
        /// `hipError_t hipFree(void* ptr);`
        hipFree: fn(*mut c_void) -> hipError_t;
        /// `hipError_t hipMemset(void* dst, int value, size_t sizeBytes);`
        hipMemset: fn(*mut c_void, c_int, usize) -> hipError_t;
        /// `hipError_t hipHostMalloc(void** ptr, size_t size, unsigned int flags);`
        hipHostMalloc: fn(*mut *mut c_void, usize, c_uint) -> hipError_t;
        /// `hipError_t hipHostFree(void* ptr);`
        hipHostFree: fn(*mut c_void) -> hipError_t;
        /// `hipError_t hipStreamCreateWithFlags(hipStream_t* stream, unsigned int flags);`
        hipStreamCreateWithFlags: fn(*mut hipStream_t, c_uint) -> hipError_t;
        /// `hipError_t hipStreamDestroy(hipStream_t stream);`
        hipStreamDestroy: fn(hipStream_t) -> hipError_t;
        /// `hipError_t hipStreamSynchronize(hipStream_t stream);`
        hipStreamSynchronize: fn(hipStream_t) -> hipError_t;
        /// `hipError_t hipStreamWaitValue32(hipStream_t stream, void* ptr, uint32_t value, unsigned int flags, uint32_t mask);`
        hipStreamWaitValue32: fn(hipStream_t, *mut c_void, u32, c_uint, u32) -> hipError_t;
        /// `hipError_t hipStreamWriteValue32(hipStream_t stream, void* ptr, uint32_t value, unsigned int flags);`
        hipStreamWriteValue32: fn(hipStream_t, *mut c_void, u32, c_uint) -> hipError_t;
        /// `hipError_t hipEventCreate(hipEvent_t* event);`
        hipEventCreate: fn(*mut hipEvent_t) -> hipError_t;
        /// `hipError_t hipEventDestroy(hipEvent_t event);`
        hipEventDestroy: fn(hipEvent_t) -> hipError_t;
        /// `hipError_t hipEventRecord(hipEvent_t event, hipStream_t stream);`
        hipEventRecord: fn(hipEvent_t, hipStream_t) -> hipError_t;
        /// `hipError_t hipEventSynchronize(hipEvent_t event);`
        hipEventSynchronize: fn(hipEvent_t) -> hipError_t;
        /// `hipError_t hipEventQuery(hipEvent_t event);`
        hipEventQuery: fn(hipEvent_t) -> hipError_t;
        /// `hipError_t hipEventElapsedTime(float* ms, hipEvent_t start, hipEvent_t stop);`
        hipEventElapsedTime: fn(*mut f32, hipEvent_t, hipEvent_t) -> hipError_t;
        /// `hipError_t hipMemcpyPeerAsync(void* dst, int dstDeviceId, const void* src, int srcDevice, size_t sizeBytes, hipStream_t stream);`
        hipMemcpyPeerAsync: fn(*mut c_void, c_int, *const c_void, c_int, usize, hipStream_t) -> hipError_t;
        /// `hipError_t hipMemcpyAsync(void* dst, const void* src, size_t sizeBytes, hipMemcpyKind kind, hipStream_t stream);`
        hipMemcpyAsync: fn(*mut c_void, *const c_void, usize, c_int, hipStream_t) -> hipError_t;
    }
}

table! {
    /// The HSA runtime's dmabuf export (signatures from `hsa/hsa_ext_amd.h`, ROCm 5.6+).
    Hsa from "libhsa-runtime64" {
        /// `hsa_status_t hsa_init();` (reference counted: HIP has already initialised it).
        hsa_init: fn() -> hsa_status_t;
        /// `hsa_status_t hsa_amd_portable_export_dmabuf(const void* ptr, size_t size, int* dmabuf, uint64_t* offset);`
        hsa_amd_portable_export_dmabuf: fn(*const c_void, usize, *mut c_int, *mut u64) -> hsa_status_t;
        /// `hsa_status_t hsa_amd_portable_close_dmabuf(int dmabuf);`
        hsa_amd_portable_close_dmabuf: fn(c_int) -> hsa_status_t;
    }
}

/// The HIP table, loaded once per process (a failure is remembered: the library will not
/// appear mid-run).
pub fn hip() -> Result<&'static Hip, Unavailable> {
    static HIP: OnceLock<Result<Hip, Unavailable>> = OnceLock::new();
    HIP.get_or_init(Hip::load).as_ref().map_err(Clone::clone)
}

/// The HSA dmabuf table, loaded once per process.
pub fn hsa() -> Result<&'static Hsa, Unavailable> {
    static HSA: OnceLock<Result<Hsa, Unavailable>> = OnceLock::new();
    HSA.get_or_init(Hsa::load).as_ref().map_err(Clone::clone)
}

/// The enumerator name of a HIP error (`hipErrorOutOfMemory`), or its number when the runtime
/// gives none.
pub fn error_name(api: &Hip, code: hipError_t) -> String {
    // SAFETY: hipGetErrorName returns a pointer to a static NUL-terminated string (or null).
    let p = unsafe { (api.hipGetErrorName)(code) };
    if p.is_null() {
        return format!("hipError {code}");
    }
    // SAFETY: non-null, NUL-terminated, static (owned by the runtime).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_candidates_start_with_the_plain_name_and_end_in_rocm() {
        let c = candidates("libamdhip64");
        assert_eq!(c[0], "libamdhip64.so");
        assert!(c.contains(&"libamdhip64.so.6".to_string()));
        assert_eq!(c.last().unwrap(), "/opt/rocm/lib/libamdhip64.so");
    }

    #[test]
    fn a_missing_library_is_a_waiver_naming_it() {
        if hip().is_ok() {
            return; // a ROCm host: the hardware smoke test covers it
        }
        assert_eq!(hip().err().unwrap().to_string(), "libamdhip64.so not found");
        // Asking again does not retry or panic.
        assert!(hip().is_err());
    }
}
