//! Maps described hosts onto the spec's roles and composes the rack file: shape, host entries,
//! data-plane addresses and every route with its hops. Every choice is recorded with why it was
//! made and which inventory field overrides it.

use std::path::Path;

use super::inventory::{HostSpec, Place, RackInventory};
use super::routes::{self, Hosts, Mapped, NetAddrs};
use super::HostDescription;
use super::RackInitError;
use crate::error::InputError;
use crate::model::rack::{Choice, HostEntry, HostFacts, HostRole};
use crate::model::{RackFile, RACK_SCHEMA};
use crate::spec::RackShape;
use crate::topology::{conformance, Conformance, Inventory, RoleRequest};

/// What `compose` produced: the rack file (without route checks yet) and every choice.
pub struct Composed {
    /// The rack file.
    pub rack: RackFile,
    /// Choices in the order made.
    pub choices: Vec<Choice>,
    /// Facts per host.
    pub facts: Vec<HostFacts>,
}

fn choice(out: &mut Vec<Choice>, host: Option<&str>, what: &str, value: String, why: String, field: String) {
    out.push(Choice { host: host.map(str::to_string), what: what.into(), value, why, override_field: field });
}

fn role_err(h: &HostSpec, place: Place, message: String) -> RackInitError {
    RackInitError::Role { host: h.name.clone(), place: place.to_string(), message }
}

/// The role a place takes in the rack file.
pub fn role_of(inv: &RackInventory, place: Place) -> (HostRole, usize) {
    match place {
        Place::Prefill => (HostRole::PrefillServer, 0),
        Place::PrefillGpu(i) => (HostRole::PrefillGpu, i),
        Place::PrefillHost => (HostRole::PrefillHost, 0),
        Place::Decode(j) if inv.decode_host.is_empty() => (HostRole::DecodeServer, j),
        Place::Decode(j) => (HostRole::DecodeGpu, j),
        Place::DecodeHost(j) => (HostRole::DecodeHost, j),
    }
}

/// Maps one host onto its role: conformance when it has GPUs, host memory when it has none
/// and the inventory allows that; an endpoint's own agent (one per GPU, or host memory) over
/// host TCP.
pub fn map_role(
    inv: &RackInventory,
    place: Place,
    h: &HostSpec,
    d: &HostDescription,
    choices: &mut Vec<Choice>,
) -> Result<Mapped, RackInitError> {
    let (role, index) = role_of(inv, place);
    if !matches!(role, HostRole::PrefillServer | HostRole::DecodeServer) {
        let role = serde_json::to_value(role).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let why = "one agent per endpoint: every route over host TCP".to_string();
        choice(choices, Some(&h.name), "role", format!("{role} {index}"), why, format!("{place}"));
        return Ok(Mapped { on: NetAddrs::of(d, &inv.networks), ..Mapped::default() });
    }
    let topo = d.topology.as_ref();
    let gpus = topo.map(|t| t.gpus.len()).unwrap_or(0);
    if gpus == 0 {
        let why = d.topology_error.clone().map(|e| format!("live discovery failed: {e}")).unwrap_or("no GPU found".into());
        if !inv.host_tcp_only {
            let m = format!("{why}, and the {place} role needs a GPU: run on a GPU server, or set host_tcp_only = true in the inventory to measure host TCP only");
            return Err(role_err(h, place, m));
        }
        let value = "host memory (no GPU): every route over host TCP".to_string();
        choice(choices, Some(&h.name), "role", format!("{place} = {value}"), why, "host_tcp_only".into());
        return Ok(Mapped { on: NetAddrs::of(d, &inv.networks), ..Mapped::default() });
    }
    let req = RoleRequest {
        pp_prefill: inv.pp_prefill.filter(|_| place == Place::Prefill),
        ib_cards: inv.ib_cards.filter(|_| place == Place::Prefill),
        gpus: h.gpus.clone(),
        nics: h.nics.clone(),
        decode_index: match place {
            Place::Decode(j) => j,
            _ => 0,
        },
    };
    let inventory = Inventory::from_tree(topo.map(|t| t.tree.clone()).unwrap_or_default());
    let conf = if place.is_prefill() { conformance::prefill(&inventory, &req) } else { conformance::decode(&inventory, &req) }
        .map_err(|e| role_err(h, place, format!("{e}: fix {place}.gpus / {place}.nics in the inventory")))?;
    mapped_from(inv, place, h, d, &conf, choices)
}

