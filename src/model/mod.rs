//! The one result model: measurement results (`linkcal.results/3`), calibrations
//! (`linkcal.calibration/3`), rack files and provenance. JSON, CSV and reports all derive from
//! these types; JSON Schemas in `schemas/` are generated from them. Units are in field names
//! (`_bytes`, `_Bps` = bytes/s SI, `_s` = seconds); an unmeasured value is `null`, never 0.

pub mod calibration;
pub mod check;
pub mod provenance;
pub mod rack;
pub mod results;
pub mod results_csv;
pub mod rundir;

pub use calibration::{Calibration, CALIBRATION_SCHEMA};
pub use provenance::Provenance;
pub use rack::{GroundTruth, RackFile, RACK_SCHEMA};
pub use results::{Results, RESULTS_SCHEMA, RESULTS_SCHEMA_V1, RESULTS_SCHEMA_V2};
pub use rundir::{Recovery, ResultsDir, RunDirError, RunWriter, Start};

use std::path::Path;

use crate::error::InputError;

/// Checks a file's `schema` field before parsing the rest, so a file of another kind or
/// version gets an error that says so instead of a field-level complaint.
pub fn check_schema(path: &Path, text: &str, want: &str) -> Result<(), InputError> {
    check_schema_of(path, &json_value(path, text)?, want)
}

/// The JSON value of `text` read from `path` (named in the error).
fn json_value(path: &Path, text: &str) -> Result<serde_json::Value, InputError> {
    serde_json::from_str(text).map_err(|e| InputError::file(path, format!("not valid JSON: {e}")))
}

/// [`check_schema`] on a value already parsed.
fn check_schema_of(path: &Path, v: &serde_json::Value, want: &str) -> Result<(), InputError> {
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(s) if s == want || compatible(want).contains(&s) => Ok(()),
        Some(s) => Err(InputError::field(
            path,
            "schema",
            format!("is '{s}', expected '{want}': this file is of another kind or version"),
        )),
        None => Err(InputError::field(path, "schema", format!("is missing; expected '{want}'"))),
    }
}

/// Older versions of a schema that read as `want` (their added fields are optional).
fn compatible(want: &str) -> &'static [&'static str] {
    match want {
        RESULTS_SCHEMA => results::RESULTS_SCHEMA_COMPAT,
        RACK_SCHEMA => rack::RACK_SCHEMA_COMPAT,
        CALIBRATION_SCHEMA => calibration::CALIBRATION_SCHEMA_COMPAT,
        _ => &[],
    }
}

/// Reads a schema-versioned JSON file: checks `schema` and every number (see
/// [`check::check_numbers`]), then parses, naming file and field.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path, want: &str) -> Result<T, InputError> {
    let text = crate::error::read_input(path)?;
    parse(path, &text, want)
}

/// [`load`] on text already read from `path` (named in errors only).
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str, want: &str) -> Result<T, InputError> {
    // One parse to a value serves the schema and number checks; the typed parse below reads
    // the text again for errors that name the line and column.
    let value = json_value(path, text)?;
    check_schema_of(path, &value, want)?;
    check::check_numbers(path, &value)?;
    crate::error::parse_json(path, text)
}

/// Writes JSON atomically (temp file, fsync, rename) so a crash never leaves half a file; on
/// failure the temp file is removed too.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Writes `bytes` to `path` atomically: a temp file beside it (`NAME.EXT.tmp`), fsynced, then
/// renamed over `path`, so readers see the old file or the new one, never half of one; on
/// failure the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let ext = path.extension().map(|e| format!("{}.tmp", e.to_string_lossy())).unwrap_or_else(|| "tmp".into());
    let tmp = path.with_extension(ext);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The JSON Schemas generated from the model, by file name under `schemas/`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("results.schema.json", serde_json::to_value(schemars::schema_for!(Results)).expect("schema serializes")),
        ("calibration.schema.json", serde_json::to_value(schemars::schema_for!(Calibration)).expect("schema serializes")),
        ("rack.schema.json", serde_json::to_value(schemars::schema_for!(RackFile)).expect("schema serializes")),
        ("ground-truth.schema.json", serde_json::to_value(schemars::schema_for!(GroundTruth)).expect("schema serializes")),
        (
            "topology.schema.json",
            serde_json::to_value(schemars::schema_for!(crate::topology::TopologyReport)).expect("schema serializes"),
        ),
    ]
}
