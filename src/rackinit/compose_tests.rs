//! Composing a rack from an inventory of per-endpoint agents and address blocks, on host
//! descriptions the tests write (no agent, no network).

use std::net::IpAddr;

use super::compose::compose;
use super::inventory::RackInventory;
use super::{HostDescription, Interface, RackInitError};
use crate::model::rack::HostRole;

/// A host with no GPU whose `lo` holds `addrs`.
fn host(name: &str, addrs: &[&str]) -> HostDescription {
    HostDescription {
        agent: name.into(),
        hostname: "h".into(),
        linkcal_version: env!("CARGO_PKG_VERSION").into(),
        topology: None,
        topology_error: Some("no hwloc here".into()),
        rdma_ports: Vec::new(),
        interfaces: vec![Interface {
            name: "lo".into(),
            up: true,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: Some(9000),
        }],
        numa_nodes: vec![0],
    }
}

fn inventory(text: &str) -> RackInventory {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("inv.toml");
    std::fs::write(&p, text).unwrap();
    RackInventory::read(&p).unwrap()
}

/// Two prefill GPU agents on two IB rails (nic_map 0,1), a prefill host agent, two decode GPU
/// agents each on both rails and the Ethernet, two decode host agents.
const ENDPOINTS: &str = r#"
token_file = "token"
host_tcp_only = true
nic_map = [0, 1]
ib_cards = 2
[networks]
pcie = "10.1.0.0/16"
eth = "10.2.0.0/16"
ib = ["10.10.0.0/16", "10.11.0.0/16"]
[[prefill_gpu]]
name = "p0"
control = "127.0.0.1:1"
[[prefill_gpu]]
name = "p1"
control = "127.0.0.1:2"
[prefill_host]
name = "ph"
control = "127.0.0.1:3"
[[decode]]
name = "d0"
control = "127.0.0.1:4"
[[decode]]
name = "d1"
control = "127.0.0.1:5"
[[decode_host]]
name = "dh0"
control = "127.0.0.1:6"
[[decode_host]]
name = "dh1"
control = "127.0.0.1:7"
"#;

fn descriptions() -> Vec<HostDescription> {
    vec![
        host("p0", &["127.0.0.1", "10.1.0.10"]),
        host("p1", &["127.0.0.1", "10.1.0.11"]),
        host("ph", &["10.1.0.12", "10.10.0.12", "10.11.0.12"]),
        host("d0", &["10.1.0.20", "10.2.0.20", "10.10.0.20", "10.11.0.20"]),
        host("d1", &["10.1.0.21", "10.2.0.21", "10.10.0.21", "10.11.0.21"]),
        host("dh0", &["10.1.0.30", "10.10.0.30", "10.11.0.30"]),
        host("dh1", &["10.1.0.31", "10.10.0.31", "10.11.0.31"]),
    ]
}

fn route<'a>(rack: &'a crate::model::RackFile, name: &str) -> &'a crate::model::rack::RouteEndpoints {
    rack.routes.iter().find(|r| r.path.to_string() == name).unwrap_or_else(|| panic!("no route {name}"))
}

#[test]
fn per_endpoint_agents_get_their_roles_and_each_route_the_address_on_its_fabric() {
    let inv = inventory(ENDPOINTS);
    let c = compose(&inv, &descriptions()).unwrap();
    let roles: Vec<(HostRole, usize)> = c.rack.hosts.iter().map(|h| (h.role, h.index)).collect();
    use HostRole::*;
    let want =
        [(PrefillGpu, 0), (PrefillGpu, 1), (PrefillHost, 0), (DecodeGpu, 0), (DecodeGpu, 1), (DecodeHost, 0), (DecodeHost, 1)];
    assert_eq!(roles, want);
    assert_eq!((c.rack.shape.pp_prefill, c.rack.shape.pp_decode, c.rack.shape.ib_cards), (2, 2, 2));
    // GPU 1 uses NIC 1 (nic_map): its KV arrives on decode 1's address in the second IB block,
    // sent from its in-server address.
    let p2 = route(&c.rack, "prefill_to_decode:1->1");
    assert_eq!((p2.src_host.as_str(), p2.dst_host.as_str()), ("p1", "d1"));
    assert_eq!((p2.src_addr.as_deref(), p2.dst_addr.as_str()), (Some("10.1.0.11"), "10.11.0.21"));
    let p2 = route(&c.rack, "prefill_to_decode:0->0");
    assert_eq!(p2.dst_addr, "10.10.0.20");
    let p3 = route(&c.rack, "decode_inter_rank:0->1");
    assert_eq!((p3.src_addr.as_deref(), p3.dst_addr.as_str()), (Some("10.2.0.20"), "10.2.0.21"));
    let iso = route(&c.rack, "prefill_gpu_to_host:1->0");
    assert_eq!((iso.src_host.as_str(), iso.dst_host.as_str(), iso.dst_addr.as_str()), ("p1", "ph", "10.1.0.12"));
    let rdma = route(&c.rack, "host_rdma:1->1");
    assert_eq!((rdma.src_addr.as_deref(), rdma.dst_addr.as_str()), (Some("10.11.0.12"), "10.11.0.31"));
    let dh = route(&c.rack, "decode_host_to_gpu:0->1");
    assert_eq!((dh.src_host.as_str(), dh.dst_host.as_str(), dh.dst_addr.as_str()), ("dh1", "d1", "10.1.0.21"));
    // Hosts' own addresses: the in-server block.
    let d1 = c.rack.hosts.iter().find(|h| h.name == "d1").unwrap();
    assert_eq!(d1.data_addr.parse::<IpAddr>().unwrap(), "10.1.0.21".parse::<IpAddr>().unwrap());
}

