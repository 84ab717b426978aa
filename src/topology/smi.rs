//! `nvidia-smi topo -m` text -> the discovery model. The matrix gives, for every GPU and NIC
//! pair, NV# (# bonded NVLinks) or a PCIe class (PIX, PXB, PHB, NODE, SYS; SOC in old
//! drivers = SYS), the GPUs' NUMA affinity, and (since R470) `NICn` columns named in a
//! `NIC Legend`; older outputs name the NIC columns directly (`mlx5_0`). It gives no PCI bus
//! ids, link speeds, vendor ids or switches: the PCI tree is rebuilt from the classes (see
//! [`tree`]), and every node of it except the devices is synthetic.

use std::collections::BTreeMap;
use std::path::Path;

use super::locality::LocalityClass;
use super::{Loaded, TopologyError};

pub mod tree;

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// The device itself (diagonal).
    Own,
    /// Joined by this many bonded NVLinks (PCIe class not shown).
    Nv(u32),
    /// A PCIe locality class.
    Pcie(LocalityClass),
}

/// A parsed matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Column labels in order (`GPU0`, `NIC0` or `mlx5_0`).
    pub labels: Vec<String>,
    /// Device names: the label for GPUs, the legend's name for `NICn`.
    pub names: Vec<String>,
    /// `cells[i][j]` from row i (`None` where the row is missing, e.g. NIC rows of old outputs).
    pub cells: Vec<Vec<Option<Cell>>>,
    /// Line of each row (0 when missing).
    pub lines: Vec<u32>,
    /// NUMA affinity of each GPU row when one node (`None` for `N/A`, ranges or NICs).
    pub numa: Vec<Option<u32>>,
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Own => f.write_str("X"),
            Cell::Nv(k) => write!(f, "NV{k}"),
            Cell::Pcie(c) => write!(f, "{c}"),
        }
    }
}

impl Matrix {
    /// True for GPU columns.
    pub fn is_gpu(&self, i: usize) -> bool {
        gpu_label(&self.labels[i])
    }

    /// The cell of a pair, from either row.
    pub fn cell(&self, i: usize, j: usize) -> Option<Cell> {
        self.cells[i][j].or(self.cells[j][i])
    }
}

