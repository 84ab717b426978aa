//! `linkcal accept`: judge a calibration and/or results against acceptance rules; prints a
//! markdown table, writes JSON / JUnit / markdown on request; exit 1 on any fail, and on an
//! incomplete verdict over a partial run (see [`AcceptReport::exit_code`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::model::{Calibration, Recovery, Results, ResultsDir, CALIBRATION_SCHEMA};
use crate::verdict::{AcceptInputs, AcceptReport, Baseline, Rules};

/// Flags of `linkcal accept`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rules file (TOML, `linkcal.rules/1`), e.g. rules/emulated-default.toml; repeat to judge
    /// several together (e.g. rules/pcie-gen5-x16.toml, rules/ib-ndr.toml, rules/eth-100g.toml).
    #[arg(long, required = true)]
    pub rules: Vec<PathBuf>,
    /// Calibration file (`linkcal.calibration/2`): judges segments and series groups.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Results directory (or its results.json): judges paths.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Fleet baseline (calibration or results) for deviation rules; overrides the rules' `baseline`.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Output files (JSON `linkcal.acceptance/1`, JUnit: one test case per segment direction,
    /// group and path).
    #[command(flatten)]
    pub out: VerdictOutputs,
    /// Treat items that are not measured (or not identified) as failures.
    #[arg(long)]
    pub strict: bool,
}

/// Loads a run (a run directory, or its results.json) through [`ResultsDir::load`]: journal
/// and results merged, so a killed run is judged on what it finished; says so on stderr.
pub(crate) fn load_results(cmd: &str, path: &Path) -> anyhow::Result<LoadedRun> {
    let file = ResultsDir::results_file(path);
    let (r, rec) = ResultsDir::load(path).with_context(|| format!("loading results {}", path.display()))?;
    note_run(cmd, path, &rec);
    Ok((file, r, rec))
}

/// Tells the operator on stderr when a run read from `path` is partial (or lost a cut-off
/// journal line): `linkcal CMD: RUN: partial run: ...`.
pub(crate) fn note_run(cmd: &str, path: &Path, rec: &Recovery) {
    if let Some(note) = rec.note() {
        eprintln!("linkcal {cmd}: {}: {note}", path.display());
    }
}

/// Loads a baseline (calibration, or a run through [`ResultsDir`]), saying when a run is partial.
pub(crate) fn load_baseline(cmd: &str, path: &Path) -> Result<Baseline, crate::error::InputError> {
    let (base, rec) = Baseline::load_with_recovery(path)?;
    if let Some(rec) = rec {
        note_run(cmd, path, &rec);
    }
    Ok(base)
}

/// Loads a calibration file.
pub(crate) fn load_calibration(path: &Path) -> anyhow::Result<Calibration> {
    crate::model::load(path, CALIBRATION_SCHEMA).with_context(|| format!("loading calibration {}", path.display()))
}

/// A run loaded by [`load_results`]: its results file, results, and what the merge recovered.
pub(crate) type LoadedRun = (PathBuf, Results, Recovery);

/// Judges the inputs against the rules (shared with `linkcal report`; `cmd` names the command
/// in stderr notes). A partial run makes the verdict incomplete.
pub(crate) fn judge(
    cmd: &str,
    rules: &[PathBuf],
    calibration: Option<&Path>,
    res: Option<&LoadedRun>,
    baseline: Option<&Path>,
) -> anyhow::Result<AcceptReport> {
    let all = rules.iter().map(|p| Rules::load(p)).collect::<Result<Vec<_>, _>>().context("loading rules")?;
    let rules = Rules::merge(all).context("no rules file given")?;
    let cal = calibration.map(|p| load_calibration(p).map(|c| (p.to_path_buf(), c))).transpose()?;
    let base_path = baseline.map(Path::to_path_buf).or_else(|| rules.baseline.clone());
    let base = base_path.as_deref().map(|p| load_baseline(cmd, p)).transpose().context("loading the baseline")?;
    let inputs = AcceptInputs {
        calibration: cal.as_ref().map(|(p, c)| (p.as_path(), c)),
        results: res.map(|(p, r, _)| (p.as_path(), r)),
        baseline: base.as_ref(),
    };
    let mut report = crate::verdict::accept(&rules, inputs)?;
    if let Some((p, _, rec)) = res.filter(|(_, _, rec)| rec.is_partial()) {
        report.mark_partial(format!("{}: {}", p.display(), rec.note().unwrap_or_default()));
    }
    Ok(report)
}

/// Writes `text` to `path`, naming the file on failure.
pub(crate) fn write_out(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs `linkcal accept`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let res = a.results.as_deref().map(|p| load_results("accept", p)).transpose()?;
    let report = judge("accept", &a.rules, a.calibration.as_deref(), res.as_ref(), a.baseline.as_deref())?;
    let md = crate::report::markdown::acceptance(&report);
    print!("{md}");
    a.out.write(&md, &report, || crate::report::junit::junit(Some(&report), None))?;
    Ok(report.exit_code(a.strict))
}

/// The files a verdict (`accept`, `compare`) writes besides printing its markdown.
#[derive(Debug, clap::Args)]
pub struct VerdictOutputs {
    /// Write the verdicts as JSON here (`linkcal.acceptance/1` or `linkcal.compare/1`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here (one test case per judged item).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the markdown here too (it is always printed).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

impl VerdictOutputs {
    /// Writes the markdown, the JSON of `report` and the JUnit XML where asked.
    pub fn write<T: serde::Serialize>(&self, md: &str, report: &T, junit: impl FnOnce() -> String) -> anyhow::Result<()> {
        if let Some(p) = &self.markdown {
            write_out(p, md)?;
        }
        if let Some(p) = &self.json {
            crate::model::write_json(p, report).with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &self.junit {
            write_out(p, &junit())?;
        }
        Ok(())
    }
}
