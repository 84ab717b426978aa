//! The emulated rack as a plan (no side effects): one namespace per endpoint and switch, one
//! veth pair per segment, addresses and the routes that make every route follow exactly its
//! segments. [`super::netns`] executes it.
//!
//! Addressing: every namespace has a router address `10.0.x.y` on `lo`; endpoints add one
//! address per *plane* they are reached on (`10.1` PCIe-local, `10.2` Ethernet, `10.(10+k)`
//! through prefill IB NIC k), so plain destination routing picks NIC k for a Path-2 flow
//! without policy rules. Routes are /32, `via` the next namespace's router address `onlink`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::rack::{HostEntry, HostRole, RouteEndpoints};
use crate::spec::{Dir, Hop, PathRef, RackShape, RouteKind, SegmentId, SegmentKind};

/// Control-plane port of every agent.
pub const AGENT_PORT: u16 = 7100;
/// Management network: `10.254.0.0/16`; the coordinator's bridge has `.0.1`.
pub const MGMT_COORDINATOR: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 1);

/// A namespace of the emulated rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// Prefill GPU i.
    PrefillGpu(usize),
    /// The prefill PCIe (PLX) switch.
    PrefillSwitch,
    /// Prefill IB NIC k.
    PrefillNic(usize),
    /// The IB switch.
    IbSwitch,
    /// Decode server j's IB NIC.
    DecodeNic(usize),
    /// Decode server j's PCIe switch.
    DecodeSwitch(usize),
    /// Decode GPU j.
    DecodeGpu(usize),
    /// Decode server j's Ethernet NIC.
    DecodeEthNic(usize),
    /// The Ethernet switch.
    EthSwitch,
    /// The prefill server's host memory (behind `Uplink_P_PCI`).
    PrefillHost,
    /// Decode server j's host memory (behind `Uplink_D[j]_PCI`).
    DecodeHost(usize),
}

impl Node {
    /// Short name used in namespace names (`{prefix}_{short}`).
    pub fn short(self) -> String {
        match self {
            Node::PrefillGpu(i) => format!("gp{i}"),
            Node::PrefillSwitch => "psw".into(),
            Node::PrefillNic(k) => format!("pn{k}"),
            Node::IbSwitch => "ibsw".into(),
            Node::DecodeNic(j) => format!("dn{j}"),
            Node::DecodeSwitch(j) => format!("dsw{j}"),
            Node::DecodeGpu(j) => format!("dg{j}"),
            Node::DecodeEthNic(j) => format!("de{j}"),
            Node::EthSwitch => "ethsw".into(),
            Node::PrefillHost => "ph".into(),
            Node::DecodeHost(j) => format!("dh{j}"),
        }
    }

    /// The agent (host) this node stands for, if it is an endpoint.
    pub fn host(self) -> Option<(String, HostRole, usize)> {
        match self {
            Node::PrefillGpu(i) => Some((format!("gpu_p{i}"), HostRole::PrefillGpu, i)),
            Node::PrefillHost => Some(("host_p".into(), HostRole::PrefillHost, 0)),
            Node::DecodeGpu(j) => Some((format!("gpu_d{j}"), HostRole::DecodeGpu, j)),
            Node::DecodeHost(j) => Some((format!("host_d{j}"), HostRole::DecodeHost, j)),
            _ => None,
        }
    }
}

/// How an endpoint is reached: its address differs per plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plane {
    /// Inside one server (through its PCIe switch).
    Pci,
    /// Over the decode Ethernet.
    Eth,
    /// Through prefill IB NIC k.
    Ib(usize),
}

/// One shaped segment: a veth pair between the device side (`lower`) and the switch side.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The segment.
    pub segment: SegmentId,
    /// Device-side namespace (`up` leaves from here).
    pub lower: Node,
    /// Switch-side namespace (`down` leaves from here).
    pub upper: Node,
    /// Interface name in `lower`.
    pub lower_if: String,
    /// Interface name in `upper`.
    pub upper_if: String,
}

/// One /32 route in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Outgoing interface.
    pub dev: String,
    /// Next namespace's router address.
    pub via: Ipv4Addr,
    /// Source address hint (on the sending endpoint).
    pub src: Option<Ipv4Addr>,
}

