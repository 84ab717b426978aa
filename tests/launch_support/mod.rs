//! Helpers of the rack-init and launcher tests: free ports, a token file, an inventory of
//! hosts on 127.0.0.1, and agents started directly (killed on drop).
#![allow(dead_code)]

pub mod openssh;
pub mod slurm;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `dir/token` with mode 600.
pub fn token(dir: &Path) -> PathBuf {
    let t = dir.join("token");
    std::fs::write(&t, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
    t
}

/// An inventory of `names[0]` (prefill) and the rest (decode) on 127.0.0.1, host TCP only.
/// Returns its path and the control addresses.
pub fn inventory(dir: &Path, names: &[&str], extra: &str) -> (PathBuf, Vec<String>) {
    token(dir);
    let addrs: Vec<String> = names.iter().map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut text = format!("token_file = \"token\"\nhost_tcp_only = true\n{extra}\n");
    for (k, (n, a)) in names.iter().zip(&addrs).enumerate() {
        let table = if k == 0 { "[prefill]" } else { "[[decode]]" };
        text.push_str(&format!("{table}\nname = \"{n}\"\ncontrol = \"{a}\"\n"));
    }
    let p = dir.join("inventory.toml");
    std::fs::write(&p, text).unwrap();
    (p, addrs)
}

/// Agents started here, killed on drop.
pub struct Agents(pub Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts one agent per (name, addr) with `dir/token` and waits until each listens.
pub fn start_agents(dir: &Path, names: &[&str], addrs: &[String]) -> Agents {
    let mut agents = Agents(Vec::new());
    for (n, a) in names.iter().zip(addrs) {
        let c = Command::new(cargo_bin("linkcal"))
            .args(["agent", "--listen", a, "--name", n, "--token-file"])
            .arg(dir.join("token"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        agents.0.push(c);
    }
    for a in addrs {
        assert!(wait_listening(a, Duration::from_secs(10)), "agent at {a} did not start");
    }
    agents
}

/// True once something accepts connections at `addr`, false after `limit`.
pub fn wait_listening(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// True when nothing accepts connections at `addr` any more.
pub fn nothing_listens(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

/// `bin` run inside network namespace `netns`, or here. `nsenter --net` switches only the
/// network namespace: `ip netns exec` (and `ip -n`) would also make a mount namespace and
/// remount /sys, which hides /sys/fs/cgroup (slurmd 22.05 then stops: "Unable to initialize
/// cgroup plugin") and fails outright where `/` is no mount point (a chroot).
pub fn in_netns(netns: Option<&str>, bin: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}
