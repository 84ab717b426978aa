//! Exit codes and the error classes the CLI maps onto them.
//!
//! 0 = pass, 1 = fail or regression (a verdict), or a run that skipped measurements after a fault,
//! 2 = bad input (flags, files, fields),
//! 3 = run-time failure (an agent, a device, the OS). Library errors stay typed and each says
//! its own class ([`Classified`]); the CLI edge wraps them with context and asks [`exit_code`]
//! which class an error chain belongs to. This module imports nothing of the library.

use std::path::PathBuf;

/// Success, or a verdict that passed.
pub const EXIT_OK: u8 = 0;
/// A verdict failed: acceptance failure or regression; or `run` skipped measurements (a dead or
/// stopped agent, a stalled route) and measured the rest.
pub const EXIT_FAIL: u8 = 1;
/// Bad input: a flag, file or field is wrong; the message says which and what to do.
pub const EXIT_BAD_INPUT: u8 = 2;
/// A run-time failure outside the input: an agent died, a device failed, the OS refused.
pub const EXIT_RUNTIME: u8 = 3;

/// Bad input in a file: names the file, the field (when known) and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), field.as_ref().map(|f| format!(": field '{f}'")).unwrap_or_default())]
pub struct InputError {
    /// The file at fault.
    pub file: PathBuf,
    /// The field at fault, as a JSON pointer or key path, when known.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl InputError {
    /// An error about `file` as a whole.
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        InputError { file: file.into(), field: None, message: message.into() }
    }

    /// An error about one field of `file`.
    pub fn field(file: impl Into<PathBuf>, field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError { file: file.into(), field: Some(field.into()), message: message.into() }
    }
}

/// Reads a file, turning a failure into an [`InputError`] that names it.
pub fn read_input(path: &std::path::Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|e| InputError::file(path, format!("cannot read: {e}")))
}

/// Parses JSON from `path` into `T`, naming the file and the failing field on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, InputError> {
    let text = read_input(path)?;
    parse_json(path, &text)
}

/// Parses JSON text read from `path` into `T`; a type error names the field path where it
/// happened (`measurements[2].flows[0].payload_bytes`), never the offending value.
pub fn parse_json<T: serde::de::DeserializeOwned>(path: &std::path::Path, text: &str) -> Result<T, InputError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = format!("{} (not a valid file of this kind; check its schema in schemas/)", e.inner());
        match field_of(&e.path().to_string(), &e.inner().to_string()) {
            Some(f) => InputError::field(path, f, msg),
            None => InputError::file(path, msg),
        }
    })
}

/// Parses TOML text read from `path` into `T`, naming the field path and line on error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path, text: &str) -> Result<T, InputError> {
    let de = toml::Deserializer::parse(text).map_err(|e| InputError::file(path, toml_message(&e, text)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = toml_message(e.inner(), text);
        match field_of(&e.path().to_string(), e.inner().message()) {
            Some(f) => InputError::field(path, f, msg),
            None => InputError::file(path, format!("not a valid file of this kind: {msg}")),
        }
    })
}

fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    format!("{}{}", e.message().trim(), line.map(|l| format!(" (line {l})")).unwrap_or_default())
}

/// The field an error is about: the path where deserializing stopped, extended by the field a
/// "missing/unknown/duplicate field `x`" message names; `None` at the top with no field named.
fn field_of(path: &str, message: &str) -> Option<String> {
    let named = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| message.starts_with(p))
        .then(|| message.split('`').nth(1).map(str::to_string))
        .flatten();
    let path = (path != ".").then(|| path.to_string());
    match (path, named) {
        // "unknown field" stops at the key itself; "missing field" at its container.
        (Some(p), Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p),
        (Some(p), Some(n)) => Some(format!("{p}.{n}")),
        (p, n) => p.or(n),
    }
}

/// The exit class of an error: which exit code it maps onto when it ends a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Bad input ([`EXIT_BAD_INPUT`]): a flag, file or field is wrong.
    BadInput,
    /// A run-time failure ([`EXIT_RUNTIME`]): an agent, a device, the OS.
    Runtime,
}

impl ExitClass {
    /// The process exit code of this class.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::BadInput => EXIT_BAD_INPUT,
            ExitClass::Runtime => EXIT_RUNTIME,
        }
    }
}

/// An error that says its own exit class. Each typed error of the library implements it in its
/// own module; the CLI edge, which sees errors as `anyhow` chains, keeps the registry of the
/// types it asks (`cli::exit`), so this module imports nothing of the library above it.
pub trait Classified {
    /// Which exit class this error belongs to.
    fn exit_class(&self) -> ExitClass;

    /// True for errors in the user's input (exit code 2).
    fn is_bad_input(&self) -> bool {
        self.exit_class() == ExitClass::BadInput
    }
}

impl Classified for InputError {
    fn exit_class(&self) -> ExitClass {
        ExitClass::BadInput
    }
}

/// The exit code for an error chain: 2 when `classify` calls any cause bad input, else 3.
/// `classify` answers `None` for a cause whose type it does not know (a run-time failure).
pub fn exit_code(err: &anyhow::Error, classify: impl Fn(&(dyn std::error::Error + 'static)) -> Option<ExitClass>) -> u8 {
    let bad = err.chain().any(|cause| classify(cause) == Some(ExitClass::BadInput));
    if bad {
        EXIT_BAD_INPUT
    } else {
        EXIT_RUNTIME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_only(cause: &(dyn std::error::Error + 'static)) -> Option<ExitClass> {
        cause.downcast_ref::<InputError>().map(Classified::exit_class)
    }

    #[test]
    fn classifies_chains() {
        let e = anyhow::Error::new(InputError::file("x.json", "bad")).context("paths");
        assert_eq!(exit_code(&e, input_only), EXIT_BAD_INPUT);
        let e = anyhow::anyhow!("agent gpu_p0 died");
        assert_eq!(exit_code(&e, input_only), EXIT_RUNTIME);
        let e = anyhow::Error::new(InputError::file("x.json", "bad"));
        assert_eq!(exit_code(&e, |_| Some(ExitClass::Runtime)), EXIT_RUNTIME);
    }

    #[test]
    fn json_errors_name_file_and_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct X {
            a: u32,
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "{}").unwrap();
        let e = read_json::<X>(&p).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        assert!(e.to_string().contains("x.json"));
        let e = read_json::<X>(&dir.path().join("missing.json")).unwrap_err();
        assert!(e.to_string().contains("cannot read"));
    }

    /// A value of the wrong type names the field's path, not the value.
    #[test]
    fn type_errors_name_the_field_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            n: u64,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            items: Vec<Inner>,
        }
        let p = std::path::Path::new("x.json");
        let e = parse_json::<Outer>(p, r#"{"items": [{"n": 1}, {"n": 1e308}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[1].n"), "{e}");
        assert!(!e.to_string().contains("field '1e"), "{e}");
        let e = parse_json::<Outer>(p, r#"{"items": [{}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[0].n"), "{e}");
        let t = std::path::Path::new("x.toml");
        let e = parse_toml::<Outer>(t, "[[items]]\nn = 1\n[[items]]\nn = \"=\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[1].n"), "{e}");
        assert!(e.to_string().contains("line 4"), "{e}");
        let e = parse_toml::<Outer>(t, "items = [ = \n").unwrap_err();
        assert_eq!(e.field, None, "{e}");
    }
}
