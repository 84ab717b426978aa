//! `linkcal discover`: the server's PCIe/NIC topology from hwloc, an NCCL/RCCL topology dump or
//! `nvidia-smi topo -m`, mapped onto a spec role.

use std::path::PathBuf;

use anyhow::Context;

use crate::spec::SpecError;
use crate::topology::{self, Input, Role, RoleRequest};

pub use super::shape::RoleArg;

/// Flags of `linkcal discover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read an XML file instead of this machine: an hwloc export (v1 or v2; `lstopo-no-graphics
    /// --whole-io --of xml FILE`) or an NCCL/RCCL topology (`<system>`), told apart by the root element.
    #[arg(long, value_name = "FILE")]
    pub xml: Option<PathBuf>,
    /// Read an NCCL/RCCL topology XML (`NCCL_TOPO_DUMP_FILE`, or a hint file); with --xml (an
    /// hwloc export of the same server) merge the two and report where they disagree.
    #[arg(long, value_name = "FILE")]
    pub nccl_topo: Option<PathBuf>,
    /// Read the saved output of `nvidia-smi topo -m` (with its Legend and NIC Legend).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["xml", "nccl_topo"])]
    pub nvidia_smi_topo: Option<PathBuf>,
    /// Map the server onto a spec role and check the spec's assumptions.
    #[arg(long = "as", value_enum, value_name = "ROLE")]
    pub role: Option<RoleArg>,
    /// PP_prefill: prefill GPUs (default: every GPU found).
    #[arg(long, requires = "role")]
    pub pp_prefill: Option<usize>,
    /// Num_IB_Cards: prefill RDMA NICs (default: every RDMA NIC found).
    #[arg(long, requires = "role")]
    pub ib_cards: Option<usize>,
    /// GPUs in spec order, by PCI bus id, comma-separated (default: by bus id).
    #[arg(long, value_delimiter = ',', requires = "role")]
    pub gpus: Option<Vec<String>>,
    /// NICs in spec order, by name (mlx5_0) or PCI bus id, comma-separated (default: by bus id).
    #[arg(long, value_delimiter = ',', requires = "role")]
    pub nics: Option<Vec<String>>,
    /// Decode server index j, for segment names (with --as decode).
    #[arg(long, default_value_t = 0)]
    pub decode_index: usize,
    /// Print the result as JSON (`linkcal.topology/2`) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a Graphviz drawing with spec segment names on the edges.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    /// Exit 1 when the server does not conform to the role (with --as).
    #[arg(long, requires = "role")]
    pub check: bool,
}

/// Runs `linkcal discover`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    for (v, flag) in [(a.pp_prefill, "--pp-prefill"), (a.ib_cards, "--ib-cards")] {
        if v == Some(0) {
            return Err(SpecError::Zero { flag }.into());
        }
    }
    let (input, what) = match (&a.xml, &a.nccl_topo, &a.nvidia_smi_topo) {
        (_, _, Some(p)) => (Input::NvidiaSmi(p.clone()), format!("reading the nvidia-smi topo -m output {}", p.display())),
        (Some(x), Some(n), None) => (
            Input::Merged { hwloc: x.clone(), nccl: n.clone() },
            format!("merging the hwloc export {} with the NCCL dump {}", x.display(), n.display()),
        ),
        (Some(x), None, None) => (Input::Xml(x.clone()), format!("reading the XML topology {}", x.display())),
        (None, Some(n), None) => (Input::Nccl(n.clone()), format!("reading the NCCL topology {}", n.display())),
        (None, None, None) => (Input::Live, "discovering this machine with hwloc".to_string()),
    };
    let req = RoleRequest {
        pp_prefill: a.pp_prefill,
        ib_cards: a.ib_cards,
        gpus: a.gpus.clone(),
        nics: a.nics.clone(),
        decode_index: a.decode_index,
    };
    let role = a.role.map(|r| match r {
        RoleArg::Prefill => Role::Prefill,
        RoleArg::Decode => Role::Decode,
    });
    let report = topology::discover(&input, role.map(|r| (r, &req))).context(what)?;
    if let Some(path) = &a.dot {
        std::fs::write(path, topology::dot::render(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", topology::text::render(&report));
        if let Some(path) = &a.dot {
            println!("\nwrote Graphviz drawing {}", path.display());
        }
    }
    let fails = report.conformance.as_ref().is_some_and(|c| !c.conforms);
    Ok(if a.check && fails { crate::error::EXIT_FAIL } else { crate::error::EXIT_OK })
}