fn gpu_label(l: &str) -> bool {
    l.strip_prefix("GPU").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn nic_label(l: &str) -> bool {
    l.strip_prefix("NIC").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Reads a saved `nvidia-smi topo -m` output.
pub fn read(path: &Path) -> Result<Loaded, TopologyError> {
    let raw = std::fs::read(path).map_err(|e| TopologyError::input(path, format!("cannot read: {e}")))?;
    let text = String::from_utf8(raw)
        .map_err(|_| TopologyError::input(path, "is not UTF-8 text, so not `nvidia-smi topo -m` output"))?;
    let m = parse(path, &text)?;
    tree::loaded(path, &m)
}

/// Removes ANSI escape sequences (nvidia-smi underlines the header on a terminal).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the matrix, its legend and its NIC legend.
pub fn parse(path: &Path, text: &str) -> Result<Matrix, TopologyError> {
    let text = strip_ansi(text);
    let lines: Vec<&str> = text.lines().collect();
    let bad = |line: usize, m: String| TopologyError::input(path, format!("line {line}: {m}"));
    let Some(h) = lines.iter().position(|l| l.split_whitespace().any(|t| t == "GPU0")) else {
        return Err(TopologyError::input(path, "has no matrix header (a line with GPU0 ...): not `nvidia-smi topo -m` output"));
    };
    let head: Vec<&str> = lines[h].split_whitespace().collect();
    let labels: Vec<String> = head.iter().take_while(|t| !matches!(**t, "CPU" | "NUMA" | "GPU")).map(|t| t.to_string()).collect();
    let tail = &lines[h][lines[h].find("CPU").unwrap_or(lines[h].len())..];
    let has_numa = tail.contains("NUMA Affinity");
    let n = labels.len();
    let mut m = Matrix {
        names: labels.clone(),
        cells: vec![vec![None; n]; n],
        lines: vec![0; n],
        numa: vec![None; n],
        labels: labels.clone(),
    };
    let mut i = h + 1;
    while i < lines.len() && !lines[i].trim().is_empty() && !lines[i].trim_start().starts_with("Legend") {
        row(&mut m, lines[i], i + 1, has_numa).map_err(|e| bad(i + 1, e))?;
        i += 1;
    }
    for (k, l) in labels.iter().enumerate().filter(|(_, l)| gpu_label(l)) {
        if m.lines[k] == 0 {
            return Err(TopologyError::input(path, format!("the matrix (header at line {}) has no row for {l}", h + 1)));
        }
    }
    symmetric(&m).map_err(|e| TopologyError::input(path, e))?;
    legends(path, &mut m, &lines[i..], i)?;
    Ok(m)
}

fn parse_cell(t: &str) -> Option<Cell> {
    Some(match t {
        "X" => Cell::Own,
        "PIX" => Cell::Pcie(LocalityClass::PIX),
        "PXB" => Cell::Pcie(LocalityClass::PXB),
        "PHB" => Cell::Pcie(LocalityClass::PHB),
        "NODE" => Cell::Pcie(LocalityClass::NODE),
        "SYS" | "SOC" => Cell::Pcie(LocalityClass::SYS),
        nv => Cell::Nv(nv.strip_prefix("NV")?.parse().ok().filter(|&k: &u32| k > 0)?),
    })
}

/// One row: label, one cell per column, then (GPU rows) CPU affinity, NUMA affinity, ...
fn row(m: &mut Matrix, line: &str, no: usize, has_numa: bool) -> Result<(), String> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    let n = m.labels.len();
    let Some(r) = m.labels.iter().position(|l| l == toks[0]) else {
        return Err(format!("row '{}' is not a column of the header ({})", toks[0], m.labels.join(" ")));
    };
    if m.lines[r] != 0 {
        return Err(format!("a second row for {} (first at line {})", toks[0], m.lines[r]));
    }
    if toks.len() < n + 1 {
        return Err(format!("row {} has {} cells but the header has {n} columns (a ragged row)", toks[0], toks.len() - 1));
    }
    for (c, t) in toks[1..=n].iter().enumerate() {
        let cell = parse_cell(t).ok_or_else(|| format!("{} / {}: unknown cell '{t}'", toks[0], m.labels[c]))?;
        if (cell == Cell::Own) != (c == r) {
            return Err(format!("{} / {}: '{t}' where the diagonal X is expected only on the diagonal", toks[0], m.labels[c]));
        }
        if matches!(cell, Cell::Nv(_)) && !(gpu_label(toks[0]) && gpu_label(&m.labels[c])) {
            return Err(format!("{} / {}: NVLink ('{t}') between devices that are not both GPUs", toks[0], m.labels[c]));
        }
        m.cells[r][c] = Some(cell);
    }
    let rest = &toks[n + 1..];
    if gpu_label(toks[0]) && has_numa && rest.len() >= 2 {
        m.numa[r] = rest[1].parse().ok();
    }
    m.lines[r] = no as u32;
    Ok(())
}

fn symmetric(m: &Matrix) -> Result<(), String> {
    let n = m.labels.len();
    for i in 0..n {
        for j in i + 1..n {
            if let (Some(a), Some(b)) = (m.cells[i][j], m.cells[j][i]) {
                if a != b {
                    return Err(format!(
                        "line {}: {} / {} is {a} but line {} has {} / {} as {b}",
                        m.lines[i], m.labels[i], m.labels[j], m.lines[j], m.labels[j], m.labels[i]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Legend entries nvidia-smi prints (`SOC` in drivers before R384).
const LEGEND: [&str; 8] = ["X", "SYS", "NODE", "PHB", "PXB", "PIX", "NV#", "SOC"];

/// Checks the `Legend:` entries and reads the `NIC Legend:` names.
fn legends(path: &Path, m: &mut Matrix, rest: &[&str], offset: usize) -> Result<(), TopologyError> {
    let bad = |k: usize, msg: String| TopologyError::input(path, format!("line {}: {msg}", offset + k + 1));
    let mut section = "";
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for (k, line) in rest.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() && section == "NIC Legend:" && !named.is_empty() {
            break;
        }
        if t.is_empty() {
            continue;
        }
        if t == "Legend:" || t == "NIC Legend:" {
            section = t;
            continue;
        }
        match section {
            "Legend:" => {
                let Some((key, _)) = t.split_once('=') else {
                    // Translated or annotated legends carry extra lines: only `KEY = meaning` lines are entries.
                    continue;
                };
                let key = key.trim();
                if !LEGEND.contains(&key) {
                    return Err(bad(k, format!("unknown legend entry '{key}' (known: {})", LEGEND.join(", "))));
                }
            }
            "NIC Legend:" => {
                let Some((label, name)) = t.split_once(':') else {
                    return Err(bad(k, format!("'{t}' is not a NIC legend entry (NICn: name)")));
                };
                let (label, name) = (label.trim(), name.trim());
                if !nic_label(label) || name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(bad(k, format!("'{t}' is not a NIC legend entry (NICn: name)")));
                }
                if !m.labels.iter().any(|l| l == label) {
                    return Err(bad(k, format!("the NIC legend names {label}, which the matrix has no column for")));
                }
                named.insert(label.to_string(), name.to_string());
            }
            _ => break,
        }
    }
    for (i, l) in m.labels.iter().enumerate().filter(|(_, l)| nic_label(l)) {
        match named.get(l) {
            Some(name) => m.names[i] = name.clone(),
            None => {
                return Err(TopologyError::input(
                    path,
                    format!("the matrix has a {l} column but no NIC Legend entry names it: the NIC cannot be identified"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGEND: &str = "\nLegend:\n\n  X    = Self\n  PIX  = Connection traversing at most a single PCIe bridge\n";

    #[test]
    fn old_format_names_nics_in_the_header_and_soc_is_sys() {
        let text = format!(
            "\tGPU0\tGPU1\tmlx5_0\tCPU Affinity\nGPU0\t X \tSOC\tPIX\t0-7\nGPU1\tSOC\t X \tSOC\t8-15\nmlx5_0\tPIX\tSOC\t X \t\n{LEGEND}"
        );
        let m = parse(Path::new("t.txt"), &text).unwrap();
        assert_eq!(m.names, vec!["GPU0", "GPU1", "mlx5_0"]);
        assert_eq!(m.cell(0, 1), Some(Cell::Pcie(LocalityClass::SYS)));
        let l = tree::loaded(Path::new("t.txt"), &m).unwrap();
        assert_eq!(l.inv.nics[0].name, "mlx5_0");
    }

    #[test]
    fn a_matrix_no_tree_can_produce_is_bad_input() {
        // GPU0-GPU1 PIX and GPU1-NIC0 PIX put all three behind one switch, so GPU0-NIC0 cannot be SYS.
        let text = format!(
            "\tGPU0\tGPU1\tNIC0\nGPU0\t X \tPIX\tSYS\nGPU1\tPIX\t X \tPIX\nNIC0\tSYS\tPIX\t X \n{LEGEND}\nNIC Legend:\n\n  NIC0: mlx5_0\n"
        );
        let m = parse(Path::new("t.txt"), &text).unwrap();
        let e = tree::loaded(Path::new("t.txt"), &m).unwrap_err().to_string();
        assert!(e.contains("t.txt") && e.contains("line 2") && e.contains("GPU0 / NIC0") && e.contains("inconsistent"), "{e}");
    }
}
