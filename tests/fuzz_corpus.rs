//! The fuzz targets on stable (CI has no nightly): every seed of `fuzz/corpus/TARGET/` (and the
//! repository's own example files for that reader) and a few thousand inputs mutated from them
//! with the crate's SplitMix64 go through the same entry points `fuzz/` fuzzes
//! (`linkcal::readers`). Each must return (no panic) within a bound; each target accepts at
//! least one of its seeds, so the entry points are shown to reach past the first check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use linkcal::readers;
use linkcal::stats::rng::SplitMix64;

/// Mutated inputs per target.
const MUTATIONS: usize = 400;
/// Longest one input may take (debug build, shared CI machine): far above any reader's real
/// cost, far below a hang.
const BOUND: Duration = Duration::from_secs(5);

/// Tokens a mutation splices in: the values that broke readers before (huge, negative,
/// non-finite, empty, wrong type).
const TOKENS: &[&str] = &[
    "1e308",
    "-1",
    "0",
    "-0.0",
    "NaN",
    "Infinity",
    "18446744073709551615",
    "9223372036854775808",
    "4294967296",
    "1e-320",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"GPU_P[99]_PCI\"",
    "[0]",
    "<a>",
    "</system>",
    "&amp;",
    "\n",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The seeds of `target`: its corpus directory, then the repository's files of that kind
/// (`../shared/topo-fixtures/` where the checkout has it).
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let r = root();
    let mut dirs = vec![r.join("fuzz/corpus").join(target)];
    match target {
        "rules" => dirs.push(r.join("rules")),
        "topology" => {
            dirs.push(r.join("topo/fixtures"));
            dirs.push(r.join("../shared/topo-fixtures"));
        }
        _ => {}
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.extension().is_none_or(|e| e != "md")) {
            let bytes = std::fs::read(&f).unwrap();
            out.push((f, bytes));
        }
    }
    assert!(!out.is_empty(), "no seeds for target {target} under fuzz/corpus/{target}");
    out
}

/// One mutation of `seed`: a byte flip, a splice of a token at a random place or over a
/// number, a cut, or a repeated slice.
fn mutate(seed: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let at = if b.is_empty() { 0 } else { rng.below(b.len()) };
        match rng.below(5) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            2 => {
                // Over the number that starts at or after `at`.
                let Some(s) = b[at..].iter().position(|c| c.is_ascii_digit()).map(|p| p + at) else { continue };
                let e = b[s..].iter().position(|c| !(c.is_ascii_digit() || *c == b'.' || *c == b'e')).map_or(b.len(), |p| p + s);
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(s..e, t.iter().copied());
            }
            3 => b.truncate(at),
            _ if !b.is_empty() => {
                let len = 1 + rng.below((b.len() - at).min(64));
                let piece = b[at..at + len].to_vec();
                b.splice(at..at, piece);
            }
            _ => {}
        }
    }
    b
}

/// Runs `input` through `entry`, failing with the input saved when it panics or runs long.
fn run_one(target: &str, what: &str, entry: fn(&[u8]) -> bool, input: &[u8]) -> bool {
    let t0 = Instant::now();
    let got = std::panic::catch_unwind(|| entry(input));
    let took = t0.elapsed();
    if got.is_err() || took > BOUND {
        let dir = std::env::temp_dir().join("linkcal-fuzz-corpus-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{}", what.replace(['/', ' '], "_")));
        std::fs::write(&file, input).unwrap();
        panic!(
            "{target}: {what} {} after {took:?}; input saved as {}",
            if got.is_err() { "panicked" } else { "ran long" },
            file.display()
        );
    }
    got.unwrap()
}

fn replay(target: &str) {
    let entry = readers::TARGETS.iter().find(|(n, _)| *n == target).expect("a target of readers::TARGETS").1;
    let seeds = seeds(target);
    let mut accepted = Vec::new();
    for (path, bytes) in &seeds {
        if run_one(target, &path.display().to_string(), entry, bytes) {
            accepted.push(path.clone());
        }
    }
    assert!(!accepted.is_empty(), "{target}: no seed is accepted, so the entry point stops at its first check");
    let mut rng = SplitMix64::new(0x006c_696e_6b63_616c ^ target.len() as u64);
    for n in 0..MUTATIONS {
        let (path, seed) = &seeds[rng.below(seeds.len())];
        let input = mutate(seed, &mut rng);
        let name = Path::new(path).file_name().unwrap().to_string_lossy().to_string();
        run_one(target, &format!("mutation {n} of {name}"), entry, &input);
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    for (name, _) in readers::TARGETS {
        assert!(root().join("fuzz/corpus").join(name).is_dir(), "fuzz/corpus/{name} is missing");
        assert!(root().join("fuzz/fuzz_targets").join(format!("{name}.rs")).is_file(), "fuzz/fuzz_targets/{name}.rs is missing");
    }
}

#[test]
fn control() {
    replay("control");
}

#[test]
fn rack() {
    replay("rack");
}

#[test]
fn rates() {
    replay("rates");
}

#[test]
fn results() {
    replay("results");
}

#[test]
fn calibration() {
    replay("calibration");
}

#[test]
fn flows() {
    replay("flows");
}

#[test]
fn rules() {
    replay("rules");
}

#[test]
fn topology() {
    replay("topology");
}
