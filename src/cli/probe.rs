//! `linkcal probe`: the hardware probes of this host, each with "applies" or "waived: reason"
//! (`--list`), and running every applicable one at chunk and KV sizes (`--run`).

use std::path::PathBuf;

use anyhow::Context;

use crate::error::InputError;
use crate::gpu::PciAddr;
use crate::hwprobe::run::RunConfig;
use crate::hwprobe::{self, Role, Status};
use crate::spec::{parse_nic_map, RackShape, Workload};
use crate::units::parse_sizes;

use super::shape::RoleArg;

/// Flags of `linkcal probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List every probe this host could run, with "applies" or "waived: <reason>".
    #[arg(long)]
    pub list: bool,
    /// Which spec role this host plays (decides which route a local probe measures).
    #[arg(long = "as", value_enum, value_name = "ROLE", default_value = "prefill")]
    pub role: RoleArg,
    /// GPUs in spec order, by PCI bus id, comma-separated (default: by bus id, as `discover`).
    #[arg(long)]
    pub gpus: Option<String>,
    /// Compute NIC used by each GPU in spec order, e.g. 0,1,0,1, or `discovered` (the default:
    /// the map discovery proposes, else i mod count). Compute NICs are the active RDMA ports of
    /// the host's main link layer, numbered by PCI bus id.
    #[arg(long)]
    pub nic_map: Option<String>,
    /// The saved output of `nvidia-smi topo -m` of this host: tells NVLink from PCIe peer
    /// pairs (and their PCIe class) when NVML cannot be loaded.
    #[arg(long, value_name = "FILE", conflicts_with = "nccl_topo")]
    pub nvidia_smi_topo: Option<PathBuf>,
    /// An NCCL topology dump of this host (`NCCL_TOPO_DUMP_FILE`): the same, from NCCL.
    #[arg(long, value_name = "FILE")]
    pub nccl_topo: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run every applicable probe and write results.json, results.csv, journal.jsonl and
    /// loopback.json into --out.
    #[arg(long, conflicts_with = "list")]
    pub run: bool,
    /// Output directory of --run.
    #[arg(long, default_value = "out/hw-smoke")]
    pub out: PathBuf,
    /// Payload sizes, comma-separated, as `run --sizes` takes them: bytes, 64K, 16M, 16MiB, 10MB.
    #[arg(long)]
    pub sizes: Option<String>,
    /// Derive the chunk-activation, KV-handoff and decode-activation sizes from this model preset.
    #[arg(long, requires_all = ["n", "t", "m"])]
    pub model: Option<String>,
    /// N: batch size (with --model).
    #[arg(long)]
    pub n: Option<u64>,
    /// T: context length in tokens (with --model).
    #[arg(long)]
    pub t: Option<u64>,
    /// M: prefill chunk in tokens (with --model).
    #[arg(long)]
    pub m: Option<u64>,
    /// PP_prefill for the KV split (with --model; default: the GPUs found, at least 1).
    #[arg(long)]
    pub pp_prefill: Option<usize>,
    /// Sizes above this are capped to it (device and pinned memory), bytes.
    #[arg(long, default_value_t = 4 << 30)]
    pub max_bytes: u64,
    /// Fewer samples: a quick look rather than a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Copy-engine copies per transfer behind one start gate (1 to 64; the time is divided by it).
    #[arg(long)]
    pub loops: Option<u64>,
    /// Staging chunk of gpu_staged_tcp, bytes.
    #[arg(long)]
    pub chunk_bytes: Option<u64>,
    /// RDMA queue pairs per flow.
    #[arg(long)]
    pub qps: Option<u64>,
    /// Largest RDMA WRITE, bytes.
    #[arg(long)]
    pub write_bytes: Option<u64>,
    /// RDMA writes in flight per queue pair.
    #[arg(long)]
    pub outstanding: Option<u64>,
    /// GID index (RoCE, or routed InfiniBand; default on RoCE: the port's RoCE v2 GID).
    #[arg(long)]
    pub gid_index: Option<u64>,
    /// IP traffic class of RoCE / routed packets (DSCP << 2, e.g. 106 for DSCP 26).
    #[arg(long)]
    pub traffic_class: Option<u64>,
}

