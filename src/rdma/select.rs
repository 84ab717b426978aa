//! Naming a NIC in flow options: by device name (`"mlx5_1"`), or as the n-th RDMA NIC in PCI
//! address order (`{"by_bus": n}`: NIC k as discovery numbers them; device names need not
//! follow the bus order).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Unavailable;
use crate::pci::PciAddr;

/// A NIC named in flow options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NicSelector {
    /// Device name.
    Name(String),
    /// Position in PCI address order.
    BusOrder {
        /// Index among the RDMA NICs sorted by PCI address.
        by_bus: usize,
    },
}

/// The PCI address of RDMA device `name` (`<sysfs>/class/infiniband/<name>/device` is a link
/// to its PCI function).
pub fn nic_pci(sysfs: &Path, name: &str) -> Option<PciAddr> {
    let target = std::fs::read_link(sysfs.join("class/infiniband").join(name).join("device")).ok()?;
    target.file_name()?.to_str()?.parse().ok()
}

/// `names` sorted by PCI address (devices whose address is unknown last, by name).
pub fn by_bus_order(sysfs: &Path, names: &[String]) -> Vec<String> {
    let mut v: Vec<(Option<PciAddr>, String)> = names.iter().map(|n| (nic_pci(sysfs, n), n.clone())).collect();
    v.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    v.into_iter().map(|(_, n)| n).collect()
}

impl NicSelector {
    /// The device name among `names` (the devices present).
    pub fn resolve(&self, sysfs: &Path, names: &[String]) -> Result<String, Unavailable> {
        let present = || names.join(", ");
        match self {
            NicSelector::Name(n) if names.contains(n) => Ok(n.clone()),
            NicSelector::Name(n) => Err(Unavailable::NoSuchDevice { name: n.clone(), present: present() }),
            NicSelector::BusOrder { by_bus } => by_bus_order(sysfs, names).get(*by_bus).cloned().ok_or_else(|| {
                Unavailable::NoSuchDevice { name: format!("RDMA NIC #{by_bus} in bus order"), present: present() }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_name_or_bus_order() {
        let root = tempfile::tempdir().unwrap();
        let ib = root.path().join("class/infiniband");
        let pci = root.path().join("devices/pci0000:00");
        for (name, addr) in [("mlx5_0", "0000:c1:00.0"), ("mlx5_1", "0000:1a:00.0")] {
            std::fs::create_dir_all(pci.join(addr)).unwrap();
            std::fs::create_dir_all(ib.join(name)).unwrap();
            std::os::unix::fs::symlink(pci.join(addr), ib.join(name).join("device")).unwrap();
        }
        let names = vec!["mlx5_0".to_string(), "mlx5_1".to_string(), "rxe0".to_string()];
        assert_eq!(nic_pci(root.path(), "mlx5_1").unwrap().to_string(), "0000:1a:00.0");
        assert_eq!(by_bus_order(root.path(), &names), ["mlx5_1", "mlx5_0", "rxe0"]);
        let sel: NicSelector = serde_json::from_value(serde_json::json!({"by_bus": 0})).unwrap();
        assert_eq!(sel.resolve(root.path(), &names).unwrap(), "mlx5_1");
        let sel: NicSelector = serde_json::from_value(serde_json::json!("mlx5_0")).unwrap();
        assert_eq!(sel.resolve(root.path(), &names).unwrap(), "mlx5_0");
        let e = NicSelector::Name("mlx5_9".into()).resolve(root.path(), &names).unwrap_err();
        assert!(e.to_string().contains("mlx5_9") && e.to_string().contains("mlx5_0, mlx5_1, rxe0"), "{e}");
        assert!(NicSelector::BusOrder { by_bus: 3 }.resolve(root.path(), &names).is_err());
    }
}