/// The whole emulated rack, ready to build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Name prefix of every namespace.
    pub prefix: String,
    /// The spec shape.
    pub shape: RackShape,
    /// Namespaces (endpoints and switches), in address order.
    pub nodes: Vec<Node>,
    /// One per segment.
    pub links: Vec<Link>,
    /// Addresses per namespace (on `lo`, but [`Plan::data_link_addr`] on the data link).
    pub addrs: BTreeMap<Node, Vec<Ipv4Addr>>,
    /// Routes per namespace.
    pub routes: BTreeMap<Node, Vec<RouteEntry>>,
    /// Every route the rack carries, with its endpoints and hops.
    pub endpoints: Vec<(PathRef, Vec<Node>, Ipv4Addr, Ipv4Addr)>,
}

/// Largest rack the address plan supports (namespaces).
pub const MAX_NODES: usize = 60_000;

/// Largest Num_IB_Cards the address plan supports (one /24 block per prefill NIC).
pub const MAX_IB_CARDS: usize = 200;

// Every shape the spec accepts fits the address plan, so planning never fails on size.
const _: () = assert!(
    crate::spec::MAX_IB_CARDS <= MAX_IB_CARDS && 4 + 6 * crate::spec::MAX_STAGES + crate::spec::MAX_IB_CARDS <= MAX_NODES
);

/// Why a rack cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A route's node sequence steps between two nodes with no link (a bug in the plan).
    #[error("no link between {0} and {1}")]
    NoLink(String, String),
    /// Two routes to one destination leave a namespace by different links (a bug in the plan).
    #[error("route conflict in {node} for {dst}: {first} vs {second}")]
    RouteConflict {
        /// The namespace's node.
        node: String,
        /// The destination address.
        dst: Ipv4Addr,
        /// The device of the route installed first.
        first: String,
        /// The device of the conflicting route.
        second: String,
    },
}

impl Plan {
    /// Plans the rack for `shape` with namespaces named `{prefix}_...`.
    pub fn new(prefix: &str, shape: &RackShape) -> Result<Plan, PlanError> {
        let (p, d, k) = (shape.pp_prefill, shape.pp_decode, shape.ib_cards);
        let mut nodes = vec![Node::PrefillSwitch, Node::IbSwitch, Node::EthSwitch, Node::PrefillHost];
        nodes.extend((0..p).map(Node::PrefillGpu));
        nodes.extend((0..k).map(Node::PrefillNic));
        for j in 0..d {
            nodes.extend([
                Node::DecodeSwitch(j),
                Node::DecodeGpu(j),
                Node::DecodeNic(j),
                Node::DecodeEthNic(j),
                Node::DecodeHost(j),
            ]);
        }
        let links = shape.segments().into_iter().map(link_of).collect();
        let mut plan = Plan {
            prefix: prefix.into(),
            shape: shape.clone(),
            nodes,
            links,
            addrs: BTreeMap::new(),
            routes: BTreeMap::new(),
            endpoints: Vec::new(),
        };
        for n in plan.nodes.clone() {
            let mut a = vec![plan.router(n)];
            a.extend(planes_of(n, k).into_iter().map(|pl| plan.addr(n, pl)));
            plan.addrs.insert(n, a);
        }
        for path in all_paths(shape) {
            let (nodes, dst_plane, src_plane) = node_path(shape, &path);
            let (src, dst) = (plan.addr(nodes[0], src_plane), plan.addr(*nodes.last().expect("path has nodes"), dst_plane));
            plan.install(&nodes, dst, Some(src))?;
            let rev: Vec<Node> = nodes.iter().rev().copied().collect();
            plan.install(&rev, src, Some(dst))?;
            plan.endpoints.push((path, nodes, src, dst));
        }
        Ok(plan)
    }

    /// Namespace name of a node.
    pub fn netns(&self, n: Node) -> String {
        format!("{}_{}", self.prefix, n.short())
    }

    /// Namespace of the management network (bridge + coordinator).
    pub fn mgmt_netns(&self) -> String {
        format!("{}_mgmt", self.prefix)
    }

    fn number(&self, n: Node) -> u32 {
        self.nodes.iter().position(|x| *x == n).expect("node in plan") as u32 + 2
    }

    fn with_octet(&self, octet: u8, n: Node) -> Ipv4Addr {
        let x = self.number(n);
        Ipv4Addr::new(10, octet, (x >> 8) as u8, (x & 255) as u8)
    }

