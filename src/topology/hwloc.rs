//! libhwloc (hwloc 2.x's `libhwloc.so.15`) opened at run time with `libloading`: the binary
//! links no hwloc, starts on a host without it, and a missing library, symbol or a library of
//! another major version is an [`Unavailable`] naming the package to install, never a loader
//! error. hwloc is used for one thing only: building this machine's topology with every I/O
//! object kept and exporting it as XML ([`live_xml`]); the XML is read by
//! [`super::hwlocxml`], as an export from another machine is. Only the calls made are in the
//! table; each signature is the prototype in Debian 12's `hwloc.h` / `hwloc/export.h`
//! (hwloc 2.9), quoted beside it.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::sync::OnceLock;

/// The sonames tried, in order: hwloc 2.x's ABI (every distribution), then the unversioned
/// development link (checked to be 2.x by [`Hwloc::load`]).
pub const LIBRARIES: [&str; 2] = ["libhwloc.so.15", "libhwloc.so"];

/// What to install, per distribution family.
pub const PACKAGES: &str = "Debian/Ubuntu: libhwloc15; RHEL/Rocky/Alma: hwloc-libs";

/// Why live discovery cannot use hwloc here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No hwloc library loads.
    #[error(
        "libhwloc.so.15 not found ({PACKAGES}): live discovery needs it; \
         or read a saved topology with --xml / --nccl-topo / --nvidia-smi-topo{}",
        .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Library {
        /// The loader's message when a file exists but does not load (none when absent).
        detail: Option<String>,
    },
    /// The library lacks a call linkcal needs.
    #[error("{library} has no {symbol}: not an hwloc 2.x library ({PACKAGES})")]
    Symbol {
        /// The file opened.
        library: &'static str,
        /// The missing function.
        symbol: &'static str,
    },
    /// The library is not hwloc 2.x (its `hwloc_get_api_version()`).
    #[error("{library} is hwloc API {major}.{minor} (0x{version:08x}); linkcal needs hwloc 2.x ({PACKAGES})")]
    Version {
        /// The file opened.
        library: &'static str,
        /// What `hwloc_get_api_version()` returned.
        version: u32,
        /// Its major part.
        major: u32,
        /// Its minor part.
        minor: u32,
    },
}

/// `enum hwloc_type_filter_e`: `HWLOC_TYPE_FILTER_KEEP_ALL = 0`.
const TYPE_FILTER_KEEP_ALL: c_int = 0;
/// `HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST = (1UL<<0)`.
const COMPONENTS_FLAG_BLACKLIST: c_ulong = 1;
/// `HWLOC_TOPOLOGY_EXPORT_XML_FLAG_V1 = (1UL<<0)`.
const EXPORT_XML_FLAG_V1: c_ulong = 1;

/// `typedef struct hwloc_topology * hwloc_topology_t;` (opaque).
type Topology = *mut c_void;

/// The hwloc calls linkcal makes, resolved from the loaded library.
pub struct Hwloc {
    /// The soname that loaded.
    pub library: &'static str,
    /// `unsigned hwloc_get_api_version(void);`
    get_api_version: unsafe extern "C" fn() -> c_uint,
    /// `int hwloc_topology_init (hwloc_topology_t *topologyp);`
    topology_init: unsafe extern "C" fn(*mut Topology) -> c_int,
    /// `int hwloc_topology_load(hwloc_topology_t topology);`
    topology_load: unsafe extern "C" fn(Topology) -> c_int,
    /// `void hwloc_topology_destroy (hwloc_topology_t topology);`
    topology_destroy: unsafe extern "C" fn(Topology),
    /// `int hwloc_topology_set_io_types_filter(hwloc_topology_t topology, enum hwloc_type_filter_e filter);`
    set_io_types_filter: unsafe extern "C" fn(Topology, c_int) -> c_int,
    /// `int hwloc_topology_set_components(hwloc_topology_t topology, unsigned long flags, const char * __hwloc_restrict name);`
    /// (hwloc 2.1 and later: `None` before).
    set_components: Option<unsafe extern "C" fn(Topology, c_ulong, *const c_char) -> c_int>,
    /// `int hwloc_topology_set_xmlbuffer(hwloc_topology_t __hwloc_restrict topology, const char * __hwloc_restrict buffer, int size);`
    set_xmlbuffer: unsafe extern "C" fn(Topology, *const c_char, c_int) -> c_int,
    /// `int hwloc_topology_export_xmlbuffer(hwloc_topology_t topology, char **xmlbuffer, int *buflen, unsigned long flags);`
    export_xmlbuffer: unsafe extern "C" fn(Topology, *mut *mut c_char, *mut c_int, c_ulong) -> c_int,
    /// `void hwloc_free_xmlbuffer(hwloc_topology_t topology, char *xmlbuffer);`
    free_xmlbuffer: unsafe extern "C" fn(Topology, *mut c_char),
    /// Keeps the library mapped for as long as the pointers above are used (the process).
    _lib: libloading::Library,
}

