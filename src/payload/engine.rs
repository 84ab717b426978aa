//! Engine profiles: how vLLM and SGLang resolve dtypes, split layers over pipeline stages, pass
//! activations between stages and move chunked layers' KV.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Dtype, PayloadError};

/// The serving engine whose rules size the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// vLLM (v1 engine, NIXL connector).
    #[default]
    Vllm,
    /// SGLang.
    Sglang,
}

/// Which formula sizes the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Formula {
    /// What the engine holds and moves: per-layer KV, served dtypes, hidden + residual.
    #[default]
    Engine,
    /// The README's uniform formula (every layer full attention, the config's dtype, the
    /// spec's layer split, hidden states only): the figures before engine profiles.
    Spec,
}

/// KV cache element type (`--kv-cache-dtype`), separate from the activation dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheDtype {
    /// The activation (model) dtype.
    #[default]
    Auto,
    /// 32-bit float, 4 bytes.
    Fp32,
    /// bfloat16, 2 bytes.
    Bf16,
    /// IEEE half, 2 bytes.
    Fp16,
    /// fp8 (e4m3 / e5m2), 1 byte; vLLM and SGLang scale it per tensor (`k_scale`, `v_scale`:
    /// one float per layer), so no scale bytes per token.
    Fp8,
    /// vLLM's DeepSeek MLA layout: fp8 latent, a float32 scale per 128 latent elements, bf16
    /// rope key (656 B per token per layer for 512 + 64).
    Fp8DsMla,
}

impl KvCacheDtype {
    /// Parses `auto`, a dtype name (`fp8`, `fp8_e4m3`, `fp8_e5m2`, `bfloat16`, ...) or `fp8_ds_mla`.
    pub fn parse(s: &str) -> Result<KvCacheDtype, PayloadError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(KvCacheDtype::Auto),
            "fp8_ds_mla" => Ok(KvCacheDtype::Fp8DsMla),
            other => Dtype::parse(other).map(KvCacheDtype::from).map_err(|_| PayloadError::KvCacheDtype(s.to_string())),
        }
    }

    /// The concrete KV type given the activation dtype (`auto` resolved).
    pub fn resolve(self, activation: Dtype) -> KvCacheDtype {
        match self {
            KvCacheDtype::Auto => activation.into(),
            k => k,
        }
    }

    /// Bytes per KV element given the activation dtype.
    pub fn bytes(self, activation: Dtype) -> u64 {
        match self.resolve(activation) {
            KvCacheDtype::Fp32 => 4,
            KvCacheDtype::Bf16 | KvCacheDtype::Fp16 => 2,
            _ => 1,
        }
    }
}

impl From<Dtype> for KvCacheDtype {
    fn from(d: Dtype) -> KvCacheDtype {
        match d {
            Dtype::Fp32 => KvCacheDtype::Fp32,
            Dtype::Bf16 => KvCacheDtype::Bf16,
            Dtype::Fp16 => KvCacheDtype::Fp16,
            Dtype::Fp8 => KvCacheDtype::Fp8,
        }
    }
}

/// How the payloads are sized: engine, formula and the flags that override the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Serving {
    /// Engine profile.
    pub engine: Engine,
    /// Formula.
    pub formula: Formula,
    /// `--dtype`: activation (and auto KV) element type; None: resolved from the config.
    pub dtype: Option<Dtype>,
    /// `--kv-cache-dtype`.
    pub kv_cache_dtype: KvCacheDtype,
    /// `--block-size`: KV block (page) tokens; None: the engine default.
    pub block_size: Option<u64>,
    /// `--mamba-ssm-cache-dtype`: recurrent-state element type; None: the config's
    /// `mamba_ssm_dtype` (vLLM `Qwen3_5ForConditionalGenerationConfig`), else the model dtype.
    pub ssm_dtype: Option<Dtype>,
}

impl Engine {
    /// Default KV block (page) size in tokens: vLLM `--block-size` 16 on CUDA; SGLang
    /// `--page-size` 1.
    pub fn default_block(self) -> u64 {
        match self {
            Engine::Vllm => 16,
            Engine::Sglang => 1,
        }
    }

    /// Served activation dtype for a checkpoint dtype (None: the config declares none).
    /// vLLM `_find_dtype` takes float32 when nothing is declared, and `_resolve_auto_dtype`
    /// downcasts float32 to the platform's first supported dtype (bfloat16 on CUDA sm80+).
    /// SGLang `_get_and_verify_dtype` (sglang/srt/configs/model_config.py) downcasts float32
    /// to float16, except Gemma 2 to bfloat16. Either way 2 bytes.
    pub fn served_dtype(self, config: Option<Dtype>, model_type: &str) -> Dtype {
        match (self, config.unwrap_or(Dtype::Fp32)) {
            (Engine::Sglang, Dtype::Fp32) if model_type != "gemma2" => Dtype::Fp16,
            (_, Dtype::Fp32) => Dtype::Bf16,
            (_, d) => d,
        }
    }

    /// Chunked layers keep only the last chunk in the handoff: vLLM's NIXL connector reads
    /// the last ceil(attention_chunk_size / block) blocks of a local-attention layer
    /// (`block_window_per_layer`). SGLang keeps chunked layers' KV in its full token pool.
    pub fn chunk_window(self) -> bool {
        self == Engine::Vllm
    }
}

/// Layer split of vLLM `get_pp_indices` (vllm/distributed/utils.py; SGLang's copy in
/// sglang/srt/distributed/utils.py is the same): `layers / stages` each, the remainder one
/// each to the stages before the last, from the second-to-last backwards
/// (64 over 3: 21, 22, 21). Returns `[start, end)` per stage.
pub fn pp_indices(layers: u32, stages: usize) -> Vec<(u32, u32)> {
    let stages = stages.max(1);
    let base = layers / stages as u32;
    let rem = (layers % stages as u32) as usize;
    let mut parts = vec![base; stages];
    for i in 2..rem + 2 {
        parts[stages - i] += 1;
    }
    let mut start = 0;
    parts
        .iter()
        .map(|&len| {
            let r = (start, start + len);
            start += len;
            r
        })
        .collect()
}
