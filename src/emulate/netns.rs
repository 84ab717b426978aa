//! Side effects: `ip` / `tc` batches, namespaces by prefix, agent processes, joining a
//! namespace from a thread.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::EmulateError;

pub use crate::control::netns::{enter, in_netns, NETNS_DIR};

/// Gives `cmd` (already entering a network namespace, see [`in_netns`]) its own mount
/// namespace with a sysfs of that network namespace on /sys, as `ip netns exec` does: libraries
/// that list network devices from /sys/class/net (UCX, under NIXL) then see the namespace's
/// devices rather than the host's. Best effort: where / and /sys cannot be made private (some
/// chroots), the child keeps the host's /sys and everything but such listings works as before.
pub fn with_netns_sysfs(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec, after setns(CLONE_NEWNET); it only calls
    // unshare(2) and mount(2) with static NUL-terminated strings, which are
    // async-signal-safe. Failures are ignored (see above).
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Ok(());
            }
            let none = std::ptr::null();
            // Our mounts must not propagate back to the host's mount namespace.
            let slave = libc::MS_REC | libc::MS_SLAVE;
            if libc::mount(none, c"/".as_ptr(), none, slave, std::ptr::null()) != 0
                && libc::mount(none, c"/sys".as_ptr(), none, slave, std::ptr::null()) != 0
            {
                return Ok(());
            }
            // Mounted over the host's /sys (which stays in place if this fails).
            libc::mount(c"sysfs".as_ptr(), c"/sys".as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null());
            Ok(())
        });
    }
}

/// Runs `prog -batch -` with `lines` on stdin, inside `ns` when given.
pub fn batch(prog: &str, ns: Option<&str>, lines: &[String]) -> Result<(), EmulateError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new(prog);
    let _nsfile = ns.map(|ns| in_netns(&mut cmd, ns)).transpose()?;
    cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let what = format!("{prog}{} -batch", ns.map(|n| format!(" -n {n}")).unwrap_or_default());
    let mut child = cmd.spawn().map_err(|e| EmulateError::Tool { tool: prog.into(), source: e })?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let text = lines.join("\n") + "\n";
        stdin.write_all(text.as_bytes()).map_err(|e| EmulateError::Tool { tool: prog.into(), source: e })?;
    }
    let out = child.wait_with_output().map_err(|e| EmulateError::Tool { tool: prog.into(), source: e })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(EmulateError::Command { command: what, stderr: explain(&stderr, lines) });
    }
    Ok(())
}

/// Adds the failing batch line to iproute2's "Command failed -:N" message.
fn explain(stderr: &str, lines: &[String]) -> String {
    let line = stderr
        .rsplit("-:")
        .next()
        .and_then(|s| s.trim().trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<usize>().ok())
        .and_then(|n| lines.get(n.wrapping_sub(1)));
    match line {
        Some(l) => format!("{stderr} (line: `{l}`)"),
        None => stderr.to_string(),
    }
}

/// Runs one command; its stderr in the error.
pub fn run(args: &[&str]) -> Result<String, EmulateError> {
    output(Command::new(args[0]).args(&args[1..]), args)
}

/// Runs `args` inside network namespace `ns` (setns before exec, as [`batch`] does: `ip -n`
/// would also need a mount namespace of its own, which fails where `/` is no mount point, e.g.
/// in a chroot) and returns its stdout, or the command and its stderr.
pub fn run_in(ns: &str, args: &[&str]) -> Result<String, EmulateError> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    let _nsfile = in_netns(&mut cmd, ns)?;
    let shown: Vec<&str> = [args[0], "-n", ns].into_iter().chain(args[1..].iter().copied()).collect();
    output(&mut cmd, &shown)
}

fn output(cmd: &mut Command, args: &[&str]) -> Result<String, EmulateError> {
    let out = cmd.output().map_err(|e| EmulateError::Tool { tool: args[0].into(), source: e })?;
    if !out.status.success() {
        return Err(EmulateError::Command {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Named namespaces whose name starts with `{prefix}_`.
pub fn list(prefix: &str) -> Vec<String> {
    let want = format!("{prefix}_");
    let mut v: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(&want)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Process ids inside a namespace (`ip netns pids`).
pub fn pids(ns: &str) -> Vec<i32> {
    run(&["ip", "netns", "pids", ns]).map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect()).unwrap_or_default()
}

/// Stops the given processes: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pids: &[i32], grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids {
        if alive(p) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie (our own exited child) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sets network sysctls (paths under /proc/sys, e.g. `net/ipv4/ip_forward`) inside `ns`.
///
/// A helper thread enters the namespace and writes the files: /proc/sys/net resolves against
/// the writing thread's namespace. Unlike `ip netns exec ... sysctl`, this needs no mount
/// namespace games (which fail where / is not a mount point, e.g. in a chroot).
pub fn sysctl(ns: &str, settings: &[(&str, &str)]) -> Result<(), EmulateError> {
    let ns_owned = ns.to_string();
    let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    std::thread::spawn(move || -> Result<(), EmulateError> {
        enter(&ns_owned)?;
        for (key, value) in &settings {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value)
                .map_err(|e| EmulateError::Io { path: format!("{} in {ns_owned}", path.display()), source: e })?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(EmulateError::Enter { netns: ns.into(), message: "sysctl thread panicked".into() }))
}

/// Makes `cmd` start at the agents' niceness ([`super::AGENT_NICE`]), so a traffic source
/// started beside the agents (an iperf3 witness) competes for the CPU as they do.
pub fn at_agent_priority(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let nice = super::AGENT_NICE;
    // SAFETY: runs in the forked child before exec and only calls setpriority(2), which is
    // async-signal-safe. A failure (no CAP_SYS_NICE) leaves the child at its inherited niceness.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
}

/// Starts `linkcal agent` inside `ns`, detached in its own process group, logging to `log`.
/// The child enters the namespace with setns(2) between fork and exec.
pub fn spawn_agent(ns: &str, exe: &Path, args: &[String], log: &Path) -> Result<u32, EmulateError> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(log).map_err(|e| EmulateError::Io { path: log.display().to_string(), source: e })?;
    let err = file.try_clone().map_err(|e| EmulateError::Io { path: log.display().to_string(), source: e })?;
    let mut cmd = Command::new(exe);
    let nsfile = in_netns(&mut cmd, ns)?;
    with_netns_sysfs(&mut cmd);
    cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err).process_group(0);
    at_agent_priority(&mut cmd);
    let child = cmd.spawn().map_err(|e| EmulateError::Tool { tool: format!("{} (in netns {ns})", exe.display()), source: e })?;
    drop(nsfile);
    Ok(child.id())
}
