//! Maps a discovered server onto the spec's roles (prefill server, decode server j), checks the
//! spec's assumptions, reports each deviation with its consequence, proposes the NIC map, and
//! derives nominal per-direction capacities of the spec's PCIe segments from link speeds.
#![allow(non_snake_case)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::assign;
use super::inventory::{ancestors, link_above};
use super::locality::{between, LocalityClass};
use super::model::{NicKind, NodeKind, PciNode};
use super::{Inventory, TopologyError};
use crate::spec::{SegmentId, SegmentKind};

/// The spec role a server is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The prefill server: PP_prefill GPUs and Num_IB_Cards RDMA NICs behind one PCIe switch.
    Prefill,
    /// A decode server: one GPU, one RDMA NIC, one Ethernet NIC.
    Decode,
}

/// What to map, from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleRequest {
    /// PP_prefill (default: every GPU found).
    pub pp_prefill: Option<usize>,
    /// Num_IB_Cards (default: every RDMA NIC found).
    pub ib_cards: Option<usize>,
    /// GPUs to use, in spec order, by PCI bus id (default: ordered by bus id).
    pub gpus: Option<Vec<String>>,
    /// NICs to use, in spec order, by name or PCI bus id (default: ordered by bus id).
    pub nics: Option<Vec<String>>,
    /// Decode server index j (segment names `GPU_D[j]_PCI`, ...).
    pub decode_index: usize,
}

/// One checked assumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    /// Short id, e.g. `one_switch_fabric`, `gdr_locality[2]`.
    pub check: String,
    /// True when the server matches the spec's assumption.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What it means for the spec's paths and measurements (deviations only).
    pub consequence: Option<String>,
}

/// A GPU and the NIC it uses, with their locality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pairing {
    /// Prefill GPU index i.
    pub gpu: usize,
    /// NIC index k into the ordered RDMA NIC list.
    pub nic: usize,
    /// Their locality class.
    pub class: LocalityClass,
}

/// Nominal per-direction capacity of one PCIe segment, from hwloc's link speeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentCapacity {
    /// The segment, by its spec name.
    pub segment: SegmentId,
    /// True for links the spec does not name (switch uplink, decode IB NIC).
    pub outside_spec: bool,
    /// Nominal capacity per direction (slower end of the link), bytes/s SI; `null` when unknown.
    pub nominal_Bps: Option<f64>,
    /// The link it was read from: device and the port it hangs off.
    pub link: String,
}

/// The result of mapping a server onto a spec role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Conformance {
    /// Role checked.
    pub role: Role,
    /// PP_prefill used (prefill).
    pub pp_prefill: Option<usize>,
    /// Num_IB_Cards used (prefill).
    pub ib_cards: Option<usize>,
    /// Decode server index j (decode).
    pub decode_index: Option<usize>,
    /// GPU i of the role, by PCI bus id.
    pub gpus: Vec<String>,
    /// RDMA NIC k of the role, by name.
    pub rdma_nics: Vec<String>,
    /// The Ethernet NIC (decode).
    pub ethernet_nic: Option<String>,
    /// True when every check passed.
    pub conforms: bool,
    /// Every check, passed or not.
    pub checks: Vec<Check>,
    /// The spec's NIC map k = i mod Num_IB_Cards and the locality of each pair (prefill).
    pub spec_pairs: Vec<Pairing>,
    /// Proposed NIC map: per GPU i the index k into `rdma_nics`, minimising distance with GPUs
    /// spread evenly over NICs (`null` without RDMA NICs).
    pub proposed_nic_map: Option<Vec<usize>>,
    /// The proposed map as `linkcal paths --nic-map` takes it, e.g. `0,1,0,1`.
    pub proposed_nic_map_arg: Option<String>,
    /// Locality of each proposed pair.
    pub proposed_pairs: Vec<Pairing>,
    /// Nominal per-direction capacities of the role's PCIe segments.
    pub capacities: Vec<SegmentCapacity>,
    /// Plain notes (which devices were picked, what is unknown).
    pub notes: Vec<String>,
}

