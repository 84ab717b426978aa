//! `linkcal agent`: the per-host agent (started by `emulate up`, `scripts/launch-ssh` or Slurm).

use anyhow::Context;

use crate::agent::{self, AgentConfig};

/// Flags of `linkcal agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Control-plane address to listen on, IP:port.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// File holding the run's token (first line); connections without it are refused.
    #[arg(long)]
    pub token_file: std::path::PathBuf,
    /// Name reported to the coordinator (default: the hostname).
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs the agent until killed.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let token = crate::control::read_token(&a.token_file)?;
    let name = a
        .name
        .unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "agent".into()));
    let cfg = AgentConfig { name: name.clone(), listen: a.listen, token };
    let listener = agent::bind(&cfg).with_context(|| format!("agent {name}: cannot listen on {}", a.listen))?;
    eprintln!("linkcal agent {name}: listening on {}", a.listen);
    agent::serve(cfg, listener).with_context(|| format!("agent {name}"))?;
    Ok(0)
}
