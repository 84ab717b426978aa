//! `linkcal rack init` (inventory -> rack.json) and `linkcal rack check` (rack.json against
//! the live hosts).

use std::path::PathBuf;

use anyhow::Context;

use crate::model::rack::{Choice, Composition, RouteCheck};
use crate::model::RackFile;
use crate::rackinit::{self, compose, verify, RackInventory};

/// Flags of `linkcal rack`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: RackCommand,
}

/// `rack` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RackCommand {
    /// Compose rack.json from an inventory: ask every host's agent to describe itself, map the
    /// hosts onto the spec's roles, pick addresses, check every route, write the file.
    Init(InitArgs),
    /// Re-verify a rack file against the live hosts (exit 1 when something no longer holds).
    Check(CheckArgs),
    /// List the agents an inventory or rack file names, one `NAME CONTROL SSH TOKEN_FILE` line
    /// each (what `scripts/launch-ssh` and `scripts/launch-slurm` start).
    Hosts(HostsArgs),
}

/// Flags of `rack hosts`.
#[derive(Debug, clap::Args)]
pub struct HostsArgs {
    /// The inventory (TOML) or rack file (JSON).
    pub file: PathBuf,
}

/// Flags of `rack init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Inventory (TOML): prefill host, decode hosts in order, control addresses, overrides.
    pub inventory: PathBuf,
    /// Rack file to write.
    #[arg(long, short, default_value = "rack.json")]
    pub out: PathBuf,
}

/// Flags of `rack check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Rack file to check.
    pub rack: PathBuf,
    /// Skip the route transfers (hosts only).
    #[arg(long)]
    pub no_routes: bool,
}

/// Runs `linkcal rack ...`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    match a.command {
        RackCommand::Init(a) => init(a),
        RackCommand::Check(a) => check(a),
        RackCommand::Hosts(a) => hosts(a),
    }
}

fn hosts(a: HostsArgs) -> anyhow::Result<u8> {
    let lines: Vec<(String, String, String, PathBuf)> = if a.file.extension().is_some_and(|e| e == "json") {
        let rack: RackFile = crate::error::read_json(&a.file)?;
        let token = crate::runner::resolve_token_path(&a.file, &rack.token_file);
        rack.hosts.into_iter().map(|h| (h.name.clone(), h.control_addr, h.name, token.clone())).collect()
    } else {
        let inv = RackInventory::read(&a.file)?;
        let ssh = |h: &rackinit::HostSpec| h.ssh.clone().unwrap_or_else(|| h.name.clone());
        inv.hosts().iter().map(|(_, h)| (h.name.clone(), h.control.clone(), ssh(h), inv.token_file.clone())).collect()
    };
    for (name, control, ssh, token) in lines {
        println!("{name} {control} {ssh} {}", token.display());
    }
    Ok(0)
}

fn print_choice(c: &Choice) {
    let host = c.host.as_deref().unwrap_or("rack");
    println!("choice  {host:<12} {:<10} = {}  ({}; override: {})", c.what, c.value, c.why, c.override_field);
}

fn print_check(c: &RouteCheck) {
    let rate = c.goodput_Bps.map(|g| format!("{:.1} MB/s", g / 1e6)).unwrap_or_default();
    let waived = c.waived.as_deref().map(|w| format!(" (hardware transport waived: {w})")).unwrap_or_default();
    println!("route   {:<28} ok  {} {rate}{waived}", c.path.to_string(), c.transport);
}

fn init(a: InitArgs) -> anyhow::Result<u8> {
    let inv = RackInventory::read(&a.inventory)?;
    let token =
        crate::control::read_token(&inv.token_file).with_context(|| format!("{}: field 'token_file'", a.inventory.display()))?;
    let descs = rackinit::describe_all(&inv, &token)?;
    for d in &descs {
        let gpus = d.topology.as_ref().map(|t| t.gpus.len()).unwrap_or(0);
        let active = d.rdma_ports.iter().filter(|p| p.is_active()).count();
        println!(
            "host    {:<12} {} (linkcal {}): {gpus} GPU, {} RDMA ports ({active} active), {} interfaces, NUMA {:?}",
            d.agent,
            d.hostname,
            d.linkcal_version,
            d.rdma_ports.len(),
            d.interfaces.len(),
            d.numa_nodes
        );
    }
    let composed = compose::compose(&inv, &descs)?;
    composed.choices.iter().for_each(print_choice);
    for f in &composed.facts {
        for dev in &f.deviations {
            println!("deviate {:<12} {dev}", f.name);
        }
    }
    let mut rack = composed.rack;
    let checks = verify::check_routes(&rack, &a.out, &token, !inv.host_tcp_only, print_check)?;
    rack.composed = Some(Composition {
        inventory: a.inventory.display().to_string(),
        composed_at: crate::model::provenance::rfc3339_now(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        choices: composed.choices,
        hosts: composed.facts,
        route_checks: checks,
    });
    crate::model::write_json(&a.out, &rack).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("wrote   {} ({} hosts, {} routes checked)", a.out.display(), rack.hosts.len(), rack.routes.len());
    Ok(0)
}

fn check(a: CheckArgs) -> anyhow::Result<u8> {
    let rack: RackFile = crate::error::read_json(&a.rack)?;
    let token_path = crate::runner::resolve_token_path(&a.rack, &rack.token_file);
    let token = crate::control::read_token(&token_path)?;
    let mut findings = verify::check_hosts(&rack, &token)?;
    for f in &findings {
        let mark = if f.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:<12} {:<10} {}", f.host.as_deref().unwrap_or("-"), f.what, f.detail);
    }
    if !a.no_routes && findings.iter().all(|f| f.ok) {
        let hardware = rack.composed.as_ref().is_some_and(|c| c.route_checks.iter().any(|r| r.transport != "host_tcp"));
        match verify::check_routes(&rack, &a.rack, &token, hardware, print_check) {
            Ok(_) => {}
            Err(e) => {
                println!("FAIL {e}");
                findings.push(verify::Finding { host: None, what: "route".into(), ok: false, detail: e.to_string() });
            }
        }
    }
    let failed = findings.iter().filter(|f| !f.ok).count();
    if failed > 0 {
        eprintln!("linkcal rack check: {failed} check(s) failed: fix them or run `linkcal rack init` again");
        return Ok(crate::error::EXIT_FAIL);
    }
    println!("rack {} holds", a.rack.display());
    Ok(0)
}
