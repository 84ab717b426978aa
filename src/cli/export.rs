//! `linkcal export`: a calibration in a simulator's or planner's format.

use std::path::PathBuf;

use anyhow::Context;

use crate::calibrate::load_calibration;
use crate::export::{export, Format, Options, VidurNode};

/// Flags of `linkcal export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Calibration file (`linkcal calibrate --out`).
    #[arg(long)]
    pub calibration: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output file; a directory for aiconfigurator and vidur (several files).
    #[arg(long)]
    pub out: PathBuf,
    /// aiconfigurator: an AIConfigurator systems/*.yaml supplying data_dir, gpu and misc.
    #[arg(long)]
    pub aic_base: Option<PathBuf>,
    /// vidur: the node type whose send/recv rows to write.
    #[arg(long, value_enum)]
    pub vidur_node: Option<VidurNode>,
}

/// Runs `linkcal export`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let cal = load_calibration(&a.calibration)?;
    let aic_base = match &a.aic_base {
        Some(p) => {
            let text = crate::error::read_input(p)?;
            Some((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), text))
        }
        None => None,
    };
    let opt = Options { aic_base, vidur_node: a.vidur_node };
    let files = export(&cal, a.format, &opt).with_context(|| format!("cannot export {}", a.calibration.display()))?;
    if a.format.multi_file() {
        std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
        for f in &files {
            let p = a.out.join(&f.name);
            std::fs::write(&p, &f.text).with_context(|| format!("writing {}", p.display()))?;
            println!("wrote {}", p.display());
        }
    } else {
        let text = files.first().map(|f| f.text.as_str()).unwrap_or_default();
        std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
        println!("wrote {}", a.out.display());
    }
    Ok(0)
}
