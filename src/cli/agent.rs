//! `linkcal agent`: the per-host agent (started by `emulate up`, `scripts/launch-ssh` or Slurm).

use anyhow::Context;

use crate::agent::{self, AgentConfig};

/// Flags of `linkcal agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Control-plane address to listen on, IP:port.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// File holding the run's token (first line; mode 600: a file group or others may read is
    /// refused). Coordinators prove they hold it; it never travels.
    #[arg(long)]
    pub token_file: std::path::PathBuf,
    /// Name bound into the handshake (default: the hostname); it must be the name the rack file
    /// gives the host at this address.
    #[arg(long)]
    pub name: Option<String>,
    /// Largest payload of one flow this agent allocates, bytes (default 4 GiB).
    #[arg(long, default_value_t = crate::control::limits::DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
}

/// Runs the agent until killed.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let token = crate::control::read_token(&a.token_file)?;
    let name = a
        .name
        .unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "agent".into()));
    let mut cfg = AgentConfig::new(name.clone(), a.listen, token);
    if a.max_bytes == 0 || a.max_bytes > cfg.limits.max_open_bytes {
        let msg = format!("{} is outside 1..={} bytes", a.max_bytes, cfg.limits.max_open_bytes);
        return Err(crate::error::InputError::field("--max-bytes", "value", msg).into());
    }
    cfg.limits.max_bytes = a.max_bytes;
    let listener = agent::bind(&cfg).with_context(|| format!("agent {name}: cannot listen on {}", a.listen))?;
    eprintln!("linkcal agent {name}: listening on {}", a.listen);
    agent::serve(cfg, listener).with_context(|| format!("agent {name}"))?;
    Ok(0)
}
