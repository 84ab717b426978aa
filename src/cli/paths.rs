//! `linkcal paths`: the spec's paths and their shared segments.

use anyhow::Context;

use crate::spec::{contention, HopOptions, RouteSet};

/// Flags of `linkcal paths`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rack shape.
    #[command(flatten)]
    pub shape: super::shape::ShapeArgs,
    /// Model layer count, to split layers exactly when PP_prefill != PP_decode (default: even split).
    #[arg(long)]
    pub layers: Option<u32>,
    /// Include the links real hardware crosses that the spec does not name, and isolation routes.
    #[arg(long)]
    pub outside_spec: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `linkcal paths`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let shape = a.shape.shape()?;
    let opt = if a.outside_spec { HopOptions { decode_ib_nic: true, staged_in_host: false } } else { HopOptions::default() };
    let set = RouteSet::build(&shape, a.layers, opt, a.outside_spec).context("building the spec's paths")?;
    let shared = contention(&set.routes);
    if a.json {
        let v = serde_json::json!({ "shape": shape, "paths": set.routes, "shared": shared });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "rack: PP_prefill={} PP_decode={} Num_IB_Cards={} NIC map={:?}",
        shape.pp_prefill, shape.pp_decode, shape.ib_cards, shape.nic_map
    );
    println!(
        "{:>3}  {:<20} {:>4} {:>4} {:>4} {:>6}  segments (up = toward the switch)",
        "#", "kind", "src", "dst", "nic", "share"
    );
    for (n, r) in set.routes.iter().enumerate() {
        let hops: Vec<String> =
            r.segments.iter().map(|h| if h.id.outside_spec() { format!("({h})*") } else { h.to_string() }).collect();
        let nic = r.nic.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
        let share = r.kv_share.map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into());
        println!(
            "{n:>3}  {:<20} {:>4} {:>4} {nic:>4} {share:>6}  {}",
            r.path.kind.as_str(),
            r.path.src,
            r.path.dst,
            hops.join(" > ")
        );
    }
    if a.outside_spec {
        println!("(...)* = link outside the spec");
    }
    println!("\nshared segment directions (paths crossing the same segment the same way):");
    if shared.is_empty() {
        println!("  none");
    }
    for c in &shared {
        println!("  {:<18} {:<4} paths {:?}", c.segment.to_string(), c.dir.as_str(), c.paths);
    }
    Ok(0)
}
