//! Which of this host's RDMA NICs the probes may use, and how they pair: RC RDMA WRITE needs an
//! active InfiniBand or RoCE (Ethernet) port, and the two ends of a local run must share a link
//! layer (an IB compute port cannot reach a RoCE storage port; an EFA device speaks SRD, not
//! RC). GPUs use the NIC discovery proposes (nearest, balanced) among the usable ones.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Nic;
use crate::rdma::sysfs::port_info;
use crate::rdma::LinkLayer;

/// The far end of a local RDMA run: the NIC receiving, and the GPU nearest it (CUDA ordinal;
/// `None`: receive into host memory, as no GPU maps to that NIC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPeer {
    /// Receiving NIC.
    pub nic: String,
    /// Receiving GPU (CUDA ordinal), or host memory when `None`.
    pub gpu: Option<usize>,
}

/// The NIC record of `name` with port 1's state and link layer from `sysfs`.
pub fn describe(sysfs: &Path, name: &str) -> Nic {
    let port = port_info(sysfs, name, 1);
    Nic {
        name: name.to_string(),
        numa_node: crate::rdma::numa::nic_numa_node(sysfs, name),
        active: port.map(|p| p.active),
        link_layer: port.and_then(|p| p.link_layer),
    }
}

/// Why `nic` cannot carry an RC RDMA WRITE here, or `None` when it can. A NIC sysfs says
/// nothing about is given the benefit of the doubt (the run then reports what verbs says).
pub fn unusable(nic: &Nic) -> Option<String> {
    if nic.active == Some(false) {
        return Some(format!("{} port 1 is not active", nic.name));
    }
    if nic.active.is_some() && nic.link_layer.is_none() {
        return Some(format!(
            "{} is neither InfiniBand nor RoCE (e.g. EFA, which has no RC queue pairs): RC RDMA WRITE cannot run on it",
            nic.name
        ));
    }
    None
}

/// The compute NICs: usable ones (see [`unusable`]) of the link layer most of them share
/// (InfiniBand on a tie), in bus order, as indices into `nics`.
pub fn compute_nics(nics: &[Nic]) -> Vec<usize> {
    let usable: Vec<usize> = (0..nics.len()).filter(|&k| unusable(&nics[k]).is_none()).collect();
    let count = |l: Option<LinkLayer>| usable.iter().filter(|&&k| nics[k].link_layer == l).count();
    let ib = count(Some(LinkLayer::Infiniband));
    let eth = count(Some(LinkLayer::Ethernet));
    let unknown = count(None);
    let layer = if unknown >= ib.max(eth) && unknown > 0 {
        None
    } else if eth > ib {
        Some(LinkLayer::Ethernet)
    } else {
        Some(LinkLayer::Infiniband)
    };
    usable.into_iter().filter(|&k| nics[k].link_layer == layer).collect()
}

/// The receiving NIC of each NIC's local run: the next usable NIC in bus order with the same
/// link layer (itself when it is the only one); `Err(reason)` for a NIC that cannot run.
pub fn partners(nics: &[Nic]) -> Vec<Result<usize, String>> {
    (0..nics.len())
        .map(|k| {
            if let Some(why) = unusable(&nics[k]) {
                return Err(why);
            }
            let n = nics.len();
            Ok((1..n)
                .map(|d| (k + d) % n)
                .find(|&j| unusable(&nics[j]).is_none() && nics[j].link_layer == nics[k].link_layer)
                .unwrap_or(k))
        })
        .collect()
}