    /// Router address of a namespace.
    pub fn router(&self, n: Node) -> Ipv4Addr {
        self.with_octet(0, n)
    }

    /// Endpoint address of `n` on `plane`.
    pub fn addr(&self, n: Node, plane: Plane) -> Ipv4Addr {
        let octet = match plane {
            Plane::Pci => 1,
            Plane::Eth => 2,
            Plane::Ib(k) => 10 + k as u8,
        };
        self.with_octet(octet, n)
    }

    /// The address an endpoint holds on its data link rather than on `lo`: the one a KV engine
    /// (NIXL over UCX, which advertises its network device's first IPv4 address) must use on
    /// Path 2 — a prefill GPU's source address, a decode GPU's address on NIC 0's plane. The
    /// kernel treats every local address alike, so routing does not change.
    pub fn data_link_addr(&self, n: Node) -> Option<Ipv4Addr> {
        match n {
            Node::PrefillGpu(_) => Some(self.addr(n, Plane::Pci)),
            Node::DecodeGpu(_) => Some(self.addr(n, Plane::Ib(0))),
            _ => None,
        }
    }

    /// Management address of an endpoint.
    pub fn mgmt_addr(&self, n: Node) -> Ipv4Addr {
        self.with_octet(254, n)
    }

    /// The link joining two adjacent namespaces, and whether `a -> b` is its `up` direction.
    pub fn link_between(&self, a: Node, b: Node) -> Option<(&Link, Dir)> {
        self.links.iter().find_map(|l| {
            if (l.lower, l.upper) == (a, b) {
                Some((l, Dir::Up))
            } else if (l.lower, l.upper) == (b, a) {
                Some((l, Dir::Down))
            } else {
                None
            }
        })
    }

    /// The hops a node sequence crosses.
    pub fn hops(&self, nodes: &[Node]) -> Vec<Hop> {
        nodes.windows(2).filter_map(|w| self.link_between(w[0], w[1]).map(|(l, dir)| Hop { id: l.segment, dir })).collect()
    }

