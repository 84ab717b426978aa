//! Finding and loading NIXL's C API (`libnixl_capi.so`) at run time, and the environment
//! linkcal sets for UCX before the first NIXL agent exists.
//!
//! `nixl-sys` is built with its `stub-api` feature: every `nixl_capi_*` call goes through a
//! stub that `dlopen`s `libnixl_capi.so` by bare name on first use and **aborts the process**
//! if the library or a symbol is missing. So nothing may call into `nixl-sys` before
//! [`load`] succeeded: it looks for the library itself, loads it with `RTLD_GLOBAL` from a
//! full path (the stub's later bare-name `dlopen` then finds the loaded object by its
//! `SONAME`), and checks that every symbol the bindings use is exported. A miss is a
//! [`NixlLoadError`], which the transport reports as a waiver, never an abort.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library the `nixl-sys` stubs open.
pub const CAPI: &str = "libnixl_capi.so";

/// What to install when NIXL is missing.
pub const INSTALL_HINT: &str = "pip install --no-deps nixl-cu12==1.5.1 numpy into a venv, then set VIRTUAL_ENV \
     (or LINKCAL_NIXL_LIB to its site-packages/.nixl_cu12.mesonpy.libs)";

/// The NIXL major version the bindings (`nixl-sys` 1.5.2) are written against.
pub const NIXL_MAJOR: u32 = 1;

/// Every `nixl_capi_*` function the bindings declare (from `nixl-sys` 1.5.2's `wrapper.h`).
const SYMBOLS: &str = include_str!("capi_symbols.txt");

/// Why NIXL cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NixlLoadError {
    /// No candidate folder holds the library.
    #[error("{CAPI} not found (looked in {looked}; {INSTALL_HINT})")]
    NotFound {
        /// The places searched, for the message.
        looked: String,
    },
    /// The library is there but the dynamic loader refused it.
    #[error("{path}: {message} (a NIXL build for another platform or missing dependencies?)")]
    Refused {
        /// The file.
        path: PathBuf,
        /// `dlerror()`.
        message: String,
    },
    /// The library lacks a function the bindings call.
    #[error("{path} lacks {symbol}: linkcal's bindings need NIXL {NIXL_MAJOR}.x ({INSTALL_HINT})")]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The missing function.
        symbol: String,
    },
    /// The wheel beside the library is of another major version.
    #[error("{path} is NIXL {version}; linkcal's bindings need NIXL {NIXL_MAJOR}.x ({INSTALL_HINT})")]
    WrongVersion {
        /// The library's folder.
        path: PathBuf,
        /// The version the wheel's metadata names.
        version: String,
    },
}

/// A loaded NIXL: where it came from and the wheel version, if one was found beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The `libnixl_capi.so` that was loaded.
    pub path: PathBuf,
    /// The `nixl-cu12`/`nixl-cu13`/`nixl` wheel version in the same site-packages, if any.
    pub version: Option<String>,
}

/// Folders that may hold `libnixl_capi.so`, in the order they are tried: `LINKCAL_NIXL_LIB`
/// (a folder or the file itself), `NIXL_PREFIX` (its `lib`, `lib64` and
/// `lib/x86_64-linux-gnu`), the wheel folders in `VIRTUAL_ENV`'s site-packages.
pub fn candidates(env: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = env("LINKCAL_NIXL_LIB").filter(|s| !s.is_empty()) {
        let p = PathBuf::from(p);
        out.push(if p.is_dir() { p.join(CAPI) } else { p });
    }
    if let Some(prefix) = env("NIXL_PREFIX").filter(|s| !s.is_empty()) {
        for sub in ["lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"] {
            out.push(Path::new(&prefix).join(sub).join(CAPI));
        }
    }
    if let Some(venv) = env("VIRTUAL_ENV").filter(|s| !s.is_empty()) {
        for site in site_packages(Path::new(&venv)) {
            for wheel in [".nixl_cu12.mesonpy.libs", ".nixl_cu13.mesonpy.libs", ".nixl.mesonpy.libs"] {
                out.push(site.join(wheel).join(CAPI));
            }
        }
    }
    out
}

fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// The wheel version recorded next to a library in a site-packages folder
/// (`nixl_cu12-1.5.1.dist-info`), if there is one.
pub fn wheel_version(lib: &Path) -> Option<String> {
    let site = lib.parent()?.parent()?;
    let mut names: Vec<String> =
        std::fs::read_dir(site).ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.iter().find_map(|n| {
        let stem = n.strip_suffix(".dist-info")?;
        let (pkg, version) = stem.split_once('-')?;
        matches!(pkg, "nixl" | "nixl_cu12" | "nixl_cu13").then(|| version.to_string())
    })
}

/// Whether `version` (e.g. `1.5.1`) has the major version the bindings need.
pub fn major_matches(version: &str) -> bool {
    version.split('.').next().and_then(|m| m.parse::<u32>().ok()) == Some(NIXL_MAJOR)
}

/// Loads NIXL (once it is found, later calls return the same library).
///
/// Only a success is kept: a miss is looked up again on the next call, so NIXL installed (or
/// `VIRTUAL_ENV` set) after a first miss is found, and an agent asked early goes on to find it.
pub fn load() -> Result<Loaded, NixlLoadError> {
    static FOUND: OnceLock<Loaded> = OnceLock::new();
    if let Some(l) = FOUND.get() {
        return Ok(l.clone());
    }
    let l = load_from(&candidates(|k| std::env::var(k).ok()))?;
    Ok(FOUND.get_or_init(|| l).clone())
}

