//! A killed run (results.json's header + a journal, as `linkcal run` leaves it when killed) is a
//! valid partial run for calibrate, accept, report and compare: each counts the same
//! measurements and says the run is partial; accept's verdict over it is INCOMPLETE (exit 1).

use std::path::Path;

use assert_cmd::Command;

use linkcal::model::{Results, ResultsDir, Start};
use linkcal::sim::synth::{random_truth, solo_experiments, synthesize, SynthConfig};
use linkcal::spec::{HopOptions, RackShape, RouteSet};

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

/// A synthetic finished (2,2,1) run: every solo route at two sizes.
fn finished_run() -> Results {
    let shape = RackShape::new(2, 2, 1).unwrap();
    let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
    let cfg = SynthConfig {
        shape: shape.clone(),
        truth: random_truth(&shape, 5, 1e8, 1e9),
        hops: HopOptions::default(),
        sizes: vec![1 << 16, 16 << 20],
        alpha_s: 3e-5,
        noise: 0.005,
        samples: 9,
        seed: 5,
    };
    synthesize(&cfg, &solo_experiments(&set)).unwrap()
}

/// Writes `dir` as a run killed after `kept` measurements: the header results.json (no
/// measurements, no end time) and those measurements in journal.jsonl, through the same
/// writer `linkcal run` uses.
fn killed_run(dir: &Path, full: &Results, kept: usize) {
    let mut header = full.clone();
    header.measurements.clear();
    header.provenance.finished_at = None;
    let mut w = ResultsDir::create(dir, header, Start::Fresh).unwrap();
    for m in &full.measurements[..kept] {
        w.append(m).unwrap();
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stderr note every reader prints for the killed run: kept measurements, all from the journal.
fn says_partial(what: &str, o: &std::process::Output, kept: usize) {
    let err = stderr(o);
    assert!(err.contains("partial run"), "{what}: {err}");
    assert!(err.contains(&format!("{kept} measurements recovered from journal.jsonl; {kept} in all")), "{what}: {err}");
}

#[test]
fn every_reader_counts_the_same_measurements_of_a_killed_run() {
    let d = tempfile::tempdir().unwrap();
    let full = finished_run();
    let kept = full.measurements.len() / 2;
    assert!(kept >= 2 && kept < full.measurements.len());
    let killed = d.path().join("killed");
    killed_run(&killed, &full, kept);
    let complete = d.path().join("complete");
    std::fs::create_dir_all(&complete).unwrap();
    linkcal::model::write_json(&complete.join("results.json"), &full).unwrap();
    let rules = d.path().join("r.toml");
    std::fs::write(&rules, "schema = \"linkcal.rules/1\"\n[[rule]]\npaths = [\"*\"]\nfloor = \"1 MB/s\"\n").unwrap();

    let cal = d.path().join("cal.json");
    let o = linkcal().args(["calibrate", "--results"]).arg(&killed).arg("--out").arg(&cal).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    says_partial("calibrate", &o, kept);

    let accept =
        |results: &Path| linkcal().args(["accept", "--rules"]).arg(&rules).arg("--results").arg(results).output().unwrap();
    let o = accept(&killed);
    says_partial("accept", &o, kept);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}");
    assert!(md.contains("**INCOMPLETE**") && md.contains("Partial run"), "{md}");
    // The same rules over the finished run pass.
    let o = accept(&complete);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{md}");
    assert!(md.contains("**PASS**") && !stderr(&o).contains("partial run"), "{md}");

    let html = d.path().join("r.html");
    let o = linkcal().args(["report", "--results"]).arg(&killed).arg("--out").arg(&html).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    says_partial("report", &o, kept);
    assert!(std::fs::read_to_string(&html).unwrap().contains("Partial run"));

    let json = d.path().join("c.json");
    let o = linkcal().arg("compare").arg(&complete).arg(&killed).arg("--json").arg(&json).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    says_partial("compare", &o, kept);
    // One row per solo measurement; those the killed run did not reach are missing.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let missing = rows.iter().filter(|r| r["status"] == "missing").count();
    assert_eq!((rows.len() - missing, missing), (kept, full.measurements.len() - kept), "{}", v["counts"]);
}

#[test]
fn a_cut_off_journal_line_is_ignored_and_said() {
    let d = tempfile::tempdir().unwrap();
    let full = finished_run();
    let killed = d.path().join("killed");
    killed_run(&killed, &full, 3);
    let next = serde_json::to_string(&full.measurements[3]).unwrap();
    let mut journal = std::fs::OpenOptions::new().append(true).open(killed.join("journal.jsonl")).unwrap();
    std::io::Write::write_all(&mut journal, &next.as_bytes()[..next.len() / 2]).unwrap();
    let o = linkcal().args(["calibrate", "--results"]).arg(&killed).arg("--out").arg(d.path().join("c.json")).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    says_partial("calibrate", &o, 3);
    assert!(stderr(&o).contains("line 4 was cut off"), "{}", stderr(&o));
}

/// A finished run without the measurements of one route: `drop` removes them, and with
/// `skip` lists them in `results.skipped` as `linkcal run` does when an agent died.
fn finished_without_route(dir: &Path, full: &Results, skip: bool) -> (String, usize) {
    let route = full.measurements[0].id.rsplit_once('/').unwrap().0.to_string();
    let mut r = full.clone();
    let (gone, kept): (Vec<_>, Vec<_>) = r.measurements.into_iter().partition(|m| m.id.starts_with(&format!("{route}/")));
    r.measurements = kept;
    if skip {
        r.skipped = gone
            .iter()
            .map(|m| linkcal::model::results::Skipped {
                id: m.id.clone(),
                host: Some("gpu_d1".into()),
                reason: "agent gpu_d1 died (connection reset)".into(),
            })
            .collect();
    }
    std::fs::create_dir_all(dir).unwrap();
    linkcal::model::write_json(&dir.join("results.json"), &r).unwrap();
    (route, gone.len())
}

#[test]
fn a_run_that_skipped_measurements_is_partial_for_every_reader_and_never_passes() {
    let d = tempfile::tempdir().unwrap();
    let full = finished_run();
    let skipped = d.path().join("skipped");
    let (route, gone) = finished_without_route(&skipped, &full, true);
    assert!(gone >= 1 && route.starts_with("solo/"), "{route}");
    let complete = d.path().join("complete");
    std::fs::create_dir_all(&complete).unwrap();
    linkcal::model::write_json(&complete.join("results.json"), &full).unwrap();
    let rules = d.path().join("r.toml");
    std::fs::write(&rules, "schema = \"linkcal.rules/1\"\n[[rule]]\npaths = [\"*\"]\nfloor = \"1 MB/s\"\n").unwrap();
    let said = |what: &str, o: &std::process::Output| {
        let err = stderr(o);
        assert!(err.contains("partial run") && err.contains(&format!("{gone} measurements skipped")), "{what}: {err}");
        assert!(err.contains("gpu_d1 died"), "{what}: {err}");
    };

    let o = linkcal().args(["accept", "--rules"]).arg(&rules).arg("--results").arg(&skipped).output().unwrap();
    said("accept", &o);
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}");
    assert!(md.contains("**INCOMPLETE**") && !md.contains("**PASS**"), "{md}");

    let html = d.path().join("r.html");
    let o = linkcal().args(["report", "--results"]).arg(&skipped).arg("--out").arg(&html).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    said("report", &o);
    assert!(std::fs::read_to_string(&html).unwrap().contains("Partial run"));

    let o = linkcal().arg("compare").arg(&complete).arg(&skipped).output().unwrap();
    said("compare", &o);

    let o = linkcal().args(["calibrate", "--results"]).arg(&skipped).arg("--out").arg(d.path().join("c.json")).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    said("calibrate", &o);
}

#[test]
fn accept_over_a_finished_run_missing_a_route_the_rules_ask_for_is_incomplete() {
    let d = tempfile::tempdir().unwrap();
    let full = finished_run();
    let run = d.path().join("short");
    let (route, _) = finished_without_route(&run, &full, false);
    let rules = d.path().join("r.toml");
    std::fs::write(&rules, "schema = \"linkcal.rules/1\"\n[[rule]]\npaths = [\"*\"]\nfloor = \"1 MB/s\"\n").unwrap();
    let o = linkcal().args(["accept", "--rules"]).arg(&rules).arg("--results").arg(&run).output().unwrap();
    let md = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{md}");
    assert!(md.contains("**INCOMPLETE**") && md.contains("not in the results"), "{md}");
    assert!(md.contains(route.trim_start_matches("solo/")), "the unmeasured route is listed: {md}");
}
