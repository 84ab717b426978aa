//! The shipped rules: every file loads and fits racks of several shapes; a healthy Gen5 / NDR /
//! 100 GbE rack passes them together while a GPU link trained at Gen4 fails; the emulated-rack
//! rules pass the default emulated rack's expected goodputs and fail a 10% slower cable.

#[path = "verdict_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use linkcal::spec::{Dir, RackShape};
use linkcal::verdict::{accept, AcceptInputs, ItemKind, Outcome, Rules};
use support::{hop, Synth};

fn shipped() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("rules")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_rules_file_loads_for_every_shape() {
    let files = shipped();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "pcie-gen4-x16.toml",
        "pcie-gen5-x16.toml",
        "ib-hdr.toml",
        "ib-ndr.toml",
        "eth-100g.toml",
        "eth-200g.toml",
        "eth-400g.toml",
        "emulated-default.toml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from rules/");
    }
    for f in &files {
        let r = Rules::load(f).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.lines().take_while(|l| l.starts_with('#')).count() >= 3,
            "{}: explain and cite the figures in comments",
            f.display()
        );
        for (p, d, k) in [(1, 1, 1), (2, 2, 1), (8, 8, 4)] {
            r.check_shape(&RackShape::new(p, d, k).unwrap()).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A synthetic rack whose every segment direction runs at `rate(kind)`.
fn rack_with(shape: RackShape, rate: impl Fn(linkcal::spec::SegmentKind, Dir) -> f64) -> Synth {
    let mut s = Synth::default_rack();
    s.shape = shape;
    s.rates.clear();
    for seg in s.shape.segments() {
        for dir in [Dir::Up, Dir::Down] {
            s.rates.insert(linkcal::spec::Hop { id: seg, dir }, rate(seg.kind, dir));
        }
    }
    s
}

fn judge(files: &[&str], s: &Synth) -> linkcal::verdict::AcceptReport {
    let rules = Rules::merge(files.iter().map(|f| Rules::load(Path::new(f)).unwrap()).collect()).unwrap();
    let (c, r) = (s.calibration(), s.results());
    let p = Path::new("x.json");
    accept(&rules, AcceptInputs { calibration: Some((p, &c)), results: Some((p, &r)), baseline: None }).unwrap()
}

#[test]
fn hardware_rules_pass_a_healthy_rack_and_fail_a_gen4_slot() {
    use linkcal::spec::SegmentKind::*;
    let files = ["rules/pcie-gen5-x16.toml", "rules/ib-ndr.toml", "rules/eth-100g.toml"];
    let healthy = |k, _| match k {
        IbCableP | IbCableD => 48.5e9,
        EthCableD => 11.8e9,
        _ => 53e9,
    };
    let s = rack_with(RackShape::new(2, 2, 1).unwrap(), healthy);
    let rep = judge(&files, &s);
    assert_eq!(
        rep.outcome,
        Outcome::Pass,
        "{:?}",
        rep.items.iter().filter(|i| i.outcome != Outcome::Pass && i.outcome != Outcome::NotMeasured).collect::<Vec<_>>()
    );
    assert!(rep.title.contains("PCIe Gen5 x16 + NDR InfiniBand + 100 GbE"));
    let eth = rep.items.iter().find(|i| i.item == "Eth_Cable_D[0] up").unwrap();
    assert_eq!((eth.outcome, eth.nominal_Bps), (Outcome::Pass, Some(12.5e9)));
    // GPU_D[1] trained at Gen4: ~26 GB/s, and the bottleneck of Path 2 into server 1.
    let mut slow = s.clone();
    slow.rates.insert(hop("GPU_D[1]_PCI down"), 26e9);
    let rep = judge(&files, &slow);
    let failed: Vec<&str> =
        rep.items.iter().filter(|i| i.kind == ItemKind::Segment && i.outcome == Outcome::Fail).map(|i| i.item.as_str()).collect();
    assert_eq!(failed, vec!["GPU_D[1]_PCI down"]);
}

#[test]
fn emulated_rules_pass_the_default_rack_and_fail_a_ten_percent_slower_cable() {
    let files = ["rules/emulated-default.toml"];
    let mut s = Synth::default_rack();
    s.shape = RackShape::new(2, 2, 1).unwrap();
    s.rates = support::emulated_default_truth(&s.shape).into_iter().collect();
    let rep = judge(&files, &s);
    assert_eq!(
        rep.outcome,
        Outcome::Pass,
        "{:?}",
        rep.items.iter().filter(|i| matches!(i.outcome, Outcome::Fail | Outcome::Warn)).collect::<Vec<_>>()
    );
    assert!(rep.counts.pass >= 10);
    let slow = s.scaled("IB_Cable_D[1] down", 0.9);
    let rep = judge(&files, &slow);
    let failed: Vec<&str> =
        rep.items.iter().filter(|i| i.kind == ItemKind::Segment && i.outcome == Outcome::Fail).map(|i| i.item.as_str()).collect();
    assert_eq!(failed, vec!["IB_Cable_D[1] down"]);
}
