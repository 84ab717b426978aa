//! `linkcal run`: measure a rack's paths (solo sweep + contention sets) through its agents.

use std::path::PathBuf;

use anyhow::Context;

use crate::error::InputError;
use crate::model::{RackFile, Start, RACK_SCHEMA};
use crate::payload::{payloads, preset, ModelConfig};
use crate::runner::{self, RunOptions};
use crate::spec::{spec_experiments, Experiment, HopOptions, PathRef, RouteKind, RouteSet, Workload};
use crate::transport::TransportKind;
use crate::units::{fmt_bytes, parse_size};

/// Which experiments to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plan {
    /// The spec's paths solo, plus the contention sets (see --contention).
    Spec,
    /// `spec`, plus every isolation route solo; then the contention experiments that identify
    /// what those left as lower bounds (`calibrate::plan`). Writes phase1/, phase2/ and the merged results.
    Calibrate,
}

/// Contention sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentionArg {
    /// Solo runs only.
    None,
    /// The spec's contention sets: NIC sharing, GPU sharing, KV burst, all Path-3 flows.
    Spec,
}

/// Flags of `linkcal run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rack file (linkcal.rack/1), e.g. from `linkcal emulate up`.
    #[arg(long)]
    pub rack: PathBuf,
    /// Output directory: journal.jsonl, results.json, results.csv. One that already holds
    /// measurements is refused (exit 2) unless --resume or --force says what to do with them.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the killed or failed run in DIR (its --out): measurements already in its journal
    /// are kept and not measured again, new ones are appended; the journal is never truncated.
    /// Give the run's rack and flags again.
    #[arg(long, value_name = "DIR", conflicts_with = "force")]
    pub resume: Option<PathBuf>,
    /// Start over in a non-empty --out, discarding the run there.
    #[arg(long)]
    pub force: bool,
    /// Payload sweep, e.g. 4KiB,1MiB,64MiB (default 4 KiB..64 MiB in steps of 4x; --quick: 64KiB,1MiB,16MiB).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<String>>,
    /// Payloads of the contention sets (default: the largest sweep size).
    #[arg(long, value_delimiter = ',')]
    pub contended_sizes: Option<Vec<String>>,
    /// Contention sets to run after the solo sweep.
    #[arg(long, value_enum, default_value = "spec")]
    pub contention: ContentionArg,
    /// Experiments to run.
    #[arg(long, value_enum, default_value = "spec")]
    pub plan: Plan,
    /// Only these routes (and sets made only of them), e.g. prefill_to_decode:0->0.
    #[arg(long, value_delimiter = ',')]
    pub paths: Option<Vec<String>>,
    /// Short run: three sizes, shorter caps (for CI).
    #[arg(long)]
    pub quick: bool,
    /// Transport of every flow (host_tcp, staged_tcp, cuda_p2p, gpudirect_rdma, gpu_staged_tcp, ...),
    /// or `auto`: each route kind over its hardware transport (Path 1 cuda_p2p, Path 2
    /// gpudirect_rdma, Path 3 gpu_staged_tcp, GPU<->host copies cuda_d2h/cuda_h2d, host_rdma).
    #[arg(long, default_value = "host_tcp")]
    pub transport: String,
    /// Path 2 (prefill_to_decode) through a KV-transfer engine: `nixl` or `mooncake`
    /// (overrides --transport for that route kind only).
    #[arg(long, value_parser = ["nixl", "mooncake"])]
    pub kv_engine: Option<String>,
    /// KV block (NIXL descriptor, Mooncake slice) length: one KV block of one layer's K or V, e.g. 32KiB (default: from
    /// --model and --block-tokens, else 32 KiB, llama-3.1-70b's 16-token block).
    #[arg(long)]
    pub kv_block_bytes: Option<String>,
    /// Tokens per KV block (vLLM's block_size) for the KV engines' block length with --model.
    #[arg(long, default_value_t = 16)]
    pub block_tokens: u64,
    /// NIXL direction: write (prefill pushes, notifies decode) or read (decode pulls, notifies
    /// prefill, as vLLM's NixlConnector).
    #[arg(long, value_parser = ["write", "read"], default_value = "write")]
    pub nixl_op: String,
    /// NIXL memory: dram, or vram (GPU memory of the route's GPUs, real racks).
    #[arg(long, value_parser = ["dram", "vram"], default_value = "dram")]
    pub nixl_mem: String,
    /// UCX_TLS linkcal sets in the agents for NIXL's UCX backend (tcp on loopback and the
    /// emulated rack; e.g. rc,cuda_copy,cuda_ipc on InfiniBand).
    #[arg(long, default_value = "tcp")]
    pub ucx_tls: String,
    /// Model preset whose chunk / KV / decode payloads (divided by the rack's payload_scale) join the sweep.
    #[arg(long)]
    pub model: Option<String>,
    /// HuggingFace config.json instead of --model.
    #[arg(long, conflicts_with = "model")]
    pub model_config: Option<PathBuf>,
    /// N: batch size (with --model).
    #[arg(long, default_value_t = 8)]
    pub n: u64,
    /// T: context length (with --model).
    #[arg(long, default_value_t = 8192)]
    pub t: u64,
    /// M: prefill chunk (with --model).
    #[arg(long, default_value_t = 2048)]
    pub m: u64,
    /// Stop a measurement when the 95% CI half-width of goodput is at most this fraction.
    #[arg(long, default_value_t = 0.01)]
    pub ci_target: f64,
    /// Time cap per measurement once every flow has 3 samples, seconds (default 1; --quick 2).
    #[arg(long)]
    pub time_cap: Option<f64>,
    /// Experiments run at the same time at most, in waves of experiments that share no segment
    /// (either direction) and no host (default with --plan calibrate: 8 on hardware, half the cores on the emulated rack; 1 with
    /// --plan spec).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn sizes(list: &[String], flag: &str) -> anyhow::Result<Vec<u64>> {
    list.iter()
        .map(|s| {
            let b = parse_size(s).map_err(|e| anyhow::Error::new(InputError::field(flag, "value", e.to_string())))?;
            within_agent_limit(b, flag, &format!("'{s}'"))
        })
        .collect()
}

