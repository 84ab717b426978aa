//! NUMA placement: a device's node from sysfs, and running work (allocating and first-touching
//! buffers, posting transfers) on a short-lived thread pinned to that node's CPUs, so host
//! memory lands on the device's socket and the caller's own affinity is never changed (a
//! pinned main thread would place every later allocation on the last device's node).

use std::path::Path;

/// The NUMA node of RDMA device `dev` (`/sys/class/infiniband/<dev>/device/numa_node`), or
/// `None` when the platform does not say (-1, missing file).
pub fn nic_numa_node(sysfs: &Path, dev: &str) -> Option<u32> {
    let s = std::fs::read_to_string(sysfs.join("class/infiniband").join(dev).join("device/numa_node")).ok()?;
    s.trim().parse::<i64>().ok().filter(|&n| n >= 0).map(|n| n as u32)
}

/// The NUMA node of PCI function `pci` (`/sys/bus/pci/devices/<pci>/numa_node`), or `None`.
pub fn pci_numa_node(sysfs: &Path, pci: &str) -> Option<u32> {
    let s = std::fs::read_to_string(sysfs.join("bus/pci/devices").join(pci).join("numa_node")).ok()?;
    s.trim().parse::<i64>().ok().filter(|&n| n >= 0).map(|n| n as u32)
}

/// The CPUs of NUMA node `node` (`/sys/devices/system/node/node<N>/cpulist`).
pub fn node_cpus(sysfs: &Path, node: u32) -> Option<Vec<usize>> {
    let s = std::fs::read_to_string(sysfs.join(format!("devices/system/node/node{node}/cpulist"))).ok()?;
    parse_cpulist(&s)
}

/// Parses a kernel CPU list such as `0-15,32-47` or `3` (empty string = no CPUs).
pub fn parse_cpulist(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

/// Where the sending thread ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Pinned to the CPUs of this node.
    Pinned {
        /// NUMA node.
        node: u32,
        /// CPU count.
        cpus: usize,
    },
    /// Left where it was, with the reason.
    Unpinned(String),
}

/// Runs `f` on a new thread pinned to NUMA node `node` (CPUs from `sysfs`) and returns its
/// result and where the thread ran. The calling thread's affinity is untouched. Never fails:
/// no node, or a refused affinity, runs `f` unpinned and says why.
pub fn run_pinned<T: Send>(sysfs: &Path, node: Option<u32>, f: impl FnOnce() -> T + Send) -> (T, Placement) {
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let placement = match node {
                Some(n) => pin_calling_thread(sysfs, n),
                None => Placement::Unpinned("the device reports no NUMA node".into()),
            };
            (f(), placement)
        });
        match h.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` on a short-lived thread pinned to the NUMA node of RDMA device `dev`.
pub fn on_nic_node<T: Send>(dev: &str, f: impl FnOnce() -> T + Send) -> (T, Placement) {
    let sys = Path::new("/sys");
    run_pinned(sys, nic_numa_node(sys, dev), f)
}

/// Pins the calling thread to the CPUs of `node`; only called on threads `run_pinned` made.
fn pin_calling_thread(sys: &Path, node: u32) -> Placement {
    let Some(cpus) = node_cpus(sys, node).filter(|c| !c.is_empty()) else {
        return Placement::Unpinned(format!("NUMA node {node} lists no CPUs"));
    };
    let mut set = nix::sched::CpuSet::new();
    for &c in &cpus {
        if set.set(c).is_err() {
            return Placement::Unpinned(format!("CPU {c} beyond the affinity mask size"));
        }
    }
    match nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
        Ok(()) => Placement::Pinned { node, cpus: cpus.len() },
        Err(e) => Placement::Unpinned(format!("sched_setaffinity: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0-3,8-9\n"), Some(vec![0, 1, 2, 3, 8, 9]));
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("a-b"), None);
    }

    #[test]
    fn reads_node_and_cpus_from_a_sysfs_tree() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("class/infiniband/mlx5_1/device");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        let node = root.path().join("devices/system/node/node1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(node.join("cpulist"), "16-31,48-63\n").unwrap();
        assert_eq!(nic_numa_node(root.path(), "mlx5_1"), Some(1));
        assert_eq!(node_cpus(root.path(), 1).unwrap().len(), 32);
        let dev0 = root.path().join("class/infiniband/mlx5_0/device");
        std::fs::create_dir_all(&dev0).unwrap();
        std::fs::write(dev0.join("numa_node"), "-1\n").unwrap();
        assert_eq!(nic_numa_node(root.path(), "mlx5_0"), None);
        assert_eq!(nic_numa_node(root.path(), "missing"), None);
    }

    #[test]
    fn pinning_a_missing_nic_leaves_the_thread_alone_with_a_reason() {
        match on_nic_node("linkcal_no_such_nic", || ()).1 {
            Placement::Unpinned(why) => assert!(why.contains("no NUMA node")),
            other => panic!("{other:?}"),
        }
    }

    fn affinity() -> Vec<usize> {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect()
    }

    #[test]
    fn work_runs_pinned_and_the_caller_keeps_its_affinity() {
        let before = affinity();
        let cpu = before[before.len() - 1];
        let root = tempfile::tempdir().unwrap();
        let node = root.path().join("devices/system/node/node3");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(node.join("cpulist"), format!("{cpu}\n")).unwrap();
        let (inside, placement) = run_pinned(root.path(), Some(3), affinity);
        assert_eq!(placement, Placement::Pinned { node: 3, cpus: 1 });
        assert_eq!(inside, vec![cpu], "the work ran on the node's CPUs");
        assert_eq!(affinity(), before, "the calling thread's affinity is unchanged");
        let pci = root.path().join("bus/pci/devices/0000:1b:00.0");
        std::fs::create_dir_all(&pci).unwrap();
        std::fs::write(pci.join("numa_node"), "1\n").unwrap();
        assert_eq!(pci_numa_node(root.path(), "0000:1b:00.0"), Some(1));
    }
}
