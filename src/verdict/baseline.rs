//! A fleet baseline (or either side of a comparison): a calibration, or a run read through
//! [`ResultsDir`] (journal and results merged, like every other reader of a run).

use std::path::{Path, PathBuf};

use crate::error::InputError;
use crate::model::{
    Calibration, Recovery, Results, ResultsDir, CALIBRATION_SCHEMA, RESULTS_SCHEMA, RESULTS_SCHEMA_V1, RESULTS_SCHEMA_V2,
};
use crate::spec::RackShape;

/// A fleet baseline: a calibration (segments and path models) or a results file (paths).
#[derive(Debug, Clone)]
pub enum Baseline {
    /// A `linkcal.calibration/3` (or `/2`) file.
    Calibration(PathBuf, Box<Calibration>),
    /// A `linkcal.results/3` (or `/2`, `/1`) file.
    Results(PathBuf, Box<Results>),
}

impl Baseline {
    /// Loads a baseline: a calibration file, a results file, or a run directory.
    pub fn load(path: &Path) -> Result<Baseline, InputError> {
        Self::load_with_recovery(path).map(|(b, _)| b)
    }

    /// [`Self::load`], with what [`ResultsDir::load`] recovered when it is a run.
    pub fn load_with_recovery(path: &Path) -> Result<(Baseline, Option<Recovery>), InputError> {
        let file = ResultsDir::results_file(path);
        if path.is_dir() {
            let (r, rec) = ResultsDir::load(path)?;
            return Ok((Baseline::Results(file, Box::new(r)), Some(rec)));
        }
        let text = crate::error::read_input(&file)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| InputError::file(&file, format!("not valid JSON: {e}")))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(CALIBRATION_SCHEMA) => Ok((Baseline::Calibration(file.clone(), Box::new(crate::error::read_json(&file)?)), None)),
            Some(RESULTS_SCHEMA | RESULTS_SCHEMA_V2 | RESULTS_SCHEMA_V1) => {
                let (r, rec) = ResultsDir::load(&file)?;
                Ok((Baseline::Results(file, Box::new(r)), Some(rec)))
            }
            other => Err(InputError::field(
                &file,
                "schema",
                format!(
                    "is {}, expected '{CALIBRATION_SCHEMA}' or '{RESULTS_SCHEMA}': a baseline must be a calibration or results file",
                    other.map(|s| format!("'{s}'")).unwrap_or_else(|| "missing".into())
                ),
            )),
        }
    }

    /// The file it came from.
    pub fn file(&self) -> &Path {
        match self {
            Baseline::Calibration(p, _) | Baseline::Results(p, _) => p,
        }
    }

    /// The rack shape it was measured on, and the field that holds it.
    pub fn shape(&self) -> (&RackShape, &'static str) {
        match self {
            Baseline::Calibration(_, c) => (&c.shape, "shape"),
            Baseline::Results(_, r) => (&r.rack.shape, "rack.shape"),
        }
    }
}
