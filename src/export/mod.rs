//! Exporters: a calibration written in the formats simulators and planners load. Each output
//! starts with a comment saying what the format cannot carry.
#![allow(non_snake_case)]

mod planners;
mod simgrid;

pub use planners::{aiconfigurator, astra_sim, vidur_send_recv};
pub use simgrid::{endpoints, simgrid_platform};

use crate::model::calibration::PathModel;
use crate::model::Calibration;
use crate::spec::{Hop, RouteKind};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SimGrid platform XML v4.1: one link per segment direction, routes as link lists.
    Simgrid,
    /// ASTRA-sim analytical network YAML (the prefill server's PCIe switch as one dimension).
    AstraSim,
    /// The `node:` block of an AIConfigurator systems YAML.
    Aiconfigurator,
    /// A Vidur-style `send_recv.csv`, one row per payload size.
    Vidur,
}

/// Writes `cal` in `format`.
pub fn export(cal: &Calibration, format: Format) -> Result<String, String> {
    match format {
        Format::Simgrid => simgrid_platform(cal),
        Format::AstraSim => astra_sim(cal),
        Format::Aiconfigurator => aiconfigurator(cal),
        Format::Vidur => vidur_send_recv(cal),
    }
}

/// The capacity a planner should use for `hop`: identified value, else the lower bound.
fn usable(cal: &Calibration, hop: &Hop) -> Option<f64> {
    crate::sim::capacities(cal).get(hop).copied()
}

/// Path models of one route kind.
fn models(cal: &Calibration, kind: RouteKind) -> impl Iterator<Item = &PathModel> {
    cal.paths.iter().filter(move |p| p.path.kind == kind)
}

/// The smallest peak goodput over measured routes of `kind` (the per-flow rate a planner can count on), B/s.
fn min_peak(cal: &Calibration, kind: RouteKind) -> Option<f64> {
    models(cal, kind).filter_map(|p| p.peak_Bps).reduce(f64::min)
}

/// The median fixed cost (alpha of the smallest-size piece) over routes of `kind`, seconds.
fn typical_alpha(cal: &Calibration, kind: RouteKind) -> Option<f64> {
    let mut a: Vec<f64> = models(cal, kind).filter_map(|p| p.pieces.first().map(|x| x.alpha_s)).collect();
    a.sort_by(f64::total_cmp);
    (!a.is_empty()).then(|| a[a.len() / 2])
}

#[cfg(test)]
mod tests;
