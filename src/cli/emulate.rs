//! `linkcal emulate up|down|status`: the emulated rack (namespaces, veth + tbf, agents).

use std::path::PathBuf;

use anyhow::Context;

use crate::emulate::{self, Rates, UpOptions};

/// Flags of `linkcal emulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// `emulate` actions.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Build the rack, write rack.json + ground-truth.json, start the agents.
    Up(UpArgs),
    /// Remove every namespace (and the agents inside) of a prefix.
    Down(PrefixArgs),
    /// Show the namespaces of a prefix and the processes inside them.
    Status(PrefixArgs),
}

/// Flags of `emulate up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The rack shape.
    #[command(flatten)]
    pub shape: super::shape::ShapeArgs,
    /// Rates file: {"mtu": 9000, "segments": {"GPU_P[0]_PCI": {"up_Bps": .., "down_Bps": ..}}} (B/s).
    #[arg(long)]
    pub rates: Option<PathBuf>,
    /// MTU of the data links, bytes (default 9000; overrides the rates file).
    #[arg(long)]
    pub mtu: Option<u64>,
    /// Name prefix of namespaces (1-8 of a-z0-9).
    #[arg(long, default_value = "lc")]
    pub prefix: String,
    /// Output directory for rack.json, ground-truth.json, token, agent logs (default out/emulate-PREFIX).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Remove leftovers of this prefix first instead of failing.
    #[arg(long)]
    pub replace: bool,
    /// Build the rack without starting its agents (launch them yourself, e.g. with
    /// `scripts/launch-ssh` against an sshd in each endpoint's namespace, as on a real rack).
    #[arg(long)]
    pub no_agents: bool,
}

/// A prefix.
#[derive(Debug, clap::Args)]
pub struct PrefixArgs {
    /// Name prefix of namespaces.
    #[arg(long, default_value = "lc")]
    pub prefix: String,
}

/// Runs `linkcal emulate`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    match a.action {
        Action::Up(u) => up(u),
        Action::Down(p) => {
            let gone = emulate::down(&p.prefix).with_context(|| format!("emulate down --prefix {}", p.prefix))?;
            println!("removed {} namespaces of prefix '{}'", gone.len(), p.prefix);
            Ok(0)
        }
        Action::Status(p) => {
            let st = emulate::status(&p.prefix)?;
            if st.is_empty() {
                println!("no emulated rack with prefix '{}'", p.prefix);
            }
            for (ns, pids) in st {
                println!("{ns:<16} processes: {pids:?}");
            }
            Ok(0)
        }
    }
}

fn up(u: UpArgs) -> anyhow::Result<u8> {
    let shape = u.shape.shape()?;
    let rates = Rates::load(&shape, u.rates.as_deref(), u.mtu)?;
    emulate::check_prefix(&u.prefix)?;
    let out = u.out.unwrap_or_else(|| PathBuf::from(format!("out/emulate-{}", u.prefix)));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let exe = std::env::current_exe().context("locating the linkcal binary for the agents")?;
    let o = UpOptions { prefix: u.prefix.clone(), shape, rates, out, replace: u.replace, exe, start_agents: !u.no_agents };
    let r = emulate::up(&o).with_context(|| format!("emulate up --prefix {}", u.prefix))?;
    println!(
        "emulated rack '{}' up in {:.1} s: {} namespaces, {} agents, MTU {} bytes{}",
        u.prefix,
        r.seconds,
        r.namespaces,
        r.agents,
        o.rates.mtu,
        if o.rates.shaped { "" } else { ", unshaped" }
    );
    println!("rack file:    {}", r.rack_file.display());
    println!("ground truth: {}", r.ground_truth_file.display());
    Ok(0)
}
