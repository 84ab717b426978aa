//! OpenSSH for the launcher tests: the capability check, keys, and sshd processes the tests
//! start themselves (on loopback or inside a namespace of the emulated rack), stopped by a
//! guard however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An sshd process, killed on drop.
pub struct Sshd(pub Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// sshd's path, when installed.
pub fn sshd_bin() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// True when sshd, ssh and ssh-keygen are here; under CI=true their absence fails.
pub fn have_openssh(what: &str) -> bool {
    let keygen = Command::new("ssh-keygen").arg("-?").output().is_ok();
    let ssh = Command::new("ssh").arg("-V").output().is_ok();
    if sshd_bin().is_some() && keygen && ssh {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {what} needs openssh-server (scripts/setup installs it)");
    eprintln!("SKIP: {what}: no sshd/ssh/ssh-keygen here (apt-get install openssh-server openssh-client)");
    false
}

/// Writes an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Starts sshd listening on `listen` (`IP:PORT`) inside network namespace `netns` (or here),
/// key-only, with `dir`'s host_key and authorized_keys; its log is `dir/sshd-<tag>.log`.
pub fn start_sshd(dir: &Path, listen: &str, netns: Option<&str>, tag: &str) -> Sshd {
    let d = dir.display();
    let config = format!(
        "ListenAddress {listen}\nHostKey {d}/host_key\nPidFile {d}/sshd-{tag}.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
         UsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
    );
    let cfg = dir.join(format!("sshd-{tag}.conf"));
    std::fs::write(&cfg, config).unwrap();
    // sshd's privilege separation directory (compiled in; the package normally creates it).
    let _ = std::fs::create_dir_all("/run/sshd");
    let log = std::fs::File::create(dir.join(format!("sshd-{tag}.log"))).unwrap();
    let mut cmd = super::in_netns(netns, &sshd_bin().unwrap().display().to_string());
    let child = cmd.args(["-D", "-e", "-f"]).arg(&cfg).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    Sshd(child)
}

/// Waits until `addr` accepts connections from namespace `netns` (or here).
pub fn wait_listening_in(netns: Option<&str>, addr: &str, limit: Duration) -> bool {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let probe = format!("exec 3<>/dev/tcp/{ip}/{port}");
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut c = super::in_netns(netns, "bash");
        c.args(["-c", &probe]);
        if c.stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
