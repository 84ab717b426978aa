//! Faults during `linkcal run`, on agents on loopback (no root): a receiving agent killed
//! before or during the run, or stopped (SIGSTOP) mid-run. The run names the agent that is
//! gone (not the live sender that noticed), the route and its hops, goes on with what does not
//! need that agent, lists what it skipped in results.json, and exits 1.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use linkcal::runner::fault::{HEARTBEAT_S, PROBE_TIMEOUT_S, STALL_MARGIN_S};

mod loopback_support;

use loopback_support::{start_agents, Agents};

/// The agents of the rack, in the order of `Agents`.
const NAMES: [&str; 3] = ["gpu_p0", "gpu_d0", "gpu_d1"];
/// The two routes the runs measure: one sender, two receivers.
const ROUTES: [&str; 2] = ["prefill_to_decode:0->0", "prefill_to_decode:0->1"];
/// Longest any run here may take, seconds (each is a few seconds when it works).
const RUN_LIMIT_S: u64 = 120;

/// A (1,2,1) rack of `gpu_p0`, `gpu_d0`, `gpu_d1` on loopback, one agent each.
fn rack(dir: &Path, agents: &mut Agents) -> PathBuf {
    let addrs = start_agents(dir, &NAMES, agents, |_| {});
    let host = |name: &str, role: &str, index: usize, addr: &str| serde_json::json!({"name": name, "role": role, "index": index, "control_addr": addr, "data_addr": "127.0.0.1", "netns": null});
    let rack = serde_json::json!({
        "schema": "linkcal.rack/2",
        "shape": {"pp_prefill": 1, "pp_decode": 2, "ib_cards": 1, "nic_map": [0]},
        "emulated": false,
        "payload_scale": 1.0,
        "mtu_bytes": null,
        "token_file": "token",
        "hosts": [
            host(NAMES[0], "prefill_gpu", 0, &addrs[0]),
            host(NAMES[1], "decode_gpu", 0, &addrs[1]),
            host(NAMES[2], "decode_gpu", 1, &addrs[2]),
        ],
    });
    let path = dir.join("rack.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rack).unwrap()).unwrap();
    path
}

/// A run in progress: its stderr lines as they come, each with the instant it was read.
struct Running {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    stderr: Vec<(Instant, String)>,
}

/// `linkcal run` of [`ROUTES`] on `rack` over `sizes`, into `out` given by `dest` (`--out`,
/// `--resume`).
fn run_cmd(rack: &Path, dest: &str, out: &Path, sizes: &str) -> Command {
    let mut c = Command::new(cargo_bin("linkcal"));
    c.args(["run", "--paths", &ROUTES.join(","), "--contention", "none", "--quick", "--no-progress", "--time-cap", "0.3"])
        .args(["--sizes", sizes, "--rack"])
        .arg(rack)
        .arg(dest)
        .arg(out);
    c
}

impl Running {
    fn start(rack: &Path, out: &Path, sizes: &str) -> Running {
        let mut child = run_cmd(rack, "--out", out, sizes).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), l)).is_err() {
                    return;
                }
            }
        });
        Running { child, lines, stderr: Vec::new() }
    }

    /// Waits (bounded) for the run to end; its exit code.
    fn finish(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(RUN_LIMIT_S);
        loop {
            self.stderr.extend(self.lines.try_iter());
            if let Some(s) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; take what is left.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.stderr.push(l);
                }
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("run did not end within {RUN_LIMIT_S} s: {}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(&self) -> String {
        self.stderr.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until the journal holds a measurement of `route`.
fn wait_for_journal(out: &Path, route: &str, run: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
        if j.lines().any(|l| l.contains(&format!("/{route}/"))) {
            return;
        }
        assert!(run.child.try_wait().unwrap().is_none(), "run ended before measuring {route}");
        assert!(Instant::now() < deadline, "no {route} measurement in the journal within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// Ids measured and skipped in results.json, with the skipped ones' hosts.
fn ids(r: &serde_json::Value) -> (Vec<String>, Vec<(String, String)>) {
    let measured = r["measurements"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    let skipped = r["skipped"]
        .as_array()
        .map(|v| {
            v.iter().map(|s| (s["id"].as_str().unwrap().to_string(), s["host"].as_str().unwrap_or("-").to_string())).collect()
        })
        .unwrap_or_default();
    (measured, skipped)
}

fn id(route: &str, bytes: u64) -> String {
    format!("solo/{route}/{bytes}")
}

fn kill(agents: &mut Agents, n: usize) {
    agents.0[n].kill().unwrap();
    agents.0[n].wait().unwrap();
}

#[test]
fn an_agent_dead_before_the_run_is_named_and_the_rest_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), &mut agents);
    // gpu_d0 receives the first route: the run must go on to the second one after it.
    kill(&mut agents, 1);
    let out = dir.path().join("out");
    let sizes = [65536u64, 131072];
    let mut run = Running::start(&rack, &out, "64KiB,128KiB");
    let t0 = Instant::now();
    let code = run.finish();
    let err = run.text();
    assert_eq!(code, Some(1), "{err}");
    // Named as the dead host, with the route and its hops; the live sender is not blamed.
    assert!(err.contains("agent gpu_d0 is gone"), "{err}");
    assert!(err.contains("prefill_to_decode:0->0 (gpu_p0->gpu_d0) over [GPU_P[0]_PCI up"), "{err}");
    assert!(!err.contains("agent gpu_p0 is"), "{err}");
    let (measured, skipped) = ids(&results(&out));
    let want_measured: Vec<String> = sizes.iter().map(|b| id(ROUTES[1], *b)).collect();
    let want_skipped: Vec<(String, String)> = sizes.iter().map(|b| (id(ROUTES[0], *b), "gpu_d0".to_string())).collect();
    assert_eq!(measured, want_measured, "{err}");
    assert_eq!(skipped, want_skipped, "{err}");
    for (i, _) in &want_skipped {
        assert!(err.contains(&format!("skipped {i} (host gpu_d0)")), "{err}");
    }
    // The journal holds what finished, as results.json does.
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), want_measured.len());
    eprintln!("dead before the run: exit 1 after {:.2} s", t0.elapsed().as_secs_f64());
}

