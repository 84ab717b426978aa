//! What one decoder layer keeps per request, and how many bytes that is for N requests of T
//! tokens under an engine's rules (block granularity, windows, fixed recurrent state).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PayloadError;

/// The KV (or state) one decoder layer keeps, read from the config as the engines read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayerKv {
    /// Full attention: K and V of every token.
    Full {
        /// KV heads of this layer.
        kv_heads: u64,
        /// Elements per head.
        head_dim: u64,
    },
    /// Sliding-window attention: K and V of the last `window` tokens only
    /// (vLLM `SlidingWindowSpec`, vllm/v1/kv_cache_interface.py).
    Sliding {
        /// KV heads of this layer.
        kv_heads: u64,
        /// Elements per head.
        head_dim: u64,
        /// Window, tokens.
        window: u64,
    },
    /// Chunked local attention (Llama 4): attends within `chunk`-token chunks
    /// (vLLM `ChunkedLocalAttentionSpec`).
    Chunked {
        /// KV heads of this layer.
        kv_heads: u64,
        /// Elements per head.
        head_dim: u64,
        /// Chunk, tokens.
        chunk: u64,
    },
    /// Multi-head latent attention (DeepSeek): one latent plus one rope key per token.
    Mla {
        /// kv_lora_rank, elements.
        kv_lora_rank: u64,
        /// qk_rope_head_dim, elements.
        qk_rope_head_dim: u64,
    },
    /// Linear attention or SSM (Gated DeltaNet, Mamba2): a fixed state per request, whatever T
    /// (vLLM `MambaSpec`, shapes from vllm/model_executor/layers/mamba/mamba_utils.py).
    State {
        /// Convolution-state elements per request (kept in the model dtype).
        conv_elements: u64,
        /// Recurrent (SSM / temporal) state elements per request (kept in the SSM dtype).
        ssm_elements: u64,
    },
    /// No KV at all (no-op or linear-replacement attention, MLP-only layers).
    None,
}

/// Element sizes and token rules a layer's bytes depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Bytes per KV element (the KV cache dtype).
    pub kv_bytes: u64,
    /// DeepSeek MLA stored as vLLM `fp8_ds_mla`: 656 B per token per layer for 512 + 64.
    pub fp8_ds_mla: bool,
    /// Bytes per convolution-state element (the model dtype: vLLM `mamba_cache_dtype` auto).
    pub conv_bytes: u64,
    /// Bytes per recurrent-state element (`mamba_ssm_dtype` of the config, else the model dtype).
    pub ssm_bytes: u64,
    /// KV block (page) size in tokens: the engine moves whole blocks.
    pub block: u64,
    /// Chunked layers keep only the last chunk's blocks (vLLM NIXL `block_window_per_layer`);
    /// false: the whole context.
    pub chunk_window: bool,
}

/// Multiplication that reports overflow as a typed error naming what was computed.
pub(crate) fn mul(a: u64, b: u64, what: &'static str) -> Result<u64, PayloadError> {
    a.checked_mul(b).ok_or(PayloadError::Overflow { what })
}

/// Addition that reports overflow as a typed error naming what was computed.
pub(crate) fn add(a: u64, b: u64, what: &'static str) -> Result<u64, PayloadError> {
    a.checked_add(b).ok_or(PayloadError::Overflow { what })
}

fn blocks(tokens: u64, block: u64) -> u64 {
    tokens.div_ceil(block)
}

impl LayerKv {
    /// True when the layer's KV grows with the context (attention of any kind).
    pub fn is_attention(&self) -> bool {
        !matches!(self, LayerKv::State { .. } | LayerKv::None)
    }

    /// Bytes per token of this layer's KV (0 for state and no-KV layers).
    pub fn bytes_per_token(&self, r: &Rules) -> Result<u64, PayloadError> {
        match *self {
            LayerKv::Full { kv_heads, head_dim }
            | LayerKv::Sliding { kv_heads, head_dim, .. }
            | LayerKv::Chunked { kv_heads, head_dim, .. } => mul(
                mul(2, kv_heads, "KV bytes per token")?,
                mul(head_dim, r.kv_bytes, "KV bytes per token")?,
                "KV bytes per token",
            ),
            // fp8_ds_mla (vllm/v1/attention/backends/mla/flashmla_sparse.py, FlashMLA): the
            // latent in fp8 (1 B), one float32 scale per 128 latent elements, the rope key in bf16.
            LayerKv::Mla { kv_lora_rank, qk_rope_head_dim } if r.fp8_ds_mla => {
                let scales = mul(kv_lora_rank.div_ceil(128), 4, "MLA bytes per token")?;
                add(
                    add(kv_lora_rank, scales, "MLA bytes per token")?,
                    mul(qk_rope_head_dim, 2, "MLA bytes per token")?,
                    "MLA bytes per token",
                )
            }
            LayerKv::Mla { kv_lora_rank, qk_rope_head_dim } => {
                mul(add(kv_lora_rank, qk_rope_head_dim, "MLA bytes per token")?, r.kv_bytes, "MLA bytes per token")
            }
            LayerKv::State { .. } | LayerKv::None => Ok(0),
        }
    }

