//! The run directory (`linkcal run --out DIR`, `probe --run --out DIR`): the one owner of its
//! files, so every command that writes or reads a run sees the same measurements.
//!
//! - `results.json`: the run's [`Results`]. Written at the start as a header (rack, provenance
//!   with `finished_at: null`, no measurements), so a killed run is loadable, and again at the
//!   end with every measurement (atomically: temp file, fsync, rename).
//! - `journal.jsonl`: one [`Measurement`] per line, appended, flushed and fsynced as each one
//!   finishes, before the next starts. Never truncated, except by [`Start::Force`].
//! - `results.csv`: one row per flow ([`super::results_csv`]), written at the end only.
//!
//! **Reading** ([`ResultsDir::load`]): `results.json`'s measurements, then every journal
//! measurement whose `id` `results.json` lacks, in journal order (an id seen twice keeps its
//! first copy). A measurement is in the journal when its line ends with a newline: a last line
//! without one was cut off by a crash mid-write (that measurement never finished being
//! recorded) and is ignored, with a note in [`Recovery`]; any other line that is not a
//! measurement is an error naming the line. A run is *partial* when `results.json` does not say
//! it finished (`provenance.finished_at` is null) or the journal adds measurements to it.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::results::{Measurement, Results};
use super::RESULTS_SCHEMA;
use crate::error::{Classified, ExitClass, InputError};

/// File name of the results.
pub const RESULTS_FILE: &str = "results.json";
/// File name of the journal.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// File name of the per-flow CSV.
pub const CSV_FILE: &str = "results.csv";

/// Failures of a run directory: bad input (a file that does not load, a run that is in the
/// way) or an I/O error writing it.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// A file of the directory is wrong, or the directory already holds a run.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Classified for RunDirError {
    /// A file that does not load or a run in the way is bad input; a failed write is not.
    fn exit_class(&self) -> ExitClass {
        match self {
            RunDirError::Input(_) => ExitClass::BadInput,
            RunDirError::Io { .. } => ExitClass::Runtime,
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io { path: path.to_path_buf(), source }
}

/// How [`ResultsDir::create`] treats a directory that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Refuse a directory that holds measurements (or results that do not load).
    #[default]
    Fresh,
    /// Continue the run there: keep every measurement, append to the journal.
    Resume,
    /// Start over: discard what is there.
    Force,
}

/// What [`ResultsDir::load`] found and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Measurements `results.json` holds.
    pub in_results: usize,
    /// Measurements only `journal.jsonl` holds, added by the merge.
    pub from_journal: usize,
    /// `results.json` says the run finished (`provenance.finished_at` is set).
    pub finished: bool,
    /// Line number (from 1) of a cut-off last journal line that was ignored.
    pub cut_off_line: Option<usize>,
    /// Measurements `results.json` lists as skipped (`skipped`: an agent died or stopped
    /// answering, or a route stopped moving data), with the first one's reason.
    pub skipped: Option<(usize, String)>,
}

impl Recovery {
    /// Measurements after the merge.
    pub fn total(&self) -> usize {
        self.in_results + self.from_journal
    }

    /// True when the run did not finish, the journal holds measurements `results.json` lacks,
    /// or the run skipped measurements.
    pub fn is_partial(&self) -> bool {
        !self.finished || self.from_journal > 0 || self.skipped.is_some()
    }

    /// One line for the operator when the run is partial or a journal line was ignored, e.g.
    /// "partial run: results.json has 0 measurements and did not record the run's end; 12
    /// measurements recovered from journal.jsonl".
    pub fn note(&self) -> Option<String> {
        let cut = self.cut_off_line.map(|l| {
            format!("; {JOURNAL_FILE} line {l} was cut off mid-write (a measurement that never finished) and is ignored")
        });
        if !self.is_partial() {
            return cut.map(|c| format!("complete run{c}"));
        }
        let skipped = self
            .skipped
            .as_ref()
            .map(|(n, why)| format!("; {n} measurements skipped (the first: {why}): `linkcal run --resume DIR` measures them"));
        if self.finished && self.from_journal == 0 {
            let head = format!("partial run: {RESULTS_FILE} has {} measurements", self.in_results);
            return Some(format!("{head}{}{}", skipped.unwrap_or_default(), cut.unwrap_or_default()));
        }
        let head = if self.finished {
            format!("{RESULTS_FILE} has {} measurements", self.in_results)
        } else {
            format!("{RESULTS_FILE} has {} measurements and did not record the run's end (killed or failed)", self.in_results)
        };
        Some(format!(
            "partial run: {head}; {} measurements recovered from {JOURNAL_FILE}; {} in all{}{}",
            self.from_journal,
            self.total(),
            skipped.unwrap_or_default(),
            cut.unwrap_or_default()
        ))
    }
}