#[test]
fn a_host_without_an_address_on_its_routes_fabric_is_named() {
    let inv = inventory(ENDPOINTS);
    let mut d = descriptions();
    d[4] = host("d1", &["10.1.0.21", "10.2.0.21", "10.10.0.21"]);
    match compose(&inv, &d) {
        Err(RackInitError::Role { host, place, message }) => {
            assert_eq!((host.as_str(), place.as_str()), ("d1", "decode[1]"));
            assert!(message.contains("networks.ib"), "{message}");
        }
        other => panic!("expected a role error naming d1, got {:?}", other.map(|c| c.rack.routes.len())),
    }
}

#[test]
fn without_host_agents_the_isolation_routes_are_left_out_and_said() {
    let text = ENDPOINTS.split("[prefill_host]").next().unwrap().to_string()
        + &ENDPOINTS[ENDPOINTS.find("[[decode]]").unwrap()..ENDPOINTS.find("[[decode_host]]").unwrap()];
    let inv = inventory(&text);
    let d = descriptions();
    let d = vec![d[0].clone(), d[1].clone(), d[3].clone(), d[4].clone()];
    let c = compose(&inv, &d).unwrap();
    // Without decode_host the decode agents stand for whole decode servers.
    assert!(c.rack.hosts.iter().filter(|h| h.name.starts_with('d')).all(|h| h.role == HostRole::DecodeServer));
    assert!(c.rack.routes.iter().all(|r| !r.path.to_string().starts_with("prefill_gpu_to_host")));
    assert!(c.rack.routes.iter().any(|r| r.path.to_string() == "decode_gpu_to_host:1->0"));
    let left = c.choices.iter().find(|x| x.what == "left_out").expect("a left_out choice");
    assert!(left.value.contains("prefill_gpu_to_host:0->0") && left.value.contains("host_rdma:0->0"), "{}", left.value);
}

#[test]
fn an_agent_of_another_version_is_named_with_what_to_do() {
    let inv = inventory(ENDPOINTS);
    let (place, h) = inv.hosts()[3];
    let mut d = host("d0", &["10.1.0.20"]);
    assert!(super::same_version(place, h, &d).is_ok());
    d.linkcal_version = "0.0.1-old".into();
    let e = super::same_version(place, h, &d).unwrap_err().to_string();
    for want in ["host d0", "decode[0]", "runs linkcal 0.0.1-old", "install the same build"] {
        assert!(e.contains(want), "missing '{want}' in: {e}");
    }
}

/// LLNL's cts1-pascal server (2 P100 and one ConnectX-5 behind one PLX switch: the spec's
/// prefill server with PP_prefill=2, Num_IB_Cards=1) from its hwloc export, with every RDMA port
/// ACTIVE except `down`.
fn pascal(down: Option<&str>) -> HostDescription {
    let f = std::path::PathBuf::from("../shared/topo-fixtures/LLNL_mpibind_cts1-pascal.xml");
    let topo = crate::topology::discover(&crate::topology::Input::Xml(f), None).unwrap();
    let rdma_ports = topo
        .nics
        .iter()
        .filter(|n| n.kind == crate::topology::model::NicKind::Rdma)
        .map(|n| super::RdmaPort {
            device: n.name.clone(),
            port: 1,
            link_layer: "InfiniBand".into(),
            state: if Some(n.name.as_str()) == down { "DOWN".into() } else { "ACTIVE".into() },
            lid: Some(7),
            gid0: Some("fe80::1".into()),
            netdev: None,
        })
        .collect();
    HostDescription { topology: Some(topo), topology_error: None, rdma_ports, ..host("pre0", &["10.0.0.10"]) }
}

#[test]
fn a_nic_the_map_needs_that_is_down_is_named_with_what_to_do() {
    let text = "token_file = \"token\"\n[prefill]\nname = \"pre0\"\ncontrol = \"127.0.0.1:1\"\n\
                [[decode]]\nname = \"dec0\"\ncontrol = \"127.0.0.1:2\"\n";
    let inv = inventory(text);
    let up = pascal(None);
    let first = up.rdma_ports.first().expect("the cts1-pascal export has an RDMA NIC").device.clone();
    // All ports up: the prefill server maps (the decode host then fails for want of a GPU).
    match compose(&inv, &[up, host("dec0", &["10.0.0.20"])]) {
        Err(RackInitError::Role { host, .. }) => assert_eq!(host, "dec0"),
        other => panic!("expected dec0 to lack a GPU, got {:?}", other.map(|c| c.rack.routes.len())),
    }
    match compose(&inv, &[pascal(Some(&first)), host("dec0", &["10.0.0.20"])]) {
        Err(RackInitError::Role { host, place, message }) => {
            assert_eq!((host.as_str(), place.as_str()), ("pre0", "prefill"));
            for want in [first.as_str(), "is DOWN", "prefill.nics", "ibstat"] {
                assert!(message.contains(want), "missing '{want}' in: {message}");
            }
        }
        other => panic!("expected pre0's down NIC to be named, got {:?}", other.map(|c| c.rack.routes.len())),
    }
}