fn mapped_from(
    inv: &RackInventory,
    place: Place,
    h: &HostSpec,
    d: &HostDescription,
    conf: &Conformance,
    choices: &mut Vec<Choice>,
) -> Result<Mapped, RackInitError> {
    let from_inv = |set: bool, found: &str| if set { "inventory".to_string() } else { found.to_string() };
    let gwhy = from_inv(h.gpus.is_some(), "every GPU found, by PCI bus id");
    choice(choices, Some(&h.name), "gpus", conf.gpus.join(","), gwhy, format!("{place}.gpus"));
    if conf.rdma_nics.is_empty() && !inv.host_tcp_only {
        let m = "no RDMA NIC found and the role needs one: check `ibv_devices` on the host, or set host_tcp_only = true";
        return Err(role_err(h, place, m.into()));
    }
    for nic in &conf.rdma_nics {
        let ports: Vec<_> = d.rdma_ports.iter().filter(|p| &p.device == nic).collect();
        let Some(p) = ports.iter().find(|p| p.is_active()).or(ports.first()) else { continue };
        if !p.is_active() && !inv.host_tcp_only {
            let m = format!("RDMA NIC {nic} port {} is {}: check its cable, switch port and subnet manager (`ibstat {nic}`), or leave it out with {place}.nics", p.port, p.state);
            return Err(role_err(h, place, m));
        }
        let gid = p.gid0.clone().unwrap_or_else(|| "none".into());
        let lid = p.lid.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
        let value = format!("{nic} port {} {} {} LID {lid} GID {gid}", p.port, p.link_layer, p.state);
        choice(
            choices,
            Some(&h.name),
            "rdma_nic",
            value,
            from_inv(h.nics.is_some(), "RDMA NICs by PCI bus id"),
            format!("{place}.nics"),
        );
    }
    let deviations: Vec<String> = conf.deviations().map(|c| format!("{}: {}", c.check, c.detail)).collect();
    let ib_addr = conf.rdma_nics.iter().find_map(|n| {
        let netdev = d.rdma_ports.iter().find(|p| &p.device == n && p.is_active())?.netdev.clone()?;
        d.ipv4_of(&netdev)
    });
    let eth_addr = conf.ethernet_nic.as_deref().and_then(|e| d.ipv4_of(e));
    Ok(Mapped {
        gpus: conf.gpus.clone(),
        rdma: conf.rdma_nics.clone(),
        eth: conf.ethernet_nic.clone(),
        deviations,
        ib_addr,
        eth_addr,
        data_addr: None,
        on: NetAddrs::of(d, &inv.networks),
    })
}

/// Picks a host's addresses: the inventory's `data_addr` (checked to be the host's), else its
/// address in `networks.pcie`, else the NICs' own addresses, else the management address (the
/// data plane then shares the management network, which the choice says).
pub fn pick_addrs(
    inv: &RackInventory,
    place: Place,
    h: &HostSpec,
    d: &HostDescription,
    m: &mut Mapped,
    choices: &mut Vec<Choice>,
) -> Result<(), RackInitError> {
    let field = format!("{place}.data_addr");
    let mgmt = RackInventory::control_of(h).ip();
    let (addr, why) = if let Some(a) = h.data_addr {
        if d.interface_of(a).is_none() {
            let m = format!("{a} is not an address of host {} (it has: {}): fix it or remove it", h.name, d.all_addrs());
            return Err(InputError::field(&inv.path, field, m).into());
        }
        (a, "inventory".to_string())
    } else if let Some(a) = m.on.pcie {
        (a, "its address in networks.pcie".to_string())
    } else if let Some(a) = m.ib_addr.or(m.eth_addr) {
        (a, "the address of the role's NIC".to_string())
    } else {
        let on = d.interface_of(mgmt).map(|i| i.name.clone()).unwrap_or_else(|| "?".into());
        (mgmt, format!("no data NIC with an address: the data plane shares the management network ({on})"))
    };
    choice(choices, Some(&h.name), "data_addr", addr.to_string(), why, field.clone());
    m.data_addr = Some(addr);
    m.ib_addr = Some(h.data_addr.or(m.ib_addr).unwrap_or(addr));
    m.eth_addr = Some(h.data_addr.or(m.eth_addr).unwrap_or(addr));
    if m.eth_addr != m.data_addr {
        choice(
            choices,
            Some(&h.name),
            "eth_addr",
            format!("{}", m.eth_addr.unwrap_or(addr)),
            "Ethernet NIC (Path 3)".into(),
            field,
        );
    }
    Ok(())
}

