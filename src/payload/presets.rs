//! Built-in model presets, with the figures of each model's published `config.json`.

use super::{Dtype, Mla, ModelConfig, PayloadError};

/// Names of the built-in presets.
pub const PRESETS: [&str; 6] = ["llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b", "qwen3-32b", "gpt-oss-120b", "deepseek-v3"];

fn gqa(name: &str, hidden: u64, layers: u32, heads: u64, kv_heads: u64, head_dim: u64) -> ModelConfig {
    ModelConfig {
        name: name.to_string(),
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        dtype: Dtype::Bf16,
        mla: None,
    }
}

/// Looks up a preset by name (case-insensitive).
pub fn preset(name: &str) -> Result<ModelConfig, PayloadError> {
    let m = match name.to_ascii_lowercase().as_str() {
        // meta-llama/Llama-3.1-8B: no head_dim in config, 4096 / 32 = 128.
        "llama-3.1-8b" => gqa("llama-3.1-8b", 4096, 32, 32, 8, 128),
        // meta-llama/Llama-3.1-70B: 8192 / 64 = 128.
        "llama-3.1-70b" => gqa("llama-3.1-70b", 8192, 80, 64, 8, 128),
        // Qwen/Qwen3-30B-A3B: head_dim 128 given explicitly (32 x 128 != 2048).
        "qwen3-30b-a3b" => gqa("qwen3-30b-a3b", 2048, 48, 32, 4, 128),
        // Qwen/Qwen3-32B.
        "qwen3-32b" => gqa("qwen3-32b", 5120, 64, 64, 8, 128),
        // openai/gpt-oss-120b: head_dim 64 given explicitly; torch_dtype bfloat16.
        "gpt-oss-120b" => gqa("gpt-oss-120b", 2880, 36, 64, 8, 64),
        // deepseek-ai/DeepSeek-V3: MLA, kv_lora_rank 512, qk_rope_head_dim 64; torch_dtype bfloat16.
        "deepseek-v3" => ModelConfig {
            mla: Some(Mla { kv_lora_rank: 512, qk_rope_head_dim: 64 }),
            ..gqa("deepseek-v3", 7168, 61, 128, 128, 56)
        },
        _ => return Err(PayloadError::UnknownPreset { name: name.to_string(), known: PRESETS.join(", ") }),
    };
    Ok(m)
}
