//! Config reading and engine rules on small configs written here: non-finite tokens,
//! architecture defaults, validation, overflow, served dtypes, KV cache dtypes, layer kinds.

use std::path::PathBuf;

use super::*;
use crate::spec::{RackShape, Workload};

fn write(dir: &tempfile::TempDir, json: &str) -> PathBuf {
    let p = dir.path().join("config.json");
    std::fs::write(&p, json).unwrap();
    p
}

fn read(json: &str) -> Result<ModelConfig, PayloadError> {
    let dir = tempfile::tempdir().unwrap();
    ModelConfig::from_file(&write(&dir, json))
}

fn one_stage(m: &ModelConfig, n: u64, t: u64, serving: Serving) -> Result<Payloads, PayloadError> {
    payloads_with(m, &Workload::new(n, t, 16).unwrap(), &RackShape::new(1, 1, 1).unwrap(), &serving)
}

const LLAMA: &str = r#""model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4"#;

#[test]
fn infinity_and_nan_tokens_are_accepted_outside_strings() {
    let m = read(&format!(r#"{{{LLAMA},"rope_scaling":{{"factor":Infinity,"low":-Infinity,"x":NaN}},"note":"NaN Infinity"}}"#))
        .unwrap();
    assert_eq!(m.hidden_size, 64);
    // A field that is read and holds one is refused, naming it and the value.
    let e = read(r#"{"model_type":"llama","hidden_size":Infinity,"num_hidden_layers":2,"num_attention_heads":4}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'hidden_size' is Infinity"), "{e}");
}

#[test]
fn text_config_falls_back_to_architecture_defaults_and_names_its_fields() {
    // Mistral defaults: 4096 / 32 layers / 32 heads / 8 KV heads / sliding_window 4096 on every layer.
    let m = read(r#"{"text_config":{"model_type":"mistral"}}"#).unwrap();
    assert_eq!((m.hidden_size, m.num_hidden_layers, m.num_key_value_heads, m.head_dim), (4096, 32, 8, 128));
    assert!(m.layers.iter().all(|k| *k == LayerKv::Sliding { kv_heads: 8, head_dim: 128, window: 4096 }));
    // An explicit null sliding_window is no window (transformers keeps None).
    let m = read(r#"{"text_config":{"model_type":"mistral","sliding_window":null}}"#).unwrap();
    assert!(m.layers.iter().all(|k| matches!(k, LayerKv::Full { .. })));
    // Qwen2: 32 KV heads; use_sliding_window false keeps every layer full.
    let m = read(r#"{"model_type":"qwen2","use_sliding_window":false,"sliding_window":4096}"#).unwrap();
    assert_eq!(m.num_key_value_heads, 32);
    assert!(m.layers.iter().all(|k| matches!(k, LayerKv::Full { .. })));
    // Gemma 2: 16 heads of 256, even layers slide.
    let m = read(r#"{"model_type":"gemma2"}"#).unwrap();
    assert_eq!((m.num_hidden_layers, m.head_dim), (28, 256));
    assert!(matches!(m.layers[0], LayerKv::Sliding { window: 4096, .. }) && matches!(m.layers[1], LayerKv::Full { .. }));
    // An architecture without defaults: the error names text_config.hidden_size.
    let e = read(r#"{"text_config":{"model_type":"phi3","num_hidden_layers":2}}"#).unwrap_err().to_string();
    assert!(e.contains("'text_config.hidden_size' is missing") && e.contains("phi3"), "{e}");
}

#[test]
fn top_level_dtype_comes_before_text_configs() {
    let m = read(&format!(r#"{{"torch_dtype":"float16","text_config":{{{LLAMA},"torch_dtype":"bfloat16"}}}}"#)).unwrap();
    assert_eq!(m.dtype, Some(Dtype::Fp16));
    let m = read(&format!(r#"{{"text_config":{{{LLAMA},"dtype":"bfloat16"}}}}"#)).unwrap();
    assert_eq!(m.dtype, Some(Dtype::Bf16));
}

#[test]
fn kv_heads_and_head_dim_are_validated() {
    for kv in [7, 128] {
        let e =
            read(&format!(r#"{{"hidden_size":8192,"num_hidden_layers":2,"num_attention_heads":64,"num_key_value_heads":{kv}}}"#))
                .unwrap_err()
                .to_string();
        assert!(e.contains("num_key_value_heads") && e.contains(&format!("is {kv}")) && e.contains("does not divide"), "{e}");
    }
    let e = read(r#"{"hidden_size":4100,"num_hidden_layers":2,"num_attention_heads":32}"#).unwrap_err().to_string();
    assert!(e.contains("hidden_size") && e.contains("give head_dim"), "{e}");
    // An explicit head_dim makes 4100 fine.
    assert_eq!(
        read(r#"{"hidden_size":4100,"num_hidden_layers":2,"num_attention_heads":32,"head_dim":128}"#).unwrap().head_dim,
        128
    );
}

#[test]
fn overflow_is_an_error_not_a_wrap() {
    let m = preset("llama-3.1-8b").unwrap();
    let e = one_stage(&m, 1 << 32, 1 << 32, Serving::default()).unwrap_err();
    assert!(matches!(e, PayloadError::Overflow { .. }), "{e}");
    assert!(e.to_string().contains("overflows"));
    let spec = Serving { formula: Formula::Spec, ..Serving::default() };
    assert!(matches!(one_stage(&m, 1 << 32, 1 << 32, spec), Err(PayloadError::Overflow { .. })));
}

#[test]
fn float32_checkpoints_are_served_in_bf16() {
    // A float32 checkpoint (gemma-2-2b style): vLLM _resolve_auto_dtype serves bf16, so KV
    // and activations are 2 B per element unless --dtype asks for fp32.
    let m = read(r#"{"model_type":"gemma2","hidden_size":2304,"num_hidden_layers":26,"num_attention_heads":8,"num_key_value_heads":4,"torch_dtype":"float32"}"#).unwrap();
    let p = one_stage(&m, 1, 16, Serving::default()).unwrap();
    assert_eq!(p.bytes_per_element, 2);
    assert_eq!(p.kv_per_token_layer_bytes, 2 * 4 * 256 * 2);
    let p32 = one_stage(&m, 1, 16, Serving { dtype: Some(Dtype::Fp32), ..Serving::default() }).unwrap();
    assert_eq!(p32.kv_per_token_layer_bytes, 2 * 4 * 256 * 4);
    // SGLang downcasts float32 to float16, Gemma 2 to bfloat16: 2 B either way.
    let sg = one_stage(&m, 1, 16, Serving { engine: Engine::Sglang, ..Serving::default() }).unwrap();
    assert_eq!(sg.serving.unwrap().activation_dtype, Dtype::Bf16);
    assert_eq!(Engine::Sglang.served_dtype(Some(Dtype::Fp32), "llama"), Dtype::Fp16);
    assert_eq!(Engine::Vllm.served_dtype(None, "llama"), Dtype::Bf16);
    // The uniform formula keeps the config's float32.
    let spec = one_stage(&m, 1, 16, Serving { formula: Formula::Spec, ..Serving::default() }).unwrap();
    assert_eq!(spec.bytes_per_element, 4);
}

#[test]
fn kv_cache_dtype_is_separate_from_activations() {
    let m = preset("llama-3.1-8b").unwrap();
    let fp8_kv = Serving { kv_cache_dtype: KvCacheDtype::parse("fp8_e4m3").unwrap(), ..Serving::default() };
    let p = one_stage(&m, 2, 32, fp8_kv).unwrap();
    // fp8 KV: 1 B per element, per-tensor scales (no bytes per token); activations stay bf16
    // and hidden + residual: 2 x M x 4096 x 2.
    assert_eq!(p.stages[0].kv_handoff_bytes, 32 * 2 * 32 * (2 * 8 * 128));
    assert_eq!(p.chunk_activation_bytes, 2 * 16 * 4096 * 2);
    // --dtype fp8 shrinks activations too.
    let p = one_stage(&m, 2, 32, Serving { dtype: Some(Dtype::Fp8), ..Serving::default() }).unwrap();
    assert_eq!(p.chunk_activation_bytes, 2 * 16 * 4096);
    // fp8_ds_mla is DeepSeek MLA's layout only.
    let ds = Serving { kv_cache_dtype: KvCacheDtype::Fp8DsMla, ..Serving::default() };
    assert!(one_stage(&m, 1, 1, ds).unwrap_err().to_string().contains("no MLA"));
    assert!(KvCacheDtype::parse("int4").unwrap_err().to_string().contains("--kv-cache-dtype"));
}

#[test]
fn blocks_round_the_context_up() {
    // vLLM moves whole 16-token blocks: T = 17 holds 2 blocks = 32 tokens; SGLang pages of 1.
    let m = preset("llama-3.1-8b").unwrap();
    let per_token = 2 * 8 * 128 * 2;
    assert_eq!(one_stage(&m, 1, 17, Serving::default()).unwrap().stages[0].kv_handoff_bytes, 32 * 32 * per_token);
    let sg = Serving { engine: Engine::Sglang, ..Serving::default() };
    assert_eq!(one_stage(&m, 1, 17, sg).unwrap().stages[0].kv_handoff_bytes, 32 * 17 * per_token);
    let zero = Serving { block_size: Some(0), ..Serving::default() };
    assert!(one_stage(&m, 1, 17, zero).unwrap_err().to_string().contains("--block-size"));
}

#[test]
fn hybrid_override_pattern_mamba2_state() {
    // Nemotron-H style: M = Mamba2, * = attention, - = MLP. mamba2_state_shape: conv
    // (K - 1) x (heads x head_dim + 2 x groups x state), temporal heads x head_dim x state.
    let m = read(
        r#"{"model_type":"nemotron_h","hidden_size":256,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,
            "hybrid_override_pattern":"M*-M","mamba_num_heads":8,"mamba_head_dim":32,"n_groups":2,"ssm_state_size":16,"conv_kernel":4,
            "torch_dtype":"bfloat16"}"#,
    )
    .unwrap();
    let conv = 3 * (8 * 32 + 2 * 2 * 16);
    let temporal = 8 * 32 * 16;
    assert_eq!(m.layers[0], LayerKv::State { conv_elements: conv, ssm_elements: temporal });
    assert_eq!(m.layers[2], LayerKv::None);
    let p = one_stage(&m, 3, 100, Serving::default()).unwrap();
    // Two Mamba layers (state in bf16 for N = 3) + one attention layer (2 x 2 x 64 x 2 B over 112 tokens).
    assert_eq!(p.stages[0].kv_handoff_bytes, 2 * 3 * (conv + temporal) * 2 + 3 * 112 * (2 * 2 * 64 * 2));
    let e = read(r#"{"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"hybrid_override_pattern":"M*"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mamba_num_heads") && e.contains("missing"), "{e}");
}

#[test]
fn layer_lists_are_checked() {
    let e = read(&format!(r#"{{{LLAMA},"layer_types":["full_attention"]}}"#)).unwrap_err().to_string();
    assert!(e.contains("layer_types") && e.contains("has 1 entries"), "{e}");
    let e = read(&format!(r#"{{{LLAMA},"layer_types":["full_attention","cross_attention"]}}"#)).unwrap_err().to_string();
    assert!(e.contains("layer_types[1]") && e.contains("cross_attention"), "{e}");
    // Gemma 3n / 4: the last num_kv_shared_layers layers keep no KV of their own.
    let m = read(&format!(r#"{{{LLAMA},"num_kv_shared_layers":1}}"#)).unwrap();
    assert_eq!(m.layers[1], LayerKv::None);
    // Gemma 3 without layer_types: sliding_window_pattern 2 -> layer 0 slides, layer 1 global.
    let m = read(&format!(r#"{{{LLAMA},"sliding_window":8,"sliding_window_pattern":2}}"#)).unwrap();
    assert!(matches!(m.layers[0], LayerKv::Sliding { window: 8, .. }) && matches!(m.layers[1], LayerKv::Full { .. }));
}
