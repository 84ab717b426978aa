//! The command line: one subcommand per file, each parsing its flags and calling the library.
//! Errors carry context (anyhow); [`exit_code`] maps them onto exit codes through the registry
//! of typed errors in `exit`.

mod accept;
mod agent;
mod calibrate;
mod compare;
mod discover;
mod emulate;
mod exit;
mod export;
mod paths;
mod payload;
mod predict;
mod probe;
mod rack;
mod report;
mod run;
mod schema;
mod shape;
mod sim;

use clap::{Parser, Subcommand};

pub use exit::exit_code;

/// linkcal: measure, calibrate and judge the data links of a disaggregated prefill/decode rack.
#[derive(Debug, Parser)]
#[command(name = "linkcal", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover the PCIe/NIC topology (hwloc, live or XML) and check it against a spec role.
    Discover(discover::Args),
    /// List the spec's paths for a rack shape, and which paths share a segment direction.
    Paths(paths::Args),
    /// Payload sizes (chunk activations, KV handoff per stage, decode activations) from a model.
    Payload(payload::Args),
    /// Communication times of a model and N, T, M on a calibrated rack (Paths 1-3, limiting segment, scaling with N and T).
    Predict(predict::Args),
    /// The hardware probes of this host (CUDA, RDMA): which apply and which are waived, and why.
    Probe(probe::Args),
    /// Write or check the JSON Schemas generated from the result model.
    Schema(schema::Args),
    /// Per-segment, per-direction capacities and latencies from results (JSON + CSV).
    Calibrate(calibrate::Args),
    /// Flow-level simulation (max-min sharing) of flows or a spec scenario on a calibration.
    Sim(sim::Args),
    /// Write a calibration for SimGrid, ASTRA-sim, AIConfigurator or Vidur.
    Export(export::Args),
    /// Judge a calibration and/or results against acceptance rules (exit 1 on fail).
    Accept(accept::Args),
    /// Compare a new run with a baseline: regressions beyond noise and --min-effect (exit 1 on regression).
    Compare(compare::Args),
    /// Write one self-contained HTML report with verdicts and SVG plots.
    Report(report::Args),
    /// The emulated rack: network namespaces, veth + tbf per segment, agents (needs root).
    Emulate(emulate::Args),
    /// Run an agent (on every host of a rack; `emulate up` starts them on the emulated rack).
    Agent(agent::Args),
    /// A real rack's file: `rack init INVENTORY` composes rack.json from the hosts' agents, `rack check` re-verifies it.
    Rack(rack::Args),
    /// Measure a rack's paths solo and under contention; writes journal.jsonl, results.json, results.csv.
    Run(run::Args),
}

impl Command {
    /// True for commands that only read files and print: for them a closed stdout (e.g.
    /// `linkcal paths | head`) ends the process quietly, as with other Unix tools, instead of
    /// a panic in `println!`. Commands that drive sockets keep SIGPIPE ignored.
    pub fn prints_only(&self) -> bool {
        match self {
            Command::Discover(_)
            | Command::Paths(_)
            | Command::Payload(_)
            | Command::Predict(_)
            | Command::Schema(_)
            | Command::Calibrate(_)
            | Command::Sim(_)
            | Command::Export(_)
            | Command::Accept(_)
            | Command::Compare(_)
            | Command::Report(_) => true,
            Command::Probe(_) | Command::Emulate(_) | Command::Agent(_) | Command::Rack(_) | Command::Run(_) => false,
        }
    }
}

/// Runs a parsed command; returns the process exit code for verdicts (0 pass, 1 fail).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if cli.command.prints_only() {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread is started;
        // no handler code runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Discover(a) => discover::run(a),
        Command::Paths(a) => paths::run(a),
        Command::Payload(a) => payload::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Export(a) => export::run(a),
        Command::Accept(a) => accept::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Report(a) => report::run(a),
        Command::Emulate(a) => emulate::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Rack(a) => rack::run(a),
        Command::Run(a) => run::run(a),
    }
}
