//! Which KV each decoder layer keeps, from the config fields the engines read: `layer_types`,
//! `block_configs`, `hybrid_override_pattern`, `layers_block_type`, `attention_chunk_size` /
//! `no_rope_layers`, `sliding_window` / `sliding_window_pattern` / `use_sliding_window`,
//! `global_head_dim`, `num_kv_shared_layers`, and the `linear_*` / `mamba_*` / `ssm_*` sizes.

use serde_json::Value;

use super::fields::{check_kv, show, Src};
use super::layers::{gated_delta_net, mamba2, LayerKv};
use super::{Mla, PayloadError};

/// KV heads and head_dim of the config's ordinary attention layer.
type Base = (u64, u64);

/// One entry per decoder layer.
pub(crate) fn layer_kinds(
    src: &Src,
    layers: u32,
    heads: u64,
    base: Base,
    mla: Option<Mla>,
) -> Result<Vec<LayerKv>, PayloadError> {
    let n = layers as usize;
    let list = |name: &str| src.get(name).and_then(Value::as_array);
    let mut v = if let Some(m) = mla {
        vec![LayerKv::Mla { kv_lora_rank: m.kv_lora_rank, qk_rope_head_dim: m.qk_rope_head_dim }; n]
    } else if let Some(b) = list("block_configs") {
        block_configs(src, b, n, heads)?
    } else if let Some(p) = src.get("hybrid_override_pattern").and_then(Value::as_str) {
        override_pattern(src, p, n, base)?
    } else if let Some(t) = list("layer_types") {
        named(src, "layer_types", t, n, heads, base)?
    } else if let Some(t) = list("layers_block_type") {
        named(src, "layers_block_type", t, n, heads, base)?
    } else {
        implicit(src, n, base)?
    };
    // Gemma 3n / 4: the last num_kv_shared_layers layers read an earlier layer's cache and keep
    // none of their own (vLLM `kv_sharing_target_layer_name`).
    let shared = src.count("num_kv_shared_layers")?.unwrap_or(0) as usize;
    if shared > n {
        return Err(src.err("num_kv_shared_layers", format!("is {shared}, more than the {n} layers")));
    }
    for k in v.iter_mut().skip(n - shared) {
        *k = LayerKv::None;
    }
    Ok(v)
}

fn check_len(src: &Src, field: &str, got: usize, n: usize) -> Result<(), PayloadError> {
    if got < n {
        return Err(src.err(field, format!("has {got} entries but num_hidden_layers is {n}: give one per layer")));
    }
    Ok(())
}

fn full((kv_heads, head_dim): Base) -> LayerKv {
    LayerKv::Full { kv_heads, head_dim }
}

/// Nemotron-NAS `block_configs` (vLLM nemotron_nas.py): `no_op` and `replace_with_linear`
/// attention keeps no KV; otherwise heads / `n_heads_in_group` KV heads; `window_length` a window.
fn block_configs(src: &Src, blocks: &[Value], n: usize, heads: u64) -> Result<Vec<LayerKv>, PayloadError> {
    check_len(src, "block_configs", blocks.len(), n)?;
    let head_dim = src.opt("head_dim")?.unwrap_or(src.req("hidden_size")? / heads);
    blocks[..n]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let a = &b["attention"];
            if a["no_op"].as_bool() == Some(true) || a["replace_with_linear"].as_bool() == Some(true) {
                return Ok(LayerKv::None);
            }
            let field = format!("block_configs[{i}].attention.n_heads_in_group");
            let g =
                a["n_heads_in_group"].as_u64().filter(|&g| g > 0).ok_or_else(|| src.err(&field, "is not a positive integer"))?;
            if heads % g != 0 {
                return Err(src.err(&field, format!("is {g}, which does not divide num_attention_heads {heads}")));
            }
            let kv_heads = heads / g;
            Ok(match a["window_length"].as_u64() {
                Some(window) => LayerKv::Sliding { kv_heads, head_dim, window },
                None => LayerKv::Full { kv_heads, head_dim },
            })
        })
        .collect()
}

/// Nemotron-H `hybrid_override_pattern`: `M` Mamba2, `*` attention, `-` MLP and `E` MoE
/// (no KV).
fn override_pattern(src: &Src, p: &str, n: usize, base: Base) -> Result<Vec<LayerKv>, PayloadError> {
    check_len(src, "hybrid_override_pattern", p.chars().count(), n)?;
    p.chars()
        .take(n)
        .enumerate()
        .map(|(i, c)| match c {
            'M' => mamba2_of(src),
            '*' => Ok(full(base)),
            '-' | 'E' => Ok(LayerKv::None),
            _ => Err(src.err("hybrid_override_pattern", format!("has '{c}' at layer {i}: expected M, *, - or E"))),
        })
        .collect()
}