/// The process's hwloc, opened on first use (the answer kept: a host does not gain hwloc mid-run).
pub fn hwloc() -> Result<&'static Hwloc, Unavailable> {
    static HWLOC: OnceLock<Result<Hwloc, Unavailable>> = OnceLock::new();
    HWLOC.get_or_init(|| first_that_loads(&LIBRARIES)).as_ref().map_err(Clone::clone)
}

/// The first of `names` that loads as hwloc 2.x; else the first name's error, unless a later
/// file exists but is unusable (its reason is then the more useful one).
fn first_that_loads(names: &[&'static str]) -> Result<Hwloc, Unavailable> {
    let mut first = None;
    for &name in names {
        match Hwloc::load(name) {
            Ok(h) => return Ok(h),
            Err(Unavailable::Library { detail: None }) => {
                first.get_or_insert(Unavailable::Library { detail: None });
            }
            Err(e) => return Err(e),
        }
    }
    Err(first.unwrap_or(Unavailable::Library { detail: None }))
}

impl Hwloc {
    /// Opens `library` (`RTLD_NOW | RTLD_GLOBAL`), checks `hwloc_get_api_version()` is 2.x and
    /// resolves every call. Global, as a linked libhwloc is: hwloc's plugins (Debian's
    /// libhwloc-plugins: `hwloc_pci` for PCI enumeration with libpciaccess, `hwloc_xml_libxml`)
    /// resolve hwloc's own symbols from the global scope and fail to load without it.
    pub fn load(library: &'static str) -> Result<Hwloc, Unavailable> {
        let flags = libc::RTLD_NOW | libc::RTLD_GLOBAL;
        // SAFETY: loading runs hwloc's initialisers, which only set up its own state.
        let lib = unsafe { libloading::os::unix::Library::open(Some(library), flags) }.map_err(|e| {
            let m = e.to_string();
            Unavailable::Library { detail: (!m.contains("No such file or directory")).then_some(m) }
        })?;
        let lib = libloading::Library::from(lib);
        // SAFETY: each symbol is typed with its prototype from hwloc.h (quoted on the field);
        // the pointers are copied out and stay valid while `_lib` keeps the library mapped.
        let h = unsafe {
            Hwloc {
                library,
                get_api_version: sym(&lib, library, "hwloc_get_api_version")?,
                topology_init: sym(&lib, library, "hwloc_topology_init")?,
                topology_load: sym(&lib, library, "hwloc_topology_load")?,
                topology_destroy: sym(&lib, library, "hwloc_topology_destroy")?,
                set_io_types_filter: sym(&lib, library, "hwloc_topology_set_io_types_filter")?,
                set_components: sym(&lib, library, "hwloc_topology_set_components").ok(),
                set_xmlbuffer: sym(&lib, library, "hwloc_topology_set_xmlbuffer")?,
                export_xmlbuffer: sym(&lib, library, "hwloc_topology_export_xmlbuffer")?,
                free_xmlbuffer: sym(&lib, library, "hwloc_free_xmlbuffer")?,
                _lib: lib,
            }
        };
        // SAFETY: a plain call without arguments.
        let version = unsafe { (h.get_api_version)() };
        let (major, minor) = (version >> 16, (version >> 8) & 0xff);
        if major != 2 {
            return Err(Unavailable::Version { library, version, major, minor });
        }
        Ok(h)
    }

    /// This machine's topology as hwloc XML (v2), every I/O object kept (as
    /// `lstopo-no-graphics --whole-io --of xml`), without the OpenCL and GL components (they
    /// would start GPU drivers; a component whose plugin is not installed is skipped).
    pub fn live_xml(&self) -> Result<String, String> {
        self.with_topology(None, 0)
    }

    /// Loads an hwloc XML export and exports it again in hwloc's v1 format (for tests of the
    /// v1 reader and for old tools). Runs hwloc's own XML reader in this process: trusted
    /// files only.
    pub fn export_v1(&self, xml: &str) -> Result<String, String> {
        self.with_topology(Some(xml), EXPORT_XML_FLAG_V1)
    }

    /// Builds a topology (this machine, or `xml` when given), exports it with `flags`, frees it.
    fn with_topology(&self, xml: Option<&str>, flags: c_ulong) -> Result<String, String> {
        let mut topo: Topology = std::ptr::null_mut();
        // SAFETY: init writes the new topology into `topo`.
        if unsafe { (self.topology_init)(&mut topo) } != 0 || topo.is_null() {
            return Err(format!("hwloc_topology_init failed: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `topo` is a live topology until the destroy below; every pointer passed is
        // valid for the call.
        let result = unsafe { self.configure_load_export(topo, xml, flags) };
        // SAFETY: `topo` came from init and is not used after this.
        unsafe { (self.topology_destroy)(topo) };
        result
    }

    /// # Safety
    /// `topo` must be a live, not yet loaded topology.
    unsafe fn configure_load_export(&self, topo: Topology, xml: Option<&str>, flags: c_ulong) -> Result<String, String> {
        let err = |call: &str| format!("{call} failed: {}", std::io::Error::last_os_error());
        // SAFETY (all calls below): `topo` is live; strings are NUL-terminated and outlive the call.
        if unsafe { (self.set_io_types_filter)(topo, TYPE_FILTER_KEEP_ALL) } != 0 {
            return Err(err("hwloc_topology_set_io_types_filter(KEEP_ALL)"));
        }
        if let Some(set) = self.set_components {
            for component in [c"opencl", c"gl"] {
                // EINVAL when the plugin is not installed: nothing to disable.
                let _ = unsafe { set(topo, COMPONENTS_FLAG_BLACKLIST, component.as_ptr()) };
            }
        }
        let _buffer: Option<CString> = match xml {
            Some(text) => {
                let c = CString::new(text).map_err(|_| "the XML holds a NUL byte".to_string())?;
                let len = c_int::try_from(text.len() + 1).map_err(|_| "the XML is larger than 2 GiB".to_string())?;
                if unsafe { (self.set_xmlbuffer)(topo, c.as_ptr(), len) } != 0 {
                    return Err(err("hwloc_topology_set_xmlbuffer"));
                }
                Some(c)
            }
            None => None,
        };
        if unsafe { (self.topology_load)(topo) } != 0 {
            return Err(err("hwloc_topology_load"));
        }
        let (mut buf, mut len): (*mut c_char, c_int) = (std::ptr::null_mut(), 0);
        if unsafe { (self.export_xmlbuffer)(topo, &mut buf, &mut len, flags) } != 0 || buf.is_null() {
            return Err(err("hwloc_topology_export_xmlbuffer"));
        }
        // SAFETY: hwloc returns a NUL-terminated buffer, freed right after the copy.
        let text = unsafe { CStr::from_ptr(buf) }.to_string_lossy().into_owned();
        unsafe { (self.free_xmlbuffer)(topo, buf) };
        Ok(text)
    }
}

/// Resolves `name` as a `T` (a function pointer type).
///
/// # Safety
/// `T` must be the symbol's real type.
unsafe fn sym<T: Copy>(lib: &libloading::Library, library: &'static str, name: &'static str) -> Result<T, Unavailable> {
    // SAFETY: the caller names the type; the value is copied out of the symbol.
    unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|_| Unavailable::Symbol { library, symbol: name })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this host has hwloc 2 (Debian's libhwloc15): CI installs it, so there a failed
    /// load is a failure, not a skip.
    fn installed() -> bool {
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/libhwloc.so.15").exists()
            || std::env::var("CI").is_ok_and(|v| v == "true")
    }

    #[test]
    fn a_missing_library_names_the_packages() {
        let e = first_that_loads(&["libhwloc-not-there.so.15", "libhwloc-not-there.so"]).err().unwrap();
        assert_eq!(e, Unavailable::Library { detail: None });
        let m = e.to_string();
        for want in ["libhwloc.so.15 not found", "libhwloc15", "hwloc-libs", "--xml"] {
            assert!(m.contains(want), "{m}");
        }
    }

    #[test]
    fn a_library_that_is_not_hwloc_lacks_its_symbols() {
        // libc loads but has no hwloc call: a Symbol error naming the first call looked up.
        let Err(e) = Hwloc::load("libc.so.6") else { panic!("libc taken for hwloc") };
        assert_eq!(e, Unavailable::Symbol { library: "libc.so.6", symbol: "hwloc_get_api_version" });
        assert!(e.to_string().contains("libhwloc15"), "{e}");
    }

    #[test]
    fn the_installed_hwloc_is_2x_and_exports_this_machine() {
        let h = match hwloc() {
            Ok(h) => h,
            Err(e) => return assert!(!installed(), "hwloc is installed but does not load: {e}"),
        };
        // SAFETY: a plain call.
        assert_eq!(unsafe { (h.get_api_version)() } >> 16, 2);
        let xml = h.live_xml().unwrap();
        assert!(xml.contains("<topology version=\"2.0\">"), "{}", &xml[..xml.len().min(300)]);
        assert!(xml.contains("type=\"Machine\""));
        let v1 = h.export_v1(&xml).unwrap();
        assert!(v1.contains("<topology>") && !v1.contains("version=\"2.0\""), "{}", &v1[..v1.len().min(300)]);
        assert!(h.export_v1("<topology><object type=\"Nonsense\"/></topology>").is_err());
    }
}
