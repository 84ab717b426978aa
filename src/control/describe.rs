//! What an agent says about its own host when asked (`describe`): the live topology (GPUs, NICs,
//! PCIe switches, NUMA, from hwloc), every RDMA port with its link layer, state, LID and GID
//! (from `/sys/class/infiniband`), and every network interface with its addresses.

use std::net::IpAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::topology::{Input, TopologyReport};

/// One host as its agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostDescription {
    /// The agent's name (`--name`).
    pub agent: String,
    /// The OS host name.
    pub hostname: String,
    /// linkcal version of the agent.
    pub linkcal_version: String,
    /// Live discovery (null when hwloc failed: see `topology_error`).
    pub topology: Option<TopologyReport>,
    /// Why live discovery failed, when it did.
    pub topology_error: Option<String>,
    /// Every port of every RDMA device.
    pub rdma_ports: Vec<RdmaPort>,
    /// Every network interface.
    pub interfaces: Vec<Interface>,
    /// NUMA nodes of the host (OS indexes).
    pub numa_nodes: Vec<u32>,
}

/// One port of an RDMA device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RdmaPort {
    /// Device, e.g. `mlx5_0`.
    pub device: String,
    /// Port number (from 1).
    pub port: u32,
    /// `InfiniBand` or `Ethernet` (RoCE).
    pub link_layer: String,
    /// Port state, e.g. `ACTIVE`, `DOWN`, `INIT` (the number sysfs prints is dropped).
    pub state: String,
    /// LID (InfiniBand; null or 0 on RoCE).
    pub lid: Option<u32>,
    /// GID index 0, when not all zero.
    pub gid0: Option<String>,
    /// The network interface on the same device (IPoIB `ib0`, RoCE `eth2`), when any.
    pub netdev: Option<String>,
}

impl RdmaPort {
    /// True when the port can carry traffic.
    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Interface {
    /// Name, e.g. `eth0`, `ib0`, `lo`.
    pub name: String,
    /// Administratively up and running (carrier).
    pub up: bool,
    /// Its IP addresses.
    pub addrs: Vec<IpAddr>,
    /// MTU, bytes.
    pub mtu: Option<u64>,
}

impl HostDescription {
    /// Describes this host, for the agent named `agent`. Never fails: what cannot be read is
    /// left empty (and hwloc's error kept in `topology_error`).
    pub fn local(agent: &str) -> HostDescription {
        let (topology, topology_error) = match crate::topology::discover(&Input::Live, None) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        HostDescription {
            agent: agent.into(),
            hostname: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            linkcal_version: env!("CARGO_PKG_VERSION").into(),
            topology,
            topology_error,
            rdma_ports: rdma_ports(Path::new("/sys/class/infiniband")),
            interfaces: interfaces(),
            numa_nodes: numa_nodes(Path::new("/sys/devices/system/node")),
        }
    }

