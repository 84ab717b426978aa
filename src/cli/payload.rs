//! `linkcal payload`: sizes from a model config or preset.

use crate::payload::{payloads_with, preset, Dtype, Engine, Formula, KvCacheDtype, ModelConfig, Payloads, Serving};
use crate::spec::{RackShape, Workload};

/// Flags of `linkcal payload`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "model_config"])))]
pub struct Args {
    /// Model and workload.
    #[command(flatten)]
    pub workload: super::shape::WorkloadArgs,
    /// PP_prefill.
    #[arg(long)]
    pub pp_prefill: usize,
    /// PP_decode.
    #[arg(long)]
    pub pp_decode: usize,
    /// Activation element type override: bf16, fp16, fp8, fp32 (default: the config's, float32
    /// served as bf16).
    #[arg(long)]
    pub dtype: Option<String>,
    /// KV cache element type: auto (the activation dtype), bf16, fp16, fp32, fp8 (fp8_e4m3,
    /// fp8_e5m2) or fp8_ds_mla (vLLM's DeepSeek MLA layout, 656 B per token per layer).
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// Engine whose rules size the payloads.
    #[arg(long, value_enum, default_value = "vllm")]
    pub engine: Engine,
    /// engine: what the engine holds and moves; spec: the README's uniform formula.
    #[arg(long, value_enum, default_value = "engine")]
    pub formula: Formula,
    /// KV block (page) size in tokens (default: vLLM 16, SGLang 1).
    #[arg(long)]
    pub block_size: Option<u64>,
    /// Element type of linear-attention / SSM recurrent state (default: the config's
    /// mamba_ssm_dtype, else the activation dtype).
    #[arg(long)]
    pub mamba_ssm_cache_dtype: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Human-readable bytes with SI units.
pub fn si_bytes(b: u64) -> String {
    let v = b as f64;
    match v {
        v if v >= 1e9 => format!("{:.3} GB", v / 1e9),
        v if v >= 1e6 => format!("{:.3} MB", v / 1e6),
        v if v >= 1e3 => format!("{:.3} kB", v / 1e3),
        _ => format!("{b} B"),
    }
}

/// Runs `linkcal payload`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let model = match (&a.workload.model, &a.workload.model_config) {
        (Some(name), _) => preset(name)?,
        (None, Some(path)) => ModelConfig::from_file(path)?,
        (None, None) => unreachable!("clap requires --model or --model-config"),
    };
    let serving = Serving {
        engine: a.engine,
        formula: a.formula,
        dtype: a.dtype.as_deref().map(Dtype::parse).transpose()?,
        kv_cache_dtype: KvCacheDtype::parse(&a.kv_cache_dtype)?,
        block_size: a.block_size,
        ssm_dtype: a.mamba_ssm_cache_dtype.as_deref().map(Dtype::parse).transpose()?,
    };
    let w = Workload::new(a.workload.n, a.workload.t, a.workload.m)?;
    // The IB card count does not change sizes; 1 is always valid here.
    let shape = RackShape::new(a.pp_prefill, a.pp_decode, 1)?;
    let p = payloads_with(&model, &w, &shape, &serving)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print_table(&p, &w);
    }
    Ok(0)
}

/// Runs of equal layer kinds, e.g. `12 x sliding(128)`, in layer order.
fn layer_runs(p: &Payloads) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for l in &p.layers {
        match runs.last_mut() {
            Some((label, count)) if *label == l.kv.label() => *count += 1,
            _ => runs.push((l.kv.label(), 1)),
        }
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (label, n) in runs {
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, c)) => *c += n,
            None => counts.push((label, n)),
        }
    }
    counts.iter().map(|(l, n)| format!("{n} x {l}")).collect::<Vec<_>>().join(", ")
}

fn print_table(p: &Payloads, w: &Workload) {
    println!("model {} ({} B/element, KV {} B per token per layer)", p.model, p.bytes_per_element, p.kv_per_token_layer_bytes);
    if let Some(s) = &p.serving {
        println!(
            "{:?} {:?}: activations {:?} x{}, KV cache {:?}, blocks of {} tokens; layers: {}",
            s.engine,
            s.formula,
            s.activation_dtype,
            s.activation_tensors,
            s.kv_cache_dtype,
            s.block_tokens,
            layer_runs(p)
        );
    }
    println!(
        "Path 1 chunk activation (M={} tokens):  {} B ({})",
        w.m,
        p.chunk_activation_bytes,
        si_bytes(p.chunk_activation_bytes)
    );
    println!(
        "Path 3 decode activation (N={}):        {} B ({})",
        w.n,
        p.decode_activation_bytes,
        si_bytes(p.decode_activation_bytes)
    );
    println!("Path 2 KV handoff (N={} x T={}):", w.n, w.t);
    for s in &p.stages {
        let to: Vec<String> = s.handoffs.iter().map(|h| format!("D{}: {} layers, {} B", h.decode, h.layers, h.bytes)).collect();
        println!(
            "  stage {:>2}: {:>3} layers  {:>15} B ({})  -> {}",
            s.stage,
            s.layers,
            s.kv_handoff_bytes,
            si_bytes(s.kv_handoff_bytes),
            to.join("; ")
        );
    }
}