#[test]
fn an_agent_killed_mid_run_is_named_and_its_remaining_measurements_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), &mut agents);
    let out = dir.path().join("out");
    let sizes = [65536u64, 131072, 262144, 524288];
    let mut run = Running::start(&rack, &out, "64KiB,128KiB,256KiB,512KiB");
    wait_for_journal(&out, ROUTES[1], &mut run);
    let killed = Instant::now();
    kill(&mut agents, 2);
    let code = run.finish();
    let err = run.text();
    assert_eq!(code, Some(1), "{err}");
    let found = run.stderr.iter().find(|(_, l)| l.contains("agent gpu_d1 is gone")).unwrap_or_else(|| panic!("{err}"));
    assert!(found.1.contains("prefill_to_decode:0->1 (gpu_p0->gpu_d1) over [GPU_P[0]_PCI up"), "{err}");
    assert!(!err.contains("agent gpu_p0 is"), "{err}");
    let (measured, skipped) = ids(&results(&out));
    // The other route finished in full; the dead route's sizes were measured or skipped, once each.
    for b in sizes {
        assert!(measured.contains(&id(ROUTES[0], b)), "{measured:?}");
        let m = measured.contains(&id(ROUTES[1], b));
        let s = skipped.contains(&(id(ROUTES[1], b), "gpu_d1".to_string()));
        assert!(m != s, "{b}: measured {m}, skipped {s}: {err}");
    }
    assert!(!skipped.is_empty() && skipped.len() < sizes.len(), "{skipped:?}");
    eprintln!(
        "killed mid-run: named {:.2} s after the kill, {} measurements skipped",
        found.0.duration_since(killed).as_secs_f64(),
        skipped.len()
    );
}

#[test]
fn an_agent_stopped_mid_run_is_reported_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), &mut agents);
    let out = dir.path().join("out");
    let mut run = Running::start(&rack, &out, "64KiB,128KiB,256KiB,512KiB");
    wait_for_journal(&out, ROUTES[1], &mut run);
    let pid = agents.0[2].id() as libc::pid_t;
    // SAFETY: `pid` is our own child, still running (it is only reaped by `Agents`' drop).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let code = run.finish();
    // SAFETY: as above; the agent is then killed by `Agents`' drop.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let err = run.text();
    assert_eq!(code, Some(1), "{err}");
    let found = run.stderr.iter().find(|(_, l)| l.contains("agent gpu_d1 is not answering")).unwrap_or_else(|| panic!("{err}"));
    assert!(found.1.contains("prefill_to_decode:0->1 (gpu_p0->gpu_d1) over [GPU_P[0]_PCI up"), "{err}");
    // Whatever the run waited for, a quiet connection is checked every HEARTBEAT_S and a
    // probe gives up after PROBE_TIMEOUT_S; the largest payload's stall bound is
    // STALL_MARGIN_S + 0.5 s. Either way far below the 30 s data-plane timeout.
    let bound = HEARTBEAT_S + PROBE_TIMEOUT_S + STALL_MARGIN_S;
    let took = found.0.duration_since(stopped).as_secs_f64();
    assert!(took < bound, "stall reported after {took:.2} s, bound {bound} s: {err}");
    let (_, skipped) = ids(&results(&out));
    assert!(!skipped.is_empty() && skipped.iter().all(|(i, h)| i.contains(ROUTES[1]) && h == "gpu_d1"), "{skipped:?}");
    eprintln!("stopped mid-run: reported {took:.2} s after SIGSTOP (bound {bound} s)");
}

