//! One entry point per reader of outside bytes, for fuzzing (`fuzz/`) and for the corpus replay
//! test (`tests/fuzz_corpus.rs`): each takes the bytes a file or a socket could hold, runs the
//! reader linkcal runs on them (and the first consumer of what it read), and returns whether
//! they were accepted. None may panic, hang or allocate beyond the input's bounds, whatever
//! the bytes; bad input is an `Err` naming the field, as the CLI prints it.
//!
//! The files are named [`FUZZ_FILE`] in errors. Every topology reader is entered: the checks
//! of an XML file ([`crate::topology::xmlcheck`]), the hwloc XML reader (Rust,
//! [`crate::topology::hwlocxml`]; hwloc itself only exports the live machine), and the NCCL
//! and `nvidia-smi` readers.

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use crate::control::{self, limits::AgentLimits, Frame, Reply, Request, MAX_REPLY, MAX_REQUEST};
use crate::model::{Calibration, RackFile, ResultsDir, RACK_SCHEMA};
use crate::spec::RackShape;
use crate::spec::RouteSet;

/// The path readers name in their errors for fuzzed bytes.
pub const FUZZ_FILE: &str = "fuzz-input";

/// Splits `results.json` from `journal.jsonl` in the [`results`] input (a byte that UTF-8
/// text never holds).
pub const RESULTS_JOURNAL_SEPARATOR: u8 = 0xFF;

/// An entry point: the bytes in; true when the reader accepted them.
pub type Entry = fn(&[u8]) -> bool;

/// Every target: its name (the `fuzz/` target and corpus directory) and its entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("control", control_frames),
    ("rack", rack),
    ("rates", rates),
    ("results", results),
    ("calibration", calibration),
    ("flows", flows),
    ("rules", rules),
    ("topology", topology),
];

fn path() -> &'static Path {
    Path::new(FUZZ_FILE)
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Control-plane frames as an agent reads them from a socket: each frame (4-byte length, JSON
/// body) decoded as a request and checked against the default [`AgentLimits`] (flows, windows,
/// connect targets), then as a reply. True when some frame decoded as a request.
pub fn control_frames(data: &[u8]) -> bool {
    let limits = AgentLimits::default();
    let mut cur = Cursor::new(data);
    let mut any = false;
    for _ in 0..64 {
        let Ok(frame) = control::read_frame(&mut cur, MAX_REQUEST) else { break };
        let body = match &frame {
            Frame::Body(b) => b.clone(),
            Frame::TooLarge(_) => break,
        };
        if let Ok(req) = control::decode_request(frame) {
            any = true;
            match req {
                Request::Prepare { flow } => drop(limits.check_flow(&flow)),
                Request::Connect { flow, endpoint } => {
                    let _ = limits.check_flow(&flow);
                    let _ = crate::transport::net::endpoint_addr(&endpoint);
                }
                Request::Arm { windows } => windows.iter().for_each(|w| drop(limits.check_window(w))),
                _ => {}
            }
        }
        if body.len() <= MAX_REPLY {
            let _ = serde_json::from_slice::<Reply>(&body);
        }
    }
    any
}

/// A rack file (`linkcal run --rack`): schema, numbers, shape, then the routes of its shape.
pub fn rack(data: &[u8]) -> bool {
    let Some(t) = text(data) else { return false };
    let Ok(r) = crate::model::parse::<RackFile>(path(), t, RACK_SCHEMA) else { return false };
    let _ = r.shape.segments();
    RouteSet::build(&r.shape, None, Default::default(), true).is_ok()
}

/// A rates file (`emulate up --rates`) for a shape the first byte picks (PP_prefill 1-4,
/// PP_decode 1-4, 1-2 NICs).
pub fn rates(data: &[u8]) -> bool {
    let Some((&b, rest)) = data.split_first() else { return false };
    let Ok(shape) = RackShape::new(1 + (b & 3) as usize, 1 + ((b >> 2) & 3) as usize, 1 + ((b >> 4) & 1) as usize) else {
        return false;
    };
    let Some(t) = text(rest) else { return false };
    crate::emulate::rates::Rates::parse(&shape, Some((path(), t)), None).is_ok()
}

/// A run: `results.json`, then (after [`RESULTS_JOURNAL_SEPARATOR`], optional) `journal.jsonl`,
/// merged by [`ResultsDir`]; what loads is checked as `calibrate` checks it and calibrated.
pub fn results(data: &[u8]) -> bool {
    let (r, j) = match data.iter().position(|b| *b == RESULTS_JOURNAL_SEPARATOR) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let (Some(r), j) = (text(r), j.map(text)) else { return false };
    let journal = match j {
        Some(None) => return false,
        Some(Some(t)) => Some((Path::new("fuzz-journal.jsonl"), t)),
        None => None,
    };
    let Ok((res, _)) = ResultsDir::parse(path(), r, journal) else { return false };
    if crate::calibrate::check_results(path(), &res).is_err() {
        return false;
    }
    let inp = crate::calibrate::Inputs { results: vec![(path().to_path_buf(), res)], ..Default::default() };
    crate::calibrate::calibrate(&inp).is_ok()
}

/// A calibration as `predict`, `sim` and `export` read it, then the simulator's capacities.
pub fn calibration(data: &[u8]) -> bool {
    let Some(t) = text(data) else { return false };
    let Ok(cal) = crate::predict::parse_calibration(path(), t) else { return false };
    let _ = crate::sim::capacities(&cal);
    true
}

/// The calibration of the repository's example run (`results/example-2-2-1`), that flow files
/// are read against.
pub fn example_calibration() -> &'static Calibration {
    static CAL: OnceLock<Calibration> = OnceLock::new();
    CAL.get_or_init(|| {
        let text = include_str!("../results/example-2-2-1/results.json");
        let (res, _) = ResultsDir::parse(Path::new("results/example-2-2-1/results.json"), text, None).expect("example loads");
        let inp = crate::calibrate::Inputs { results: vec![("results/example-2-2-1".into(), res)], ..Default::default() };
        crate::calibrate::calibrate(&inp).expect("example calibrates")
    })
}

