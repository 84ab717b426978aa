//! The fields of a HuggingFace `config.json` as transformers reads them: the file with Python's
//! non-finite tokens, the text model's part (`text_config`), architecture defaults, typed field
//! access whose errors name the file and field. `config` (the model) and `kinds` (per-layer KV)
//! both read through it.

use std::path::Path;

use serde_json::Value;

use super::PayloadError;

/// Marks a non-finite number (`Infinity`, `-Infinity`, `NaN`) that Python's json module and
/// transformers accept but JSON does not; such a value only fails a field that is read.
const NONFINITE: &str = "\u{1}nonfinite:";

/// Rewrites `Infinity`, `-Infinity` and `NaN` outside strings into marked strings.
pub(crate) fn accept_nonfinite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if let Some(tok) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str(&format!("\"\\u0001nonfinite:{tok}\""));
            rest = &rest[tok.len()..];
            continue;
        }
        in_str = c == '"';
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Defaults transformers fills in for a field a config omits, by `model_type`: LlamaConfig,
/// MistralConfig, Qwen2Config, GemmaConfig and Gemma2Config (their `__init__` defaults).
/// `num_key_value_heads` left to None falls back to the attention heads (Llama, Qwen2's 32, Gemma's 16).
fn arch_default(model_type: &str, field: &str) -> Option<u64> {
    let d: &[(&str, u64)] = match model_type {
        "llama" => &[("hidden_size", 4096), ("num_hidden_layers", 32), ("num_attention_heads", 32)],
        "mistral" => &[
            ("hidden_size", 4096),
            ("num_hidden_layers", 32),
            ("num_attention_heads", 32),
            ("num_key_value_heads", 8),
            ("sliding_window", 4096),
        ],
        "qwen2" => &[("hidden_size", 4096), ("num_hidden_layers", 32), ("num_attention_heads", 32), ("num_key_value_heads", 32)],
        "gemma" => &[
            ("hidden_size", 3072),
            ("num_hidden_layers", 28),
            ("num_attention_heads", 16),
            ("num_key_value_heads", 16),
            ("head_dim", 256),
        ],
        "gemma2" => &[
            ("hidden_size", 3072),
            ("num_hidden_layers", 28),
            ("num_attention_heads", 16),
            ("num_key_value_heads", 16),
            ("head_dim", 256),
            ("sliding_window", 4096),
        ],
        _ => &[],
    };
    d.iter().find(|(k, _)| *k == field).map(|&(_, v)| v)
}

/// The part of a config the text model's fields are read from, with the file for errors.
pub(crate) struct Src<'a> {
    /// The config file.
    pub path: &'a Path,
    /// The whole config.
    pub root: &'a Value,
    /// `text_config` when present, else the root.
    pub v: &'a Value,
    /// `text_config.` or empty, prefixed to field names in errors.
    pub prefix: &'static str,
    /// model_type of the text model.
    pub model_type: String,
}

impl<'a> Src<'a> {
    /// Parses a config's text and picks the text model's part.
    pub fn new(path: &'a Path, root: &'a Value) -> Src<'a> {
        let text = root.get("text_config").filter(|t| t.is_object());
        let v = text.unwrap_or(root);
        let mt = |x: &Value| x.get("model_type").and_then(Value::as_str).map(str::to_string);
        // A llava-style text_config without model_type is a LlamaConfig (transformers' default).
        let model_type = mt(v).or_else(|| text.map(|_| "llama".to_string())).or_else(|| mt(root)).unwrap_or_default();
        Src { path, root, v, prefix: if text.is_some() { "text_config." } else { "" }, model_type }
    }

    /// An error about `field` of this config.
    pub fn err(&self, field: &str, problem: impl Into<String>) -> PayloadError {
        PayloadError::Field { path: self.path.to_path_buf(), field: format!("{}{field}", self.prefix), problem: problem.into() }
    }

    /// The value of `name`, None when missing or null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.v.get(name).filter(|x| !x.is_null())
    }

    /// A positive integer field, else the architecture default, else None.
    pub fn opt(&self, name: &str) -> Result<Option<u64>, PayloadError> {
        match self.v.get(name) {
            // An explicit null stays None, as in transformers; only an absent field takes the default.
            None => Ok(arch_default(&self.model_type, name)),
            Some(Value::Null) => Ok(None),
            Some(x) => positive(x).map(Some).ok_or_else(|| self.err(name, format!("is {}, not a positive integer", show(x)))),
        }
    }

    /// A non-negative integer field (0 allowed), else None.
    pub fn count(&self, name: &str) -> Result<Option<u64>, PayloadError> {
        match self.get(name) {
            None => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or_else(|| self.err(name, format!("is {}, not a non-negative integer", show(x)))),
        }
    }

    /// A required positive integer field (or its architecture default).
    pub fn req(&self, name: &str) -> Result<u64, PayloadError> {
        self.opt(name)?.ok_or_else(|| {
            self.err(
                name,
                format!("is missing and '{}' has no transformers default for it; add it to the config", self.model_type),
            )
        })
    }

    /// A boolean field (false when missing).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).and_then(Value::as_bool).unwrap_or(false)
    }
}

pub(crate) fn positive(x: &Value) -> Option<u64> {
    x.as_u64().filter(|&n| n > 0)
}

/// A value as the config wrote it (`Infinity` for a marked non-finite number).
pub(crate) fn show(x: &Value) -> String {
    match x.as_str().and_then(|s| s.strip_prefix(NONFINITE)) {
        Some(tok) => tok.to_string(),
        None => x.to_string(),
    }
}

/// Reads and parses the file, accepting the non-finite tokens Python's json module accepts.
pub(crate) fn read_root(path: &Path) -> Result<Value, PayloadError> {
    let unreadable = |message: String| PayloadError::Unreadable { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(format!("cannot read model config: {e}")))?;
    serde_json::from_str(&accept_nonfinite(&text))
        .map_err(|e| unreadable(format!("not valid JSON ({e}); expected a HuggingFace config.json")))
}

/// Checks that `kv` KV heads can serve `heads` attention heads (GQA groups of equal size).
pub(crate) fn check_kv(src: &Src, field: &str, heads: u64, kv: u64) -> Result<(), PayloadError> {
    if kv > heads || heads % kv != 0 {
        return Err(src.err(
            field,
            format!("is {kv}, which does not divide num_attention_heads {heads}: each KV head serves an equal group of attention heads; fix the config"),
        ));
    }
    Ok(())
}
