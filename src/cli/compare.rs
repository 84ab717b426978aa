//! `linkcal compare BASELINE NEW`: regression per route and size (results) or per segment
//! (calibrations); prints markdown, writes JSON / JUnit on request; exit 1 on a regression.

use std::path::PathBuf;

use anyhow::Context;

use crate::verdict::CompareOptions;

/// Parses a fraction in [0, 1).
fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: use a fraction in [0, 1), e.g. 0.03 for 3%"))
    }
}

/// Flags of `linkcal compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Baseline: a results directory / results.json, or a calibration file.
    pub baseline: PathBuf,
    /// New run, of the same kind and rack shape as the baseline.
    pub new: PathBuf,
    /// Smallest relative change that counts as a regression or improvement (0.03 = 3%).
    #[arg(long, default_value = "0.03", value_parser = fraction)]
    pub min_effect: f64,
    /// Family-wise two-sided confidence of the change intervals (Bonferroni over the items).
    #[arg(long, default_value = "0.95", value_parser = fraction)]
    pub confidence: f64,
    /// Bootstrap replicates.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Output files (JSON `linkcal.compare/1`, JUnit: one test case per compared item).
    #[command(flatten)]
    pub out: super::accept::VerdictOutputs,
}

/// Runs `linkcal compare`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let base = super::accept::load_baseline("compare", &a.baseline).context("loading the baseline")?;
    let new = super::accept::load_baseline("compare", &a.new).context("loading the new run")?;
    let opt = CompareOptions {
        min_effect: a.min_effect,
        confidence: a.confidence,
        resamples: a.resamples,
        ..CompareOptions::default()
    };
    let report = crate::verdict::compare(&base, &new, &opt)?;
    let md = crate::report::markdown::comparison(&report);
    print!("{md}");
    a.out.write(&md, &report, || crate::report::junit::junit(None, Some(&report)))?;
    Ok(if report.regression { crate::error::EXIT_FAIL } else { crate::error::EXIT_OK })
}