fn bad(field: &str, message: String) -> anyhow::Error {
    InputError::field("linkcal probe", field, message).into()
}

/// The sizes to run: --sizes, else the model's chunk, KV and decode payloads, else a default.
fn sizes(a: &Args, gpus: usize) -> anyhow::Result<Vec<u64>> {
    let mut v: Vec<u64> = match (&a.sizes, &a.model) {
        (Some(list), _) => parse_sizes(list).map_err(|e| bad("--sizes", e.to_string()))?,
        (None, Some(name)) => {
            let model = crate::payload::preset(name)?;
            let w = Workload::new(a.n.unwrap_or(0), a.t.unwrap_or(0), a.m.unwrap_or(0))?;
            let pp = a.pp_prefill.unwrap_or(gpus.max(1));
            let shape = RackShape::new(pp, pp, 1)?;
            let p = crate::payload::payloads(&model, &w, &shape, None)?;
            let kv = p.stages.iter().map(|s| s.kv_handoff_bytes).max().unwrap_or(0);
            vec![p.chunk_activation_bytes, kv, p.decode_activation_bytes]
        }
        (None, None) => RunConfig::default().sizes,
    };
    for s in v.iter_mut() {
        if *s > a.max_bytes {
            eprintln!("linkcal probe: {s} B capped to --max-bytes {} B", a.max_bytes);
            *s = a.max_bytes;
        }
    }
    v.retain(|&s| s > 0);
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn run_config(a: &Args, sizes: Vec<u64>) -> RunConfig {
    let mut c = RunConfig { sizes, ..RunConfig::default() };
    if a.quick {
        c.min_samples = 3;
        c.max_samples = 20;
        c.time_cap_s = 1.0;
        c.warmup = 1;
    }
    for (k, v) in [
        ("loops", a.loops),
        ("chunk_bytes", a.chunk_bytes),
        ("qps", a.qps),
        ("write_bytes", a.write_bytes),
        ("outstanding", a.outstanding),
        ("gid_index", a.gid_index),
        ("traffic_class", a.traffic_class),
    ] {
        if let Some(v) = v {
            c.options.insert(k.into(), serde_json::json!(v));
        }
    }
    c
}

/// Parses `--gpus`.
fn parse_gpus(s: &str) -> anyhow::Result<Vec<PciAddr>> {
    s.split(',').map(|p| p.trim().parse::<PciAddr>().context("--gpus")).collect()
}

/// Runs `linkcal probe`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    if !a.list && !a.run {
        anyhow::bail!(InputError::file("linkcal probe", "nothing to do: give --list or --run"));
    }
    let order = a.gpus.as_deref().map(parse_gpus).transpose()?;
    let role = match a.role {
        RoleArg::Prefill => Role::Prefill,
        RoleArg::Decode => Role::Decode,
    };
    let mut inv = hwprobe::inventory();
    peer_links_from_file(&a, &mut inv)?;
    let map = match a.nic_map.as_deref() {
        Some("discovered") => Some(hwprobe::discovered_nic_map(&inv).map_err(|m| anyhow::anyhow!("--nic-map discovered: {m}"))?),
        Some(other) => Some(parse_nic_map(other)?),
        // Discovery's proposal by default; without one, GPU i uses compute NIC i mod count.
        None if inv.rdma.is_ok() => hwprobe::discovered_nic_map(&inv)
            .map_err(|m| eprintln!("linkcal probe: no discovered NIC map ({m}); GPU i uses compute NIC i mod their count"))
            .ok(),
        None => None,
    };
    let probes = hwprobe::catalogue(&inv, role, order.as_deref(), map.as_deref());
    if a.run {
        return run_probes(&a, &inv, &probes);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&probes)?);
        return Ok(0);
    }
    let width = probes.iter().map(|p| p.kind.as_str().len() + 1 + p.target.len()).max().unwrap_or(0);
    for p in &probes {
        let name = format!("{} {}", p.kind.as_str(), p.target);
        match &p.status {
            Status::Applies => println!("{name:<width$}  applies"),
            Status::Waived { reason } => println!("{name:<width$}  waived: {reason}"),
        }
    }
    Ok(0)
}