    fn install(&mut self, nodes: &[Node], dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Result<(), PlanError> {
        for (m, w) in nodes.windows(2).enumerate() {
            let (l, dir) =
                self.link_between(w[0], w[1]).ok_or_else(|| PlanError::NoLink(format!("{:?}", w[0]), format!("{:?}", w[1])))?;
            let dev = if dir == Dir::Up { l.lower_if.clone() } else { l.upper_if.clone() };
            let entry = RouteEntry { dst, dev, via: self.router(w[1]), src: if m == 0 { src } else { None } };
            let table = self.routes.entry(w[0]).or_default();
            match table.iter().find(|r| r.dst == dst) {
                Some(r) if r.dev != entry.dev => {
                    return Err(PlanError::RouteConflict {
                        node: format!("{:?}", w[0]),
                        dst,
                        first: r.dev.clone(),
                        second: entry.dev,
                    });
                }
                Some(_) => {}
                None => table.push(entry),
            }
        }
        Ok(())
    }

    /// Hosts (agents) of the rack file.
    pub fn hosts(&self) -> Vec<HostEntry> {
        self.nodes
            .iter()
            .filter_map(|&n| {
                let (name, role, index) = n.host()?;
                let data = match n {
                    Node::DecodeGpu(_) => self.addr(n, Plane::Eth),
                    _ => self.addr(n, Plane::Pci),
                };
                Some(HostEntry {
                    name,
                    role,
                    index,
                    control_addr: format!("{}:{AGENT_PORT}", self.mgmt_addr(n)),
                    data_addr: data.to_string(),
                    netns: Some(self.netns(n)),
                })
            })
            .collect()
    }

    /// Route endpoints of the rack file: who sends, who receives, which addresses, which hops.
    pub fn route_endpoints(&self) -> Vec<RouteEndpoints> {
        self.endpoints
            .iter()
            .map(|(path, nodes, src, dst)| RouteEndpoints {
                path: *path,
                src_host: nodes[0].host().map(|h| h.0).unwrap_or_default(),
                dst_host: nodes.last().and_then(|n| n.host()).map(|h| h.0).unwrap_or_default(),
                src_addr: Some(src.to_string()),
                dst_addr: dst.to_string(),
                segments: self.hops(nodes),
            })
            .collect()
    }
}

fn link_of(id: SegmentId) -> Link {
    use SegmentKind::*;
    let (i, (lower, upper), code) = match id.kind {
        GpuP => (id.index, (Node::PrefillGpu(id.index), Node::PrefillSwitch), "gp"),
        IbNicP => (id.index, (Node::PrefillNic(id.index), Node::PrefillSwitch), "np"),
        IbCableP => (id.index, (Node::PrefillNic(id.index), Node::IbSwitch), "cp"),
        IbCableD => (id.index, (Node::DecodeNic(id.index), Node::IbSwitch), "cd"),
        GpuD => (id.index, (Node::DecodeGpu(id.index), Node::DecodeSwitch(id.index)), "gd"),
        EthNicD => (id.index, (Node::DecodeEthNic(id.index), Node::DecodeSwitch(id.index)), "en"),
        EthCableD => (id.index, (Node::DecodeEthNic(id.index), Node::EthSwitch), "ec"),
        UplinkP => (0, (Node::PrefillHost, Node::PrefillSwitch), "up"),
        UplinkD => (id.index, (Node::DecodeHost(id.index), Node::DecodeSwitch(id.index)), "ud"),
        IbNicD => (id.index, (Node::DecodeNic(id.index), Node::DecodeSwitch(id.index)), "nd"),
    };
    let suffix = if id.kind == UplinkP { String::new() } else { i.to_string() };
    Link { segment: id, lower, upper, lower_if: format!("d-{code}{suffix}"), upper_if: format!("s-{code}{suffix}") }
}

fn planes_of(n: Node, k: usize) -> Vec<Plane> {
    let ib = (0..k).map(Plane::Ib);
    match n {
        Node::PrefillGpu(_) => vec![Plane::Pci],
        Node::PrefillHost | Node::DecodeHost(_) => std::iter::once(Plane::Pci).chain(ib).collect(),
        Node::DecodeGpu(_) => [Plane::Pci, Plane::Eth].into_iter().chain(ib).collect(),
        _ => Vec::new(),
    }
}

/// Every route the emulated rack carries: all spec paths (Path 2 for every (i, j) pair, so any
/// layer split works) and the isolation routes.
pub fn all_paths(shape: &RackShape) -> Vec<PathRef> {
    let (p, d, k) = (shape.pp_prefill, shape.pp_decode, shape.ib_cards);
    let r = |kind, src, dst| PathRef { kind, src, dst };
    let mut v: Vec<PathRef> = (0..p.saturating_sub(1)).map(|i| r(RouteKind::PrefillInterRank, i, i + 1)).collect();
    for i in 0..p {
        v.extend((0..d).map(|j| r(RouteKind::PrefillToDecode, i, j)));
    }
    v.extend((0..d.saturating_sub(1)).map(|j| r(RouteKind::DecodeInterRank, j, j + 1)));
    for i in 0..p {
        v.push(r(RouteKind::PrefillGpuToHost, i, 0));
        v.push(r(RouteKind::PrefillHostToGpu, 0, i));
    }
    for j in 0..d {
        v.push(r(RouteKind::DecodeGpuToHost, j, 0));
        v.push(r(RouteKind::DecodeHostToGpu, 0, j));
    }
    for nic in 0..k {
        v.extend((0..d).map(|j| r(RouteKind::HostRdma, nic, j)));
    }
    v
}

/// The namespaces a route crosses, and the planes of its destination and source addresses.
pub fn node_path(shape: &RackShape, path: &PathRef) -> (Vec<Node>, Plane, Plane) {
    use Node::*;
    let (s, t) = (path.src, path.dst);
    match path.kind {
        RouteKind::PrefillInterRank => (vec![PrefillGpu(s), PrefillSwitch, PrefillGpu(t)], Plane::Pci, Plane::Pci),
        RouteKind::PrefillToDecode => {
            let k = shape.nic_of(s);
            let n = vec![PrefillGpu(s), PrefillSwitch, PrefillNic(k), IbSwitch, DecodeNic(t), DecodeSwitch(t), DecodeGpu(t)];
            (n, Plane::Ib(k), Plane::Pci)
        }
        RouteKind::DecodeInterRank => {
            let n =
                vec![DecodeGpu(s), DecodeSwitch(s), DecodeEthNic(s), EthSwitch, DecodeEthNic(t), DecodeSwitch(t), DecodeGpu(t)];
            (n, Plane::Eth, Plane::Eth)
        }
        RouteKind::PrefillGpuToHost => (vec![PrefillGpu(s), PrefillSwitch, PrefillHost], Plane::Pci, Plane::Pci),
        RouteKind::PrefillHostToGpu => (vec![PrefillHost, PrefillSwitch, PrefillGpu(t)], Plane::Pci, Plane::Pci),
        RouteKind::DecodeGpuToHost => (vec![DecodeGpu(s), DecodeSwitch(s), DecodeHost(s)], Plane::Pci, Plane::Pci),
        RouteKind::DecodeHostToGpu => (vec![DecodeHost(t), DecodeSwitch(t), DecodeGpu(t)], Plane::Pci, Plane::Pci),
        RouteKind::HostRdma => {
            let n = vec![PrefillHost, PrefillSwitch, PrefillNic(s), IbSwitch, DecodeNic(t), DecodeSwitch(t), DecodeHost(t)];
            (n, Plane::Ib(s), Plane::Ib(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{HopOptions, RouteSet};

    /// Follows the routing tables from `from` towards `dst` and returns the namespaces visited.
    fn walk(plan: &Plan, from: Node, dst: Ipv4Addr) -> Vec<Node> {
        let mut at = from;
        let mut seen = vec![at];
        while !plan.addrs[&at].contains(&dst) {
            let r = plan
                .routes
                .get(&at)
                .and_then(|t| t.iter().find(|r| r.dst == dst))
                .unwrap_or_else(|| panic!("{at:?} has no route to {dst}"));
            let l =
                plan.links.iter().find(|l| l.lower_if == r.dev && l.lower == at || l.upper_if == r.dev && l.upper == at).unwrap();
            at = if l.lower == at { l.upper } else { l.lower };
            assert_eq!(plan.router(at), r.via);
            seen.push(at);
            assert!(seen.len() < 20, "routing loop");
        }
        seen
    }

    #[test]
    fn routes_follow_the_spec_hops_both_ways() {
        for (p, d, k) in [(2, 2, 1), (4, 2, 2), (3, 5, 2), (8, 8, 4)] {
            let shape = RackShape::new(p, d, k).unwrap();
            let plan = Plan::new("t", &shape).unwrap();
            let opt = HopOptions { decode_ib_nic: true, staged_in_host: false };
            let spec = RouteSet::build(&shape, None, opt, true).unwrap();
            for (path, nodes, src, dst) in &plan.endpoints {
                assert_eq!(&walk(&plan, nodes[0], *dst), nodes, "{path}");
                let back: Vec<Node> = nodes.iter().rev().copied().collect();
                assert_eq!(walk(&plan, *nodes.last().unwrap(), *src), back, "{path} reverse");
                if let Some(r) = spec.find(path) {
                    assert_eq!(plan.hops(nodes), r.segments, "{path}");
                }
            }
            for r in &spec.routes {
                assert!(plan.endpoints.iter().any(|e| e.0 == r.path), "{} missing", r.path);
            }
        }
    }

    #[test]
    fn interface_names_fit_linux() {
        let plan = Plan::new("abcdef", &RackShape::new(64, 64, 16).unwrap()).unwrap();
        for l in &plan.links {
            assert!(l.lower_if.len() <= 15 && l.upper_if.len() <= 15, "{l:?}");
        }
        let hosts = plan.hosts();
        assert_eq!(hosts.len(), 64 + 1 + 64 + 64);
        let mut names: Vec<_> = hosts.iter().map(|h| h.control_addr.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), hosts.len());
    }

    #[test]
    fn path2_uses_the_mapped_nic() {
        let shape = RackShape::with_nic_map(4, 2, 2, Some(vec![1, 1, 0, 0])).unwrap();
        let plan = Plan::new("t", &shape).unwrap();
        let e = plan.route_endpoints();
        let r = e.iter().find(|e| e.path == PathRef { kind: RouteKind::PrefillToDecode, src: 0, dst: 1 }).unwrap();
        assert!(r.segments.iter().any(|h| h.id.to_string() == "IB_Cable_P[1]"));
        assert_eq!((r.src_host.as_str(), r.dst_host.as_str()), ("gpu_p0", "gpu_d1"));
    }
}
