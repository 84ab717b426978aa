//! The network namespace a rack's control plane lives in (`control_netns` of a rack file: the
//! emulated rack's management namespace): joining it from a thread, starting a process in it.
//! The coordinator joins it before it connects to the agents; the emulated rack builds on it.

use std::path::Path;
use std::process::Command;

/// A network namespace that cannot be joined.
#[derive(Debug, thiserror::Error)]
#[error("cannot enter network namespace {netns}: {message} (is the emulated rack up? `linkcal emulate status`)")]
pub struct NetnsError {
    /// The namespace.
    pub netns: String,
    /// Why.
    pub message: String,
}

/// Directory where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Makes `cmd` start inside network namespace `ns`: the child calls setns(2) between fork and
/// exec. Unlike `ip -n` / `ip netns exec`, this needs no mount-namespace work (which fails
/// where / is not a mount point, e.g. in a chroot). Keep the returned file until `spawn`.
pub fn in_netns(cmd: &mut Command, ns: &str) -> Result<std::fs::File, NetnsError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let nsfile = std::fs::File::open(Path::new(NETNS_DIR).join(ns))
        .map_err(|e| NetnsError { netns: ns.into(), message: e.to_string() })?;
    let nsfd = nsfile.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls setns(2), which
    // is async-signal-safe; the caller keeps `nsfile` open until the spawn, so `nsfd` is valid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(nsfile)
}

/// Moves the calling thread into the named network namespace.
pub fn enter(ns: &str) -> Result<(), NetnsError> {
    let path = Path::new(NETNS_DIR).join(ns);
    let f = std::fs::File::open(&path).map_err(|e| NetnsError { netns: ns.into(), message: e.to_string() })?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetnsError { netns: ns.into(), message: e.to_string() })
}