/// A flow file (`linkcal sim --flows`) read against [`example_calibration`], then simulated.
pub fn flows(data: &[u8]) -> bool {
    let Some(t) = text(data) else { return false };
    let cal = example_calibration();
    let Ok(flows) = crate::sim::parse_flows(path(), t, cal, false) else { return false };
    let out = crate::sim::simulate(&flows, &crate::sim::capacities(cal));
    crate::sim::makespan(&out).is_finite()
}

/// A rules file (`linkcal accept --rules`), then checked against a (2,2,1) rack.
pub fn rules(data: &[u8]) -> bool {
    let Some(t) = text(data) else { return false };
    let Ok(r) = crate::verdict::rules::Rules::parse(path(), t) else { return false };
    let shape = RackShape::new(2, 2, 1).expect("a valid shape");
    r.check_shape(&shape).is_ok()
}

/// A topology file: an XML file (an hwloc export read to its PCI tree, an NCCL/RCCL `<system>`
/// read to an inventory), else `nvidia-smi topo -m` text; then the report.
pub fn topology(data: &[u8]) -> bool {
    use crate::topology::model::{Source, SourceKind};
    use crate::topology::{hwlocxml, nccl, report, smi, xmlcheck, Inventory, Loaded};
    let p = path();
    let source = |kind| Source { kind, file: None, reader: None, merged_with: None, hostname: None };
    let loaded = match xmlcheck::root(p, data) {
        Ok(root) if root == "system" => {
            let Some(t) = text(data) else { return false };
            let Ok(parsed) = nccl::parse(p, t) else { return false };
            match nccl::links::inventory(p, parsed) {
                Ok((inv, notes)) => Loaded { inv, source: source(SourceKind::Nccl), notes, disagreements: Vec::new() },
                Err(_) => return false,
            }
        }
        Ok(_) => {
            let (Ok(()), Some(t)) = (xmlcheck::check(p, data), text(data)) else { return false };
            let Ok(parsed) = hwlocxml::parse(p, t) else { return false };
            let inv = Inventory::from_tree(parsed.tree);
            Loaded { inv, source: source(SourceKind::Xml), notes: Vec::new(), disagreements: Vec::new() }
        }
        Err(_) => {
            let Some(t) = text(data) else { return false };
            let Ok(m) = smi::parse(p, t) else { return false };
            match smi::tree::loaded(p, &m) {
                Ok(l) => l,
                Err(_) => return false,
            }
        }
    };
    report(loaded, None).is_ok()
}
