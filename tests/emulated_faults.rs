//! Faults in the middle of a run on the emulated (2,2,1) rack (root, in CI): an agent stopped
//! (SIGSTOP) for 10 s while its route's flow moves data, and a segment link set down for 5 s
//! under a running flow. In both the run names what failed (the stopped agent; or the route
//! with its hops and what a check of the rack's links found) with the route and its hops,
//! goes on with the route that does not need it, exits 1 listing the skipped measurements,
//! and `run --resume` then measures them, nothing twice.
//!
//! How each fails without its handling: without the heartbeat and probes
//! (`runner::fault`) the stopped agent is named only after the sender's data plane gives up
//! (the payload's stall bound, 7.1 s, plus a probe), past the 8 s heartbeat bound asserted;
//! without the skip-and-go-on the run ends at the fault (exit 3, payloads missing); without
//! the link check no link is named; without `net::write_all_within` the sender under the
//! downed link waited its stall bound twice (named 13.6 s after, past the 10.1 s asserted); without re-installing the routes Linux deleted with the
//! link (`emulate repair`, or the run's own check before it starts) the resume fails on the
//! same route. Under `CI=true` a missing capability fails the tests.
//!
//! Both tests build their own rack under this process's one prefix, so they take turns
//! ([`SERIAL`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linkcal::emulate::topo::Node;
use linkcal::emulate::Plan;
use linkcal::model::Results;
use linkcal::runner::fault::{stall_bound_s, HEARTBEAT_S, PROBE_TIMEOUT_S, STALL_MARGIN_S};
use linkcal::spec::{RackShape, SegmentId};

mod rack_support;

use rack_support::{can_emulate, emulate_up_221, linkcal, set_link, unique_prefix, RackGuard};

/// The route that meets the fault (gpu_p1 -> gpu_d1 over `IB_Cable_D[1]`) and one that
/// shares none of its hosts or segments.
const FAULTY: &str = "prefill_to_decode:1->1";
const STEADY: &str = "prefill_to_decode:0->0";
/// Payloads of each route, bytes (`--sizes 1MiB,2MiB,4MiB`): the fault comes after the
/// faulty route's first one, so the second is running.
const SIZES: [u64; 3] = [1 << 20, 2 << 20, 4 << 20];
/// Line rate of the faulty route's cable, B/s: 10x the stall floor, so a 2 MiB payload takes
/// about 0.2 s to move (a fault lands mid-transfer) and is far from counting as stalled.
const SLOW_BPS: f64 = 10e6;
/// Longest a run here may take, seconds.
const RUN_LIMIT_S: u64 = 90;

/// One rack at a time: both tests use this process's prefix.
static SERIAL: Mutex<()> = Mutex::new(());

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A (2,2,1) rack built for one test, taken down when dropped.
struct Rack {
    prefix: String,
    rack: PathBuf,
    plan: Plan,
    dir: tempfile::TempDir,
    _guard: RackGuard,
}

fn rack_up() -> Rack {
    let prefix = unique_prefix("h12");
    let dir = tempfile::tempdir().unwrap();
    let guard = RackGuard(prefix.clone());
    // The faulty route's cable slowed down so that each of its payloads takes a while to move.
    let rates = dir.path().join("rates.json");
    let slow = serde_json::json!({"up_Bps": SLOW_BPS, "down_Bps": SLOW_BPS});
    std::fs::write(&rates, serde_json::json!({"segments": {"IB_Cable_D[1]": slow}}).to_string()).unwrap();
    let up = emulate_up_221(&prefix, &dir.path().join("rack")).arg("--rates").arg(&rates).output().unwrap();
    assert!(up.status.success(), "emulate up: {}", text(&up.stderr));
    let plan = Plan::new(&prefix, &RackShape::new(2, 2, 1).unwrap()).unwrap();
    Rack { prefix, rack: dir.path().join("rack/rack.json"), plan, dir, _guard: guard }
}

/// `linkcal run` of the two routes over [`SIZES`], into `out` given by `dest` (`--out`,
/// `--resume`).
fn run_cmd(rack: &Path, dest: &str, out: &Path) -> Command {
    let mut c = linkcal();
    c.args(["run", "--quick", "--no-progress", "--contention", "none", "--sizes", "1MiB,2MiB,4MiB", "--time-cap", "0.3"])
        .args(["--paths", &format!("{FAULTY},{STEADY}"), "--rack"])
        .arg(rack)
        .arg(dest)
        .arg(out);
    c
}

/// A run in progress, its stderr going to a file.
struct Running {
    child: Child,
    err: PathBuf,
}

