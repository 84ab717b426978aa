//! `linkcal payload`: sizes from a model config or preset.

use std::path::PathBuf;

use crate::payload::{payloads, preset, Dtype, ModelConfig};
use crate::spec::{RackShape, Workload};

/// Flags of `linkcal payload`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "model_config"])))]
pub struct Args {
    /// Built-in preset: llama-3.1-8b, llama-3.1-70b, qwen3-30b-a3b, qwen3-32b, gpt-oss-120b, deepseek-v3.
    #[arg(long)]
    pub model: Option<String>,
    /// A HuggingFace config.json.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// N: batch size (requests).
    #[arg(long)]
    pub n: u64,
    /// T: context length (tokens per request).
    #[arg(long)]
    pub t: u64,
    /// M: prefill chunk size (tokens per pipeline step).
    #[arg(long)]
    pub m: u64,
    /// PP_prefill.
    #[arg(long)]
    pub pp_prefill: usize,
    /// PP_decode.
    #[arg(long)]
    pub pp_decode: usize,
    /// Element type override: bf16, fp16, fp8, fp32.
    #[arg(long)]
    pub dtype: Option<String>,
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
    let model = match (&a.model, &a.model_config) {
        (Some(name), _) => preset(name)?,
        (None, Some(path)) => ModelConfig::from_file(path)?,
        (None, None) => unreachable!("clap requires --model or --model-config"),
    };
    let dtype = a.dtype.as_deref().map(Dtype::parse).transpose()?;
    let w = Workload::new(a.n, a.t, a.m)?;
    // The IB card count does not change sizes; 1 is always valid here.
    let shape = RackShape::new(a.pp_prefill, a.pp_decode, 1)?;
    let p = payloads(&model, &w, &shape, dtype)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(0);
    }
    println!("model {} ({} B/element, KV {} B per token per layer)", p.model, p.bytes_per_element, p.kv_per_token_layer_bytes);
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
    Ok(0)
}