/// A payload the agents accept: at most their default per-flow limit.
fn within_agent_limit(bytes: u64, flag: &str, what: &str) -> anyhow::Result<u64> {
    let max = crate::control::limits::DEFAULT_MAX_BYTES;
    if bytes > max {
        let msg =
            format!("{what} is {bytes} B, over the agents' per-flow limit of {max} B ({}); use smaller payloads", fmt_bytes(max));
        return Err(InputError::field(flag, "value", msg).into());
    }
    Ok(bytes)
}

/// `--ci-target`: a finite fraction in (0, 1).
fn check_ci_target(v: f64) -> anyhow::Result<f64> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        return Ok(v);
    }
    Err(InputError::field("--ci-target", "value", format!("{v} is not a fraction in (0, 1), e.g. 0.01 for 1%")).into())
}

/// `--time-cap`: a finite time in (0, hard cap] seconds.
fn check_time_cap(v: f64, hard_cap_s: f64) -> anyhow::Result<f64> {
    if v.is_finite() && v > 0.0 && v <= hard_cap_s {
        return Ok(v);
    }
    Err(InputError::field("--time-cap", "value", format!("{v} is not a time in (0, {hard_cap_s}] seconds")).into())
}

fn parse_path(s: &str) -> Option<PathRef> {
    let (kind, rest) = s.trim().split_once(':')?;
    let (a, b) = rest.split_once("->")?;
    let kind = RouteKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    Some(PathRef { kind, src: a.parse().ok()?, dst: b.parse().ok()? })
}