/// A run directory's file names, and the functions that read and write it.
#[derive(Debug, Clone)]
pub struct ResultsDir;

impl ResultsDir {
    /// Opens `dir` for a run: `header` is the run's [`Results`] before any measurement (its
    /// `finished_at` null). [`Start::Fresh`] refuses a directory holding measurements (bad
    /// input, naming it); [`Start::Force`] discards them; [`Start::Resume`] keeps them (the
    /// writer's [`RunWriter::prior`]) and checks the rack shape is the header's.
    pub fn create(dir: &Path, header: Results, start: Start) -> Result<RunWriter, RunDirError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (rpath, jpath) = (dir.join(RESULTS_FILE), dir.join(JOURNAL_FILE));
        let existing = rpath.exists() || jpath.exists();
        let (written, prior, recovery) = match start {
            Start::Resume if existing => resume_header(dir, header)?,
            Start::Fresh => {
                Self::check_fresh(dir)?;
                (header, Vec::new(), None)
            }
            _ => (header, Vec::new(), None),
        };
        super::write_json(&rpath, &written).map_err(io(&rpath))?;
        let cpath = dir.join(CSV_FILE);
        if cpath.exists() {
            std::fs::remove_file(&cpath).map_err(io(&cpath))?;
        }
        let journal =
            if start == Start::Resume { open_for_append(&jpath)? } else { std::fs::File::create(&jpath).map_err(io(&jpath))? };
        let mut header = written;
        header.measurements.clear();
        Ok(RunWriter { dir: dir.to_path_buf(), journal, header, prior, recovery })
    }

    /// Checks `dir` holds no run a fresh start would discard: bad input naming the directory
    /// and the ways on (`--resume`, `--force`) when it holds measurements or results that do
    /// not load; a missing or empty directory, or a header without measurements, is fine.
    pub fn check_fresh(dir: &Path) -> Result<(), InputError> {
        if dir.join(RESULTS_FILE).exists() || dir.join(JOURNAL_FILE).exists() {
            refuse_existing(dir)?;
        }
        Ok(())
    }

    /// The results file of a run given as a directory or a file (the path errors name).
    pub fn results_file(path: &Path) -> PathBuf {
        if path.is_dir() {
            path.join(RESULTS_FILE)
        } else {
            path.to_path_buf()
        }
    }

    /// Loads a run: a run directory, or a results file (a file named `results.json` is read with
    /// the journal beside it; any other file alone). Returns the merged results (see the module
    /// doc for the rule) and what was recovered. Every error is bad input naming the file.
    pub fn load(path: &Path) -> Result<(Results, Recovery), InputError> {
        let rpath = Self::results_file(path);
        let jpath = if path.is_dir() {
            Some(path.join(JOURNAL_FILE))
        } else if path.file_name().is_some_and(|n| n == RESULTS_FILE) {
            path.parent().map(|d| d.join(JOURNAL_FILE))
        } else {
            None
        };
        let jpath = jpath.filter(|j| j.exists());
        if !rpath.exists() {
            return Err(missing_results(path, &rpath, jpath.as_deref()));
        }
        let text = crate::error::read_input(&rpath)?;
        let journal = match &jpath {
            Some(j) => Some((j.as_path(), crate::error::read_input(j)?)),
            None => None,
        };
        Self::parse(&rpath, &text, journal.as_ref().map(|(j, t)| (*j, t.as_str())))
    }

    /// [`ResultsDir::load`] on texts already read: `results.json`'s (from `rpath`) and the
    /// journal's (with its path), merged by the module's rule. Paths are named in errors only.
    pub fn parse(rpath: &Path, results: &str, journal: Option<(&Path, &str)>) -> Result<(Results, Recovery), InputError> {
        let mut res: Results = super::parse(rpath, results, RESULTS_SCHEMA)?;
        let mut rec = Recovery {
            in_results: res.measurements.len(),
            finished: res.provenance.finished_at.is_some(),
            skipped: res.skipped.first().map(|s| (res.skipped.len(), format!("{}: {}", s.id, s.reason))),
            ..Recovery::default()
        };
        if let Some((j, text)) = journal {
            let journal = parse_journal(j, text)?;
            rec.cut_off_line = journal.cut_off_line;
            let mut seen: HashSet<String> = res.measurements.iter().map(|m| m.id.clone()).collect();
            for m in journal.measurements {
                if seen.insert(m.id.clone()) {
                    res.measurements.push(m);
                    rec.from_journal += 1;
                }
            }
        }
        Ok((res, rec))
    }
}