    /// The interface holding `addr`, when any.
    pub fn interface_of(&self, addr: IpAddr) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.addrs.contains(&addr))
    }

    /// The first IPv4 address of interface `name`, when it is up.
    pub fn ipv4_of(&self, name: &str) -> Option<IpAddr> {
        let i = self.interfaces.iter().find(|i| i.name == name && i.up)?;
        i.addrs.iter().copied().find(IpAddr::is_ipv4)
    }

    /// Every address of every interface, for messages.
    pub fn all_addrs(&self) -> String {
        let v: Vec<String> =
            self.interfaces.iter().flat_map(|i| i.addrs.iter().map(move |a| format!("{a} ({})", i.name))).collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn dir_names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(p).map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Every port under a sysfs `infiniband` class directory.
pub fn rdma_ports(root: &Path) -> Vec<RdmaPort> {
    let mut out = Vec::new();
    for device in dir_names(root) {
        let dev = root.join(&device);
        let netdev = dir_names(&dev.join("device/net")).into_iter().next();
        for port in dir_names(&dev.join("ports")) {
            let Ok(n) = port.parse::<u32>() else { continue };
            let p = dev.join("ports").join(&port);
            // "4: ACTIVE" -> "ACTIVE"
            let state = read_trim(&p.join("state")).map(|s| s.rsplit(' ').next().unwrap_or("").to_string());
            let gid0 = read_trim(&p.join("gids/0")).filter(|g| g.chars().any(|c| c != '0' && c != ':'));
            let lid = read_trim(&p.join("lid"))
                .and_then(|l| u32::from_str_radix(l.trim_start_matches("0x"), 16).ok())
                .filter(|l| *l != 0);
            out.push(RdmaPort {
                device: device.clone(),
                port: n,
                link_layer: read_trim(&p.join("link_layer")).unwrap_or_default(),
                state: state.unwrap_or_else(|| "UNKNOWN".into()),
                lid,
                gid0,
                netdev: netdev.clone(),
            });
        }
    }
    out
}

/// Every network interface with its addresses (getifaddrs) and MTU (sysfs).
fn interfaces() -> Vec<Interface> {
    use nix::net::if_::InterfaceFlags;
    let mut out: Vec<Interface> = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return out };
    for a in addrs {
        let up = a.flags.contains(InterfaceFlags::IFF_UP) && a.flags.contains(InterfaceFlags::IFF_RUNNING);
        let ip = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())).or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        let i = match out.iter_mut().position(|i| i.name == a.interface_name) {
            Some(k) => &mut out[k],
            None => {
                let mtu =
                    read_trim(&Path::new("/sys/class/net").join(&a.interface_name).join("mtu")).and_then(|m| m.parse().ok());
                out.push(Interface { name: a.interface_name.clone(), up, addrs: Vec::new(), mtu });
                out.last_mut().expect("just pushed")
            }
        };
        i.up |= up;
        if let Some(ip) = ip {
            if !i.addrs.contains(&ip) {
                i.addrs.push(ip);
            }
        }
    }
    out
}

/// NUMA nodes listed under a sysfs `node` directory.
fn numa_nodes(root: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = dir_names(root).iter().filter_map(|n| n.strip_prefix("node")?.parse().ok()).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdma_ports_read_state_lid_and_gid_from_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mlx5_0/ports/1");
        std::fs::create_dir_all(p.join("gids")).unwrap();
        std::fs::create_dir_all(d.path().join("mlx5_0/device/net/ib0")).unwrap();
        std::fs::write(p.join("state"), "4: ACTIVE\n").unwrap();
        std::fs::write(p.join("link_layer"), "InfiniBand\n").unwrap();
        std::fs::write(p.join("lid"), "0x1a\n").unwrap();
        std::fs::write(p.join("gids/0"), "fe80:0000:0000:0000:0002:c903:0031:7a01\n").unwrap();
        let q = d.path().join("mlx5_1/ports/1");
        std::fs::create_dir_all(q.join("gids")).unwrap();
        std::fs::write(q.join("state"), "1: DOWN\n").unwrap();
        std::fs::write(q.join("gids/0"), "0000:0000:0000:0000:0000:0000:0000:0000\n").unwrap();
        let ports = rdma_ports(d.path());
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].state, "ACTIVE");
        assert!(ports[0].is_active());
        assert_eq!(ports[0].lid, Some(0x1a));
        assert_eq!(ports[0].netdev.as_deref(), Some("ib0"));
        assert!(ports[0].gid0.as_deref().unwrap().starts_with("fe80"));
        assert_eq!(ports[1].state, "DOWN");
        assert!(!ports[1].is_active());
        assert_eq!(ports[1].gid0, None);
        assert_eq!(ports[1].lid, None);
    }

    #[test]
    fn this_host_has_loopback_with_its_address() {
        let h = HostDescription::local("me");
        assert_eq!(h.agent, "me");
        let lo = h.interface_of("127.0.0.1".parse().unwrap()).expect("lo holds 127.0.0.1");
        assert!(lo.up, "{lo:?}");
        assert_eq!(h.ipv4_of(&lo.name), Some("127.0.0.1".parse().unwrap()));
    }
}