/// Sets the NIXL flow options when a route runs through NIXL, and refuses sweep sizes that are
/// not whole KV blocks (exit 2, naming the flag).
fn nixl_options(a: &Args, model: Option<&ModelConfig>, sweep: &[u64], opts: &mut RunOptions) -> anyhow::Result<()> {
    use crate::transport::nixl::layout;
    if let Some(e) = &a.kv_engine {
        let kind = TransportKind::parse(e).expect("clap keeps --kv-engine to known engines");
        opts.per_route.retain(|(k, _)| *k != RouteKind::PrefillToDecode);
        opts.per_route.push((RouteKind::PrefillToDecode, kind));
    }
    let uses = opts.transport.is_kv_engine() || opts.per_route.iter().any(|(_, t)| t.is_kv_engine());
    if !uses {
        return Ok(());
    }
    if a.block_tokens == 0 {
        return Err(InputError::field("--block-tokens", "value", "is 0: use vLLM's block size in tokens, e.g. 16").into());
    }
    let block = match (&a.kv_block_bytes, model, &opts.payloads) {
        (Some(s), _, _) => parse_size(s).map_err(|e| InputError::field("--kv-block-bytes", "value", e.to_string()))?,
        (None, Some(m), Some(p)) => layout::block_bytes(p.kv_per_token_layer_bytes, a.block_tokens, m.mla.is_none()),
        _ => layout::DEFAULT_BLOCK_BYTES / layout::DEFAULT_BLOCK_TOKENS * a.block_tokens,
    };
    for (list, flag) in [(sweep, "--sizes"), (&opts.contended_sizes[..], "--contended-sizes")] {
        if let Some(bad) = list.iter().find(|b| **b % block != 0) {
            let msg = format!("{bad} B is not a whole number of {block} B KV blocks: use multiples of the block with nixl");
            return Err(InputError::field(flag, "value", msg).into());
        }
    }
    opts.nixl = serde_json::json!({"block_bytes": block, "op": a.nixl_op, "mem": a.nixl_mem, "ucx_tls": a.ucx_tls});
    opts.kv_block_tokens = a.kv_block_bytes.is_none().then_some(a.block_tokens);
    Ok(())
}

