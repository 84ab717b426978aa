//! Reports derived from the result model: CSV, markdown, JUnit XML and the self-contained HTML
//! report with inline SVG plots.

pub mod csv;
mod engine;
pub mod html;
pub mod junit;
pub mod markdown;
mod plots;
pub mod prediction;
mod topo_svg;
