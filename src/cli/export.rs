//! `linkcal export`: a calibration in a simulator's or planner's format.

use std::path::PathBuf;

use anyhow::Context;

use crate::calibrate::load_calibration;
use crate::export::{export, Format};

/// Flags of `linkcal export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Calibration file (`linkcal calibrate --out`).
    #[arg(long)]
    pub calibration: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `linkcal export`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let cal = load_calibration(&a.calibration)?;
    let text = export(&cal, a.format).map_err(|m| crate::error::InputError::file(&a.calibration, m))?;
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(0)
}
