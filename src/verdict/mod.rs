//! Verdicts operators and CI act on: acceptance of a rack against rules (floors, fractions of
//! nominal, deviation from a fleet baseline; warn before fail; waivers), and regression between
//! two runs judged against the measurements' own noise. Works on files only.

pub mod accept;
mod baseline;
pub mod bootstrap;
pub mod compare;
mod inferred;
mod item;
pub mod rules;

pub use accept::{accept, AcceptInputs, AcceptReport, Baseline, CheckResult, ItemKind, ItemVerdict, ACCEPT_SCHEMA};
pub use compare::{compare, Change, CompareOptions, CompareReport, CompareRow, COMPARE_SCHEMA};
pub use rules::{Rules, Style, RULES_SCHEMA};

use serde::{Deserialize, Serialize};

/// Outcome of one acceptance item (or of a whole acceptance run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every threshold is met.
    Pass,
    /// Above every fail threshold but below a warn threshold.
    Warn,
    /// Below a fail threshold.
    Fail,
    /// A rule or the results waive it, with a reason.
    Waived,
    /// No value to judge: not measured, or only a lower bound below the threshold (not identified).
    NotMeasured,
}

impl Outcome {
    /// Severity for combining outcomes: fail > warn > not_measured > pass > waived.
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Waived => 0,
            Outcome::Pass => 1,
            Outcome::NotMeasured => 2,
            Outcome::Warn => 3,
            Outcome::Fail => 4,
        }
    }

    /// Display order in tables: what needs action first, then what passed, then what was not judged.
    pub fn display_rank(self) -> u8 {
        match self {
            Outcome::Fail => 0,
            Outcome::Warn => 1,
            Outcome::Pass => 2,
            Outcome::Waived => 3,
            Outcome::NotMeasured => 4,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
            Outcome::Waived => "waived",
            Outcome::NotMeasured => "not_measured",
        }
    }

    /// The worse of two outcomes.
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