/// The error for a run whose `results.json` is missing.
fn missing_results(given: &Path, rpath: &Path, journal: Option<&Path>) -> InputError {
    match journal.map(read_journal) {
        Some(Ok(j)) if !j.measurements.is_empty() => InputError::file(
            rpath,
            format!(
                "is missing, while {JOURNAL_FILE} beside it holds {} measurements without the rack they were measured \
                 on: run `linkcal run --resume {} --rack RACK` with the run's rack file to write it (nothing is \
                 measured twice)",
                j.measurements.len(),
                given.display()
            ),
        ),
        _ => InputError::file(
            rpath,
            "not found: give a run directory written by `linkcal run` (results.json + journal.jsonl) or its results.json",
        ),
    }
}

/// Refuses a directory that already holds a run (exit 2).
fn refuse_existing(dir: &Path) -> Result<(), InputError> {
    let held = match ResultsDir::load(dir) {
        Ok((_, rec)) if rec.total() == 0 => return Ok(()),
        Ok((_, rec)) => format!("holds a run with {} measurements", rec.total()),
        Err(e) => format!("holds results that do not load ({e})"),
    };
    Err(InputError::file(
        dir,
        format!(
            "{held}: continue it with `--resume {}` (measures only what is missing), or start over with `--force` \
             (discards it), or choose another --out",
            dir.display()
        ),
    ))
}

/// The header to write when resuming in `dir`, the measurements kept, and what was recovered.
fn resume_header(dir: &Path, header: Results) -> Result<(Results, Vec<Measurement>, Option<Recovery>), RunDirError> {
    let rpath = dir.join(RESULTS_FILE);
    if !rpath.exists() {
        // A journal without results.json (a run by an older linkcal): the new header names the rack.
        let j = read_journal(&dir.join(JOURNAL_FILE))?;
        let rec = Recovery { from_journal: j.measurements.len(), cut_off_line: j.cut_off_line, ..Recovery::default() };
        let mut written = header;
        written.measurements = j.measurements.clone();
        return Ok((written, j.measurements, Some(rec)));
    }
    let (mut old, rec) = ResultsDir::load(dir)?;
    if old.rack.shape != header.rack.shape {
        return Err(InputError::field(
            &rpath,
            "rack.shape",
            format!(
                "is {:?}, but the rack file's shape is {:?}: resume with the rack the run was measured on, or start \
                 over with --force",
                old.rack.shape, header.rack.shape
            ),
        )
        .into());
    }
    old.provenance.finished_at = None;
    for w in header.waivers {
        if !old.waivers.contains(&w) {
            old.waivers.push(w);
        }
    }
    let prior = old.measurements.clone();
    Ok((old, prior, Some(rec)))
}

