//! `linkcal probe`: the hardware probes of this host, each with "applies" or "waived: reason".

use anyhow::Context;

use crate::gpu::PciAddr;
use crate::hwprobe::{self, Role, Status};
use crate::spec::parse_nic_map;

/// The role this host plays in the rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// The prefill server.
    Prefill,
    /// A decode server.
    Decode,
}

/// Flags of `linkcal probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List every probe this host could run, with "applies" or "waived: <reason>".
    #[arg(long)]
    pub list: bool,
    /// Which spec role this host plays (decides which route a local probe measures).
    #[arg(long = "as", value_enum, value_name = "ROLE", default_value = "prefill")]
    pub role: RoleArg,
    /// GPUs in spec order, by PCI bus id, comma-separated (default: by bus id, as `discover`).
    #[arg(long)]
    pub gpus: Option<String>,
    /// NIC used by each GPU in spec order, e.g. 0,1,0,1 (default: i mod NIC count).
    #[arg(long)]
    pub nic_map: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--gpus`.
fn parse_gpus(s: &str) -> anyhow::Result<Vec<PciAddr>> {
    s.split(',').map(|p| p.trim().parse::<PciAddr>().context("--gpus")).collect()
}

/// Runs `linkcal probe`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    if !a.list {
        anyhow::bail!(crate::error::InputError::file("linkcal probe", "nothing to do: give --list"));
    }
    let order = a.gpus.as_deref().map(parse_gpus).transpose()?;
    let map = a.nic_map.as_deref().map(parse_nic_map).transpose()?;
    let role = match a.role {
        RoleArg::Prefill => Role::Prefill,
        RoleArg::Decode => Role::Decode,
    };
    let inv = hwprobe::inventory();
    let probes = hwprobe::catalogue(&inv, role, order.as_deref(), map.as_deref());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&probes)?);
        return Ok(0);
    }
    let width = probes.iter().map(|p| p.kind.as_str().len() + 1 + p.target.len()).max().unwrap_or(0);
    for p in &probes {
        let name = format!("{} {}", p.kind.as_str(), p.target);
        match &p.status {
            Status::Applies => println!("{name:<width$}  applies"),
            Status::Waived { reason } => println!("{name:<width$}  waived: {reason}"),
        }
    }
    Ok(0)
}
