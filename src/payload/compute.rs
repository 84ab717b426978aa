//! Payload sizes: per-layer KV summed over each prefill stage's layers, the Path-2 split onto
//! decode servers, and the activations stages pass (Paths 1 and 3).

use super::engine::{pp_indices, Formula, KvCacheDtype, Serving};
use super::layers::{add, mul, LayerKv, Rules};
use super::{Dtype, Handoff, LayerPayload, ModelConfig, PayloadError, Payloads, ServingSummary, StagePayload};
use crate::spec::{stage_ranges, RackShape, SpecError, Workload};

/// Every payload size as vLLM serves the model (its default profile); `dtype` overrides the
/// served activation dtype.
pub fn payloads(model: &ModelConfig, w: &Workload, shape: &RackShape, dtype: Option<Dtype>) -> Result<Payloads, PayloadError> {
    payloads_with(model, w, shape, &Serving { dtype, ..Serving::default() })
}

/// Every payload size under `serving` (engine profile or the README's uniform formula).
pub fn payloads_with(model: &ModelConfig, w: &Workload, shape: &RackShape, serving: &Serving) -> Result<Payloads, PayloadError> {
    for (stages, flag) in [(shape.pp_prefill, "--pp-prefill"), (shape.pp_decode, "--pp-decode")] {
        if (model.num_hidden_layers as usize) < stages {
            return Err(SpecError::TooFewLayers { layers: model.num_hidden_layers, stages, flag }.into());
        }
    }
    if serving.kv_cache_dtype == KvCacheDtype::Fp8DsMla && model.mla.is_none() {
        return Err(PayloadError::Unsupported(format!(
            "--kv-cache-dtype fp8_ds_mla is vLLM's layout for DeepSeek MLA; {} has no MLA (kv_lora_rank): use fp8",
            model.name
        )));
    }
    if serving.block_size == Some(0) {
        return Err(SpecError::Zero { flag: "--block-size" }.into());
    }
    match serving.formula {
        Formula::Spec => spec(model, w, shape, serving),
        Formula::Engine => engine(model, w, shape, serving),
    }
}

/// The README's formula: every layer full attention (or MLA) over T tokens, the config's dtype
/// (bf16 when it declares none), the spec's split (earlier stages take the remainder), hidden
/// states only.
fn spec(model: &ModelConfig, w: &Workload, shape: &RackShape, s: &Serving) -> Result<Payloads, PayloadError> {
    let act = s.dtype.or(model.dtype).unwrap_or(Dtype::Bf16);
    let kv_cache = s.kv_cache_dtype.resolve(act);
    let rules =
        Rules { kv_bytes: kv_cache.bytes(act), fp8_ds_mla: false, conv_bytes: 0, ssm_bytes: 0, block: 1, chunk_window: false };
    let kinds = vec![uniform(model); model.num_hidden_layers as usize];
    let summary = ServingSummary {
        engine: s.engine,
        formula: Formula::Spec,
        activation_dtype: act,
        kv_cache_dtype: kv_cache,
        block_tokens: 1,
        activation_tensors: 1,
    };
    assemble(model, w, shape, &kinds, &rules, stage_ranges, summary)
}

/// What the engine holds and moves.
fn engine(model: &ModelConfig, w: &Workload, shape: &RackShape, s: &Serving) -> Result<Payloads, PayloadError> {
    let act = s.dtype.unwrap_or_else(|| s.engine.served_dtype(model.dtype, &model.model_type));
    let kv_cache = s.kv_cache_dtype.resolve(act);
    let block = s.block_size.unwrap_or_else(|| s.engine.default_block());
    let rules = Rules {
        kv_bytes: kv_cache.bytes(act),
        fp8_ds_mla: kv_cache == KvCacheDtype::Fp8DsMla,
        conv_bytes: act.bytes(),
        ssm_bytes: s.ssm_dtype.or(model.ssm_dtype).map_or(act.bytes(), Dtype::bytes),
        block,
        chunk_window: s.engine.chunk_window(),
    };
    let summary = ServingSummary {
        engine: s.engine,
        formula: Formula::Engine,
        activation_dtype: act,
        kv_cache_dtype: kv_cache,
        block_tokens: block,
        activation_tensors: if model.residual { 2 } else { 1 },
    };
    assemble(model, w, shape, &model.layers, &rules, pp_indices, summary)
}

/// The README's per-layer KV of the model: full attention with its KV heads, or MLA.
fn uniform(model: &ModelConfig) -> LayerKv {
    match model.mla {
        Some(m) => LayerKv::Mla { kv_lora_rank: m.kv_lora_rank, qk_rope_head_dim: m.qk_rope_head_dim },
        None => LayerKv::Full { kv_heads: model.num_key_value_heads, head_dim: model.head_dim },
    }
}

fn sum(bytes: &[u64], (a, b): (u32, u32)) -> Result<u64, PayloadError> {
    bytes[a as usize..b as usize].iter().try_fold(0u64, |acc, &x| add(acc, x, "KV handoff of a stage"))
}

fn assemble(
    model: &ModelConfig,
    w: &Workload,
    shape: &RackShape,
    kinds: &[LayerKv],
    rules: &Rules,
    split: fn(u32, usize) -> Vec<(u32, u32)>,
    summary: ServingSummary,
) -> Result<Payloads, PayloadError> {
    let bytes: Vec<u64> = kinds.iter().map(|k| k.bytes(w.n, w.t, rules)).collect::<Result<_, _>>()?;
    let (pre, dec) = (split(model.num_hidden_layers, shape.pp_prefill), split(model.num_hidden_layers, shape.pp_decode));
    let mut stages = Vec::with_capacity(pre.len());
    for (i, &(a, b)) in pre.iter().enumerate() {
        let mut handoffs = Vec::new();
        for (j, &(c, d)) in dec.iter().enumerate() {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo < hi {
                handoffs.push(Handoff { decode: j, layers: hi - lo, bytes: sum(&bytes, (lo, hi))? });
            }
        }
        stages.push(StagePayload { stage: i, first_layer: a, layers: b - a, kv_handoff_bytes: sum(&bytes, (a, b))?, handoffs });
    }
    let stage_of = |l: u32| pre.iter().position(|&(a, b)| a <= l && l < b).unwrap_or(0);
    let layers = kinds
        .iter()
        .zip(&bytes)
        .zip(0u32..)
        .map(|((kv, &bytes), layer)| LayerPayload {
            layer,
            stage: stage_of(layer),
            kv: *kv,
            tokens_held: kv.tokens_held(w.t, rules),
            bytes,
        })
        .collect();
    let act = summary.activation_dtype.bytes();
    let activation = |tokens: u64| -> Result<u64, PayloadError> {
        mul(
            mul(mul(tokens, model.hidden_size, "activation bytes")?, act, "activation bytes")?,
            summary.activation_tensors,
            "activation bytes",
        )
    };
    Ok(Payloads {
        model: model.name.clone(),
        serving: Some(summary),
        bytes_per_element: act,
        kv_per_token_layer_bytes: uniform(model).bytes_per_token(rules)?,
        chunk_activation_bytes: activation(w.m)?,
        decode_activation_bytes: activation(w.n)?,
        stages,
        layers,
    })
}