/// Opens the journal for appending, first dropping a cut-off last line (the bytes of a
/// measurement a crash interrupted mid-write; every complete line is kept).
fn open_for_append(jpath: &Path) -> Result<std::fs::File, RunDirError> {
    let file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(jpath).map_err(io(jpath))?;
    let bytes = std::fs::read(jpath).map_err(io(jpath))?;
    if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        file.set_len(keep as u64).map_err(io(jpath))?;
        file.sync_data().map_err(io(jpath))?;
    }
    Ok(file)
}

/// A journal read back.
struct JournalRead {
    measurements: Vec<Measurement>,
    cut_off_line: Option<usize>,
}

/// Reads every complete line of a journal (first copy of an id kept); a last line without
/// its newline is reported, not read.
fn read_journal(path: &Path) -> Result<JournalRead, InputError> {
    parse_journal(path, &crate::error::read_input(path)?)
}

/// [`read_journal`] on text already read from `path`.
fn parse_journal(path: &Path, text: &str) -> Result<JournalRead, InputError> {
    let cut = !text.is_empty() && !text.ends_with('\n');
    let mut lines: Vec<&str> = text.lines().collect();
    let cut_off_line = cut.then(|| {
        lines.pop();
        lines.len() + 1
    });
    let mut seen = HashSet::new();
    let mut measurements = Vec::new();
    for (n, line) in lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let m: Measurement = serde_json::from_str(line).map_err(|e| {
            let field = e.to_string().split('`').nth(1).map(str::to_string).unwrap_or_default();
            InputError::field(
                path,
                format!("line {}{}", n + 1, if field.is_empty() { String::new() } else { format!(": {field}") }),
                format!("not a measurement: {e}; the journal is damaged here (move the line aside to keep the rest)"),
            )
        })?;
        // The numbers a results file is held to (a journal line is one of its measurements).
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            super::check::check_numbers(path, &v).map_err(|mut e| {
                e.field = Some(format!("line {}: {}", n + 1, e.field.take().unwrap_or_default()));
                e
            })?;
        }
        if seen.insert(m.id.clone()) {
            measurements.push(m);
        }
    }
    Ok(JournalRead { measurements, cut_off_line })
}

/// An open run: appends measurements to the journal, writes the results at the end.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    journal: std::fs::File,
    header: Results,
    prior: Vec<Measurement>,
    recovery: Option<Recovery>,
}

impl RunWriter {
    /// Appends one measurement to `journal.jsonl` and makes it durable (flush + fsync) before
    /// returning.
    pub fn append(&mut self, m: &Measurement) -> Result<(), RunDirError> {
        let jpath = self.journal_path();
        let mut line = serde_json::to_vec(m).map_err(|e| RunDirError::Io { path: jpath.clone(), source: e.into() })?;
        line.push(b'\n');
        self.journal.write_all(&line).map_err(io(&jpath))?;
        self.journal.flush().map_err(io(&jpath))?;
        self.journal.sync_data().map_err(io(&jpath))
    }

    /// Writes the finished run: `results.json` (give `results` its `finished_at`) and
    /// `results.csv`, each atomically (temp file, fsync, rename).
    pub fn finish(self, results: &Results) -> Result<(), RunDirError> {
        let rpath = self.dir.join(RESULTS_FILE);
        super::write_json(&rpath, results).map_err(io(&rpath))?;
        let cpath = self.dir.join(CSV_FILE);
        super::results_csv::write(results, &cpath).map_err(io(&cpath))
    }

    /// The header `results.json` got at the start, without measurements: the given one, or on
    /// resume the run's own (its provenance, rack and payloads; waivers merged).
    pub fn header(&self) -> &Results {
        &self.header
    }

    /// Measurements a resumed run already holds, in the order they ran.
    pub fn prior(&self) -> &[Measurement] {
        &self.prior
    }

    /// Ids of [`Self::prior`]: measurements a resumed run skips.
    pub fn done_ids(&self) -> HashSet<String> {
        self.prior.iter().map(|m| m.id.clone()).collect()
    }

    /// What a resume found in the directory (`None` for a fresh start).
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the journal is.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }
}

#[cfg(test)]
#[path = "rundir_tests.rs"]
mod tests;