/// The NIC map discovery proposes for the GPUs of `input` (each on its closest NIC,
/// balanced), over the NICs named in `compute` only (in their order): entry i indexes
/// `compute`.
pub fn discovered_map(input: &crate::topology::Input, compute: &[String]) -> Result<Vec<usize>, String> {
    let req = crate::topology::RoleRequest { nics: Some(compute.to_vec()), ..Default::default() };
    let report = crate::topology::discover(input, Some((super::Role::Prefill, &req))).map_err(|e| e.to_string())?;
    report
        .conformance
        .and_then(|c| c.proposed_nic_map)
        .ok_or_else(|| "discovery proposes no NIC map here (it needs GPUs and RDMA NICs behind PCIe switches)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P6: &str = "../shared/topo-fixtures/ai-dynamo_nixl_p6-b200.48xl-topo.xml";
    const TIOGA: &str = "../shared/topo-fixtures/LLNL_mpibind_eas-tioga.xml";

    /// `(bus id, OpenFabrics name)` of a fixture's RDMA devices, in bus order. Read with a
    /// plain XML parser: these trimmed exports (no PU objects) do not pass hwloc's own check.
    fn openfabrics(path: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        let doc =
            roxmltree::Document::parse_with_options(&text, roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() })
                .unwrap();
        let mut out: Vec<(String, String)> = doc
            .descendants()
            .filter(|n| n.attribute("type") == Some("OSDev") && n.attribute("osdev_type") == Some("3"))
            .filter_map(|n| {
                let pci = n.ancestors().find(|a| a.attribute("type") == Some("PCIDev"))?;
                Some((pci.attribute("pci_busid")?.to_string(), n.attribute("name")?.to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// The fixture's RDMA NICs as this host's sysfs would describe them: `ib*` ConnectX-7
    /// ports InfiniBand, EFA (`rdmap*`) with no IB/RoCE link layer.
    fn fixture_nics(path: &str) -> Vec<Nic> {
        let root = tempfile::tempdir().unwrap();
        openfabrics(path)
            .into_iter()
            .map(|(_, name)| {
                let layer = if name.starts_with("ib") { "InfiniBand" } else { "Unknown" };
                crate::rdma::sysfs::tests::fake_port(root.path(), &name, true, layer, &[]);
                describe(root.path(), &name)
            })
            .collect()
    }

    #[test]
    fn p6_b200_pairs_the_connectx_ports_only_with_each_other() {
        let nics = fixture_nics(P6);
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 10, "{names:?}");
        let ib: Vec<usize> = (0..nics.len()).filter(|&k| nics[k].name.starts_with("ib")).collect();
        assert_eq!(ib.len(), 2);
        assert!(ib[1] + 1 < nics.len(), "EFA devices follow the ConnectX ports in bus order");
        let p = partners(&nics);
        // The old k -> k+1 pairing sent the second ConnectX port to an EFA device.
        assert_eq!(p[ib[0]], Ok(ib[1]));
        assert_eq!(p[ib[1]], Ok(ib[0]));
        for (k, r) in p.iter().enumerate().filter(|(k, _)| !ib.contains(k)) {
            assert!(r.as_ref().unwrap_err().contains("neither InfiniBand nor RoCE"), "{}: {r:?}", nics[k].name);
        }
        assert_eq!(compute_nics(&nics), ib);
    }

    #[test]
    fn p6_b200_gpus_use_only_the_compute_nics() {
        use crate::gpu::CudaDevice;
        use crate::hwprobe::{catalogue, Inventory, ProbeKind, Role};
        let nics = fixture_nics(P6);
        let dev = |i: usize| CudaDevice {
            ordinal: i,
            name: "NVIDIA B200".into(),
            pci: format!("0000:{:02x}:00.0", 0x10 + i).parse().unwrap(),
            total_mem_bytes: 1 << 30,
            dmabuf: true,
        };
        let inv = Inventory {
            cuda: Ok((0..8).map(dev).collect()),
            peers: vec![],
            amd: vec![],
            hip: crate::hwprobe::hip::HipInventory::absent(),
            rdma: Ok(nics),
            peermem: false,
            cuda_links: Default::default(),
        };
        let c = catalogue(&inv, Role::Prefill, None, None);
        let used: Vec<String> = c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).filter_map(|p| p.nic.clone()).collect();
        assert_eq!(used.len(), 8);
        assert!(used.iter().all(|n| n.starts_with("ib")), "GPU i mod all NICs picked EFA devices: {used:?}");
        assert!(used.iter().any(|n| n == "ibp115s0f0") && used.iter().any(|n| n == "ibp116s0f0"), "{used:?}");
        // An explicit map indexes the compute NICs.
        let c = catalogue(&inv, Role::Prefill, None, Some(&[1; 8]));
        assert!(c.iter().filter(|p| p.kind == ProbeKind::GpudirectRdma).all(|p| p.nic.as_deref() == Some("ibp116s0f0")));
    }

    #[test]
    fn down_ports_and_mixed_link_layers_do_not_pair() {
        let root = tempfile::tempdir().unwrap();
        let mk = |name: &str, active: bool, layer: &str| {
            crate::rdma::sysfs::tests::fake_port(root.path(), name, active, layer, &[]);
            describe(root.path(), name)
        };
        let nics = vec![
            mk("mlx5_0", true, "InfiniBand"),
            mk("mlx5_1", true, "Ethernet"),
            mk("mlx5_2", false, "InfiniBand"),
            mk("mlx5_3", true, "InfiniBand"),
        ];
        let p = partners(&nics);
        assert_eq!(p[0], Ok(3));
        assert_eq!(p[1], Ok(1), "the only RoCE port loops back to itself");
        assert!(p[2].as_ref().unwrap_err().contains("not active"));
        assert_eq!(p[3], Ok(0));
        assert_eq!(compute_nics(&nics), [0, 3]);
        // A host whose sysfs says nothing keeps every NIC.
        let silent = vec![describe(root.path(), "nope0"), describe(root.path(), "nope1")];
        assert_eq!(partners(&silent), [Ok(1), Ok(0)]);
    }

    #[test]
    fn mi250x_has_no_rdma_nic_to_pair() {
        // Slingshot Cassini NICs are Ethernet-class network devices, not OpenFabrics ones: no
        // RDMA NIC, so nothing pairs and no GPU gets a compute NIC.
        let nics = fixture_nics(TIOGA);
        assert!(nics.is_empty(), "{nics:?}");
        assert!(partners(&nics).is_empty());
        assert!(compute_nics(&nics).is_empty());
    }
}