impl Conformance {
    /// The checks that failed.
    pub fn deviations(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

fn check(checks: &mut Vec<Check>, id: String, ok: bool, detail: String, consequence: impl FnOnce() -> String) {
    let consequence = (!ok).then(consequence);
    checks.push(Check { check: id, ok, detail, consequence });
}

/// Picks devices from `avail` (ordered) by the user's selection, naming unknown ones.
fn select(avail: &[(String, String, usize)], want: &Option<Vec<String>>, what: &str) -> Result<Vec<usize>, TopologyError> {
    let Some(want) = want else {
        return Ok((0..avail.len()).collect());
    };
    want.iter()
        .map(|w| {
            avail.iter().position(|(name, pci, _)| name == w || pci == w || pci.trim_start_matches("0000:") == w).ok_or_else(
                || {
                    let known: Vec<&str> = avail.iter().map(|(n, _, _)| n.as_str()).collect();
                    TopologyError::Selection(format!("{what} '{w}' is not on this server; found: {}", known.join(", ")))
                },
            )
        })
        .collect()
}

/// Distance used to rank NICs for a GPU: class first, then tree hops.
fn distance(nodes: &[PciNode], a: usize, b: usize) -> (LocalityClass, i64) {
    let (class, _, hops) = between(nodes, a, b).unwrap_or((LocalityClass::PIX, 0, 0));
    (class, class as i64 * 100 + hops as i64)
}

/// The lowest switch (upstream port) above every node in `members`.
pub fn common_switch(nodes: &[PciNode], members: &[usize]) -> Option<usize> {
    let first = *members.first()?;
    ancestors(nodes, first)
        .into_iter()
        .filter(|&a| nodes[a].kind == NodeKind::SwitchUpstream)
        .find(|a| members.iter().all(|&m| ancestors(nodes, m).contains(a)))
}

fn capacity(nodes: &[PciNode], segment: SegmentId, node: Option<usize>, missing: &str) -> SegmentCapacity {
    let (nominal, link) = match node {
        Some(i) => {
            let port = match nodes[i].parent.map(|p| &nodes[p]) {
                Some(p) if p.kind == NodeKind::HostBridge => format!("host bridge {}", p.pci),
                Some(p) => format!("port {}", p.pci),
                None => "?".into(),
            };
            (link_above(nodes, i).map(|g| (g * 1e9).round()), format!("{} <-> {port}", nodes[i].pci))
        }
        None => (None, missing.to_string()),
    };
    SegmentCapacity { segment, outside_spec: segment.outside_spec(), nominal_Bps: nominal, link }
}

/// Checks the two ends of each link the role uses; a disagreement means a degraded link.
fn check_links(nodes: &[PciNode], checks: &mut Vec<Check>, links: &[(String, usize)]) {
    let mut bad = Vec::new();
    for (what, i) in links {
        let own = nodes[*i].link_GBps;
        let port = nodes[*i].parent.and_then(|p| (nodes[p].kind != NodeKind::HostBridge).then_some(nodes[p].link_GBps)).flatten();
        if let (Some(a), Some(b)) = (own, port) {
            if (a - b).abs() > 0.01 * a.max(b) {
                bad.push(format!("{what} {}: device {a} GB/s, port {b} GB/s", nodes[*i].pci));
            }
        }
    }
    let detail = if bad.is_empty() { "both ends of every link report the same speed".into() } else { bad.join("; ") };
    check(checks, "link_speeds".into(), bad.is_empty(), detail, || {
        "those links run at the slower end's speed (lanes or generation lost): their nominal capacity is the lower figure".into()
    });
}

/// Checks that no two selected NICs are ports of one card (one PCIe link shared by both).
fn check_shared_nic_links(nodes: &[PciNode], checks: &mut Vec<Check>, nics: &[usize], names: &[String]) {
    // Functions of one card share bus, device and parent port (sources without bus ids have no slot).
    let slot = |i: usize| nodes[i].pci.rsplit_once('.').map(|(s, _)| s.to_string());
    let mut shared = Vec::new();
    for a in 0..nics.len() {
        for b in a + 1..nics.len() {
            let same = slot(nics[a]).is_some() && slot(nics[a]) == slot(nics[b]);
            if nics[a] != nics[b] && same && nodes[nics[a]].parent == nodes[nics[b]].parent {
                let card = slot(nics[a]).unwrap_or_default();
                shared.push(format!("NIC {a} ({}) and NIC {b} ({}) are functions of card {card}", names[a], names[b]));
            }
        }
    }
    let detail = if shared.is_empty() { "every NIC has its own PCIe link".into() } else { shared.join("; ") };
    check(checks, "nic_own_pcie_link".into(), shared.is_empty(), detail, || {
        "those IB_NIC_P[k]_PCI segments are one physical PCIe link: concurrent Path 2 transfers through both ports share its capacity".into()
    });
}

/// Devices available for a role: (name, PCI bus id, tree node), ordered by bus id.
type Avail = Vec<(String, String, usize)>;

fn gpu_list(inv: &Inventory) -> Avail {
    inv.gpus.iter().map(|g| (g.pci.clone(), g.pci.clone(), g.node)).collect()
}

fn nic_list(inv: &Inventory, kind: NicKind) -> Avail {
    inv.nics.iter().filter(|n| n.kind == kind).map(|n| (n.name.clone(), n.pci.clone(), n.node)).collect()
}

/// The devices a role uses: names (GPUs by bus id, NICs by OS name) and tree nodes, in spec order.
struct Picked {
    names: Vec<String>,
    nodes: Vec<usize>,
}

impl Picked {
    fn new(avail: &Avail, sel: &[usize], take: usize) -> Self {
        let chosen = sel.iter().take(take).map(|&i| &avail[i]);
        let (names, nodes) = chosen.map(|(n, _, node)| (n.clone(), *node)).unzip();
        Picked { names, nodes }
    }
}

/// Counts checks and notes of the prefill role; returns the picked GPUs and NICs and P, K.
fn pick_prefill(
    inv: &Inventory,
    req: &RoleRequest,
    checks: &mut Vec<Check>,
    notes: &mut Vec<String>,
) -> Result<(Picked, Picked, usize, usize), TopologyError> {
    let (gpus, rdma) = (gpu_list(inv), nic_list(inv, NicKind::Rdma));
    let gsel = select(&gpus, &req.gpus, "GPU")?;
    let nsel = select(&rdma, &req.nics, "RDMA NIC")?;
    let p = req.pp_prefill.unwrap_or(gsel.len().max(1));
    let k = req.ib_cards.unwrap_or(nsel.len().max(1));
    check(checks, "gpu_count".into(), gsel.len() >= p, format!("{} GPUs selected, PP_prefill = {p}", gsel.len()), || {
        format!("stages {}..{p} have no GPU on this server: the spec's prefill server does not fit", gsel.len())
    });
    check(
        checks,
        "rdma_nic_count".into(),
        nsel.len() >= k,
        format!("{} RDMA NICs selected, Num_IB_Cards = {k}", nsel.len()),
        || {
            let missing: Vec<String> = (nsel.len()..k).map(|i| format!("IB_NIC_P[{i}]_PCI")).collect();
            format!(
                "{} do not exist here: Path 2 (GPUDirect RDMA to decode) has no NIC for the GPUs mapped to them",
                missing.join(", ")
            )
        },
    );
    if gsel.len() > p {
        notes.push(format!("{} GPUs found; GPU i = the first {p} by PCI bus id (choose with --gpus)", gsel.len()));
    }
    if nsel.len() > k {
        notes.push(format!("{} RDMA NICs found; NIC k = the first {k} by PCI bus id (choose with --nics)", nsel.len()));
    }
    Ok((Picked::new(&gpus, &gsel, p), Picked::new(&rdma, &nsel, k), p, k))
}

/// One switch above everything, and Path 1 pairs inside the fabric (or over NVLink/xGMI);
/// returns that switch.
fn fabric_checks(inv: &Inventory, gpus: &Picked, n: &[usize], checks: &mut Vec<Check>) -> Option<usize> {
    let (nodes, g) = (&inv.tree, &gpus.nodes);
    let members: Vec<usize> = g.iter().chain(n).copied().collect();
    let fabric = common_switch(nodes, &members);
    let detail = match fabric {
        Some(s) => format!("all behind switch {} ({})", nodes[s].pci, nodes[s].vendor_device.as_deref().unwrap_or("?")),
        None => "no single PCIe switch has every selected GPU and NIC below it".into(),
    };
    check(checks, "one_switch_fabric".into(), fabric.is_some(), detail, || {
        "the spec's single PLX switch does not exist here: some Path 1 / Path 2 traffic leaves the switch fabric \
         through the CPU root complex, and Uplink_P_PCI is not one link"
            .into()
    });
    for i in 0..g.len().saturating_sub(1) {
        let (class, _) = distance(nodes, g[i], g[i + 1]);
        if let Some(l) = inv.gpu_link(&gpus.names[i], &gpus.names[i + 1]) {
            let fabric = match l.fabric {
                super::PeerFabric::Nvlink => "NVLink",
                super::PeerFabric::Xgmi => "xGMI",
            };
            let detail = format!("GPU {i} -> GPU {}: {} {fabric} link(s) (PCIe path {class})", i + 1, l.links);
            check(checks, format!("p2p_over_pcie[{i}]"), false, detail, || {
                format!(
                    "Path 1 peer copies from GPU {i} to GPU {} go over {fabric} and bypass the PCIe switch: GPU_P[{i}]_PCI \
                     and GPU_P[{}]_PCI are not measured by Path 1 (its bandwidth is the {fabric} link's), so the spec's \
                     PCIe model of Path 1 does not hold here",
                    i + 1,
                    i + 1
                )
            });
            continue;
        }
        check(
            checks,
            format!("p2p_locality[{i}]"),
            class.in_switch_fabric(),
            format!("GPU {i} -> GPU {}: {class}", i + 1),
            || {
                format!(
                    "Path 1 P2P from GPU {i} to GPU {} crosses the CPU ({class}): it runs through the root complex \
                 (slower, or no P2P at all), not only GPU_P[{i}]_PCI and GPU_P[{}]_PCI",
                    i + 1,
                    i + 1
                )
            },
        );
    }
    fabric
}

/// The spec's pairs (GPUDirect checks), the proposed balanced map and its pairs.
fn nic_map_checks(
    nodes: &[PciNode],
    g: &[usize],
    nics: &Picked,
    checks: &mut Vec<Check>,
) -> (Vec<Pairing>, Option<Vec<usize>>, Vec<Pairing>) {
    let n = &nics.nodes;
    if n.is_empty() {
        return (Vec::new(), None, Vec::new());
    }
    let cost: Vec<Vec<i64>> = g.iter().map(|&a| n.iter().map(|&b| distance(nodes, a, b).1).collect()).collect();
    let pair = |gi: usize, ni: usize| Pairing { gpu: gi, nic: ni, class: distance(nodes, g[gi], n[ni]).0 };
    let spec_pairs: Vec<Pairing> = (0..g.len()).map(|i| pair(i, i % n.len())).collect();
    for sp in &spec_pairs {
        let name = &nics.names[sp.nic];
        let detail = format!("GPU {} -> NIC {} ({name}): {}", sp.gpu, sp.nic, sp.class);
        check(checks, format!("gdr_locality[{}]", sp.gpu), sp.class.in_switch_fabric(), detail, || {
            format!(
                "GPUDirect RDMA from GPU {} through NIC {} ({name}) would cross the CPU root complex ({}): lower bandwidth, \
                 and NCCL's default GDR level (PXB) would stage it through host memory",
                sp.gpu, sp.nic, sp.class
            )
        });
    }
    let Some(map) = assign::balanced_map(&cost, n.len()) else {
        return (spec_pairs, None, Vec::new());
    };
    let spec_map: Vec<usize> = spec_pairs.iter().map(|s| s.nic).collect();
    let (sc, pc) = (assign::map_cost(&cost, &spec_map), assign::map_cost(&cost, &map));
    let arg = join(&map);
    check(checks, "spec_nic_map_closest".into(), sc <= pc, format!("spec map {} vs proposed {arg}", join(&spec_map)), || {
        format!("k = i mod Num_IB_Cards pairs some GPUs with farther NICs than needed: run `linkcal paths --nic-map {arg}`")
    });
    let proposed_pairs = map.iter().enumerate().map(|(i, &k)| pair(i, k)).collect();
    (spec_pairs, Some(map), proposed_pairs)
}

/// Maps the server onto the prefill role.
pub fn prefill(inv: &Inventory, req: &RoleRequest) -> Result<Conformance, TopologyError> {
    let nodes = &inv.tree;
    let (mut checks, mut notes) = (Vec::new(), Vec::new());
    let (gpus, nics, p, k) = pick_prefill(inv, req, &mut checks, &mut notes)?;
    let (g, n) = (&gpus.nodes, &nics.nodes);
    let fabric = fabric_checks(inv, &gpus, n, &mut checks);
    let (spec_pairs, proposed, proposed_pairs) = nic_map_checks(nodes, g, &nics, &mut checks);
    check_shared_nic_links(nodes, &mut checks, n, &nics.names);
    let mut links: Vec<(String, usize)> = g.iter().enumerate().map(|(i, &x)| (format!("GPU {i}"), x)).collect();
    links.extend(n.iter().enumerate().map(|(k, &x)| (format!("NIC {k}"), x)));
    check_links(nodes, &mut checks, &links);
    let seg = |kind: SegmentKind, i: usize| SegmentId::new(kind, i);
    let mut capacities: Vec<SegmentCapacity> =
        g.iter().enumerate().map(|(i, &x)| capacity(nodes, seg(SegmentKind::GpuP, i), Some(x), "")).collect();
    capacities.extend(n.iter().enumerate().map(|(k, &x)| capacity(nodes, seg(SegmentKind::IbNicP, k), Some(x), "")));
    capacities.push(capacity(nodes, seg(SegmentKind::UplinkP, 0), fabric, "no common switch: no single uplink"));
    Ok(Conformance {
        role: Role::Prefill,
        pp_prefill: Some(p),
        ib_cards: Some(k),
        decode_index: None,
        gpus: gpus.names,
        rdma_nics: nics.names,
        ethernet_nic: None,
        conforms: checks.iter().all(|c| c.ok),
        checks,
        spec_pairs,
        proposed_nic_map_arg: proposed.as_deref().map(join),
        proposed_nic_map: proposed,
        proposed_pairs,
        capacities,
        notes,
    })
}

fn join(map: &[usize]) -> String {
    map.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
}

/// The decode server's GPU, RDMA NIC and Ethernet NIC (first of each), with count checks.
fn pick_decode(
    inv: &Inventory,
    req: &RoleRequest,
    checks: &mut Vec<Check>,
    notes: &mut Vec<String>,
) -> Result<[Picked; 3], TopologyError> {
    let (gpus, rdma, eth) = (gpu_list(inv), nic_list(inv, NicKind::Rdma), nic_list(inv, NicKind::Ethernet));
    let gsel = select(&gpus, &req.gpus, "GPU")?;
    let (mut rsel, mut esel) = (Vec::new(), Vec::new());
    match &req.nics {
        None => {
            rsel = (0..rdma.len()).collect();
            esel = (0..eth.len()).collect();
        }
        Some(names) => {
            let all: Avail = rdma.iter().chain(&eth).cloned().collect();
            for w in names {
                let i = select(&all, &Some(vec![w.clone()]), "NIC")?[0];
                if i < rdma.len() {
                    rsel.push(i)
                } else {
                    esel.push(i - rdma.len())
                }
            }
        }
    }
    let counts = [
        (
            "gpu_count",
            gsel.len(),
            "GPUs",
            "no GPU: this server cannot be decode server j (Path 2 ends and Path 3 starts at a GPU)",
        ),
        ("rdma_nic_count", rsel.len(), "RDMA NICs", "no RDMA NIC: Path 2 (KV handoff over IB) cannot reach this server"),
        ("ethernet_nic_count", esel.len(), "Ethernet NICs", "no Ethernet NIC: Path 3 (decode activations over TCP) has no link"),
    ];
    for (id, count, what, consequence) in counts {
        check(checks, id.into(), count > 0, format!("{count} {what}"), || consequence.into());
        if count > 1 {
            notes.push(format!("{count} {what} found; the spec's decode server has one: using the first by PCI bus id"));
        }
    }
    Ok([Picked::new(&gpus, &gsel, 1), Picked::new(&rdma, &rsel, 1), Picked::new(&eth, &esel, 1)])
}

/// Maps the server onto decode server `req.decode_index`.
pub fn decode(inv: &Inventory, req: &RoleRequest) -> Result<Conformance, TopologyError> {
    let nodes = &inv.tree;
    let j = req.decode_index;
    let (mut checks, mut notes) = (Vec::new(), Vec::new());
    let [gpu, rdma, eth] = pick_decode(inv, req, &mut checks, &mut notes)?;
    let (g, r, e) = (gpu.nodes.first().copied(), rdma.nodes.first().copied(), eth.nodes.first().copied());
    if let (Some(g), Some(r)) = (g, r) {
        let (class, _) = distance(nodes, g, r);
        check(&mut checks, "gdr_locality".into(), class.in_switch_fabric(), format!("GPU -> RDMA NIC: {class}"), || {
            format!("GPUDirect RDMA into this GPU crosses the CPU root complex ({class}): Path 2's last hops are slower than GPU_D[{j}]_PCI alone")
        });
    }
    let links: Vec<(String, usize)> = [("GPU", g), ("RDMA NIC", r), ("Ethernet NIC", e)]
        .into_iter()
        .filter_map(|(w, x)| x.map(|x| (w.to_string(), x)))
        .collect();
    check_links(nodes, &mut checks, &links);
    let switch = match (g, e) {
        (Some(g), Some(e)) => common_switch(nodes, &[g, e]),
        _ => None,
    };
    let seg = |kind: SegmentKind| SegmentId::new(kind, j);
    let capacities = vec![
        capacity(nodes, seg(SegmentKind::GpuD), g, "no GPU"),
        capacity(nodes, seg(SegmentKind::EthNicD), e, "no Ethernet NIC"),
        capacity(nodes, seg(SegmentKind::IbNicD), r, "no RDMA NIC"),
        capacity(nodes, seg(SegmentKind::UplinkD), switch, "GPU and Ethernet NIC share no PCIe switch: no single uplink"),
    ];
    Ok(Conformance {
        role: Role::Decode,
        pp_prefill: None,
        ib_cards: None,
        decode_index: Some(j),
        gpus: gpu.names,
        rdma_nics: rdma.names,
        ethernet_nic: eth.names.into_iter().next(),
        conforms: checks.iter().all(|c| c.ok),
        checks,
        spec_pairs: Vec::new(),
        proposed_nic_map: None,
        proposed_nic_map_arg: None,
        proposed_pairs: Vec::new(),
        capacities,
        notes,
    })
}