/// Reads `--nvidia-smi-topo` / `--nccl-topo` into the CUDA peer links (NVML, when it answers, still wins).
fn peer_links_from_file(a: &Args, inv: &mut hwprobe::Inventory) -> anyhow::Result<()> {
    let input = match (&a.nvidia_smi_topo, &a.nccl_topo) {
        (Some(p), _) => crate::topology::Input::NvidiaSmi(p.clone()),
        (None, Some(p)) => crate::topology::Input::Nccl(p.clone()),
        (None, None) => return Ok(()),
    };
    let loaded = crate::topology::load(&input)?;
    let gpus: Vec<PciAddr> = inv.cuda.as_ref().map(|d| d.iter().map(|x| x.pci).collect()).unwrap_or_default();
    inv.cuda_links.topology = hwprobe::peer::from_topology(&loaded.inv, &gpus);
    Ok(())
}

fn run_probes(a: &Args, inv: &hwprobe::Inventory, probes: &[hwprobe::Probe]) -> anyhow::Result<u8> {
    let gpus = inv.cuda.as_ref().map(Vec::len).unwrap_or(0).max(inv.hip.devices.as_ref().map(Vec::len).unwrap_or(0));
    let nics: Vec<String> = inv.rdma.as_ref().map(|n| n.iter().map(|x| x.name.clone()).collect()).unwrap_or_default();
    let cfg = run_config(a, sizes(a, gpus)?);
    let shape = RackShape::new(gpus.max(1), 1, nics.len().max(1))?;
    for p in probes {
        if let Status::Waived { reason } = &p.status {
            eprintln!("linkcal probe: {} {}: waived: {reason}", p.kind.as_str(), p.target);
        }
    }
    let out = hwprobe::run::run(crate::transport::TransportKind::instance, probes, shape, &cfg, &a.out)
        .with_context(|| format!("writing results into {}", a.out.display()))?;
    for m in &out.results.measurements {
        for f in &m.flows {
            println!(
                "{:<60} {:>12} B  {:>8.3} GB/s per direction (p50)",
                format!("{} {}", m.transport, f.path),
                f.payload_bytes,
                f.goodput_Bps.p50 / 1e9
            );
        }
        if let Some(agg) = &m.aggregate {
            println!("{:<60} {:>12}    {:>8.3} GB/s sum over flows (p50)", m.id, "", agg.goodput_sum_Bps.p50 / 1e9);
        }
    }
    for l in &out.loopback {
        if let Some(g) = &l.goodput_Bps {
            println!("{:<60} {:>12} B  {:>8.3} GB/s (loopback, not a spec route)", l.probe, l.payload_bytes, g.p50 / 1e9);
        }
    }
    println!(
        "{} measurements, {} waivers; wrote {}",
        out.results.measurements.len(),
        out.results.waivers.len(),
        hwprobe::run::files(&a.out).iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    if out.failures.is_empty() {
        return Ok(0);
    }
    for f in &out.failures {
        eprintln!("linkcal probe: failed: {f}");
    }
    Ok(crate::error::EXIT_RUNTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn every_flow_flag_reaches_the_run_options() {
        use clap::Parser;
        let flags = [
            ("--loops", "loops", 8u64),
            ("--chunk-bytes", "chunk_bytes", 65536),
            ("--qps", "qps", 4),
            ("--write-bytes", "write_bytes", 1 << 20),
            ("--outstanding", "outstanding", 32),
            ("--gid-index", "gid_index", 3),
            ("--traffic-class", "traffic_class", 106),
        ];
        let mut argv = vec!["probe".to_string(), "--run".into()];
        for (flag, _, v) in flags {
            argv.extend([flag.to_string(), v.to_string()]);
        }
        let a = Cli::try_parse_from(argv).unwrap().args;
        let c = run_config(&a, vec![1]);
        for (flag, key, v) in flags {
            assert_eq!(c.options.get(key), Some(&serde_json::json!(v)), "{flag} must reach flow option '{key}'");
        }
        assert_eq!(c.options.len(), flags.len(), "no flow option without a flag: {:?}", c.options);
        // --loops reaches the flows the in-process driver opens, and sets a contended set's
        // copies per lane per sample (never under the multi-lane minimum).
        let plan = crate::hwprobe::run::FlowPlan {
            kind: crate::transport::TransportKind::CudaP2p,
            options: serde_json::json!({"src_gpu": 0, "dst_gpu": 1}),
            path: None,
            label: "p".into(),
        };
        let flow = c.flow_options(&plan);
        assert_eq!(flow["loops"], serde_json::json!(8));
        assert_eq!(flow["src_gpu"], serde_json::json!(0), "the plan's own options stay");
        assert_eq!(crate::runner::local::copies_per_sample(&flow), 8);
        let c = run_config(&Cli::try_parse_from(["probe", "--run", "--loops", "32"]).unwrap().args, vec![1]);
        assert_eq!(crate::runner::local::copies_per_sample(&c.flow_options(&plan)), 32);
        let c = run_config(&Cli::try_parse_from(["probe", "--run", "--loops", "2"]).unwrap().args, vec![1]);
        assert_eq!(
            crate::runner::local::copies_per_sample(&c.flow_options(&plan)),
            crate::transport::lanes::MIN_COPIES_PER_SAMPLE
        );
    }

    /// Every flag of `probe` is either a run option (checked to reach the run's configuration
    /// here or in [`every_flow_flag_reaches_the_run_options`]) or says what to probe or where to
    /// write: a new flag fails this test until it is classified (and, if it is a run option,
    /// wired and checked).
    #[test]
    fn every_probe_flag_is_a_checked_run_option_or_not_one() {
        use clap::{CommandFactory, Parser};
        const RUN_OPTIONS: [&str; 14] = [
            "loops",
            "chunk_bytes",
            "qps",
            "write_bytes",
            "outstanding",
            "gid_index",
            "traffic_class",
            "quick",
            "sizes",
            "model",
            "n",
            "t",
            "m",
            "max_bytes",
        ];
        const OTHERS: [&str; 11] =
            ["list", "role", "gpus", "nic_map", "nvidia_smi_topo", "nccl_topo", "json", "run", "out", "pp_prefill", "help"];
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            assert!(RUN_OPTIONS.contains(&id) || OTHERS.contains(&id), "flag '{id}' of `probe` is not classified");
        }
        let parse = |argv: &[&str]| Cli::try_parse_from([&["probe", "--run"], argv].concat()).unwrap().args;
        // --quick: fewer samples and a shorter cap than the default.
        let (d, q) = (run_config(&parse(&[]), vec![1]), run_config(&parse(&["--quick"]), vec![1]));
        assert!(q.max_samples < d.max_samples && q.time_cap_s < d.time_cap_s && q.warmup < d.warmup);
        // --sizes in the run's grammar, capped by --max-bytes.
        let a = parse(&["--sizes", "16MiB,4K", "--max-bytes", "8388608"]);
        assert_eq!(sizes(&a, 1).unwrap(), vec![4096, 8 << 20]);
        let a = parse(&["--sizes", "16MiB"]);
        assert_eq!(sizes(&a, 1).unwrap(), vec![16 << 20]);
        // --model with N, T, M (and PP_prefill) gives the model's payloads.
        let a = parse(&["--model", "llama-3.1-8b", "--n", "1", "--t", "1024", "--m", "512", "--pp-prefill", "2"]);
        let model = crate::payload::preset("llama-3.1-8b").unwrap();
        let shape = RackShape::new(2, 2, 1).unwrap();
        let p = crate::payload::payloads(&model, &Workload::new(1, 1024, 512).unwrap(), &shape, None).unwrap();
        let kv = p.stages.iter().map(|s| s.kv_handoff_bytes).max().unwrap();
        let mut want = vec![p.chunk_activation_bytes, kv, p.decode_activation_bytes];
        want.sort_unstable();
        want.dedup();
        assert_eq!(sizes(&a, 8).unwrap(), want);
    }
}
