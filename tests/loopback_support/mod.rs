//! Helpers for the tests that run agents on loopback: a guard that kills spawned agents, a
//! free local address to listen on, and agents started with a mode-600 token.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawned agents, killed on drop.
pub struct Agents(pub Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `127.0.0.1:PORT` with a port that was free a moment ago.
pub fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// Writes `dir/token` (mode 600), starts one `linkcal agent` per name on a free loopback
/// address (`configure` may set its environment), waits until each listens; returns the
/// addresses in the order of `names`.
pub fn start_agents(dir: &Path, names: &[&str], agents: &mut Agents, configure: impl Fn(&mut Command)) -> Vec<String> {
    let token = dir.join("token");
    std::fs::write(&token, "tok\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addrs: Vec<String> = names.iter().map(|_| free_addr()).collect();
    for (name, addr) in names.iter().zip(&addrs) {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("linkcal"));
        cmd.args(["agent", "--listen", addr, "--name", name, "--token-file"]).arg(&token);
        configure(&mut cmd);
        agents.0.push(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    }
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "agent at {addr} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    addrs
}
