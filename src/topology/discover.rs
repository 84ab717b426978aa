//! hwloc -> PCI tree: this machine (hwloc, loaded at run time, exports its topology with every
//! I/O object kept as XML) or an XML export (checked first, then read in Rust by
//! [`super::hwlocxml`]: no hwloc needed) become [`PciNode`]s. Everything after this step
//! works on the plain tree, not on hwloc.

use std::path::Path;

use super::model::{PciNode, Source, SourceKind};
use super::TopologyError;
use super::{hwloc, hwlocxml, xmlcheck};

/// Builds the PCI tree of this machine: hwloc's export of it, read as any export is.
pub fn live() -> Result<(Vec<PciNode>, Source), TopologyError> {
    let h = hwloc::hwloc()?;
    let xml = h.live_xml().map_err(|e| TopologyError::Hwloc(format!("live discovery failed: {e}")))?;
    let parsed = hwlocxml::parse(Path::new("(hwloc's export of this machine)"), &xml)?;
    let source = Source {
        kind: SourceKind::Live,
        file: None,
        reader: Some("hwloc, live discovery".into()),
        merged_with: None,
        hostname: parsed.hostname,
    };
    Ok((parsed.tree, source))
}

/// Builds the PCI tree of an hwloc XML export (v1 or v2 format). The file is checked first
/// (a missing, empty, non-XML, truncated or foreign file gets a clear error naming it), then
/// read in Rust: no hwloc is loaded, and a malformed object is an error naming its line.
pub fn from_xml(path: &Path) -> Result<(Vec<PciNode>, Source), TopologyError> {
    let text = std::fs::read(path).map_err(|e| TopologyError::input(path, format!("cannot read: {e}")))?;
    xmlcheck::check(path, &text)?;
    let text =
        String::from_utf8(text).map_err(|_| TopologyError::input(path, "is not UTF-8 text: an hwloc XML export is UTF-8"))?;
    let parsed = hwlocxml::parse(path, &text)?;
    let source = Source {
        kind: SourceKind::Xml,
        file: Some(path.display().to_string()),
        reader: Some("hwloc XML export (<topology>)".into()),
        merged_with: None,
        hostname: parsed.hostname,
    };
    Ok((parsed.tree, source))
}

/// Exports an XML file in hwloc's v1 format (for tests of the v1 reader and for old tools),
/// with the run-time loaded hwloc reading the file in this process: trusted files only.
pub fn export_v1(input: &Path, output: &Path) -> Result<(), TopologyError> {
    let text = std::fs::read_to_string(input).map_err(|e| TopologyError::input(input, format!("cannot read: {e}")))?;
    xmlcheck::check(input, text.as_bytes())?;
    let v1 = hwloc::hwloc()?.export_v1(&text).map_err(|e| TopologyError::input(input, format!("hwloc refused the XML: {e}")))?;
    std::fs::write(output, v1).map_err(|e| TopologyError::Hwloc(format!("writing {} failed: {e}", output.display())))
}
