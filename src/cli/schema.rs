//! `linkcal schema`: write or check the JSON Schemas in `schemas/`.

use std::path::PathBuf;

use anyhow::Context;

/// Flags of `linkcal schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of the schema files.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Check that the files match the model instead of writing them (exit 1 on drift).
    #[arg(long)]
    pub check: bool,
}

/// Runs `linkcal schema`.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let mut drift = Vec::new();
    for (name, schema) in crate::model::schemas() {
        let path = a.dir.join(name);
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        if a.check {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != text {
                drift.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !drift.is_empty() {
        // A finding, as `--help` says (exit 1), not a failure to run (exit 3).
        eprintln!("linkcal schema: files out of date: {}; run `linkcal schema` and commit them", drift.join(", "));
        return Ok(1);
    }
    Ok(0)
}