/// Threads of process `pid` (its `/proc` task entries).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// The ids of a journal's lines, in order.
fn journal_ids(journal: &str) -> Vec<String> {
    journal.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
}

/// The coordinator SIGKILLed mid-run, then `run --resume`. Without the handling this fails:
/// a plain re-run into the same `--out` truncated the journal (the prefix check below fails,
/// and the plain re-run is not refused), and a re-run without resume measures everything again
/// (ids repeated); a resume that lost the journal's measurements would leave the set short.
#[test]
fn a_coordinator_killed_mid_run_resumes_with_nothing_lost_or_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Agents(Vec::new());
    let rack = rack(dir.path(), &mut agents);
    let idle: Vec<usize> = agents.0.iter().map(|a| threads(a.id())).collect();
    let out = dir.path().join("out");
    let sizes = "64KiB,128KiB,256KiB,512KiB,1MiB,2MiB";
    let all: Vec<String> =
        ROUTES.iter().flat_map(|r| [65536u64, 131072, 262144, 524288, 1 << 20, 2 << 20].map(|b| id(r, b))).collect();
    let t0 = Instant::now();
    let mut run = Running::start(&rack, &out, sizes);
    let journal = || std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal().lines().count() < 2 {
        assert!(run.child.try_wait().unwrap().is_none(), "run ended before 2 measurements: {}", run.text());
        assert!(Instant::now() < deadline, "fewer than 2 measurements in the journal within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The agents hold the run's sessions (threads beyond their idle ones) when it is killed.
    let busy: Vec<usize> = agents.0.iter().map(|a| threads(a.id())).collect();
    assert!(busy.iter().zip(&idle).any(|(b, i)| b > i), "no agent busy mid-run: threads {busy:?}, idle {idle:?}");
    run.child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed or closed in order.
    run.child.wait().unwrap();
    let killed = Instant::now();
    // Every complete line (a last line cut mid-write may be dropped by the resume).
    let at_kill = journal();
    let kept = &at_kill[..at_kill.rfind('\n').map_or(0, |i| i + 1)];
    let before = journal_ids(kept);
    assert!(before.len() >= 2 && before.len() < all.len(), "killed after {} of {} measurements", before.len(), all.len());

    // The agents' sessions of the dead coordinator end: each is back to its idle threads.
    let idle_deadline = killed + Duration::from_secs(20);
    while agents.0.iter().zip(&idle).any(|(a, n)| threads(a.id()) > *n) {
        assert!(Instant::now() < idle_deadline, "agents not idle 20 s after the kill (threads {idle:?} at start)");
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle_after = killed.elapsed().as_secs_f64();
    // And a new run can use them.
    let o = run_cmd(&rack, "--out", &dir.path().join("other"), "64KiB").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "a run after the kill: {}", String::from_utf8_lossy(&o.stderr));

    // A plain re-run into the killed run's directory is refused and touches nothing.
    let o = run_cmd(&rack, "--out", &out, sizes).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(journal(), at_kill);

    let o = run_cmd(&rack, "--resume", &out, sizes).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let now = journal();
    assert!(now.starts_with(kept), "the journal's first lines changed:\nbefore\n{kept}\nafter\n{now}");
    let after = journal_ids(&now[kept.len()..]);
    // Before + after = every measurement, once each.
    let mut both: Vec<String> = before.iter().chain(&after).cloned().collect();
    both.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(both, want, "before {before:?}, after {after:?}");
    let r = results(&out);
    let (mut measured, skipped) = ids(&r);
    measured.sort();
    assert_eq!(measured, want);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(r["provenance"]["finished_at"].is_string(), "results.json does not record the run's end");
    eprintln!(
        "coordinator SIGKILL: {} measurements before, {} after the resume, agents idle {idle_after:.2} s after the kill, {:.1} s in all",
        before.len(),
        after.len(),
        t0.elapsed().as_secs_f64()
    );
}