impl Running {
    fn start(rack: &Path, out: &Path) -> Running {
        let err = out.with_extension("stderr");
        let f = std::fs::File::create(&err).unwrap();
        let child = run_cmd(rack, "--out", out).stdout(Stdio::null()).stderr(f).spawn().unwrap();
        Running { child, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Polls until `done` holds, the run ends or `limit` passes; which came first.
    fn poll(&mut self, limit: Duration, mut done: impl FnMut(&Running) -> bool) -> Poll {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return Poll::Done;
            }
            if self.child.try_wait().unwrap().is_some() {
                return if done(self) { Poll::Done } else { Poll::Ended };
            }
            if Instant::now() >= deadline {
                return Poll::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `done` holds; panics (naming `what`) when the run ends first or after
    /// `limit_s`.
    fn until(&mut self, limit_s: u64, what: &str, done: impl FnMut(&Running) -> bool) {
        let p = self.poll(Duration::from_secs(limit_s), done);
        assert!(p == Poll::Done, "{what}: {p:?} first: {}", self.stderr());
    }

    /// Waits (bounded) for the run to end; its exit code.
    fn finish(&mut self) -> Option<i32> {
        let p = self.poll(Duration::from_secs(RUN_LIMIT_S), |_| false);
        assert!(p == Poll::Ended, "the run did not end within {RUN_LIMIT_S} s: {}", self.stderr());
        self.child.wait().unwrap().code()
    }
}

/// What a [`Running::poll`] saw first.
#[derive(Debug, PartialEq)]
enum Poll {
    Done,
    Ended,
    TimedOut,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn journal(out: &Path) -> String {
    std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default()
}

fn results(out: &Path) -> Results {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

fn id(route: &str, bytes: u64) -> String {
    format!("solo/{route}/{bytes}")
}

/// Waits until the faulty route's second payload is moving: its first is in the journal (the
/// next starts only after that line is on disk) and gpu_d1 holds a data connection it did
/// not hold before that line.
fn wait_for_second_payload(run: &mut Running, out: &Path, plan: &Plan) {
    let first = format!("\"id\":\"{}\"", id(FAULTY, SIZES[0]));
    let receiver = Node::DecodeGpu(1);
    // Connections listed before a read of the journal without the line predate the line.
    let mut before = BTreeSet::new();
    run.until(60, "the first measurement of the faulty route", |_| {
        let now = data_connections(plan, receiver);
        let written = journal(out).contains(&first);
        if !written {
            before.extend(now);
        }
        written
    });
    run.until(30, "the second payload's data connection to gpu_d1", |_| !data_connections(plan, receiver).is_subset(&before));
    std::thread::sleep(Duration::from_millis(50));
}

/// What the faulted run must have left: every payload of the steady route measured, the
/// faulty route's first one measured and the rest skipped, each skip in stderr; returns the
/// skipped ids.
fn check_partial(out: &Path, err: &str, host: Option<&str>) -> Vec<String> {
    let r = results(out);
    let measured: Vec<String> = r.measurements.iter().map(|m| m.id.clone()).collect();
    for b in SIZES {
        assert!(measured.contains(&id(STEADY, b)), "{measured:?}: {err}");
    }
    assert!(measured.contains(&id(FAULTY, SIZES[0])), "{measured:?}");
    let skipped: Vec<String> = r.skipped.iter().map(|s| s.id.clone()).collect();
    let want: Vec<String> = SIZES[1..].iter().map(|b| id(FAULTY, *b)).collect();
    assert_eq!(skipped, want, "{err}");
    for s in &r.skipped {
        assert_eq!(s.host.as_deref(), host, "{s:?}");
        assert!(err.contains(&format!("skipped {}", s.id)), "{err}");
    }
    skipped
}

/// `run --resume`: exit 0; every payload of both routes measured once, the skipped ones now.
fn resume_completes(rack: &Path, out: &Path, skipped: &[String]) {
    let before = journal(out);
    let o: Output = run_cmd(rack, "--resume", out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "resume: {}", text(&o.stderr));
    let now = journal(out);
    assert!(now.starts_with(&before), "the journal's first lines changed");
    let added: Vec<String> = now[before.len()..]
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(added, skipped, "the resume measured what was skipped, nothing else");
    let r = results(out);
    let mut ids: Vec<String> = r.measurements.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = [FAULTY, STEADY].iter().flat_map(|r| SIZES.map(|b| id(r, b))).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
}

/// The established TCP connections of `node`'s namespace off its management address (the
/// data plane), as `LOCAL PEER`.
fn data_connections(plan: &Plan, node: Node) -> BTreeSet<String> {
    let mut c = Command::new("ss");
    c.args(["-Htn", "state", "established"]);
    let _ns = linkcal::emulate::netns::in_netns(&mut c, &plan.netns(node)).expect("enter namespace");
    let o = c.output().unwrap();
    assert!(o.status.success(), "ss: {}", text(&o.stderr));
    let mgmt = format!("{}:", plan.mgmt_addr(node));
    text(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && !f[2].starts_with(&mgmt)).then(|| format!("{} {}", f[2], f[3]))
        })
        .collect()
}

fn signal(pids: &[i32], sig: nix::sys::signal::Signal) {
    for p in pids {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig).unwrap();
    }
}

#[test]
fn an_agent_stopped_for_10_s_mid_window_is_named_and_resume_measures_its_route() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_emulate("the agent SIGSTOP test") {
        return;
    }
    let t0 = Instant::now();
    let rack = rack_up();
    let pids = linkcal::emulate::netns::pids(&rack.plan.netns(Node::DecodeGpu(1)));
    assert!(!pids.is_empty(), "no agent in gpu_d1's namespace");
    let out = rack.dir.path().join("run");
    let mut run = Running::start(&rack.rack, &out);
    wait_for_second_payload(&mut run, &out, &rack.plan);
    signal(&pids, nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    let named = "agent gpu_d1 is not answering";
    run.until(10, "the stopped agent named within 10 s", |r| r.stderr().contains(named));
    let took = stopped.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    signal(&pids, nix::sys::signal::Signal::SIGCONT);
    let code = run.finish();
    let err = run.stderr();
    assert_eq!(code, Some(1), "{err}");
    let line = err.lines().find(|l| l.contains(named)).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("{FAULTY} (gpu_p1->gpu_d1) over [GPU_P[1]_PCI up")), "{line}");
    assert!(line.contains("IB_Cable_D[1] down"), "{line}");
    assert!(!err.contains("agent gpu_p1 is"), "the live sender is blamed: {err}");
    // A quiet control connection is checked every HEARTBEAT_S, a probe gives up after
    // PROBE_TIMEOUT_S; a stalled data plane is noticed within the payload's stall bound.
    let bound = HEARTBEAT_S + PROBE_TIMEOUT_S + STALL_MARGIN_S;
    assert!(took < bound, "named {took:.2} s after SIGSTOP, bound {bound} s: {err}");
    eprintln!("{line}");
    let skipped = check_partial(&out, &err, Some("gpu_d1"));
    resume_completes(&rack.rack, &out, &skipped);
    eprintln!(
        "agent SIGSTOP 10 s: named {took:.2} s after the stop (bound {bound} s); {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_link_down_mid_flow_is_named_and_resume_completes_after_it_is_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_emulate("the link-down test") {
        return;
    }
    let t0 = Instant::now();
    let rack = rack_up();
    let cable: SegmentId = "IB_Cable_D[1]".parse().unwrap();
    let out = rack.dir.path().join("run");
    let mut run = Running::start(&rack.rack, &out);
    wait_for_second_payload(&mut run, &out, &rack.plan);
    set_link(&rack.plan, cable, "down");
    let down = Instant::now();
    let named = format!("route {FAULTY}");
    // Up again after 5 s (or once the run named the route, if sooner).
    let _ = run.poll(Duration::from_secs(5), |r| r.stderr().contains(&named));
    set_link(&rack.plan, cable, "up");
    run.until(RUN_LIMIT_S, "the route named", |r| r.stderr().contains(&named));
    let took = down.elapsed().as_secs_f64();
    let code = run.finish();
    let err = run.stderr();
    assert_eq!(code, Some(1), "{err}");
    let line = err.lines().find(|l| l.contains(&named)).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("{FAULTY} (gpu_p1->gpu_d1) over [GPU_P[1]_PCI up")), "{line}");
    // The check of the links names the flapped one: down, or (up again) its routes missing.
    let said = [format!("link of segment {cable} is down"), format!("routes missing (via segment {cable})")];
    assert!(said.iter().any(|s| line.contains(s.as_str())), "no link named: {line}");
    // The sender gives up once a blocking wait (here sending) makes no progress for the 2 MiB
    // payload's stall bound; then the coordinator probes the agents (a heartbeat, a probe).
    // Before `net::write_all_within` a send waited the bound twice (13.6 s here).
    let bound = stall_bound_s(SIZES[1], 1, 30.0) + HEARTBEAT_S + PROBE_TIMEOUT_S;
    assert!(took < bound, "named {took:.2} s after the link went down, bound {bound:.1} s: {err}");
    eprintln!("{line}");
    let skipped = check_partial(&out, &err, None);
    // The link is up, its routes are back (re-installed by `emulate repair` if not yet).
    let status = || linkcal().args(["emulate", "status", "--prefix", &rack.prefix, "--rack"]).arg(&rack.rack).output().unwrap();
    let before = status();
    eprintln!("emulate status after the run: exit {:?}: {}", before.status.code(), text(&before.stdout).trim());
    if before.status.code() != Some(0) {
        let o = linkcal().args(["emulate", "repair", "--prefix", &rack.prefix, "--rack"]).arg(&rack.rack).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "repair: {}{}", text(&o.stdout), text(&o.stderr));
    }
    let o = status();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    resume_completes(&rack.rack, &out, &skipped);
    eprintln!(
        "link down 5 s mid-flow: named {took:.2} s after the link went down (bound {bound:.1} s); {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
}
