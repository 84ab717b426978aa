//! Payload sizes from a model config: chunk activations (Path 1), KV handoff per stage
//! (Path 2) and decode activations (Path 3), from a HuggingFace `config.json` or a preset.

mod presets;

pub use presets::{preset, PRESETS};

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{handoff_pairs, stage_ranges, RackShape, Workload};

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
    /// A required field is missing or not a positive integer.
    #[error("{}: field '{field}' {problem}; a HuggingFace config.json has it at top level (or under text_config)", path.display())]
    Field {
        /// The config file.
        path: PathBuf,
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// dtype not understood.
    #[error("unknown dtype '{0}': use bf16, fp16, fp8 or fp32 (also bfloat16, float16, float8_e4m3fn, float32)")]
    Dtype(String),
    /// The rack shape does not fit the model.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
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
    /// hidden_size: elements per token of an activation.
    pub hidden_size: u64,
    /// num_hidden_layers.
    pub num_hidden_layers: u32,
    /// num_attention_heads.
    pub num_attention_heads: u64,
    /// num_key_value_heads (equal to num_attention_heads when the config omits it).
    pub num_key_value_heads: u64,
    /// head_dim (hidden_size / num_attention_heads when the config omits it).
    pub head_dim: u64,
    /// torch_dtype.
    pub dtype: Dtype,
    /// Multi-head latent attention (DeepSeek): KV stored as a latent plus a rope key.
    pub mla: Option<Mla>,
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
    /// KV bytes per token per layer at `bytes` per element: 2 x kv_heads x head_dim x bytes,
    /// or (kv_lora_rank + qk_rope_head_dim) x bytes for MLA.
    pub fn kv_per_token_layer_bytes(&self, bytes: u64) -> u64 {
        match self.mla {
            Some(m) => (m.kv_lora_rank + m.qk_rope_head_dim) * bytes,
            None => 2 * self.num_key_value_heads * self.head_dim * bytes,
        }
    }

    /// Reads a HuggingFace `config.json`. Multimodal configs with a `text_config` use it.
    pub fn from_file(path: &Path) -> Result<ModelConfig, PayloadError> {
        let unreadable = |message: String| PayloadError::Unreadable { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(format!("cannot read model config: {e}")))?;
        let root: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| unreadable(format!("not valid JSON ({e}); expected a HuggingFace config.json")))?;
        let v = root.get("text_config").filter(|t| t.get("hidden_size").is_some()).unwrap_or(&root);
        let field = |name: &'static str, required: bool| -> Result<Option<u64>, PayloadError> {
            match v.get(name) {
                None | Some(serde_json::Value::Null) if !required => Ok(None),
                None | Some(serde_json::Value::Null) => {
                    Err(PayloadError::Field { path: path.to_path_buf(), field: name, problem: "is missing".into() })
                }
                Some(x) => match x.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n)),
                    _ => Err(PayloadError::Field {
                        path: path.to_path_buf(),
                        field: name,
                        problem: format!("is {x}, not a positive integer"),
                    }),
                },
            }
        };
        let hidden_size = field("hidden_size", true)?.unwrap_or_default();
        let layers = field("num_hidden_layers", true)?.unwrap_or_default();
        let heads = field("num_attention_heads", true)?.unwrap_or_default();
        let kv_heads = field("num_key_value_heads", false)?.unwrap_or(heads);
        let head_dim = field("head_dim", false)?.unwrap_or(hidden_size / heads);
        let mla = match field("kv_lora_rank", false)? {
            Some(r) => Some(Mla { kv_lora_rank: r, qk_rope_head_dim: field("qk_rope_head_dim", true)?.unwrap_or_default() }),
            None => None,
        };
        let dtype_name = v.get("torch_dtype").or_else(|| v.get("dtype")).and_then(|d| d.as_str()).unwrap_or("bfloat16");
        let dtype = Dtype::parse(dtype_name).map_err(|_| PayloadError::Field {
            path: path.to_path_buf(),
            field: "torch_dtype",
            problem: format!("is '{dtype_name}', not one of bfloat16, float16, float32, float8_e4m3fn"),
        })?;
        let name = root
            .get("_name_or_path")
            .and_then(|n| n.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| path.display().to_string());
        Ok(ModelConfig {
            name,
            hidden_size,
            num_hidden_layers: u32::try_from(layers).unwrap_or(u32::MAX),
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            dtype,
            mla,
        })
    }
}

/// KV handoff of one prefill stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StagePayload {
    /// Prefill stage i.
    pub stage: usize,
    /// Layers this stage holds.
    pub layers: u32,
    /// KV bytes this stage hands off: N x T x layers x kv_per_token_layer, bytes.
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

/// All payload sizes for one model, workload and rack shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Payloads {
    /// Model name.
    pub model: String,
    /// Bytes per element after any --dtype override.
    pub bytes_per_element: u64,
    /// KV bytes per token per layer.
    pub kv_per_token_layer_bytes: u64,
    /// Path 1, one pipeline step: M x hidden_size x bytes.
    pub chunk_activation_bytes: u64,
    /// Path 3, one decode step: N x hidden_size x bytes.
    pub decode_activation_bytes: u64,
    /// Path 2, per prefill stage.
    pub stages: Vec<StagePayload>,
}

/// Computes every payload size. `dtype` overrides the config's torch_dtype.
pub fn payloads(model: &ModelConfig, w: &Workload, shape: &RackShape, dtype: Option<Dtype>) -> Result<Payloads, PayloadError> {
    let bytes = dtype.unwrap_or(model.dtype).bytes();
    let kv = model.kv_per_token_layer_bytes(bytes);
    let pairs = handoff_pairs(shape, Some(model.num_hidden_layers))?;
    let pre = stage_ranges(model.num_hidden_layers, shape.pp_prefill);
    let dec = stage_ranges(model.num_hidden_layers, shape.pp_decode);
    let per_layer = w.n * w.t * kv;
    let stages = pre
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            let handoffs = pairs
                .iter()
                .filter(|p| p.0 == i)
                .map(|&(_, j, _)| {
                    let ov = b.min(dec[j].1) - a.max(dec[j].0);
                    Handoff { decode: j, layers: ov, bytes: per_layer * ov as u64 }
                })
                .collect();
            StagePayload { stage: i, layers: b - a, kv_handoff_bytes: per_layer * (b - a) as u64, handoffs }
        })
        .collect();
    Ok(Payloads {
        model: model.name.clone(),
        bytes_per_element: bytes,
        kv_per_token_layer_bytes: kv,
        chunk_activation_bytes: w.m * model.hidden_size * bytes,
        decode_activation_bytes: w.n * model.hidden_size * bytes,
        stages,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
