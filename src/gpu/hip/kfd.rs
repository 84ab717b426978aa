//! xGMI (Infinity Fabric) links between AMD GPUs from the KFD topology in sysfs, as the
//! `nvidia-smi topo -m` of AMD: `<root>/class/kfd/kfd/topology/nodes/<n>/properties` names
//! each GPU node's PCI address (`domain`, `location_id` = bus << 8 | device << 3 | function),
//! and `nodes/<n>/io_links/<m>/properties` (plus `p2p_links/`, which KFD fills for peers
//! reached indirectly) give each link's `type`, `node_from` and `node_to`. Link types are
//! those of `include/uapi/linux/kfd_sysfs.h` (matching the CRAT table's
//! `CRAT_IOLINK_TYPE_*`): 2 = PCIe, 11 = xGMI.
//!
//! A peer copy between two GPUs joined by xGMI does not cross their PCIe links: the
//! catalogue labels it as xGMI (outside the spec) and never books it to `GPU_P[i]_PCI`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::gpu::PciAddr;

/// `HSA_IOLINK_TYPE_PCIEXPRESS`.
pub const IOLINK_TYPE_PCIE: u32 = 2;
/// `HSA_IOLINK_TYPE_XGMI` (`CRAT_IOLINK_TYPE_XGMI`).
pub const IOLINK_TYPE_XGMI: u32 = 11;

/// `key value` lines of a KFD `properties` file.
pub fn parse_properties(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The PCI address of a KFD node from its `domain` and `location_id`.
pub fn node_pci(domain: u64, location_id: u64) -> Option<PciAddr> {
    Some(PciAddr {
        domain: u32::try_from(domain).ok()?,
        bus: u8::try_from(location_id >> 8).ok()?,
        device: ((location_id >> 3) & 0x1f) as u8,
        function: (location_id & 0x7) as u8,
    })
}

/// The GPUs joined by xGMI (each pair once, lower address first), read from the KFD topology
/// under `sysfs` (normally `/sys`). A host without KFD yields none.
pub fn xgmi_pairs(sysfs: &Path) -> BTreeSet<(PciAddr, PciAddr)> {
    let nodes = sysfs.join("class/kfd/kfd/topology/nodes");
    let read = |p: &Path| std::fs::read_to_string(p).map(|t| parse_properties(&t)).unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&nodes) else { return BTreeSet::new() };
    let mut gpu_of: BTreeMap<u64, PciAddr> = BTreeMap::new();
    let mut links: Vec<(u64, u64)> = Vec::new();
    for e in entries.flatten() {
        let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
        let props = read(&e.path().join("properties"));
        // CPU nodes have no SIMDs (and location_id 0); only GPUs carry a PCI address here.
        if props.get("simd_count").copied().unwrap_or(0) > 0 {
            if let Some(pci) = node_pci(props.get("domain").copied().unwrap_or(0), props.get("location_id").copied().unwrap_or(0))
            {
                gpu_of.insert(id, pci);
            }
        }
        for dir in ["io_links", "p2p_links"] {
            let Ok(ls) = std::fs::read_dir(e.path().join(dir)) else { continue };
            for l in ls.flatten() {
                let p = read(&l.path().join("properties"));
                if p.get("type").copied() == Some(u64::from(IOLINK_TYPE_XGMI)) {
                    if let (Some(&f), Some(&t)) = (p.get("node_from"), p.get("node_to")) {
                        links.push((f, t));
                    }
                }
            }
        }
    }
    links
        .into_iter()
        .filter_map(|(f, t)| {
            let (a, b) = (*gpu_of.get(&f)?, *gpu_of.get(&t)?);
            (a != b).then(|| (a.min(b), a.max(b)))
        })
        .collect()
}

