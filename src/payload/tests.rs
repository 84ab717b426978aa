//! Payload sizes against hand computation (N=8, T=4096, M=512, 4 prefill and 4 decode stages).

use super::*;
use crate::spec::{RackShape, Workload};

const SPEC: Serving = Serving {
    engine: Engine::Vllm,
    formula: Formula::Spec,
    dtype: None,
    kv_cache_dtype: KvCacheDtype::Auto,
    block_size: None,
    ssm_dtype: None,
};

fn spec_sizes(name: &str) -> Payloads {
    let w = Workload::new(8, 4096, 512).unwrap();
    payloads_with(&preset(name).unwrap(), &w, &RackShape::new(4, 4, 2).unwrap(), &SPEC).unwrap()
}

#[test]
fn spec_formula_keeps_the_readme_numbers() {
    // (preset, kv bytes per token-layer, chunk, decode, KV of stage 0, KV of stage 3)
    let cases: [(&str, u64, u64, u64, u64, u64); 6] = [
        ("llama-3.1-8b", 4096, 4_194_304, 65_536, 1_073_741_824, 1_073_741_824),
        ("llama-3.1-70b", 4096, 8_388_608, 131_072, 2_684_354_560, 2_684_354_560),
        ("qwen3-30b-a3b", 2048, 2_097_152, 32_768, 805_306_368, 805_306_368),
        ("qwen3-32b", 4096, 5_242_880, 81_920, 2_147_483_648, 2_147_483_648),
        ("gpt-oss-120b", 2048, 2_949_120, 46_080, 603_979_776, 603_979_776),
        // MLA: (512 + 64) x 2 = 1152; 61 layers split 16,15,15,15.
        ("deepseek-v3", 1152, 7_340_032, 114_688, 603_979_776, 566_231_040),
    ];
    for (name, kv, chunk, decode, kv0, kv3) in cases {
        let p = spec_sizes(name);
        assert_eq!(p.kv_per_token_layer_bytes, kv, "{name}");
        assert_eq!(p.chunk_activation_bytes, chunk, "{name}");
        assert_eq!(p.decode_activation_bytes, decode, "{name}");
        assert_eq!(p.stages[0].kv_handoff_bytes, kv0, "{name}");
        assert_eq!(p.stages[3].kv_handoff_bytes, kv3, "{name}");
        let total: u64 = p.stages.iter().map(|s| s.kv_handoff_bytes).sum();
        let layers = preset(name).unwrap().num_hidden_layers as u64;
        assert_eq!(total, 8 * 4096 * layers * kv, "{name}");
    }
}

#[test]
fn spec_dtype_override_and_uneven_split() {
    let w = Workload::new(1, 1000, 100).unwrap();
    let m = preset("llama-3.1-8b").unwrap();
    let p = payloads_with(&m, &w, &RackShape::new(3, 2, 1).unwrap(), &Serving { dtype: Some(Dtype::Fp8), ..SPEC }).unwrap();
    assert_eq!(p.bytes_per_element, 1);
    assert_eq!(p.chunk_activation_bytes, 100 * 4096);
    // 32 layers over 3 stages: 11, 11, 10; over 2 decode servers: 16, 16.
    let layers: Vec<u32> = p.stages.iter().map(|s| s.layers).collect();
    assert_eq!(layers, vec![11, 11, 10]);
    let per_layer = 1000 * 2 * 8 * 128;
    assert_eq!(
        p.stages[1].handoffs,
        vec![Handoff { decode: 0, layers: 5, bytes: 5 * per_layer }, Handoff { decode: 1, layers: 6, bytes: 6 * per_layer },]
    );
}

#[test]
fn vllm_split_gives_the_remainder_to_stages_before_the_last() {
    // get_pp_indices: L / P each, then +1 for partitions[-2], [-3], ... (remainder r).
    // 64 over 3: 21 each, r = 1 -> stage 1 gets 22.
    assert_eq!(pp_indices(64, 3), vec![(0, 21), (21, 43), (43, 64)]);
    // 61 over 4: 15 each, r = 1 -> stage 2 gets 16.
    assert_eq!(pp_indices(61, 4), vec![(0, 15), (15, 30), (30, 46), (46, 61)]);
    // 32 over 5: 6 each, r = 2 -> stages 3 and 2 get 7.
    assert_eq!(pp_indices(32, 5), vec![(0, 6), (6, 12), (12, 19), (19, 26), (26, 32)]);
    // Engine payloads use that split on both sides: 64 layers, P=3, D=2 (32, 32).
    let w = Workload::new(1, 16, 16).unwrap();
    let p = payloads(&preset("qwen3-32b").unwrap(), &w, &RackShape::new(3, 2, 1).unwrap(), None).unwrap();
    let per_layer = 16 * 2 * 8 * 128 * 2;
    let stage1: Vec<(usize, u32, u64)> = p.stages[1].handoffs.iter().map(|h| (h.decode, h.layers, h.bytes)).collect();
    assert_eq!(stage1, vec![(0, 11, 11 * per_layer), (1, 11, 11 * per_layer)]);
    assert_eq!((p.stages[1].first_layer, p.stages[1].layers), (21, 22));
}

#[test]
fn reads_hf_config_and_defaults_head_dim() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(
        &p,
        r#"{"_name_or_path":"x/llama","model_type":"llama","hidden_size":4096,"num_hidden_layers":32,"num_attention_heads":32,
            "num_key_value_heads":8,"torch_dtype":"bfloat16"}"#,
    )
    .unwrap();
    let m = ModelConfig::from_file(&p).unwrap();
    assert_eq!((m.head_dim, m.dtype, m.name.as_str()), (128, Some(Dtype::Bf16), "x/llama"));
    assert_eq!(m, ModelConfig { name: "x/llama".into(), ..preset("llama-3.1-8b").unwrap() });
}

#[test]
fn mla_config_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(
        &p,
        r#"{"hidden_size":7168,"num_hidden_layers":61,"num_attention_heads":128,"num_key_value_heads":128,
            "kv_lora_rank":512,"qk_rope_head_dim":64,"torch_dtype":"bfloat16"}"#,
    )
    .unwrap();
    assert_eq!(ModelConfig::from_file(&p).unwrap().kv_per_token_layer_bytes(2), 1152);
}

#[test]
fn bad_configs_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, r#"{"hidden_size":4096,"num_attention_heads":32}"#).unwrap();
    let e = ModelConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers") && e.contains("missing"), "{e}");
    std::fs::write(&p, r#"{"hidden_size":0,"num_hidden_layers":2,"num_attention_heads":32}"#).unwrap();
    assert!(ModelConfig::from_file(&p).unwrap_err().to_string().contains("hidden_size"));
    std::fs::write(&p, r#"{"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"torch_dtype":"int3"}"#).unwrap();
    assert!(ModelConfig::from_file(&p).unwrap_err().to_string().contains("torch_dtype"));
    std::fs::write(&p, "{not json").unwrap();
    assert!(ModelConfig::from_file(&p).unwrap_err().to_string().contains("not valid JSON"));
    assert!(ModelConfig::from_file(&dir.path().join("nope.json")).unwrap_err().to_string().contains("cannot read"));
    assert!(preset("llama-9").unwrap_err().to_string().contains("llama-3.1-8b"));
    assert!(Dtype::parse("int4").is_err());
}
