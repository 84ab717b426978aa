//! `scripts/launch-ssh` against a real OpenSSH server on 127.0.0.1: the test writes an sshd
//! config, host key, client key, authorized_keys and known_hosts in a temp dir, runs sshd on a
//! free port (stopped by a guard however the test ends), and drives the whole chain:
//! launch agents over ssh -> `rack init` -> `run` -> agents stopped. Needs sshd and ssh-keygen
//! (openssh-server): under CI=true their absence fails; elsewhere the test is skipped with a
//! printed waiver.

mod launch_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use launch_support::openssh::{have_openssh, keygen, start_sshd as sshd_at, Sshd};
use launch_support::{free_port, inventory, nothing_listens, wait_listening};

/// Starts sshd on 127.0.0.1:`port` from files in `dir`; returns it and the ssh client config
/// naming `hosts` (all at that sshd, with the test's key and known_hosts).
fn start_sshd(dir: &Path, port: u16, hosts: &[&str]) -> (Sshd, PathBuf) {
    let d = dir.display();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("id_client"));
    keygen(&dir.join("id_stranger"));
    std::fs::copy(dir.join("id_client.pub"), dir.join("authorized_keys")).unwrap();
    let sshd = sshd_at(dir, &format!("127.0.0.1:{port}"), None, "lo");
    let ok = wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
    assert!(ok, "sshd did not start: {}", std::fs::read_to_string(dir.join("sshd-lo.log")).unwrap_or_default());
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    std::fs::write(dir.join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", key.join(" "))).unwrap();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let mut cfg = String::new();
    for h in hosts {
        let id = if h.starts_with("stranger") { "id_stranger" } else { "id_client" };
        cfg.push_str(&format!(
            "Host {h}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d}/{id}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n  HostKeyAlias [127.0.0.1]:{port}\n"
        ));
    }
    let path = dir.join("ssh_config");
    std::fs::write(&path, cfg).unwrap();
    (sshd, path)
}

fn launch(dir: &Path, ssh_config: &Path, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/launch-ssh");
    // A bound on the whole launcher: a hang is a failure, not a stuck test.
    Command::new("timeout")
        .arg("180")
        .arg(script)
        .args(args)
        .env("LINKCAL_SSH_CONFIG", ssh_config)
        .env("LINKCAL_BIN", cargo_bin("linkcal"))
        .env("LINKCAL_REMOTE_DIR", dir.join("remote"))
        .env("LINKCAL_AGENT_WAIT", "20")
        .env("PATH", format!("{}:{}", cargo_bin("linkcal").parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn agents_launched_over_real_ssh_serve_rack_init_and_a_run_and_are_stopped() {
    if !have_openssh("launch_ssh") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "dec0", "dec1"];
    let (inv, addrs) = inventory(dir.path(), &names, "");
    let (_sshd, cfg) = start_sshd(dir.path(), free_port(), &names);
    let chain = "set -e; linkcal rack init inventory.toml -o rack.json; \
                 linkcal run --rack rack.json --out out --quick --contention none --sizes 64KiB --time-cap 0.2 --no-progress \
                 --paths 'prefill_to_decode:0->0,decode_inter_rank:0->1'";
    let cmd = format!("cd {} && {chain}", dir.path().display());
    let o = launch(dir.path(), &cfg, &["run", inv.to_str().unwrap(), "--", "sh", "-c", &cmd]);
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\nsshd log:\n{}",
        std::fs::read_to_string(dir.path().join("sshd-lo.log")).unwrap()
    );
    for want in ["copied", "all agents up", "wrote", "stopped agent pre0", "stopped agent dec1"] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(dir.path().join("out/results.json").exists());
    // The token reached each host as a mode-600 file, and left with its agent.
    assert!(!dir.path().join("remote/token-pre0").exists(), "token left behind");
    for a in &addrs {
        assert!(nothing_listens(a), "an agent still listens at {a}");
    }
    assert!(!dir.path().join("inventory.toml.agents").exists());
    eprintln!("launch_ssh chain: {:.1} s (OpenSSH sshd on 127.0.0.1)", t0.elapsed().as_secs_f64());
}

#[test]
fn a_host_that_asks_for_a_password_exits_2_and_leaves_no_agent() {
    if !have_openssh("launch_ssh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "stranger0"];
    let (inv, addrs) = inventory(dir.path(), &names, "");
    let (_sshd, cfg) = start_sshd(dir.path(), free_port(), &names);
    let o = launch(dir.path(), &cfg, &["start", inv.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("host stranger0") && out.contains("key-based login"), "{out}");
    assert!(out.contains("stopped agent pre0"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(nothing_listens(&addrs[0]), "pre0's agent still runs");
    assert!(!dir.path().join("inventory.toml.agents").exists());
}
