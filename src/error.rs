//! Exit codes and the error classes the CLI maps onto them.
//!
//! 0 = pass, 1 = fail or regression (a verdict), 2 = bad input (flags, files, fields),
//! 3 = run-time failure (an agent, a device, the OS). Library errors stay typed; the CLI edge
//! wraps them with context and asks [`exit_code`] which class an error chain belongs to.

use std::path::PathBuf;

/// Success, or a verdict that passed.
pub const EXIT_OK: u8 = 0;
/// A verdict failed: acceptance failure or regression.
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
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error_lite(de).map_err(|(field, msg)| match field {
        Some(f) => InputError::field(path, f, msg),
        None => InputError::file(path, msg),
    })
}

fn serde_path_to_error_lite<'de, T: serde::de::DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
) -> Result<T, (Option<String>, String)> {
    T::deserialize(de).map_err(|e| {
        let msg = e.to_string();
        // serde_json names missing/unknown fields in the message itself ("missing field `x`").
        let field = msg.split('`').nth(1).map(str::to_string);
        (field, format!("{msg} (not a valid file of this kind; check its schema in schemas/)"))
    })
}

/// The exit code for an error chain: 2 when any cause is a bad-input error, else 3.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if is_bad_input(cause) {
            return EXIT_BAD_INPUT;
        }
    }
    EXIT_RUNTIME
}

/// The registry of error types that mean "bad input". Add a module's error here when its
/// variants are all about input; a mixed enum implements a check and is listed here.
fn is_bad_input(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<InputError>()
        || cause.is::<crate::spec::SpecError>()
        || cause.is::<crate::payload::PayloadError>()
        || cause.is::<crate::predict::PredictError>()
        || cause.is::<clap::Error>()
        || cause.is::<crate::gpu::pci::PciAddrError>()
        || cause.downcast_ref::<crate::topology::TopologyError>().is_some_and(|e| e.is_bad_input())
        || cause.downcast_ref::<crate::emulate::EmulateError>().is_some_and(|e| e.is_bad_input())
        || cause.downcast_ref::<crate::runner::RunError>().is_some_and(|e| e.is_bad_input())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_chains() {
        let e = anyhow::Error::new(crate::spec::SpecError::Zero { flag: "--n" }).context("paths");
        assert_eq!(exit_code(&e), EXIT_BAD_INPUT);
        let e = anyhow::anyhow!("agent gpu_p0 died");
        assert_eq!(exit_code(&e), EXIT_RUNTIME);
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
}