/// The rack's shape: the inventory's overrides, else what the prefill server has (its GPU
/// agents, its RDMA NICs or IB blocks).
pub fn pick_shape(inv: &RackInventory, pre: &Mapped, choices: &mut Vec<Choice>) -> Result<RackShape, RackInitError> {
    let pick = |over: Option<usize>, found: usize, what: &str| match over {
        Some(v) => (v, "inventory".to_string()),
        None if found == 0 => (1, format!("no {what} on the prefill host: one endpoint stands for its host memory")),
        None => (found, format!("{what} found on the prefill host")),
    };
    let (pp, pwhy) = match inv.prefill_gpu.len() {
        0 => pick(inv.pp_prefill, pre.gpus.len(), "GPU"),
        n => inv.pp_prefill.map(|v| (v, "inventory".to_string())).unwrap_or((n, "prefill_gpu agents listed".into())),
    };
    let (k, kwhy) = match (inv.ib_cards, pre.rdma.len(), inv.networks.ib.len()) {
        (None, 0, n) if n > 1 => (n, "one networks.ib block per prefill NIC".to_string()),
        (None, 0, 1) => (1, "one networks.ib block".to_string()),
        (over, found, _) => pick(over, found, "RDMA NIC"),
    };
    choice(choices, None, "pp_prefill", pp.to_string(), pwhy, "pp_prefill".into());
    choice(choices, None, "pp_decode", inv.decode.len().to_string(), "decode hosts listed".into(), "decode".into());
    choice(choices, None, "ib_cards", k.to_string(), kwhy, "ib_cards".into());
    let shape = RackShape::with_nic_map(pp, inv.decode.len(), k, inv.nic_map.clone()).map_err(|e| {
        let f = if inv.nic_map.is_some() { "nic_map" } else { "pp_prefill" };
        InputError::field(&inv.path, f, e.to_string())
    })?;
    let nwhy = if inv.nic_map.is_some() { "inventory" } else { "the spec's k = i mod Num_IB_Cards" };
    let map: Vec<String> = shape.nic_map.iter().map(|k| k.to_string()).collect();
    choice(choices, None, "nic_map", map.join(","), nwhy.into(), "nic_map".into());
    Ok(shape)
}

/// Composes the rack file from the inventory and the hosts' descriptions (in rack order).
pub fn compose(inv: &RackInventory, descs: &[HostDescription]) -> Result<Composed, RackInitError> {
    let mut choices = Vec::new();
    let mut mapped = Vec::new();
    for ((place, h), d) in inv.hosts().into_iter().zip(descs) {
        let mut m = map_role(inv, place, h, d, &mut choices)?;
        pick_addrs(inv, place, h, d, &mut m, &mut choices)?;
        mapped.push(m);
    }
    let shape = pick_shape(inv, &mapped[0], &mut choices)?;
    let names: Vec<String> = inv.hosts().iter().map(|(_, h)| h.name.clone()).collect();
    let places: Vec<Place> = inv.hosts().iter().map(|(p, _)| *p).collect();
    let view = Hosts { places: &places, names: &names, mapped: &mapped, networks: &inv.networks };
    let (routes, left_out) = routes::routes(&shape, &view)?;
    if !left_out.is_empty() {
        let list: Vec<String> = left_out.iter().map(|p| p.to_string()).collect();
        let why = "no host-memory agent for them".to_string();
        choice(&mut choices, None, "left_out", list.join(","), why, "prefill_host".into());
    }
    let hosts: Vec<HostEntry> = inv
        .hosts()
        .into_iter()
        .zip(&mapped)
        .map(|((place, h), m)| HostEntry {
            name: h.name.clone(),
            role: role_of(inv, place).0,
            index: role_of(inv, place).1,
            control_addr: h.control.clone(),
            data_addr: m.data_addr.map(|a| a.to_string()).unwrap_or_default(),
            netns: None,
        })
        .collect();
    let mtu = descs.iter().zip(&mapped).filter_map(|(d, m)| d.interface_of(m.data_addr?)?.mtu).min();
    let facts = inv
        .hosts()
        .iter()
        .zip(descs)
        .zip(&mapped)
        .map(|(((_, h), d), m)| HostFacts {
            name: h.name.clone(),
            hostname: d.hostname.clone(),
            gpus: m.gpus.clone(),
            rdma_nics: m.rdma.clone(),
            ethernet_nic: m.eth.clone(),
            deviations: m.deviations.clone(),
        })
        .collect();
    let rack = RackFile {
        schema: RACK_SCHEMA.into(),
        routes,
        shape,
        emulated: false,
        tcp_congestion_control: inv.tcp_congestion_control.clone(),
        emulation: None,
        payload_scale: inv.payload_scale,
        mtu_bytes: mtu,
        token_file: absolute(&inv.token_file),
        hosts,
        control_netns: None,
        composed: None,
    };
    Ok(Composed { rack, choices, facts })
}

fn absolute(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}
