//! `linkcal report --results DIR [--calibration FILE] [--rules FILE] [--baseline B] --out report.html`:
//! one self-contained HTML file with the verdicts at the top and inline SVG plots.

use std::path::PathBuf;

use anyhow::Context;

use crate::report::html::{render, ReportInput};
use crate::verdict::{Baseline, CompareOptions};

/// Flags of `linkcal report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Results directory (or its results.json).
    #[arg(long)]
    pub results: PathBuf,
    /// Calibration computed from the results (capacities, models).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Acceptance rules (repeatable): verdicts go at the top of the report.
    #[arg(long)]
    pub rules: Vec<PathBuf>,
    /// Baseline results (directory or file) to compare against; also the fleet baseline for deviation rules.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Minimum effect for the comparison.
    #[arg(long, default_value = "0.03")]
    pub min_effect: f64,
    /// Output HTML file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write JUnit XML of the verdicts (and comparison) here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Add a planner prediction (`linkcal predict`) for this model preset on the calibration.
    #[arg(long, requires = "calibration")]
    pub predict_model: Option<String>,
    /// Add a planner prediction for this HuggingFace config.json on the calibration.
    #[arg(long, requires = "calibration", conflicts_with = "predict_model")]
    pub predict_model_config: Option<PathBuf>,
    /// N of the prediction.
    #[arg(long, default_value_t = 8)]
    pub predict_n: u64,
    /// T of the prediction.
    #[arg(long, default_value_t = 8192)]
    pub predict_t: u64,
    /// M of the prediction.
    #[arg(long, default_value_t = 2048)]
    pub predict_m: u64,
}

/// Runs `linkcal report`. Exit 0: the report is written whatever the verdicts say (use
/// `linkcal accept` / `compare` for a gating exit code).
pub fn run(a: Args) -> anyhow::Result<u8> {
    let run = super::accept::load_results("report", &a.results)?;
    let (rfile, results, rec) = &run;
    let partial = rec.is_partial().then(|| rec.note().unwrap_or_default());
    let cal = a.calibration.as_ref().map(|p| super::accept::load_calibration(p).map(|c| (p.clone(), c))).transpose()?;
    let acceptance = if a.rules.is_empty() {
        None
    } else {
        Some(super::accept::judge("report", &a.rules, a.calibration.as_deref(), Some(&run), a.baseline.as_deref())?)
    };
    let comparison = match &a.baseline {
        Some(b) => {
            let base = super::accept::load_baseline("report", b).context("loading the baseline")?;
            match base {
                Baseline::Results(..) => {
                    let new = Baseline::Results(rfile.clone(), Box::new(results.clone()));
                    let opt = CompareOptions { min_effect: a.min_effect, ..CompareOptions::default() };
                    Some(crate::verdict::compare(&base, &new, &opt)?)
                }
                Baseline::Calibration(..) => None,
            }
        }
        None => None,
    };
    let prediction = match (&a.predict_model, &a.predict_model_config, &a.calibration) {
        (None, None, _) | (_, _, None) => None,
        (name, file, Some(cal)) => {
            let model = super::predict::model_of(name.as_deref(), file.as_deref())?;
            let w = crate::spec::Workload::new(a.predict_n, a.predict_t, a.predict_m)?;
            let grid = (&crate::predict::SCALE_N[..], &crate::predict::SCALE_T[..]);
            Some(super::predict::answer(cal, &model, w, Default::default(), (None, None), grid)?)
        }
    };
    let html = render(&ReportInput {
        results: (rfile.as_path(), results),
        calibration: cal.as_ref().map(|(p, c)| (p.as_path(), c)),
        acceptance: acceptance.as_ref(),
        comparison: comparison.as_ref(),
        prediction: prediction.as_ref().map(|p| (&p.prediction, p.scaling.as_slice())),
        partial: partial.as_deref(),
    });
    super::accept::write_out(&a.out, &html)?;
    if let Some(j) = &a.junit {
        super::accept::write_out(j, &crate::report::junit::junit(acceptance.as_ref(), comparison.as_ref()))?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(crate::error::EXIT_OK)
}
