//! PCI addresses as CUDA, hwloc and sysfs write them, so CUDA ordinals can be matched to the
//! devices discovery finds (CUDA numbers devices in its own order, not by bus).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A PCI function address: domain, bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

/// A PCI address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a PCI address (expected [domain:]bus:device.function in hex, e.g. 0000:3b:00.0)")]
pub struct PciAddrError(pub String);

impl crate::error::Classified for PciAddrError {
    /// Every PciAddrError is about the user's input.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

impl FromStr for PciAddr {
    type Err = PciAddrError;

    /// Accepts `0000:3b:00.0` (sysfs, hwloc), `00000000:3B:00.0` (nvidia-smi) and `3b:00.0`
    /// (domain 0), in any letter case, surrounding whitespace and a trailing NUL ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PciAddrError(s.to_string());
        let t = s.trim().trim_end_matches('\0');
        let (head, function) = t.rsplit_once('.').ok_or_else(err)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return Err(err()),
        };
        let hex = |x: &str, max: u32| -> Result<u32, PciAddrError> {
            if x.is_empty() || x.len() > 8 {
                return Err(err());
            }
            let v = u32::from_str_radix(x, 16).map_err(|_| err())?;
            (v <= max).then_some(v).ok_or_else(err)
        };
        Ok(PciAddr {
            domain: hex(domain, u32::MAX)?,
            bus: hex(bus, 0xff)? as u8,
            device: hex(device, 0x1f)? as u8,
            function: hex(function, 0x7)? as u8,
        })
    }
}

impl fmt::Display for PciAddr {
    /// The sysfs form, `0000:3b:00.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl TryFrom<String> for PciAddr {
    type Error = PciAddrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PciAddr> for String {
    fn from(a: PciAddr) -> String {
        a.to_string()
    }
}

/// What kind of GPU a PCI function is, from its vendor and class (as discovery reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuVendor {
    /// NVIDIA (0x10de): measured with the CUDA backend.
    Nvidia,
    /// AMD (0x1002): found, but waived until a HIP backend exists.
    Amd,
}

/// Classifies a PCI function as a GPU: display controllers (class 0x03xx) and processing
/// accelerators (0x12xx) from NVIDIA or AMD. `class` is the 16-bit base+sub class or the
/// 24-bit sysfs value with the programming interface.
pub fn gpu_vendor(vendor: u16, class: u32) -> Option<GpuVendor> {
    let base = if class > 0xffff { class >> 16 } else { class >> 8 };
    if base != 0x03 && base != 0x12 {
        return None;
    }
    match vendor {
        0x10de => Some(GpuVendor::Nvidia),
        0x1002 => Some(GpuVendor::Amd),
        _ => None,
    }
}

/// A GPU found on the PCI bus through sysfs (no driver needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciGpu {
    /// Its address.
    pub addr: PciAddr,
    /// NVIDIA or AMD.
    pub vendor: GpuVendor,
}

/// GPUs listed under a sysfs PCI devices directory (normally `/sys/bus/pci/devices`), sorted by
/// address. Unreadable entries are skipped; a missing directory yields none.
pub fn scan_sysfs_gpus(dir: &std::path::Path) -> Vec<PciGpu> {
    let read_hex = |p: std::path::PathBuf| -> Option<u32> {
        let s = std::fs::read_to_string(p).ok()?;
        u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PciGpu> = entries
        .flatten()
        .filter_map(|e| {
            let addr: PciAddr = e.file_name().to_str()?.parse().ok()?;
            let vendor = read_hex(e.path().join("vendor"))? as u16;
            let class = read_hex(e.path().join("class"))?;
            Some(PciGpu { addr, vendor: gpu_vendor(vendor, class)? })
        })
        .collect();
    out.sort_by_key(|g| g.addr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_to_the_same_address() {
        let want = PciAddr { domain: 0, bus: 0x3b, device: 0, function: 0 };
        for s in ["0000:3b:00.0", "00000000:3B:00.0", "3b:00.0", " 0000:3B:00.0\0"] {
            assert_eq!(s.parse::<PciAddr>().unwrap(), want, "{s}");
        }
        let a: PciAddr = "0001:c1:1f.7".parse().unwrap();
        assert_eq!(a.to_string(), "0001:c1:1f.7");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"0001:c1:1f.7\"");
        assert_eq!(serde_json::from_str::<PciAddr>("\"0001:C1:1F.7\"").unwrap(), a);
    }

    #[test]
    fn rejects_malformed_addresses() {
        for s in ["", "3b", "3b:00", "0000:3b:20.0", "0000:3b:00.8", "0000:100:00.0", "zz:00.0", "0:0:0:0.0"] {
            let e = s.parse::<PciAddr>().unwrap_err();
            assert!(e.to_string().contains("PCI address"), "{s}");
        }
    }

    #[test]
    fn classifies_gpus_by_vendor_and_class() {
        assert_eq!(gpu_vendor(0x10de, 0x0302), Some(GpuVendor::Nvidia));
        assert_eq!(gpu_vendor(0x10de, 0x030200), Some(GpuVendor::Nvidia));
        assert_eq!(gpu_vendor(0x1002, 0x1200), Some(GpuVendor::Amd));
        assert_eq!(gpu_vendor(0x10de, 0x0403), None, "NVIDIA audio function is not a GPU");
        assert_eq!(gpu_vendor(0x15b3, 0x0207), None, "Mellanox NIC");
        assert_eq!(gpu_vendor(0x8086, 0x0300), None);
    }

    #[test]
    fn scans_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let dev = |name: &str, vendor: &str, class: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("vendor"), vendor).unwrap();
            std::fs::write(p.join("class"), class).unwrap();
        };
        dev("0000:c1:00.0", "0x1002\n", "0x038000\n");
        dev("0000:3b:00.0", "0x10de\n", "0x030200\n");
        dev("0000:3b:00.1", "0x10de\n", "0x040300\n");
        dev("0000:5e:00.0", "0x15b3\n", "0x020700\n");
        std::fs::create_dir(dir.path().join("not-an-address")).unwrap();
        let gpus = scan_sysfs_gpus(dir.path());
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].addr.to_string(), "0000:3b:00.0");
        assert_eq!(gpus[0].vendor, GpuVendor::Nvidia);
        assert_eq!(gpus[1].vendor, GpuVendor::Amd);
        assert!(scan_sysfs_gpus(&dir.path().join("missing")).is_empty());
    }
}
