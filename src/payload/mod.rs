//! Payload sizes from a model config: chunk activations (Path 1), KV handoff per stage
//! (Path 2) and decode activations (Path 3), from a HuggingFace `config.json` or a preset,
//! as a serving engine (vLLM, SGLang) holds and moves them, or by the README's uniform formula.

mod compute;
mod config;
mod engine;
mod fields;
mod kinds;
mod layers;
mod presets;

pub use compute::{payloads, payloads_with};
pub use config::passes_residual;
pub use engine::{pp_indices, Engine, Formula, KvCacheDtype, Serving};
pub use layers::LayerKv;
pub use presets::{preset, PRESETS};

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors reading a model config or choosing a preset; each names the file, field or flag.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Preset name not known.
    #[error("unknown model preset '{name}' for --model; known presets: {known}; or give --model-config FILE (a HuggingFace config.json)")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// The config file cannot be read or is not JSON.
    #[error("{}: {message}", path.display())]
    Unreadable {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A field is missing, out of range or inconsistent with another.
    #[error("{}: field '{field}' {problem}", path.display())]
    Field {
        /// The config file.
        path: PathBuf,
        /// The field, with `text_config.` when read from there.
        field: String,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// dtype not understood.
    #[error("unknown dtype '{0}': use bf16, fp16, fp8 or fp32 (also bfloat16, float16, float8_e4m3fn, float32)")]
    Dtype(String),
    /// --kv-cache-dtype not understood.
    #[error("unknown --kv-cache-dtype '{0}': use auto, bf16, fp16, fp32, fp8 (fp8_e4m3, fp8_e5m2) or fp8_ds_mla")]
    KvCacheDtype(String),
    /// A flag that does not apply to this model.
    #[error("{0}")]
    Unsupported(String),
    /// A size beyond 2^64 - 1 bytes.
    #[error("{what} overflows 64 bits: lower --n, --t or --m")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// The rack shape does not fit the model.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
}

impl crate::error::Classified for PayloadError {
    /// Every PayloadError is about the user's input.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

/// Element type of activations and KV entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float, 4 bytes.
    Fp32,
    /// bfloat16, 2 bytes.
    Bf16,
    /// IEEE half, 2 bytes.
    Fp16,
    /// 8-bit float (e4m3 / e5m2), 1 byte.
    Fp8,
}

impl Dtype {
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Fp32 => 4,
            Dtype::Bf16 | Dtype::Fp16 => 2,
            Dtype::Fp8 => 1,
        }
    }

    /// Parses a CLI name or a HuggingFace `torch_dtype`.
    pub fn parse(s: &str) -> Result<Dtype, PayloadError> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "float" => Ok(Dtype::Fp32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "fp16" | "float16" | "half" => Ok(Dtype::Fp16),
            "fp8" | "float8" | "float8_e4m3fn" | "float8_e5m2" | "fp8_e4m3" | "fp8_e5m2" => Ok(Dtype::Fp8),
            _ => Err(PayloadError::Dtype(s.to_string())),
        }
    }
}

/// The figures of a model that set payload sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelConfig {
    /// Model name (preset name or the config's `_name_or_path` / file name).
    pub name: String,
    /// model_type of the text model (decides transformers defaults and what stages pass).
    pub model_type: String,
    /// hidden_size: elements per token of an activation.
    pub hidden_size: u64,
    /// num_hidden_layers.
    pub num_hidden_layers: u32,
    /// num_attention_heads.
    pub num_attention_heads: u64,
    /// num_key_value_heads as vLLM resolves it (the attention heads when the config omits it;
    /// Nemotron-NAS: from `block_configs`).
    pub num_key_value_heads: u64,
    /// head_dim (hidden_size / num_attention_heads, exact, when the config omits it).
    pub head_dim: u64,
    /// Checkpoint dtype (`dtype` / `torch_dtype`); None when the config declares none.
    pub dtype: Option<Dtype>,
    /// Multi-head latent attention (DeepSeek): KV stored as a latent plus a rope key.
    pub mla: Option<Mla>,
    /// What each decoder layer keeps, one entry per layer.
    pub layers: Vec<LayerKv>,
    /// `mamba_ssm_dtype`: element type of linear-attention / SSM recurrent state.
    pub ssm_dtype: Option<Dtype>,
    /// Pipeline stages pass the residual with the hidden states (see [`passes_residual`]).
    pub residual: bool,
}