    /// Tokens of one request of `t` tokens this layer keeps, counted in whole blocks.
    pub fn tokens_held(&self, t: u64, r: &Rules) -> u64 {
        let b = r.block.max(1);
        match *self {
            LayerKv::Full { .. } | LayerKv::Mla { .. } => blocks(t, b) * b,
            // vLLM SlidingWindowManager: get_num_skipped_tokens = max(0, T - W + 1); the blocks
            // wholly before the first needed token are freed (vllm/v1/core/single_type_kv_cache_manager.py).
            LayerKv::Sliding { window, .. } => {
                let skipped = t.saturating_sub(window.saturating_sub(1));
                (blocks(t, b) - skipped / b) * b
            }
            // vLLM NIXL connector: a chunked (local) layer reads the last ceil(C / block) blocks.
            LayerKv::Chunked { chunk, .. } if r.chunk_window => blocks(t, b).min(blocks(chunk, b)) * b,
            LayerKv::Chunked { .. } => blocks(t, b) * b,
            LayerKv::State { .. } | LayerKv::None => 0,
        }
    }

    /// Bytes of a fixed per-request state (0 for attention layers).
    pub fn state_bytes(&self, r: &Rules) -> Result<u64, PayloadError> {
        match *self {
            LayerKv::State { conv_elements, ssm_elements } => add(
                mul(conv_elements, r.conv_bytes, "state bytes")?,
                mul(ssm_elements, r.ssm_bytes, "state bytes")?,
                "state bytes",
            ),
            _ => Ok(0),
        }
    }

    /// Bytes this layer holds for `n` requests of `t` tokens.
    pub fn bytes(&self, n: u64, t: u64, r: &Rules) -> Result<u64, PayloadError> {
        let per_request = add(
            mul(self.tokens_held(t, r), self.bytes_per_token(r)?, "KV bytes of a layer")?,
            self.state_bytes(r)?,
            "KV bytes of a layer",
        )?;
        mul(n, per_request, "KV bytes of a layer")
    }

    /// Short label for tables: `full`, `sliding(128)`, `chunked(8192)`, `mla`, `state`, `none`.
    pub fn label(&self) -> String {
        match self {
            LayerKv::Full { .. } => "full".into(),
            LayerKv::Sliding { window, .. } => format!("sliding({window})"),
            LayerKv::Chunked { chunk, .. } => format!("chunked({chunk})"),
            LayerKv::Mla { .. } => "mla".into(),
            LayerKv::State { .. } => "state".into(),
            LayerKv::None => "none".into(),
        }
    }
}

/// Gated DeltaNet state of one layer (vLLM `MambaStateShapeCalculator.gated_delta_net_state_shape`):
/// conv (K - 1) x (2 x key_heads x key_dim + value_heads x value_dim), temporal
/// value_heads x key_dim x value_dim.
pub fn gated_delta_net(
    key_heads: u64,
    key_dim: u64,
    value_heads: u64,
    value_dim: u64,
    conv_kernel: u64,
) -> Result<LayerKv, PayloadError> {
    let conv_dim =
        add(mul(mul(2, key_heads, "GDN state")?, key_dim, "GDN state")?, mul(value_heads, value_dim, "GDN state")?, "GDN state")?;
    Ok(LayerKv::State {
        conv_elements: mul(conv_kernel.saturating_sub(1), conv_dim, "GDN state")?,
        ssm_elements: mul(mul(value_heads, key_dim, "GDN state")?, value_dim, "GDN state")?,
    })
}

/// Mamba2 state of one layer (vLLM `MambaStateShapeCalculator.mamba2_state_shape`):
/// conv (K - 1) x (heads x head_dim + 2 x groups x state), temporal heads x head_dim x state.
pub fn mamba2(heads: u64, head_dim: u64, groups: u64, state: u64, conv_kernel: u64) -> Result<LayerKv, PayloadError> {
    let inner = mul(heads, head_dim, "Mamba2 state")?;
    let conv_dim = add(inner, mul(mul(2, groups, "Mamba2 state")?, state, "Mamba2 state")?, "Mamba2 state")?;
    Ok(LayerKv::State {
        conv_elements: mul(conv_kernel.saturating_sub(1), conv_dim, "Mamba2 state")?,
        ssm_elements: mul(inner, state, "Mamba2 state")?,
    })
}
