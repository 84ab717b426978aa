//! `linkcal emulate up|down|status`: the emulated rack (namespaces, veth + tbf, agents).

use std::path::PathBuf;

use anyhow::Context;

use crate::emulate::{self, Rates, UpOptions};
use crate::error::InputError;
use crate::model::{RackFile, RACK_SCHEMA};

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
    /// Show the namespaces of a prefix and the processes inside them, and any link that is down
    /// or routes that are missing (exit 1 then).
    Status(RackArgs),
    /// Restore the rack as `up` built it after a link flap: every link up, every missing route
    /// re-installed (Linux deletes a link's routes when it goes down).
    Repair(RackArgs),
}

/// A prefix and its rack file.
#[derive(Debug, clap::Args)]
pub struct RackArgs {
    /// Name prefix of namespaces.
    #[arg(long, default_value = "lc")]
    pub prefix: String,
    /// The rack file `up` wrote (default out/emulate-PREFIX/rack.json): its shape says which
    /// links and routes the rack has.
    #[arg(long)]
    pub rack: Option<PathBuf>,
}

impl RackArgs {
    /// The plan of the rack built with this prefix, from its rack file.
    fn plan(&self) -> anyhow::Result<emulate::Plan> {
        let path = self.rack.clone().unwrap_or_else(|| PathBuf::from(format!("out/emulate-{}/rack.json", self.prefix)));
        let rack: RackFile = crate::model::load(&path, RACK_SCHEMA)?;
        let want = format!("{}_mgmt", self.prefix);
        match emulate::health::plan_of(&rack) {
            Some(plan) if rack.control_netns.as_deref() == Some(want.as_str()) => Ok(plan),
            _ => Err(InputError::field(
                &path,
                "control_netns",
                format!("is not '{want}': give the rack file `linkcal emulate up --prefix {}` wrote (--rack)", self.prefix),
            )
            .into()),
        }
    }
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
        Action::Status(p) => status(&p),
        Action::Repair(p) => {
            emulate::check_prefix(&p.prefix)?;
            let plan = p.plan()?;
            let r = emulate::health::repair(&plan).with_context(|| format!("emulate repair --prefix {}", p.prefix))?;
            let segs: Vec<String> = r.links_up.iter().map(|s| s.to_string()).collect();
            println!(
                "emulated rack '{}': {} links set up{}, {} routes re-installed",
                p.prefix,
                segs.len(),
                if segs.is_empty() { String::new() } else { format!(" ({})", segs.join(", ")) },
                r.routes
            );
            let left = emulate::health::check(&plan)?;
            for problem in &left {
                eprintln!("linkcal emulate repair: still wrong: {problem}");
            }
            Ok(if left.is_empty() { crate::error::EXIT_OK } else { crate::error::EXIT_FAIL })
        }
    }
}

/// `emulate status`: namespaces and their processes, then the links and routes (exit 1 when
/// one is wrong).
fn status(p: &RackArgs) -> anyhow::Result<u8> {
    let st = emulate::status(&p.prefix)?;
    if st.is_empty() {
        println!("no emulated rack with prefix '{}'", p.prefix);
        return Ok(crate::error::EXIT_OK);
    }
    for (ns, pids) in st {
        println!("{ns:<16} processes: {pids:?}");
    }
    let plan = match p.plan() {
        Ok(plan) => plan,
        Err(e) => {
            println!("links and routes not checked: {e:#}");
            return Ok(crate::error::EXIT_OK);
        }
    };
    let problems = emulate::health::check(&plan)?;
    if problems.is_empty() {
        println!("links: all {} up; routes: all in place", plan.links.len());
        return Ok(crate::error::EXIT_OK);
    }
    for problem in &problems {
        println!("{problem}");
    }
    println!("restore the rack with `linkcal emulate repair --prefix {}`", p.prefix);
    Ok(crate::error::EXIT_FAIL)
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
