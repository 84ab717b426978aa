//! Reading a HuggingFace `config.json` as transformers and vLLM do: `Infinity`/`NaN` tokens,
//! `text_config` with the architecture's defaults, the top-level dtype first, exact head_dim.

use std::path::Path;

use serde_json::Value;

use super::fields::{check_kv, positive, read_root, show, Src};
use super::{kinds, Dtype, Mla, ModelConfig, PayloadError};

/// Checkpoint dtype as vLLM `_find_dtype` reads it: the top-level `dtype` / `torch_dtype`
/// first, then the text config's. None when neither declares one (vLLM then takes float32).
fn checkpoint_dtype(src: &Src) -> Result<Option<Dtype>, PayloadError> {
    for (v, prefix) in [(src.root, ""), (src.v, src.prefix)] {
        for key in ["dtype", "torch_dtype"] {
            let Some(x) = v.get(key).filter(|x| !x.is_null()) else { continue };
            let name = x.as_str().unwrap_or_default();
            if name == "auto" {
                continue;
            }
            return Dtype::parse(name).map(Some).map_err(|_| PayloadError::Field {
                path: src.path.to_path_buf(),
                field: format!("{prefix}{key}"),
                problem: format!("is {}, not one of bfloat16, float16, float32, float8_e4m3fn", show(x)),
            });
        }
    }
    Ok(None)
}

/// KV heads as vLLM's `get_total_num_kv_heads` resolves them; `num_key_value_heads` null or
/// missing: Nemotron-NAS takes heads / `n_heads_in_group` of the first attention block
/// (`NemotronNasModelArchConfigConvertor`), others the attention heads.
fn kv_heads(src: &Src, heads: u64) -> Result<u64, PayloadError> {
    if let Some(k) = src.opt("num_key_value_heads")? {
        return Ok(k);
    }
    let blocks = src.get("block_configs").and_then(Value::as_array);
    for (i, b) in blocks.into_iter().flatten().enumerate() {
        let a = &b["attention"];
        if a["no_op"].as_bool() == Some(true) || a["replace_with_linear"].as_bool() == Some(true) {
            continue;
        }
        let g = positive(&a["n_heads_in_group"])
            .ok_or_else(|| src.err(&format!("block_configs[{i}].attention.n_heads_in_group"), "is not a positive integer"))?;
        return Ok(heads / g);
    }
    Ok(heads)
}

impl ModelConfig {
    /// Reads a HuggingFace `config.json`. Multimodal configs use their `text_config`.
    pub fn from_file(path: &Path) -> Result<ModelConfig, PayloadError> {
        let root = read_root(path)?;
        let src = Src::new(path, &root);
        let hidden_size = src.req("hidden_size")?;
        let layers = src.req("num_hidden_layers")?;
        let num_hidden_layers = u32::try_from(layers)
            .map_err(|_| src.err("num_hidden_layers", format!("is {layers}, more than {} layers", u32::MAX)))?;
        let heads = src.req("num_attention_heads")?;
        let kv = kv_heads(&src, heads)?;
        check_kv(&src, "num_key_value_heads", heads, kv)?;
        let head_dim = match src.opt("head_dim")? {
            Some(d) => d,
            None if hidden_size % heads == 0 => hidden_size / heads,
            None => {
                return Err(src.err(
                    "hidden_size",
                    format!(
                    "is {hidden_size}, not a multiple of num_attention_heads {heads}, and there is no head_dim: give head_dim"
                ),
                ))
            }
        };
        let mla = match src.opt("kv_lora_rank")? {
            Some(r) => Some(Mla { kv_lora_rank: r, qk_rope_head_dim: src.req("qk_rope_head_dim")? }),
            None => None,
        };
        let ssm_dtype = match src.get("mamba_ssm_dtype") {
            Some(x) => Some(
                Dtype::parse(x.as_str().unwrap_or_default())
                    .map_err(|_| src.err("mamba_ssm_dtype", format!("is {}, not a dtype", show(x))))?,
            ),
            None => None,
        };
        let layer_kinds = kinds::layer_kinds(&src, num_hidden_layers, heads, (kv, head_dim), mla)?;
        Ok(ModelConfig {
            name: name_of(path, &root),
            model_type: src.model_type.clone(),
            hidden_size,
            num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            dtype: checkpoint_dtype(&src)?,
            mla,
            layers: layer_kinds,
            ssm_dtype,
            residual: passes_residual(&src.model_type),
        })
    }
}

/// Whether pipeline stages pass the residual with the hidden states: vLLM models built on
/// the fused-residual RMSNorm (Llama, Qwen, DeepSeek, Gemma, gpt-oss, ...) declare
/// `IntermediateTensors` of `["hidden_states", "residual"]`; OPT, GPT-2 and MPT only
/// `["hidden_states"]` (`make_empty_intermediate_tensors_factory` in their vLLM model files).
pub fn passes_residual(model_type: &str) -> bool {
    !matches!(model_type, "opt" | "gpt2" | "mpt")
}

fn name_of(path: &Path, root: &Value) -> String {
    root.get("_name_or_path")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| path.display().to_string())
}