fn load_from(candidates: &[PathBuf]) -> Result<Loaded, NixlLoadError> {
    let found = candidates.iter().find(|p| p.is_file());
    let handle = match found {
        Some(p) => dlopen(&p.to_string_lossy()).map_err(|message| NixlLoadError::Refused { path: p.clone(), message })?,
        // Last: the loader's own search (LD_LIBRARY_PATH, ld.so.cache), as the stub would do.
        None => dlopen(CAPI).map_err(|_| {
            let mut looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            looked.push("the dynamic loader's path".into());
            NixlLoadError::NotFound { looked: looked.join(", ") }
        })?,
    };
    let path = found.cloned().unwrap_or_else(|| PathBuf::from(CAPI));
    for symbol in SYMBOLS.split_whitespace() {
        let c = CString::new(symbol).expect("symbol names have no NUL");
        // SAFETY: `handle` is a live handle from dlopen (never closed); dlsym only looks up.
        if unsafe { libc::dlsym(handle, c.as_ptr()) }.is_null() {
            return Err(NixlLoadError::MissingSymbol { path, symbol: symbol.to_string() });
        }
    }
    let version = found.and_then(|p| wheel_version(p));
    if let Some(v) = version.as_ref().filter(|v| !major_matches(v)) {
        return Err(NixlLoadError::WrongVersion { path, version: v.clone() });
    }
    Ok(Loaded { path, version })
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`; the handle is never closed (NIXL stays loaded).
fn dlopen(name: &str) -> Result<*mut libc::c_void, String> {
    let c = CString::new(name).map_err(|_| format!("{name:?} has a NUL byte"))?;
    // SAFETY: `c` is a valid C string for the call; dlopen has no other preconditions.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns NULL or a C string valid until the next dl* call on this thread.
        let e = unsafe { libc::dlerror() };
        let msg =
            if e.is_null() { "dlopen failed".to_string() } else { unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned() };
        return Err(msg);
    }
    Ok(h)
}

/// The UCX environment linkcal sets before the first NIXL agent of the process, and why:
/// - `UCX_TLS`: the transports UCX may use, from the flow (`tcp` on loopback and the emulated
///   rack, where UCX would otherwise copy memory directly between processes with `cma` and no
///   network would be measured; e.g. `rc,cuda_copy,cuda_ipc` on an InfiniBand rack).
/// - `UCX_MODULES=^ib,rdmacm,cuda,mlx5` when `UCX_TLS=tcp`: without it processes crash at
///   exit inside libnl pulled in by UCX's ib module.
/// - `UCX_WARN_UNUSED_ENV_VARS=n`: quiet.
///
/// UCX reads these once per context; setting them for every flow would race, so the first
/// flow's value holds for the agent process and a later flow asking for another is refused.
pub fn ucx_env(tls: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![("UCX_TLS", tls.to_string()), ("UCX_WARN_UNUSED_ENV_VARS", "n".to_string())];
    if is_tcp_only(tls) {
        v.push(("UCX_MODULES", "^ib,rdmacm,cuda,mlx5".to_string()));
    }
    v
}

/// Sets [`ucx_env`] for `tls` once per process; returns the `UCX_TLS` in force, which the
/// caller compares with what its flow asked for. With `UCX_TLS=tcp`, `device` (the network
/// device holding the flow's local data address, when it is not `lo`) becomes
/// `UCX_NET_DEVICES` unless the operator set it: UCX's TCP transport advertises its device's
/// first IPv4 address, so left to itself it may pick the management network (on the emulated
/// rack, traffic would then bypass the shaped segments).
pub fn set_ucx_env_once(tls: &str, device: Option<&str>) -> String {
    static TLS: OnceLock<String> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut env = ucx_env(tls);
        if let Some(d) = device.filter(|d| *d != "lo" && is_tcp_only(tls) && std::env::var_os("UCX_NET_DEVICES").is_none()) {
            env.push(("UCX_NET_DEVICES", d.to_string()));
        }
        for (k, v) in env {
            // Runs once, before this process creates any UCX context (the only reader).
            std::env::set_var(k, v);
        }
        tls.to_string()
    })
    .clone()
}

fn is_tcp_only(tls: &str) -> bool {
    tls.split(',').all(|t| t.trim() == "tcp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_documented_order() {
        let env = |k: &str| match k {
            "LINKCAL_NIXL_LIB" => Some("/x/libnixl_capi.so".to_string()),
            "NIXL_PREFIX" => Some("/opt/nixl".to_string()),
            _ => None,
        };
        let c = candidates(env);
        assert_eq!(c[0], PathBuf::from("/x/libnixl_capi.so"));
        assert_eq!(c[1], PathBuf::from("/opt/nixl/lib/libnixl_capi.so"));
        assert_eq!(c.len(), 5);
        assert!(candidates(|_| None).is_empty());
    }

    #[test]
    fn a_missing_library_is_an_error_naming_what_to_install() {
        let e = load_from(&[PathBuf::from("/nonexistent/libnixl_capi.so")]);
        // The loader's own path may hold NIXL on a developer machine; only check the miss.
        if let Err(e) = e {
            let s = e.to_string();
            assert!(s.contains("libnixl_capi.so not found") && s.contains("pip install"), "{s}");
        }
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join(CAPI);
        std::fs::write(&bogus, b"not an ELF").unwrap();
        let e = load_from(&[bogus]).unwrap_err();
        assert!(matches!(e, NixlLoadError::Refused { .. }), "{e}");
    }

    #[test]
    fn versions_and_env() {
        assert!(major_matches("1.5.1") && !major_matches("2.0.0") && !major_matches("x"));
        let dir = tempfile::tempdir().unwrap();
        let libs = dir.path().join(".nixl_cu12.mesonpy.libs");
        std::fs::create_dir_all(&libs).unwrap();
        std::fs::create_dir_all(dir.path().join("nixl_cu12-2.0.0.dist-info")).unwrap();
        assert_eq!(wheel_version(&libs.join(CAPI)).as_deref(), Some("2.0.0"));
        let env = ucx_env("tcp");
        assert!(env.contains(&("UCX_MODULES", "^ib,rdmacm,cuda,mlx5".to_string())));
        assert!(!ucx_env("rc,cuda_copy").iter().any(|(k, _)| *k == "UCX_MODULES"));
        assert_eq!(SYMBOLS.split_whitespace().count(), 104);
    }
}
