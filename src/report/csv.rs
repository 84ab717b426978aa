//! `results.csv`: derived from the result model, so it lives there
//! ([`crate::model::results_csv`]); re-exported here for reports that embed it.

pub use crate::model::results_csv::{to_string, write, COLUMNS};
