//! Built-in model presets, with the figures of each model's published `config.json`.

use super::layers::{gated_delta_net, LayerKv};
use super::{Dtype, Mla, ModelConfig, PayloadError};

/// Names of the built-in presets.
pub const PRESETS: [&str; 12] = [
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-4-scout",
    "qwen3-30b-a3b",
    "qwen3-32b",
    "qwen3.5-27b",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "gemma-3-27b",
    "gemma-4-26b-a4b",
    "deepseek-v3",
    "nemotron-super-49b",
];

fn gqa(name: &str, model_type: &str, hidden: u64, layers: u32, heads: u64, kv_heads: u64, head_dim: u64) -> ModelConfig {
    ModelConfig {
        name: name.to_string(),
        model_type: model_type.to_string(),
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        dtype: Some(Dtype::Bf16),
        mla: None,
        layers: vec![LayerKv::Full { kv_heads, head_dim }; layers as usize],
        ssm_dtype: None,
        residual: true,
    }
}

/// `m` with layer i replaced by `f(i, full layer)`.
fn per_layer(mut m: ModelConfig, f: impl Fn(usize, LayerKv) -> LayerKv) -> ModelConfig {
    m.layers = m.layers.iter().enumerate().map(|(i, &k)| f(i, k)).collect();
    m
}

fn sliding(kv_heads: u64, head_dim: u64, window: u64) -> LayerKv {
    LayerKv::Sliding { kv_heads, head_dim, window }
}

/// openai/gpt-oss-*: `layer_types` alternate sliding_attention (128) and full_attention,
/// starting with sliding; head_dim 64, 8 KV heads.
fn gpt_oss(name: &str, layers: u32, dtype: Option<Dtype>) -> ModelConfig {
    let m = ModelConfig { dtype, ..gqa(name, "gpt_oss", 2880, layers, 64, 8, 64) };
    per_layer(m, |i, k| if i % 2 == 0 { sliding(8, 64, 128) } else { k })
}

/// Qwen/Qwen3.5-27B (text_config): 3 Gated DeltaNet layers then 1 full-attention layer, 16
/// times; `mamba_ssm_dtype` float32.
fn qwen35() -> Result<ModelConfig, PayloadError> {
    let gdn = gated_delta_net(16, 128, 48, 128, 4)?;
    let m = ModelConfig { ssm_dtype: Some(Dtype::Fp32), ..gqa("qwen3.5-27b", "qwen3_5_text", 5120, 64, 24, 4, 256) };
    Ok(per_layer(m, |i, k| if i % 4 == 3 { k } else { gdn }))
}

/// nvidia/Llama-3_3-Nemotron-Super-49B-v1: `block_configs` with 31 no-op attention layers
/// (listed here by index) and 8 KV heads (n_heads_in_group 8) elsewhere.
fn nemotron_super() -> ModelConfig {
    const NO_OP: [usize; 31] = [
        6, 7, 11, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70,
    ];
    let m = gqa("nemotron-super-49b", "nemotron-nas", 8192, 80, 64, 8, 128);
    per_layer(m, |i, k| if NO_OP.contains(&i) { LayerKv::None } else { k })
}

/// Looks up a preset by name (case-insensitive).
pub fn preset(name: &str) -> Result<ModelConfig, PayloadError> {
    let m = match name.to_ascii_lowercase().as_str() {
        // meta-llama/Llama-3.1-8B: no head_dim in config, 4096 / 32 = 128.
        "llama-3.1-8b" => gqa("llama-3.1-8b", "llama", 4096, 32, 32, 8, 128),
        // meta-llama/Llama-3.1-70B: 8192 / 64 = 128.
        "llama-3.1-70b" => gqa("llama-3.1-70b", "llama", 8192, 80, 64, 8, 128),
        // meta-llama/Llama-4-Scout-17B-16E (text_config): attention_chunk_size 8192; every 4th
        // layer global (transformers' default no_rope_layers), the others chunked.
        "llama-4-scout" => per_layer(gqa("llama-4-scout", "llama4_text", 5120, 48, 40, 8, 128), |i, k| {
            if i % 4 == 3 {
                k
            } else {
                LayerKv::Chunked { kv_heads: 8, head_dim: 128, chunk: 8192 }
            }
        }),
        // Qwen/Qwen3-30B-A3B: head_dim 128 given explicitly (32 x 128 != 2048).
        "qwen3-30b-a3b" => gqa("qwen3-30b-a3b", "qwen3_moe", 2048, 48, 32, 4, 128),
        // Qwen/Qwen3-32B: sliding_window null, use_sliding_window false.
        "qwen3-32b" => gqa("qwen3-32b", "qwen3", 5120, 64, 64, 8, 128),
        "qwen3.5-27b" => qwen35()?,
        // openai/gpt-oss-20b declares no torch_dtype (served in bf16); gpt-oss-120b bfloat16.
        "gpt-oss-20b" => gpt_oss("gpt-oss-20b", 24, None),
        "gpt-oss-120b" => gpt_oss("gpt-oss-120b", 36, Some(Dtype::Bf16)),
        // google/gemma-3-27b-it (text_config): sliding_window 1024, sliding_window_pattern 6
        // (layer i global when (i + 1) % 6 == 0), 16 KV heads of 128.
        "gemma-3-27b" => per_layer(gqa("gemma-3-27b", "gemma3_text", 5376, 62, 32, 16, 128), |i, k| {
            if (i + 1) % 6 == 0 {
                k
            } else {
                sliding(16, 128, 1024)
            }
        }),
        // google/gemma-4-26B-A4B (text_config): sliding (1024) layers with 8 KV heads of 256;
        // global layers 5, 11, 17, 23, 29 with 2 KV heads of 512 (attention_k_eq_v).
        "gemma-4-26b-a4b" => per_layer(gqa("gemma-4-26b-a4b", "gemma4_text", 2816, 30, 16, 8, 256), |i, _| {
            if i % 6 == 5 {
                LayerKv::Full { kv_heads: 2, head_dim: 512 }
            } else {
                sliding(8, 256, 1024)
            }
        }),
        // deepseek-ai/DeepSeek-V3: MLA, kv_lora_rank 512, qk_rope_head_dim 64; torch_dtype bfloat16.
        "deepseek-v3" => {
            let mla = Mla { kv_lora_rank: 512, qk_rope_head_dim: 64 };
            let m = ModelConfig { mla: Some(mla), ..gqa("deepseek-v3", "deepseek_v3", 7168, 61, 128, 128, 56) };
            per_layer(m, |_, _| LayerKv::Mla { kv_lora_rank: 512, qk_rope_head_dim: 64 })
        }
        "nemotron-super-49b" => nemotron_super(),
        _ => return Err(PayloadError::UnknownPreset { name: name.to_string(), known: PRESETS.join(", ") }),
    };
    Ok(m)
}
