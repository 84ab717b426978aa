//! `linkcal predict`: the communication times of a model and workload (N, T, M) on a
//! calibrated rack: one pipeline step (Path 1), the KV handoff of each stage alone and all at
//! once (Path 2), one decode step (Path 3), each with what limits it, and how the KV burst and
//! decode step scale with N and T.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::payload::si_bytes;
use crate::payload::{preset, Engine, ModelConfig, Serving};
use crate::predict::{check_shape, load_calibration, predict, scaling, PathTimes, Prediction, ScalePoint, SCALE_N, SCALE_T};
use crate::report::prediction::scaling_svg;
use crate::spec::Workload;

/// Flags of `linkcal predict`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "model_config"])))]
pub struct Args {
    /// Calibration file (`linkcal calibrate --out`).
    #[arg(long)]
    pub calibration: PathBuf,
    /// Model and workload.
    #[command(flatten)]
    pub workload: super::shape::WorkloadArgs,
    /// PP_prefill the plan assumes; must match the calibrated rack (default: the calibration's).
    #[arg(long)]
    pub pp_prefill: Option<usize>,
    /// PP_decode the plan assumes; must match the calibrated rack (default: the calibration's).
    #[arg(long)]
    pub pp_decode: Option<usize>,
    /// Engine whose rules size the payloads.
    #[arg(long, value_enum, default_value = "vllm")]
    pub engine: Engine,
    /// Batch sizes of the scaling table.
    #[arg(long, value_delimiter = ',', default_values_t = SCALE_N)]
    pub scale_n: Vec<u64>,
    /// Context lengths of the scaling table, tokens.
    #[arg(long, value_delimiter = ',', default_values_t = SCALE_T)]
    pub scale_t: Vec<u64>,
    /// Also write an SVG plot of the KV burst against T, one line per N.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Path 2 through a KV-transfer engine: its times divided by the engine's efficiency to
    /// host TCP from the calibration (`engine_efficiency`, per route, interpolated per payload).
    #[arg(long, value_parser = ["nixl", "mooncake"])]
    pub kv_engine: Option<String>,
    /// With --kv-engine: the curve measured at this many tokens per KV block (`run --block-tokens`).
    #[arg(long, default_value_t = 16, requires = "kv_engine")]
    pub block_tokens: u64,
    /// With --kv-engine: the curve measured at this KV block length instead (`run --kv-block-bytes`), e.g. 32KiB.
    #[arg(long, requires = "kv_engine")]
    pub kv_block_bytes: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The engine curve `--kv-engine` asks for, if any.
fn engine_block(a: &Args) -> anyhow::Result<Option<(String, crate::predict::engine::Block)>> {
    use crate::predict::engine::Block;
    let Some(e) = &a.kv_engine else { return Ok(None) };
    let block = match &a.kv_block_bytes {
        Some(s) => Block::Bytes(
            crate::units::parse_size(s)
                .map_err(|err| crate::error::InputError::field("--kv-block-bytes", "value", err.to_string()))?,
        ),
        None => Block::Tokens(a.block_tokens),
    };
    Ok(Some((e.clone(), block)))
}

/// A prediction and its scaling table, as `predict` computes them.
pub struct Answer {
    /// The prediction at the asked N, T, M.
    pub prediction: Prediction,
    /// The table over N x T.
    pub scaling: Vec<ScalePoint>,
}

/// Loads the calibration and model and predicts (shared with `linkcal report`).
pub fn answer(
    cal_file: &Path,
    model: &ModelConfig,
    w: Workload,
    engine: Engine,
    shape_flags: (Option<usize>, Option<usize>),
    grid: (&[u64], &[u64]),
) -> anyhow::Result<Answer> {
    let cal = load_calibration(cal_file)?;
    check_shape(cal_file, &cal, shape_flags.0, shape_flags.1)?;
    let serving = Serving { engine, ..Serving::default() };
    let p = crate::payload::payloads_with(model, &w, &cal.shape, &serving)?;
    let prediction = predict(&cal, cal_file, &p, w)?;
    let scaling = scaling(&cal, cal_file, model, &serving, w.m, grid.0, grid.1)?;
    Ok(Answer { prediction, scaling })
}

/// The model of `--model` / `--model-config`.
pub fn model_of(name: Option<&str>, file: Option<&Path>) -> anyhow::Result<ModelConfig> {
    Ok(match (name, file) {
        (Some(n), _) => preset(n)?,
        (None, Some(f)) => ModelConfig::from_file(f)?,
        (None, None) => unreachable!("clap requires --model or --model-config"),
    })
}

/// Runs `linkcal predict`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let model = model_of(a.workload.model.as_deref(), a.workload.model_config.as_deref())?;
    let w = Workload::new(a.workload.n, a.workload.t, a.workload.m)?;
    for (list, flag) in [(&a.scale_n, "--scale-n"), (&a.scale_t, "--scale-t")] {
        if list.contains(&0) {
            return Err(crate::error::InputError::field(flag, "value", "contains 0: give positive values").into());
        }
    }
    let mut ans = answer(&a.calibration, &model, w, a.engine, (a.pp_prefill, a.pp_decode), (&a.scale_n, &a.scale_t))?;
    if let Some((engine, block)) = engine_block(&a)? {
        let cal = load_calibration(&a.calibration)?;
        crate::predict::engine::apply(&mut ans.prediction, &cal, &a.calibration, &engine, block)?;
    }
    if let Some(f) = &a.svg {
        let svg = scaling_svg(&ans.prediction, &ans.scaling)?;
        std::fs::write(f, svg).with_context(|| format!("writing {}", f.display()))?;
    }
    if a.json {
        let v = serde_json::json!({"prediction": ans.prediction, "scaling": ans.scaling});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&a.calibration, &ans));
    }
    Ok(crate::error::EXIT_OK)
}