/// MLA latent sizes (elements per token per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Mla {
    /// kv_lora_rank.
    pub kv_lora_rank: u64,
    /// qk_rope_head_dim.
    pub qk_rope_head_dim: u64,
}

impl ModelConfig {
    /// KV bytes per token per layer by the README's uniform formula at `bytes` per element:
    /// 2 x kv_heads x head_dim x bytes, or (kv_lora_rank + qk_rope_head_dim) x bytes for MLA.
    pub fn kv_per_token_layer_bytes(&self, bytes: u64) -> u64 {
        match self.mla {
            Some(m) => (m.kv_lora_rank + m.qk_rope_head_dim) * bytes,
            None => 2 * self.num_key_value_heads * self.head_dim * bytes,
        }
    }
}

/// What one decoder layer holds for the handoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayerPayload {
    /// Layer index.
    pub layer: u32,
    /// Prefill stage holding it.
    pub stage: usize,
    /// What the layer keeps.
    #[serde(flatten)]
    pub kv: LayerKv,
    /// Tokens of one request it keeps (0 for state and no-KV layers), whole blocks.
    pub tokens_held: u64,
    /// Bytes for N requests: N x tokens_held x bytes per token, or N x state bytes.
    pub bytes: u64,
}

/// KV handoff of one prefill stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StagePayload {
    /// Prefill stage i.
    pub stage: usize,
    /// First layer of this stage.
    #[serde(default)]
    pub first_layer: u32,
    /// Layers this stage holds.
    pub layers: u32,
    /// KV bytes this stage hands off: the sum of its layers' bytes.
    pub kv_handoff_bytes: u64,
    /// Where it goes: one entry per decode server whose layer range overlaps this stage's.
    pub handoffs: Vec<Handoff>,
}

/// Part of a stage's KV going to one decode server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Handoff {
    /// Decode server j.
    pub decode: usize,
    /// Overlapping layers.
    pub layers: u32,
    /// Bytes carried on this Path-2 route.
    pub bytes: u64,
}

/// How the sizes were derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServingSummary {
    /// Engine profile.
    pub engine: Engine,
    /// Formula.
    pub formula: Formula,
    /// Activation element type.
    pub activation_dtype: Dtype,
    /// KV cache element type.
    pub kv_cache_dtype: KvCacheDtype,
    /// KV block (page) size, tokens.
    pub block_tokens: u64,
    /// Tensors of M (or N) x hidden_size passed between stages: 2 with the residual.
    pub activation_tensors: u64,
}

/// All payload sizes for one model, workload and rack shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Payloads {
    /// Model name.
    pub model: String,
    /// How the sizes were derived (absent in files written before engine profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingSummary>,
    /// Bytes per activation element after any --dtype override.
    pub bytes_per_element: u64,
    /// KV bytes per token of a full-attention layer with the config's KV heads and head_dim
    /// (MLA: latent + rope; `fp8_ds_mla`: 656).
    pub kv_per_token_layer_bytes: u64,
    /// Path 1, one pipeline step: M x hidden_size x bytes x activation_tensors.
    pub chunk_activation_bytes: u64,
    /// Path 3, one decode step: N x hidden_size x bytes x activation_tensors.
    pub decode_activation_bytes: u64,
    /// Path 2, per prefill stage.
    pub stages: Vec<StagePayload>,
    /// Per layer: kind and bytes (empty in files written before engine profiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerPayload>,
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "tests_configs.rs"]
mod tests_configs;

#[cfg(test)]
#[path = "tests_engine.rs"]
mod tests_engine;
