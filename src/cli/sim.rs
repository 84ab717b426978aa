//! `linkcal sim`: predicted completion time and rate of each flow, from a calibration.

use std::path::PathBuf;

use anyhow::Context;

use crate::calibrate::load_calibration;
use crate::sim::{capacities, load_flows, makespan, scenario_flows, simulate_shared, validate, Scenario};

/// Flags of `linkcal sim`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["flows", "scenario", "against"])))]
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
    /// Replay every contended measurement of this results directory and compare predicted with
    /// measured makespan and aggregate rate.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// With --against: exit 1 when any makespan or aggregate error exceeds this fraction.
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Per-flow payload in bytes for a scenario (Path 2: the whole stage's KV, split by share); default: the largest measured.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Segments only: leave out each path's fixed cost and size-dependent rate cap, and the sharing efficiency.
    #[arg(long)]
    pub ideal: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `linkcal sim`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let cal = load_calibration(&a.calibration)?;
    if let Some(dir) = &a.against {
        return against(&cal, dir, &a);
    }
    let flows = match (&a.flows, a.scenario) {
        (Some(f), _) => load_flows(f, &cal, a.ideal)?,
        (None, Some(sc)) => scenario_flows(&cal, sc, a.bytes, a.ideal).with_context(|| format!("{}", a.calibration.display()))?,
        (None, None) => unreachable!("clap requires --flows or --scenario"),
    };
    let sharing = if a.ideal { 1.0 } else { cal.sharing_efficiency.unwrap_or(1.0) };
    let out = simulate_shared(&flows, &capacities(&cal), sharing);
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

fn against(cal: &crate::model::Calibration, dir: &std::path::Path, a: &Args) -> anyhow::Result<u8> {
    let (res, rec) = crate::calibrate::load_results_dir(dir)?;
    super::accept::note_run("sim", dir, &rec);
    let checks = validate(cal, &res.measurements, a.ideal);
    if checks.is_empty() {
        return Err(crate::error::InputError::field(
            dir.join(crate::model::rundir::RESULTS_FILE),
            "measurements",
            "has no contended measurement to compare with",
        )
        .into());
    }
    // Judged on bursts (makespan; its aggregate is bytes / makespan); the streaming sum is shown.
    let worst = checks
        .iter()
        .map(|c| c.makespan_error.abs().max((c.predicted_burst_Bps / c.measured_burst_Bps - 1.0).abs()))
        .fold(0.0, f64::max);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"checks": checks, "worst_error": worst}))?);
    } else {
        println!(
            "{:<48} {:>5} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>8} {:>7}",
            "measurement", "flows", "meas. s", "pred. s", "err", "burst GB/s", "stream GB/s", "pred GB/s", "err", "max/min"
        );
        for c in &checks {
            let pct = |v: Option<f64>| v.map(|x| format!("{:+.2}%", x * 100.0)).unwrap_or_else(|| "-".into());
            let gb = |v: Option<f64>| v.map(|x| format!("{:.4}", x / 1e9)).unwrap_or_else(|| "-".into());
            println!(
                "{:<48} {:>5} {:>10.6} {:>10.6} {:>8} {:>10} {:>10} {:>10} {:>8} {:>7}",
                c.id,
                c.flows,
                c.measured_makespan_s,
                c.predicted_makespan_s,
                pct(Some(c.makespan_error)),
                gb(Some(c.measured_burst_Bps)),
                gb(c.measured_aggregate_Bps),
                gb(Some(c.predicted_aggregate_Bps)),
                pct(c.aggregate_error),
                c.fairness_max_over_min.map(|f| format!("{f:.2}")).unwrap_or_else(|| "-".into())
            );
        }
        println!(
            "worst burst error {:.2}% over {} contended measurements (makespan of one released round and its bytes / makespan; the streaming sum while all flows move is shown beside, with its own error)",
            worst * 100.0,
            checks.len()
        );
    }
    Ok(match a.tolerance {
        Some(t) if worst > t => crate::error::EXIT_FAIL,
        _ => crate::error::EXIT_OK,
    })
}