/// The name a value has in files (its serde name).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|x| x.as_str().map(str::to_string)).unwrap_or_default()
}

fn ms(s: f64) -> String {
    format!("{:.3}", s * 1e3)
}

fn routes(out: &mut String, p: &PathTimes) {
    let _ = writeln!(
        out,
        "  {:<26} {:>12} {:>12} {:>10} {:>12}  limited by",
        "route", "real bytes", "rack bytes", "alone ms", "all-at-once"
    );
    for r in &p.routes {
        let _ = writeln!(
            out,
            "  {:<26} {:>12} {:>12} {:>10} {:>12}  {}",
            r.route.to_string(),
            si_bytes(r.real_bytes),
            si_bytes(r.scaled_bytes),
            ms(r.alone_s),
            ms(r.all_at_once_s),
            r.bottleneck.describe()
        );
    }
    if p.routes.len() > 1 {
        let shared = p.shared_bottleneck.as_ref().map(|b| format!("; shared: {}", b.describe())).unwrap_or_default();
        let _ = writeln!(out, "  all at once: {} ms{shared}", ms(p.all_at_once_s));
    }
}

/// The human-readable answer.
pub fn text(cal_file: &Path, a: &Answer) -> String {
    let p = &a.prediction;
    let w = p.workload;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: N={} T={} M={} on the ({},{},{}) rack of {}",
        p.model,
        w.n,
        w.t,
        w.m,
        p.shape.pp_prefill,
        p.shape.pp_decode,
        p.shape.ib_cards,
        cal_file.display()
    );
    if let Some(s) = &p.serving {
        let _ = writeln!(
            o,
            "{} payloads: activations {} x{}, KV cache {}, blocks of {} tokens; sharing efficiency {:.4} on shared segment directions",
            name(&s.engine),
            name(&s.activation_dtype),
            s.activation_tensors,
            name(&s.kv_cache_dtype),
            s.block_tokens,
            p.sharing_efficiency
        );
    }
    if p.payload_scale != 1.0 || p.emulated {
        let _ = writeln!(
            o,
            "TIMES ARE FOR THE {} RACK with payloads divided by {} (rack bytes), not hardware times for the real bytes",
            if p.emulated { "EMULATED" } else { "CALIBRATED" },
            p.payload_scale
        );
    }
    let _ = writeln!(o, "\nPath 1, one pipeline step (chunk activation of M={} tokens, stage i -> i+1):", w.m);
    if p.path1.routes.is_empty() {
        let _ = writeln!(o, "  none: one prefill stage");
    }
    routes(&mut o, &p.path1);
    let _ = writeln!(o, "\nPath 2, KV handoff (N={} x T={}):", w.n, w.t);
    if let Some(e) = &p.kv_engine {
        let tokens = e.kv_block_tokens.map(|t| format!("{t}-token ")).unwrap_or_default();
        let _ = writeln!(
            o,
            "  through {} with {tokens}KV blocks of {} B (link time / the engine's ratio to host TCP):",
            e.engine, e.kv_block_bytes
        );
        for r in &e.routes {
            let from: Vec<String> = r.curves_of.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                o,
                "    {:<24} ratio {:.4}  link alone {} ms  (curve of {})",
                r.route.to_string(),
                r.ratio,
                ms(r.link_alone_s),
                from.join(", ")
            );
        }
    }
    routes(&mut o, &p.path2);
    for s in &p.stages {
        let _ = writeln!(
            o,
            "  stage {}: {} ({} on the rack): alone {} ms, all stages at once {} ms",
            s.stage,
            si_bytes(s.real_bytes),
            si_bytes(s.scaled_bytes),
            ms(s.alone_s),
            ms(s.all_at_once_s)
        );
    }
    let _ = writeln!(o, "\nPath 3, one decode step (decode activation of N={}, server j -> j+1):", w.n);
    if p.path3.routes.is_empty() {
        let _ = writeln!(o, "  none: one decode server");
    }
    routes(&mut o, &p.path3);
    table(&mut o, &a.scaling);
    for n in &p.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

fn table(o: &mut String, pts: &[ScalePoint]) {
    let mut ts: Vec<u64> = pts.iter().map(|x| x.t).collect();
    ts.sort_unstable();
    ts.dedup();
    let mut ns: Vec<u64> = pts.iter().map(|x| x.n).collect();
    ns.dedup();
    let _ = writeln!(o, "\nScaling: KV handoff of all stages at once, ms on the rack (* = rests on a lower bound: upper bound)");
    let _ = write!(o, "  {:>5}", "N\\T");
    for t in &ts {
        let _ = write!(o, " {t:>10}");
    }
    let _ = writeln!(o, " | {:>12} {:>12}", "decode ms", "pipeline ms");
    for n in ns {
        let _ = write!(o, "  {n:>5}");
        let row: Vec<&ScalePoint> = pts.iter().filter(|x| x.n == n).collect();
        for t in &ts {
            match row.iter().find(|x| x.t == *t) {
                Some(x) => {
                    let _ = write!(o, " {:>10}", format!("{}{}", ms(x.kv_burst_s), if x.kv_upper_bound { "*" } else { "" }));
                }
                None => {
                    let _ = write!(o, " {:>10}", "-");
                }
            }
        }
        let first = row.first();
        let _ = writeln!(
            o,
            " | {:>12} {:>12}",
            first.map(|x| ms(x.decode_step_s)).unwrap_or_default(),
            first.map(|x| ms(x.pipeline_step_s)).unwrap_or_default()
        );
    }
}
