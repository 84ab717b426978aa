//! `journal.jsonl`: one line per finished measurement, flushed and fsynced before the next
//! measurement starts, so a crash never loses a finished one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::results::Measurement;

/// An open journal.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

impl Journal {
    /// Creates (truncates) the journal at `path`.
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
        Ok(Journal { path: path.to_path_buf(), file })
    }

    /// Appends one measurement and makes it durable.
    pub fn append(&mut self, m: &Measurement) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(m).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()?;
        self.file.sync_data()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a journal back (every complete line).
pub fn read(path: &Path) -> Result<Vec<Measurement>, crate::error::InputError> {
    let text = crate::error::read_input(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| crate::error::InputError::field(path, format!("line {}", n + 1), e.to_string()))
        })
        .collect()
}