/// Per-layer names (`layer_types`, `layers_block_type`).
fn named(src: &Src, field: &str, names: &[Value], n: usize, heads: u64, base: Base) -> Result<Vec<LayerKv>, PayloadError> {
    check_len(src, field, names.len(), n)?;
    names[..n]
        .iter()
        .enumerate()
        .map(|(i, x)| match x.as_str().unwrap_or_default() {
            "full_attention" | "attention" => global(src, heads, base),
            "sliding_attention" => {
                let (kv_heads, head_dim) = base;
                Ok(LayerKv::Sliding { kv_heads, head_dim, window: src.req("sliding_window")? })
            }
            "chunked_attention" => {
                let (kv_heads, head_dim) = base;
                Ok(LayerKv::Chunked { kv_heads, head_dim, chunk: src.req("attention_chunk_size")? })
            }
            "linear_attention" => gated_delta_net(
                src.req("linear_num_key_heads")?,
                src.req("linear_key_head_dim")?,
                src.req("linear_num_value_heads")?,
                src.req("linear_value_head_dim")?,
                src.req("linear_conv_kernel_dim")?,
            ),
            "mamba" | "mamba2" => mamba2_of(src),
            _ => Err(src.err(
                &format!("{field}[{i}]"),
                format!(
                    "is {}: known kinds are full_attention, sliding_attention, chunked_attention, linear_attention, mamba",
                    show(x)
                ),
            )),
        })
        .collect()
}

/// A full-attention layer of a `layer_types` model. Gemma 4 global layers use
/// `global_head_dim`, and with `attention_k_eq_v` `num_global_key_value_heads` KV heads
/// (transformers modeling_gemma4.py, vLLM gemma4.py).
fn global(src: &Src, heads: u64, (kv_heads, head_dim): Base) -> Result<LayerKv, PayloadError> {
    let head_dim = src.opt("global_head_dim")?.unwrap_or(head_dim);
    let kv_heads = match src.opt("num_global_key_value_heads")? {
        Some(k) if src.flag("attention_k_eq_v") => {
            check_kv(src, "num_global_key_value_heads", heads, k)?;
            k
        }
        _ => kv_heads,
    };
    Ok(LayerKv::Full { kv_heads, head_dim })
}

/// The first of several names a field goes by.
fn first(src: &Src, names: &[&str]) -> Result<u64, PayloadError> {
    for name in names {
        if let Some(v) = src.opt(name)? {
            return Ok(v);
        }
    }
    Err(src.err(names[0], format!("is missing (also looked for {}): a Mamba layer's state size needs it", names[1..].join(", "))))
}

fn mamba2_of(src: &Src) -> Result<LayerKv, PayloadError> {
    mamba2(
        first(src, &["mamba_num_heads", "mamba_n_heads"])?,
        first(src, &["mamba_head_dim", "mamba_d_head"])?,
        first(src, &["n_groups", "mamba_n_groups"])?,
        first(src, &["ssm_state_size", "mamba_d_state", "state_size"])?,
        first(src, &["conv_kernel", "mamba_d_conv"])?,
    )
}

/// Models without a per-layer list.
/// - Llama 4 (`attention_chunk_size`): layer i is chunked when `no_rope_layers[i]` != 0;
///   transformers' default is 0 (global, NoPE) every `no_rope_layer_interval` (4)-th layer.
/// - `sliding_window_pattern` P (Gemma 3): layer i slides unless (i + 1) % P == 0.
/// - Gemma 2: even layers slide.
/// - `use_sliding_window` (Qwen2): false: none slides; true: layers from `max_window_layers` on.
/// - any other `sliding_window` (Mistral): every layer slides.
fn implicit(src: &Src, n: usize, base: Base) -> Result<Vec<LayerKv>, PayloadError> {
    let (kv_heads, head_dim) = base;
    if let Some(chunk) = src.opt("attention_chunk_size")? {
        let interval = src.opt("no_rope_layer_interval")?.unwrap_or(4) as usize;
        let given = src.get("no_rope_layers").and_then(Value::as_array);
        if let Some(g) = given {
            check_len(src, "no_rope_layers", g.len(), n)?;
        }
        let chunked = |i: usize| match given {
            Some(g) => g[i].as_u64() != Some(0),
            None => (i + 1) % interval != 0,
        };
        return Ok((0..n)
            .map(|i| if chunked(i) { LayerKv::Chunked { kv_heads, head_dim, chunk } } else { full(base) })
            .collect());
    }
    let Some(window) = src.opt("sliding_window")? else { return Ok(vec![full(base); n]) };
    let pattern = src.opt("sliding_window_pattern")?;
    let from = src.count("max_window_layers")?.unwrap_or(0) as usize;
    let use_sw = src.get("use_sliding_window").and_then(Value::as_bool);
    let slides = |i: usize| match (pattern, use_sw) {
        (Some(p), _) => (i + 1) % p as usize != 0,
        _ if src.model_type == "gemma2" => i % 2 == 0,
        (None, Some(false)) => false,
        (None, Some(true)) => i >= from,
        (None, None) => true,
    };
    Ok((0..n).map(|i| if slides(i) { LayerKv::Sliding { kv_heads, head_dim, window } } else { full(base) }).collect())
}
