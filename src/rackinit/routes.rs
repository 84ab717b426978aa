//! Every route of a composed rack with its two hosts and addresses: which agent sends and
//! receives each route (a server's agent, or the endpoint's own), and which of their addresses
//! the flow uses (the fabric the inventory's `[networks]` names, else the role's NIC).

use std::net::IpAddr;

use super::inventory::{Cidr, Networks, Place};
use super::{HostDescription, RackInitError};
use crate::model::rack::RouteEndpoints;
use crate::spec::{HopOptions, PathRef, RackShape, RouteKind, RouteSet};

/// One host mapped onto its role (by `compose`): what routes are built from.
#[derive(Debug, Clone, Default)]
pub struct Mapped {
    /// GPUs used, by PCI bus id.
    pub gpus: Vec<String>,
    /// RDMA NICs used (device names), in spec order k.
    pub rdma: Vec<String>,
    /// The Ethernet NIC (decode), when any.
    pub eth: Option<String>,
    /// Failed conformance checks.
    pub deviations: Vec<String>,
    /// Address of flows arriving over IB (Path 2, host RDMA).
    pub ib_addr: Option<IpAddr>,
    /// Address of flows over Ethernet (Path 3).
    pub eth_addr: Option<IpAddr>,
    /// Address of flows inside the host.
    pub data_addr: Option<IpAddr>,
    /// Its addresses on the inventory's networks.
    pub on: NetAddrs,
}

/// The fabric a flow's address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Inside one server (between its agents).
    Pcie,
    /// The decode Ethernet.
    Eth,
    /// The IB fabric through prefill NIC k.
    Ib(usize),
}

impl Net {
    fn field(self) -> &'static str {
        match self {
            Net::Pcie => "networks.pcie",
            Net::Eth => "networks.eth",
            Net::Ib(_) => "networks.ib",
        }
    }
}

/// A host's addresses on the inventory's networks (None: the block is not given, or the host
/// has no address in it).
#[derive(Debug, Clone, Default)]
pub struct NetAddrs {
    /// In `networks.pcie`.
    pub pcie: Option<IpAddr>,
    /// In `networks.eth`.
    pub eth: Option<IpAddr>,
    /// In each block of `networks.ib`, in order.
    pub ib: Vec<Option<IpAddr>>,
}

/// The first address of `d` inside `block`.
fn addr_in(d: &HostDescription, block: &Cidr) -> Option<IpAddr> {
    d.interfaces.iter().flat_map(|i| i.addrs.iter().copied()).find(|a| block.contains(*a))
}

impl NetAddrs {
    /// Reads a host's addresses on every block of `n`.
    pub fn of(d: &HostDescription, n: &Networks) -> NetAddrs {
        NetAddrs {
            pcie: n.pcie.as_ref().and_then(|b| addr_in(d, b)),
            eth: n.eth.as_ref().and_then(|b| addr_in(d, b)),
            ib: n.ib.iter().map(|b| addr_in(d, b)).collect(),
        }
    }

    /// The address on `net` when the inventory gives that network: `Some(None)` when the host
    /// has none there, `None` when the network is not given.
    fn on(&self, n: &Networks, net: Net) -> Option<Option<IpAddr>> {
        match net {
            Net::Pcie => n.pcie.map(|_| self.pcie),
            Net::Eth => n.eth.map(|_| self.eth),
            Net::Ib(_) if n.ib.is_empty() => None,
            Net::Ib(_) if n.ib.len() == 1 => Some(self.ib[0]),
            Net::Ib(k) => Some(self.ib.get(k).copied().flatten()),
        }
    }
}

/// The fabrics of a route's source and destination addresses.
pub fn nets(shape: &RackShape, p: &PathRef) -> (Net, Net) {
    match p.kind {
        RouteKind::PrefillToDecode => (Net::Pcie, Net::Ib(shape.nic_of(p.src))),
        RouteKind::HostRdma => (Net::Ib(p.src), Net::Ib(p.src)),
        RouteKind::DecodeInterRank => (Net::Eth, Net::Eth),
        _ => (Net::Pcie, Net::Pcie),
    }
}