/// Whether `a` and `b` are joined by xGMI in `pairs`.
pub fn linked(pairs: &BTreeSet<(PciAddr, PciAddr)>, a: PciAddr, b: PciAddr) -> bool {
    pairs.contains(&(a.min(b), a.max(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a KFD node (`gpu`: Some((domain, location_id))) and its links (`(type, to)`).
    fn node(root: &Path, id: u64, gpu: Option<(u64, u64)>, links: &[(u32, u64)], dir: &str) {
        let n = root.join("class/kfd/kfd/topology/nodes").join(id.to_string());
        std::fs::create_dir_all(&n).unwrap();
        let props = match gpu {
            Some((d, loc)) => {
                format!("cpu_cores_count 0\nsimd_count 416\nlocation_id {loc}\ndomain {d}\ngfx_target_version 90010\n")
            }
            None => "cpu_cores_count 64\nsimd_count 0\nlocation_id 0\ndomain 0\n".to_string(),
        };
        std::fs::write(n.join("properties"), props).unwrap();
        for (m, (ty, to)) in links.iter().enumerate() {
            let l = n.join(dir).join(m.to_string());
            std::fs::create_dir_all(&l).unwrap();
            std::fs::write(
                l.join("properties"),
                format!("type {ty}\nversion_major 0\nnode_from {id}\nnode_to {to}\nweight 15\n"),
            )
            .unwrap();
        }
    }

    fn loc(bus: u64) -> u64 {
        bus << 8
    }

    #[test]
    fn location_ids_are_bus_device_function() {
        // 0xc1 << 8 | device 0 function 0, as KFD writes it for 0000:c1:00.0.
        assert_eq!(node_pci(0, 0xc100).unwrap().to_string(), "0000:c1:00.0");
        assert_eq!(node_pci(1, (0x3b << 8) | (2 << 3) | 1).unwrap().to_string(), "0001:3b:02.1");
        assert_eq!(node_pci(0, 0x1_0000), None, "a bus above 0xff is not an address");
        let p = parse_properties("simd_count 416\nlocation_id 49408\nname gfx90a\n");
        assert_eq!(p.get("location_id"), Some(&49408));
        assert!(!p.contains_key("name"), "non-numeric values are skipped");
    }

    #[test]
    fn xgmi_pairs_from_a_fake_kfd_tree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        // A CPU node, three GPUs: 1 and 2 joined by xGMI (listed from both ends), 3 on PCIe only;
        // 1 reaches 3 through the CPU (a p2p link of PCIe type).
        node(r, 0, None, &[(IOLINK_TYPE_PCIE, 1), (IOLINK_TYPE_PCIE, 2), (IOLINK_TYPE_PCIE, 3)], "io_links");
        node(r, 1, Some((0, loc(0xc1))), &[(IOLINK_TYPE_PCIE, 0), (IOLINK_TYPE_XGMI, 2)], "io_links");
        node(r, 2, Some((0, loc(0xc6))), &[(IOLINK_TYPE_PCIE, 0), (IOLINK_TYPE_XGMI, 1)], "io_links");
        node(r, 3, Some((0, loc(0xd1))), &[(IOLINK_TYPE_PCIE, 0)], "io_links");
        node(r, 1, Some((0, loc(0xc1))), &[(IOLINK_TYPE_PCIE, 3)], "p2p_links");
        let pairs = xgmi_pairs(r);
        let a = |s: &str| s.parse::<PciAddr>().unwrap();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert!(linked(&pairs, a("0000:c6:00.0"), a("0000:c1:00.0")), "either order");
        assert!(!linked(&pairs, a("0000:c1:00.0"), a("0000:d1:00.0")));
        // An xGMI link listed only under p2p_links counts too.
        node(r, 3, Some((0, loc(0xd1))), &[(IOLINK_TYPE_XGMI, 2)], "p2p_links");
        assert!(linked(&xgmi_pairs(r), a("0000:d1:00.0"), a("0000:c6:00.0")));
        // No KFD: no links.
        assert!(xgmi_pairs(&r.join("missing")).is_empty());
    }
}
