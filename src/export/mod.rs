//! Exporters: a calibration written in the formats simulators and planners load. Each output
//! says, in a comment its consumer tolerates (or a sidecar file where none is), what it drops.
//! One [`Exporter`] per format (one file each), chosen by [`Format::exporter`]; failures are
//! [`ExportError`]s.
#![allow(non_snake_case)]

mod aiconfigurator;
mod astra;
mod simgrid;
mod vidur;

pub use aiconfigurator::{aiconfigurator, yaml_float, Aiconfigurator};
pub use astra::{astra_sim, AstraSim, GIB};
pub use simgrid::{endpoints, routes, simgrid_platform, Simgrid, SimgridRoute};
pub use vidur::{model_time, vidur_send_recv, Vidur, VidurNode, SWEEP_SIZES};

use crate::model::calibration::PathModel;
use crate::model::Calibration;
use crate::spec::{Dir, Hop, RouteKind, SegmentId, SegmentKind};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SimGrid platform XML v4.1: one link per segment direction, one per route, routes both ways.
    Simgrid,
    /// ASTRA-sim analytical network YAML, congestion-unaware backend (the prefill PCIe switch).
    AstraSim,
    /// Two complete AIConfigurator systems YAMLs (prefill server, decode server); needs --aic-base.
    Aiconfigurator,
    /// Vidur `send_recv.csv` for one node type (--vidur-node) with a provenance sidecar.
    Vidur,
}

impl Format {
    /// True when the format writes several files (then `--out` is a directory).
    pub fn multi_file(self) -> bool {
        matches!(self, Format::Aiconfigurator | Format::Vidur)
    }

    /// The format's exporter.
    pub fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Simgrid => &Simgrid,
            Format::AstraSim => &AstraSim,
            Format::Aiconfigurator => &Aiconfigurator,
            Format::Vidur => &Vidur,
        }
    }
}

/// One export format.
pub trait Exporter {
    /// The files it writes for `cal`.
    fn files(&self, cal: &Calibration, opt: &Options) -> Result<Vec<ExportFile>, ExportError>;
}

/// Why a calibration cannot be exported; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The calibration lacks a value the format needs.
    #[error("the calibration has no value for {what}: measure it (linkcal run) and calibrate again")]
    Missing {
        /// What is missing.
        what: String,
    },
    /// The format cannot express this rack.
    #[error("{format} cannot express this rack: {why}")]
    Unsupported {
        /// The format.
        format: &'static str,
        /// Why, and what the rack lacks.
        why: String,
    },
    /// The format needs an option that was not given.
    #[error("{format} needs {flag}: {why}")]
    NeedsOption {
        /// The format.
        format: &'static str,
        /// The flag to give.
        flag: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The calibration's shape yields no route set.
    #[error("the calibration's rack shape: {0}")]
    Shape(#[from] crate::spec::SpecError),
}

impl crate::error::Classified for ExportError {
    /// Every export failure is about its input (the calibration or a flag): exit 2.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

/// Format-specific inputs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// AIConfigurator: the base systems YAML (file name, text) supplying everything but `node:`.
    pub aic_base: Option<(String, String)>,
    /// Vidur: which node type's rows to write.
    pub vidur_node: Option<VidurNode>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportFile {
    /// File name (for single-file formats, ignored: the output is `--out`).
    pub name: String,
    /// Contents.
    pub text: String,
}

/// Writes `cal` in `format`.
pub fn export(cal: &Calibration, format: Format, opt: &Options) -> Result<Vec<ExportFile>, ExportError> {
    format.exporter().files(cal, opt)
}

/// The capacity a planner should use for `hop`: identified value, else the lower bound
/// (raised to its series group's capacity).
fn usable(cal: &Calibration, hop: &Hop) -> Option<f64> {
    crate::sim::capacities(cal).get(hop).copied()
}

fn need(v: Option<f64>, what: &str) -> Result<f64, ExportError> {
    v.ok_or_else(|| ExportError::Missing { what: what.to_string() })
}

/// The smallest usable capacity over both directions of every segment of `kind`, B/s.
fn min_over(cal: &Calibration, kind: SegmentKind) -> Option<f64> {
    (0..cal.shape.count(kind))
        .flat_map(|i| [Dir::Up, Dir::Down].map(|dir| Hop { id: SegmentId::new(kind, i), dir }))
        .filter_map(|h| usable(cal, &h))
        .reduce(f64::min)
}

/// Path models of one route kind.
fn models(cal: &Calibration, kind: RouteKind) -> impl Iterator<Item = &PathModel> {
    cal.paths.iter().filter(move |p| p.path.kind == kind)
}

/// The smallest sustained rate over measured routes of `kind` (the per-flow rate a planner
/// can count on at large payloads), B/s.
fn min_capacity(cal: &Calibration, kind: RouteKind) -> Option<f64> {
    models(cal, kind).filter_map(|p| p.capacity_Bps).reduce(f64::min)
}

/// The median fixed cost (alpha) over routes of `kind`, seconds.
fn typical_alpha(cal: &Calibration, kind: RouteKind) -> Option<f64> {
    let mut a: Vec<f64> = models(cal, kind).filter_map(|p| p.alpha_s).collect();
    a.sort_by(f64::total_cmp);
    (!a.is_empty()).then(|| a[a.len() / 2])
}

#[cfg(test)]
mod tests;