/// The places that send and receive a route, the endpoint's own agent first.
fn places(p: &PathRef) -> ([Place; 2], [Place; 2]) {
    use Place::*;
    let (s, t) = (p.src, p.dst);
    match p.kind {
        RouteKind::PrefillInterRank => ([PrefillGpu(s), Prefill], [PrefillGpu(t), Prefill]),
        RouteKind::PrefillToDecode => ([PrefillGpu(s), Prefill], [Decode(t), Decode(t)]),
        RouteKind::DecodeInterRank => ([Decode(s), Decode(s)], [Decode(t), Decode(t)]),
        RouteKind::PrefillGpuToHost => ([PrefillGpu(s), Prefill], [PrefillHost, Prefill]),
        RouteKind::PrefillHostToGpu => ([PrefillHost, Prefill], [PrefillGpu(t), Prefill]),
        RouteKind::DecodeGpuToHost => ([Decode(s), Decode(s)], [DecodeHost(s), Decode(s)]),
        RouteKind::DecodeHostToGpu => ([DecodeHost(t), Decode(t)], [Decode(t), Decode(t)]),
        RouteKind::HostRdma => ([PrefillHost, Prefill], [DecodeHost(t), Decode(t)]),
    }
}

/// The rack's hosts as the route builder sees them.
pub struct Hosts<'a> {
    /// Places in rack order.
    pub places: &'a [Place],
    /// Host names in rack order.
    pub names: &'a [String],
    /// Mapped roles and addresses in rack order.
    pub mapped: &'a [Mapped],
    /// The inventory's networks.
    pub networks: &'a Networks,
}

impl Hosts<'_> {
    /// The host standing for a place: its own agent, else the server's.
    fn index(&self, want: [Place; 2]) -> Option<usize> {
        want.iter().find_map(|w| self.places.iter().position(|p| p == w))
    }

    /// The address host `h` receives `net`'s flows on.
    fn dst_addr(&self, h: usize, net: Net) -> Result<IpAddr, RackInitError> {
        let m = &self.mapped[h];
        if let Some(on) = m.on.on(self.networks, net) {
            return on.ok_or_else(|| RackInitError::Role {
                host: self.names[h].clone(),
                place: self.places[h].to_string(),
                message: format!(
                    "has no address in {} (what its flows arrive on): give it one, or fix the block in the inventory",
                    net.field()
                ),
            });
        }
        let fallback = match net {
            Net::Pcie => m.data_addr,
            Net::Eth => m.eth_addr,
            Net::Ib(_) => m.ib_addr,
        };
        Ok(fallback.or(m.data_addr).expect("pick_addrs set data_addr"))
    }

    /// The address host `h` binds for `net`'s flows: one the inventory's networks name (Path 2
    /// falls back to the in-server block), else its own Ethernet NIC's for Path 3, else none.
    fn src_addr(&self, h: usize, net: Net) -> Option<IpAddr> {
        let m = &self.mapped[h];
        let named = |net| m.on.on(self.networks, net).flatten();
        match net {
            Net::Ib(_) => named(net).or_else(|| named(Net::Pcie)),
            Net::Pcie => named(net),
            Net::Eth => named(net).or(m.eth_addr.filter(|_| m.eth.is_some())),
        }
    }
}

/// Every route of the shape (spec paths and isolation routes) with its hosts and addresses;
/// routes whose endpoint has no agent (isolation routes without `prefill_host`) are left out
/// and returned apart.
pub fn routes(shape: &RackShape, hosts: &Hosts) -> Result<(Vec<RouteEndpoints>, Vec<PathRef>), RackInitError> {
    let opt = HopOptions { decode_ib_nic: true, staged_in_host: false };
    let set = RouteSet::build(shape, None, opt, true).expect("shape already checked");
    let (mut out, mut left_out) = (Vec::new(), Vec::new());
    for r in set.routes {
        let (sp, tp) = places(&r.path);
        let (Some(s), Some(t)) = (hosts.index(sp), hosts.index(tp)) else {
            left_out.push(r.path);
            continue;
        };
        let (snet, tnet) = nets(shape, &r.path);
        out.push(RouteEndpoints {
            path: r.path,
            src_host: hosts.names[s].clone(),
            dst_host: hosts.names[t].clone(),
            src_addr: hosts.src_addr(s, snet).map(|a| a.to_string()),
            dst_addr: hosts.dst_addr(t, tnet)?.to_string(),
            segments: r.segments,
        });
    }
    Ok((out, left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn blocks_hold_exactly_their_addresses() {
        let b = cidr("10.1.0.0/16");
        assert!(b.contains("10.1.255.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(!b.contains("::1".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(cidr("10.1.2.3/32").contains("10.1.2.3".parse().unwrap()));
        assert!(!cidr("10.1.2.3/32").contains("10.1.2.4".parse().unwrap()));
        assert!(cidr("fd00::/8").contains("fd12::1".parse().unwrap()));
        for bad in ["10.1.0.0", "10.1.0.0/33", "x/8", "10.1.0.0/-1"] {
            assert!(Cidr::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
