//! `linkcal sim`: predicted completion time and rate of each flow, from a calibration.

use std::path::PathBuf;

use crate::calibrate::load_calibration;
use crate::sim::{capacities, load_flows, makespan, scenario_flows, simulate, Scenario};

/// Flags of `linkcal sim`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["flows", "scenario"])))]
pub struct Args {
    /// Calibration file (`linkcal calibrate --out`).
    #[arg(long)]
    pub calibration: PathBuf,
    /// Flow file: {"flows": [{"path": {"kind","src","dst"} | "hops": [...], "bytes": N, "start_s": T}]}.
    #[arg(long)]
    pub flows: Option<PathBuf>,
    /// A scenario derived from the spec.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Per-flow payload in bytes for a scenario (Path 2: the whole stage's KV, split by share); default: the largest measured.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Segments only: leave out each path's fixed cost and size-dependent rate cap.
    #[arg(long)]
    pub ideal: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `linkcal sim`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let cal = load_calibration(&a.calibration)?;
    let flows = match (&a.flows, a.scenario) {
        (Some(f), _) => load_flows(f, &cal, a.ideal)?,
        (None, Some(sc)) => {
            scenario_flows(&cal, sc, a.bytes, a.ideal).map_err(|m| crate::error::InputError::file(&a.calibration, m))?
        }
        (None, None) => unreachable!("clap requires --flows or --scenario"),
    };
    let out = simulate(&flows, &capacities(&cal));
    let span = makespan(&out);
    let total: f64 = out.iter().map(|o| o.bytes as f64).sum();
    if a.json {
        let v = serde_json::json!({"flows": out, "makespan_s": span, "aggregate_Bps": total / span});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("{:<34} {:>14} {:>12} {:>12}", "flow", "bytes", "finish s", "rate GB/s");
    for o in &out {
        println!("{:<34} {:>14} {:>12.6} {:>12.4}", o.name, o.bytes, o.finish_s, o.rate_Bps / 1e9);
    }
    println!("makespan {span:.6} s; aggregate {:.4} GB/s (sum of bytes / makespan)", total / span / 1e9);
    Ok(0)
}
