use super::*;
use crate::model::results::{FlowResult, MeasurementKind, RackSummary, StopReason, Summary};
use crate::spec::{PathRef, RackShape, RouteKind};

fn header(shape: RackShape) -> Results {
    Results::header(crate::model::Provenance::now(vec!["h".into()]), RackSummary::bare(shape, true))
}

fn shape() -> RackShape {
    RackShape::new(2, 2, 1).unwrap()
}

/// A solo measurement of `bytes` at `goodput` B/s.
fn m(bytes: u64, goodput: f64) -> Measurement {
    let s = Summary {
        p50: goodput,
        mean: goodput,
        ci95_low: None,
        ci95_high: None,
        min: goodput,
        max: goodput,
        p99: None,
        stddev: None,
    };
    let t = bytes as f64 / goodput;
    let path = PathRef { kind: RouteKind::PrefillToDecode, src: 0, dst: 0 };
    Measurement {
        id: format!("solo/{path}/{bytes}"),
        kind: MeasurementKind::Solo,
        set: None,
        transport: "host_tcp".into(),
        kv_block_bytes: None,
        kv_block_tokens: None,
        started_at: "t".into(),
        duration_s: t,
        flows: vec![FlowResult {
            path,
            segments: vec!["GPU_P[0]_PCI up".parse().unwrap()],
            payload_bytes: bytes,
            goodput_Bps: s,
            transfer_time_s: Summary { p50: t, mean: t, min: t, max: t, ..s },
            samples: 1,
            warmup: 0,
            stop: StopReason::TimeCap,
            transfer_times_s: vec![t],
        }],
        aggregate: None,
    }
}

fn ids(r: &Results) -> Vec<String> {
    r.measurements.iter().map(|m| m.id.clone()).collect()
}

#[test]
fn a_finished_run_loads_complete_and_writes_csv() {
    let d = tempfile::tempdir().unwrap();
    let mut w = ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap();
    let ms = [m(1 << 10, 1e8), m(1 << 20, 2e8)];
    for x in &ms {
        w.append(x).unwrap();
    }
    let mut fin = header(shape());
    fin.measurements = ms.to_vec();
    fin.provenance.finished_at = Some("end".into());
    w.finish(&fin).unwrap();
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!(ids(&r), ids(&fin));
    assert_eq!(rec, Recovery { in_results: 2, from_journal: 0, finished: true, cut_off_line: None, skipped: None });
    assert!(!rec.is_partial() && rec.note().is_none());
    // One CSV row per flow after the header line; no temp files left.
    let csv = std::fs::read_to_string(d.path().join(CSV_FILE)).unwrap();
    assert_eq!(csv.lines().count(), 1 + ms.len());
    let names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // The same run read through its results.json path.
    let (r2, rec2) = ResultsDir::load(&d.path().join(RESULTS_FILE)).unwrap();
    assert_eq!((ids(&r2), rec2), (ids(&r), rec));
}

#[test]
fn a_killed_run_is_a_partial_run_from_its_journal() {
    let d = tempfile::tempdir().unwrap();
    let mut w = ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap();
    let ms = [m(1 << 10, 1e8), m(1 << 20, 2e8), m(1 << 24, 3e8)];
    for x in &ms {
        w.append(x).unwrap();
    }
    drop(w); // killed: no finish
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!(ids(&r), ms.iter().map(|x| x.id.clone()).collect::<Vec<_>>());
    assert_eq!((rec.in_results, rec.from_journal, rec.finished), (0, ms.len(), false));
    let note = rec.note().unwrap();
    assert!(note.contains("partial run") && note.contains(&format!("{} measurements recovered", ms.len())), "{note}");
    assert!(!d.path().join(CSV_FILE).exists());
}

#[test]
fn a_cut_off_last_line_is_ignored_and_a_bad_line_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    drop(ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap());
    let whole = serde_json::to_string(&m(1 << 10, 1e8)).unwrap();
    let next = serde_json::to_string(&m(1 << 20, 1e8)).unwrap();
    let j = d.path().join(JOURNAL_FILE);
    std::fs::write(&j, format!("{whole}\n{}", &next[..next.len() / 2])).unwrap();
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!(r.measurements.len(), 1);
    assert_eq!(rec.cut_off_line, Some(2));
    assert!(rec.note().unwrap().contains("line 2 was cut off"));
    // A complete line that is not a measurement names the file and line.
    std::fs::write(&j, format!("{whole}\n{{\"id\": \"x\"}}\n")).unwrap();
    let e = ResultsDir::load(d.path()).unwrap_err().to_string();
    assert!(e.contains(JOURNAL_FILE) && e.contains("line 2"), "{e}");
}

#[test]
fn merge_keeps_results_first_and_adds_journal_only_ids() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (m(1, 1e8), m(2, 1e8), m(3, 1e8));
    let mut res = header(shape());
    // results.json holds a and b; the journal holds a different copy of b, then c, then c again.
    let mut b_journal = b.clone();
    b_journal.duration_s = 99.0;
    res.measurements = vec![a.clone(), b.clone()];
    res.provenance.finished_at = Some("end".into());
    crate::model::write_json(&d.path().join(RESULTS_FILE), &res).unwrap();
    let line = |x: &Measurement| serde_json::to_string(x).unwrap() + "\n";
    std::fs::write(d.path().join(JOURNAL_FILE), line(&b_journal) + &line(&c) + &line(&c)).unwrap();
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!(ids(&r), vec![a.id.clone(), b.id.clone(), c.id.clone()]);
    assert_eq!(r.measurements[1].duration_s, b.duration_s, "results.json's copy wins");
    assert_eq!((rec.in_results, rec.from_journal, rec.finished), (2, 1, true));
    assert!(rec.is_partial());
    // A file not named results.json is read alone.
    let other = d.path().join("baseline.json");
    std::fs::copy(d.path().join(RESULTS_FILE), &other).unwrap();
    let (r, rec) = ResultsDir::load(&other).unwrap();
    assert_eq!((r.measurements.len(), rec.from_journal), (2, 0));
}

