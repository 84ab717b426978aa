//! `linkcal agent` as a process on loopback: descriptor exhaustion, idle clients, token files.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use linkcal::control::Client;

const T: Duration = Duration::from_secs(5);

/// A spawned agent, killed on drop.
struct Agent {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_file(dir: &Path, mode: u32) -> PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, "tok\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `linkcal agent` under `sh -c "ulimit -n NOFILE; exec ..."` and waits until it serves.
fn spawn_agent(dir: &Path, nofile: u32) -> Agent {
    let token = token_file(dir, 0o600);
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.join("agent.log");
    let bin = assert_cmd::cargo::cargo_bin("linkcal");
    let script = format!(
        "ulimit -n {nofile} && exec '{}' agent --listen {addr} --token-file '{}' --name a0",
        bin.display(),
        token.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect("a0", &agent.addr, "tok", T).is_err() {
        assert!(Instant::now() < deadline, "agent did not start: {}", std::fs::read_to_string(&agent.log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

fn threads_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn the_agent_survives_the_descriptor_limit_and_serves_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(dir.path(), 16);
    // More idle connections than the agent has descriptors: accept fails with EMFILE.
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(&agent.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.child.try_wait().unwrap().is_none(), "agent exited: {}", std::fs::read_to_string(&agent.log).unwrap());
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = Client::connect("a0", &agent.addr, "tok", T) {
        assert!(Instant::now() < deadline, "agent does not serve after the flood: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(log.contains("Too many open files") && log.contains("going on"), "{log}");
}

#[test]
fn idle_clients_cost_no_thread_each_and_are_dropped_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let agent = spawn_agent(dir.path(), 1024);
    let before = threads_of(agent.child.id());
    let mut idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(&agent.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = threads_of(agent.child.id());
    assert!(
        during <= before + linkcal::agent::DEFAULT_MAX_PENDING as u32,
        "{before} threads before, {during} with 100 idle clients"
    );
    // Those it did take are closed by the 5 s handshake deadline.
    let t0 = Instant::now();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(s.read(&mut [0u8; 1]).unwrap_or(0), 0);
    }
    let waited = t0.elapsed().as_secs_f64();
    assert!(waited < linkcal::control::HELLO_TIMEOUT_S + 2.0, "idle clients held for {waited:.1} s");
}

#[test]
fn a_token_file_others_may_read_is_refused_with_the_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), 0o644);
    let out = Command::new(assert_cmd::cargo::cargo_bin("linkcal"))
        .args(["agent", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("chmod 600 {}", token.display())), "{err}");
}

#[test]
fn max_bytes_of_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), 0o600);
    let out = Command::new(assert_cmd::cargo::cargo_bin("linkcal"))
        .args(["agent", "--listen", "127.0.0.1:0", "--max-bytes", "0", "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-bytes"));
}