/// Runs `linkcal run`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let rack: RackFile = crate::model::load(&a.rack, RACK_SCHEMA)?;
    let mut opts = if a.quick { RunOptions::quick() } else { RunOptions::full() };
    if a.transport == "auto" {
        opts.per_route = runner::hardware_transports();
    } else {
        opts.transport = TransportKind::parse(&a.transport).ok_or_else(|| {
            let known: Vec<&str> = TransportKind::ALL.iter().map(|k| k.as_str()).collect();
            let msg = format!("'{}' is not a transport; use auto or one of {}", a.transport, known.join(", "));
            InputError::field("--transport", "value", msg)
        })?;
    }
    opts.ci_target = check_ci_target(a.ci_target)?;
    opts.max_parallel = match (a.parallel, a.plan) {
        (Some(0), _) => {
            return Err(InputError::field("--parallel", "value", "is 0: run at least 1 experiment at a time").into());
        }
        (Some(n), _) => n,
        (None, Plan::Calibrate) => runner::calibrate_parallel(rack.emulated),
        (None, Plan::Spec) => 1,
    };
    opts.progress = !a.no_progress && !a.json;
    if let Some(t) = a.time_cap {
        opts.time_cap_s = check_time_cap(t, opts.hard_cap_s)?;
    }
    let sweep = match &a.sizes {
        Some(list) => sizes(list, "--sizes")?,
        None => runner::default_sizes(a.quick),
    };
    if let Some(list) = &a.contended_sizes {
        opts.contended_sizes = sizes(list, "--contended-sizes")?;
    }
    let model = match (&a.model, &a.model_config) {
        (Some(name), _) => Some(preset(name)?),
        (None, Some(p)) => Some(ModelConfig::from_file(p)?),
        (None, None) => None,
    };
    let layers = model.as_ref().map(|m| m.num_hidden_layers);
    if let Some(m) = &model {
        let p = payloads(m, &Workload::new(a.n, a.t, a.m)?, &rack.shape, None)?;
        let scale = |b: u64| ((b as f64 / rack.payload_scale.max(1e-9)).round() as u64).max(1);
        opts.route_sizes.push((RouteKind::PrefillInterRank, scale(p.chunk_activation_bytes)));
        opts.route_sizes.push((RouteKind::DecodeInterRank, scale(p.decode_activation_bytes)));
        for st in &p.stages {
            opts.route_sizes.extend(st.handoffs.iter().map(|h| (RouteKind::PrefillToDecode, scale(h.bytes))));
        }
        opts.payloads = Some(p);
        for (kind, b) in &opts.route_sizes {
            within_agent_limit(*b, "--model", &format!("the {kind} payload after payload_scale"))?;
        }
    }
    nixl_options(&a, model.as_ref(), &sweep, &mut opts)?;
    let set = RouteSet::build(&rack.shape, layers, HopOptions::default(), false).context("building the spec's routes")?;
    let mut experiments: Vec<Experiment> = match a.plan {
        Plan::Spec | Plan::Calibrate => spec_experiments(&set, a.contention == ContentionArg::Spec),
    };
    if let Some(list) = &a.paths {
        let keep: Vec<PathRef> = list
            .iter()
            .map(|s| {
                parse_path(s).ok_or_else(|| {
                    InputError::field(
                        "--paths",
                        "value",
                        format!("'{s}' is not a route such as prefill_to_decode:0->0 (see `linkcal paths`)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        experiments.retain(|e| e.flows.iter().all(|p| keep.contains(p)));
    }
    let (out, start) = out_dir(&a)?;
    opts.start = start;
    emulated_links(&rack, &mut opts);
    let t0 = std::time::Instant::now();
    let results = match a.plan {
        Plan::Spec => runner::run(&rack, &a.rack, &experiments, &sweep, &opts, &out).context("linkcal run")?,
        Plan::Calibrate => runner::phases::run_two_phase(
            &rack,
            &a.rack,
            experiments,
            layers,
            &sweep,
            &opts,
            &out,
            &super::calibrate::CalibratePlanner,
        )
        .context("linkcal run --plan calibrate")?,
    };
    let wall = t0.elapsed().as_secs_f64();
    print_summary(&results, &out, wall, a.json)?;
    Ok(report_skipped(&results, &out))
}

/// On an emulated rack: re-installs the routes a link flap removed (on links that are up),
/// says which links are down, and has a stalled route's fault name its hops' link problems.
fn emulated_links(rack: &RackFile, opts: &mut RunOptions) {
    use crate::emulate::health;
    let Some(plan) = health::plan_of(rack) else { return };
    opts.link_check = Some(health::explain);
    match health::restore_routes(&plan) {
        Ok(r) => {
            if r.routes > 0 {
                eprintln!(
                    "linkcal run: emulated rack '{}': re-installed {} routes that were missing (a link went down and \
                     came back, which deletes its routes)",
                    plan.prefix, r.routes
                );
            }
            for s in &r.still_down {
                eprintln!(
                    "linkcal run: emulated rack '{}': the link of segment {s} is down; routes over it will stall and \
                     be skipped (`linkcal emulate repair --prefix {}` sets it up)",
                    plan.prefix, plan.prefix
                );
            }
        }
        Err(e) => eprintln!("linkcal run: emulated rack '{}': links not checked: {e}", plan.prefix),
    }
}

/// Names every skipped measurement (id, host, reason) on stderr; the exit code: 1 when any
/// was skipped (a dead or stopped agent, a stalled route), else 0.
fn report_skipped(r: &crate::model::Results, out: &std::path::Path) -> u8 {
    if r.skipped.is_empty() {
        return crate::error::EXIT_OK;
    }
    eprintln!(
        "linkcal run: {} measurements skipped, {} finished (in {}); after fixing what is named, measure the skipped ones with `linkcal run --resume {}`:",
        r.skipped.len(),
        r.measurements.len(),
        out.display(),
        out.display()
    );
    for s in &r.skipped {
        eprintln!("  skipped {} (host {}): {}", s.id, s.host.as_deref().unwrap_or("-"), s.reason);
    }
    crate::error::EXIT_FAIL
}

/// The output directory and what to do with a run already there (`--resume DIR`, `--force`).
fn out_dir(a: &Args) -> Result<(PathBuf, Start), InputError> {
    match (&a.resume, &a.out) {
        (Some(r), Some(o)) if r != o => Err(InputError::field(
            "--resume",
            "value",
            format!("is {} but --out is {}: resume into the run's own directory (give one of them)", r.display(), o.display()),
        )),
        (Some(r), _) => Ok((r.clone(), Start::Resume)),
        (None, Some(o)) => Ok((o.clone(), if a.force { Start::Force } else { Start::Fresh })),
        (None, None) => Err(InputError::field("--out", "value", "is missing: give --out DIR (or --resume DIR)")),
    }
}

fn print_summary(r: &crate::model::Results, out: &std::path::Path, wall: f64, json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = r
            .measurements
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "flows": m.flows.iter().map(|f| serde_json::json!({
                        "path": f.path.to_string(), "payload_bytes": f.payload_bytes,
                        "goodput_mean_Bps": f.goodput_Bps.mean, "samples": f.samples,
                    })).collect::<Vec<_>>(),
                    "goodput_sum_Bps": m.aggregate.as_ref().map(|a| a.goodput_sum_Bps.mean),
                })
            })
            .collect();
        let v = serde_json::json!({"out": out, "wall_s": wall, "measurements": rows, "waivers": r.waivers, "skipped": r.skipped});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{:<58} {:>12} {:>14} {:>8} {:>7} {:>8}", "measurement", "payload", "goodput MB/s", "samples", "ci95 %", "outliers");
    for m in &r.measurements {
        for f in &m.flows {
            let hw = f.goodput_Bps.ci95_high.map(|h| format!("{:.2}", 100.0 * (h - f.goodput_Bps.mean) / f.goodput_Bps.mean));
            let outliers = crate::stats::outliers(&f.transfer_times_s).len();
            println!(
                "{:<58} {:>12} {:>14.3} {:>8} {:>7} {:>8}",
                format!("{} {}", m.set.as_deref().unwrap_or("solo"), f.path),
                fmt_bytes(f.payload_bytes),
                f.goodput_Bps.mean / 1e6,
                f.samples,
                hw.unwrap_or_else(|| "-".into()),
                outliers
            );
        }
        if let Some(agg) = &m.aggregate {
            println!(
                "{:<58} {:>12} {:>14.3}  (sum of flows, MB/s)",
                format!("  sum {}", m.set.as_deref().unwrap_or("")),
                "",
                agg.goodput_sum_Bps.mean / 1e6
            );
        }
    }
    for w in &r.waivers {
        println!("waived: {} {}: {}", w.probe, w.path.map(|p| p.to_string()).unwrap_or_default(), w.reason);
    }
    println!(
        "{} measurements in {wall:.1} s; results in {} (1 MB/s = 1e6 B/s, goodput per flow, one direction; outliers: Tukey fences on transfer times)",
        r.measurements.len(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_paths_parse() {
        assert_eq!(sizes(&["4KiB".into(), "64K".into(), "16M".into()], "--sizes").unwrap(), vec![4096, 64 << 10, 16 << 20]);
        let e = sizes(&["4XB".into()], "--sizes").unwrap_err().to_string();
        assert!(e.contains("--sizes") && e.contains("'4XB'"), "{e}");
        assert_eq!(parse_path("prefill_to_decode:1->0"), Some(PathRef { kind: RouteKind::PrefillToDecode, src: 1, dst: 0 }));
        assert_eq!(parse_path("nope:1->0"), None);
    }

    #[test]
    fn flags_out_of_range_are_refused() {
        for v in [0.0, -1.0, 1.0, f64::NAN, f64::INFINITY] {
            assert!(check_ci_target(v).unwrap_err().to_string().contains("--ci-target"), "{v}");
        }
        assert_eq!(check_ci_target(0.01).unwrap(), 0.01);
        for v in [0.0, -1.0, 61.0, f64::NAN] {
            assert!(check_time_cap(v, 60.0).unwrap_err().to_string().contains("--time-cap"), "{v}");
        }
        assert_eq!(check_time_cap(2.0, 60.0).unwrap(), 2.0);
        let max = crate::control::limits::DEFAULT_MAX_BYTES;
        assert_eq!(sizes(&["4GiB".into()], "--sizes").unwrap(), vec![max]);
        let e = sizes(&["1000GiB".into()], "--sizes").unwrap_err().to_string();
        assert!(e.contains("--sizes") && e.contains("1073741824000 B"), "{e}");
    }
}