#[test]
fn a_run_in_the_way_is_refused_resumed_or_forced() {
    let d = tempfile::tempdir().unwrap();
    let mut w = ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap();
    let (a, b) = (m(1, 1e8), m(2, 1e8));
    w.append(&a).unwrap();
    drop(w);
    // Fresh: refused, naming the directory and both ways on.
    let e = ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(msg.contains(&d.path().display().to_string()) && msg.contains("--resume") && msg.contains("--force"), "{msg}");
    assert!(msg.contains("1 measurements"), "{msg}");
    // A cut-off tail is dropped on resume; the complete line is kept and appended after.
    let j = d.path().join(JOURNAL_FILE);
    let mut text = std::fs::read_to_string(&j).unwrap();
    text.push_str("{\"id\": \"half");
    std::fs::write(&j, &text).unwrap();
    let mut w = ResultsDir::create(d.path(), header(shape()), Start::Resume).unwrap();
    assert_eq!(w.done_ids(), HashSet::from([a.id.clone()]));
    assert_eq!(w.recovery().unwrap().cut_off_line, Some(2));
    w.append(&b).unwrap();
    drop(w);
    assert_eq!(std::fs::read_to_string(&j).unwrap().lines().count(), 2);
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!(ids(&r), vec![a.id.clone(), b.id.clone()]);
    assert!(rec.cut_off_line.is_none() && rec.is_partial());
    // Resume on another rack shape is refused.
    let e = ResultsDir::create(d.path(), header(RackShape::new(1, 1, 1).unwrap()), Start::Resume).unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("rack.shape"), "{e}");
    // Force starts over.
    drop(ResultsDir::create(d.path(), header(shape()), Start::Force).unwrap());
    let (r, _) = ResultsDir::load(d.path()).unwrap();
    assert!(r.measurements.is_empty());
    // An empty run (header only) is no obstacle to a fresh start.
    drop(ResultsDir::create(d.path(), header(shape()), Start::Fresh).unwrap());
}

#[test]
fn missing_results_say_how_to_recover() {
    let d = tempfile::tempdir().unwrap();
    let e = ResultsDir::load(d.path()).unwrap_err().to_string();
    assert!(e.contains(RESULTS_FILE) && e.contains("not found"), "{e}");
    // A journal without results.json (an older linkcal's killed run): resume writes the header.
    let a = m(1, 1e8);
    std::fs::write(d.path().join(JOURNAL_FILE), serde_json::to_string(&a).unwrap() + "\n").unwrap();
    let e = ResultsDir::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("1 measurements") && e.contains("--resume"), "{e}");
    let w = ResultsDir::create(d.path(), header(shape()), Start::Resume).unwrap();
    assert_eq!(w.prior().len(), 1);
    drop(w);
    let (r, rec) = ResultsDir::load(d.path()).unwrap();
    assert_eq!((ids(&r), rec.finished), (vec![a.id], false));
}

#[test]
fn a_failed_atomic_write_leaves_no_temp_file_and_the_old_file_whole() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join(RESULTS_FILE);
    crate::model::write_atomic(&target, b"old\n").unwrap();
    crate::model::write_atomic(&target, b"new\n").unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
    // The rename cannot replace a non-empty directory: the write fails and cleans up.
    let blocked = d.path().join("blocked.csv");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    assert!(crate::model::write_atomic(&blocked, b"x").is_err());
    assert!(!d.path().join("blocked.csv.tmp").exists());
    assert!(blocked.join("inside").is_dir());
}

#[test]
fn a_journal_line_is_held_to_the_results_file_number_checks() {
    // A measurement whose transfer time is negative: results.json refuses it by field path, and
    // so must the journal (it used to be merged, and calibrate divided by it).
    let mut bad = m(1 << 16, 1e8);
    bad.flows[0].transfer_time_s.mean = -1.0;
    let line = serde_json::to_string(&bad).unwrap() + "\n";
    let text = serde_json::to_string(&header(shape())).unwrap();
    let e = ResultsDir::parse(Path::new("results.json"), &text, Some((Path::new("journal.jsonl"), &line))).unwrap_err();
    let field = e.field.unwrap_or_default();
    assert!(e.file.ends_with("journal.jsonl") && field.starts_with("line 1: "), "{field}: {}", e.message);
    assert!(field.ends_with("flows[0].transfer_time_s.mean"), "{field}");
    let good = serde_json::to_string(&m(1 << 16, 1e8)).unwrap() + "\n";
    let (r, rec) = ResultsDir::parse(Path::new("results.json"), &text, Some((Path::new("journal.jsonl"), &good))).unwrap();
    assert_eq!((r.measurements.len(), rec.from_journal), (1, 1));
}
