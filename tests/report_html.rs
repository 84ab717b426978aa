//! The HTML report: self-contained (no scripts, no external resources), verdicts at the top,
//! one SVG per plot, the topology drawing with figures; and rendered in headless Chromium
//! (screenshot non-trivial, no console errors, the DOM has every plot).

#[path = "verdict_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use support::{truth_rules, Synth};

/// Writes a report for a rack whose GPU_D[1]_PCI down is 10% slow, judged against the truth.
fn make_report(dir: &Path) -> PathBuf {
    let s = Synth::default_rack();
    let (base, _) = s.write(&dir.join("base"));
    let (res, cal) = s.scaled("GPU_D[1]_PCI down", 0.9).with_seed(4).write(&dir.join("run"));
    let rules = dir.join("rules.toml");
    truth_rules(&s, &rules);
    let out = dir.join("report.html");
    let junit = dir.join("junit.xml");
    let o = Command::cargo_bin("linkcal")
        .unwrap()
        .arg("report")
        .arg("--results")
        .arg(res.parent().unwrap())
        .arg("--calibration")
        .arg(&cal)
        .arg("--rules")
        .arg(&rules)
        .arg("--baseline")
        .arg(base.parent().unwrap())
        .arg("--out")
        .arg(&out)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn report_is_self_contained_with_verdicts_first() {
    let dir = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(make_report(dir.path())).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for banned in ["<script", "src=\"http", "href=\"http", "<link", "@import"] {
        assert!(!html.contains(banned), "report must be self-contained: found {banned}");
    }
    let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("'{s}' missing"));
    assert!(pos("<h2 id=\"acceptance\">Acceptance</h2>") < pos("<h2 id=\"goodput\">Goodput vs payload size</h2>"));
    assert!(pos("FAIL</div>") < pos("<h2 id=\"goodput\">Goodput vs payload size</h2>"));
    assert!(html.contains("GPU_D[1]_PCI down</td><td class=\"num\">85.50 MB/s"));
    assert!(pos("<h2 id=\"regression\">Regression against a baseline</h2>") > 0);
    // Goodput plots for the three spec paths, capacity, contention and topology: six SVGs.
    assert_eq!(html.matches("<svg").count(), 6, "{}", html.matches("<svg").count());
    for t in [
        "Path 1: prefill_inter_rank",
        "Path 2: prefill_to_decode",
        "Path 3: decode_inter_rank",
        "Capacity per segment direction",
        "Contended vs solo goodput",
    ] {
        assert!(html.contains(t), "{t}");
    }
    // The topology edge of the failed segment is red and carries its figure.
    assert!(html.contains("↑– ↓85.50 MB/s"), "GPU_D[1] edge label missing");
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(xml.contains("<testsuite name=\"acceptance: synthetic truth\"") && xml.contains("<testsuite name=\"compare: "));
}

/// Runs `cmd` with stdout and stderr going to files (a pipe would fill up and stall it),
/// killing it after `limit`; returns (exit code, stdout, stderr).
fn run_with_timeout(cmd: &mut Proc, limit: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("chromium starts");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (status.and_then(|s| s.code()), read(&o), read(&e))
}

fn chromium() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/chromium");
    if p.exists() {
        return Some(p);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but /usr/bin/chromium is missing: scripts/setup installs it");
    eprintln!("SKIP: /usr/bin/chromium not installed (scripts/setup installs it)");
    None
}

fn chromium_cmd(bin: &Path, profile: &Path) -> Proc {
    let mut c = Proc::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = make_report(dir.path());
    std::fs::copy(&report, PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.html")).unwrap();
    let url = format!("file://{}", report.display());
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = chromium_cmd(&bin, profile.path());
    cmd.arg(format!("--screenshot={}", shot.display())).arg("--window-size=1400,2600").arg(&url);
    let (code, _, err) = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert_eq!(code, Some(0), "chromium failed: {err}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{err}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1400, 2600));
    // A blank page compresses to a few kB; plots, tables and text take far more.
    assert!(png.len() > 100_000, "screenshot only {} bytes: the page looks empty", png.len());
    let console: Vec<&str> =
        err.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("ERR_FILE")).collect();
    assert!(console.is_empty(), "console errors: {console:?}");

    // The DOM as Chromium parsed it: every plot is an SVG element with drawn content (one
    // circle per route and size, 4 routes x 3 sizes, plus one legend marker per route).
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = chromium_cmd(&bin, profile.path());
    cmd.arg("--dump-dom").arg(&url);
    let (code, dom, err) = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert_eq!(code, Some(0), "chromium --dump-dom failed: {err}");
    assert_eq!(dom.matches("<svg").count(), 6);
    let count = |t: &str| dom.matches(t).count();
    let counts = (count("<circle"), count("<rect"), count("<polyline"), count("<text"));
    assert!(
        counts.0 == 4 * 3 + 4 && counts.1 > 40 && counts.2 > 3 && counts.3 > 100,
        "(circle, rect, polyline, text) = {counts:?}"
    );
    assert!(dom.contains("Topology with measured figures"));
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
}

#[test]
fn report_of_the_example_emulated_run() {
    // results/example-2-2-1: a real emulated (2,2,1) run (spec paths, isolation routes,
    // contention sets). Without a calibration the report draws lower bounds from the solo runs.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("example.html");
    let o = Command::cargo_bin("linkcal")
        .unwrap()
        .args(["report", "--results", "results/example-2-2-1", "--rules", "rules/emulated-default.toml", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("default emulated rack: PASS</div>"));
    for t in [
        "Path 1: prefill_inter_rank",
        "Path 2: prefill_to_decode",
        "Path 3: decode_inter_rank",
        "prefill_gpu_to_host (isolation route, outside the spec)",
    ] {
        assert!(html.contains(t), "{t}");
    }
    // Lower bounds come from each route's largest payload: a few KiB pass a tbf shaper faster
    // than its rate (its burst), so no bound may exceed the rack's fastest line rate, 126 MB/s.
    let bounds: Vec<f64> = html.split('≥').skip(1).filter_map(|s| s.split(" MB/s").next()?.trim().parse().ok()).collect();
    assert!(bounds.len() > 10, "{bounds:?}");
    assert!(bounds.iter().all(|b| *b <= 126.0), "{bounds:?}");
}
