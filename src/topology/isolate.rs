//! Runs hwloc on an untrusted XML file in a forked child process. hwloc asserts (aborts) or
//! crashes on some well-formed but inconsistent topologies (e.g. a cpuset outside its parent's),
//! and hwlocality panics on some impossible attribute values; in a child, any of these becomes
//! a clear bad-input error naming the file instead of taking linkcal down.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use serde::{Deserialize, Serialize};

use super::model::{PciNode, Source};
use super::TopologyError;

/// Held around every use of hwloc in this process and around the fork of an isolated load:
/// hwloc keeps process-wide mutexes, and a child forked while another thread holds one of
/// them would wait on it forever.
pub(crate) static HWLOC: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`HWLOC`] (a panic elsewhere while holding it leaves nothing of hwloc half-done).
pub(crate) fn hwloc_lock() -> std::sync::MutexGuard<'static, ()> {
    HWLOC.lock().unwrap_or_else(|e| e.into_inner())
}

const ADVICE: &str = "the file is not a consistent hwloc topology (hand-edited or corrupted?): \
                      export it again with `lstopo-no-graphics --whole-io --of xml FILE`";

/// What the child sends back.
#[derive(Serialize, Deserialize)]
enum ChildResult {
    Ok(Vec<PciNode>, Source),
    BadInput(String),
    Failed(String),
}

/// Runs `load` in a child process and returns its result.
pub fn run<F>(path: &Path, load: F) -> Result<(Vec<PciNode>, Source), TopologyError>
where
    F: FnOnce() -> Result<(Vec<PciNode>, Source), TopologyError>,
{
    let fail = |what: &str, e: nix::Error| TopologyError::Hwloc(format!("{what} for loading {}: {e}", path.display()));
    let (out_r, out_w) = pipe().map_err(|e| fail("pipe", e))?;
    let (err_r, err_w) = pipe().map_err(|e| fail("pipe", e))?;
    // No thread of this process is inside hwloc while the lock is held, so the child cannot
    // inherit one of hwloc's mutexes locked.
    let guard = hwloc_lock();
    // SAFETY: the child only runs `load` (hwloc and allocation; glibc's malloc is fork-safe),
    // writes to its pipes and leaves with `_exit`, never returning into the caller's stack.
    let forked = unsafe { fork() }.map_err(|e| fail("fork", e));
    drop(guard);
    match forked? {
        ForkResult::Child => {
            drop((out_r, err_r));
            child(load, out_w, err_w)
        }
        ForkResult::Parent { child } => {
            drop((out_w, err_w));
            let stderr = std::thread::spawn(move || read_all(err_r));
            let watchdog = Watchdog::start(child);
            let out = read_all(out_r);
            let status = waitpid(child, None).map_err(|e| fail("waitpid", e))?;
            watchdog.stop();
            let stderr = stderr.join().unwrap_or_default();
            parent_result(path, status, &out, &stderr)
        }
    }
}

/// Kills the child if it has not finished after [`CHILD_LIMIT`] (a hung load must not hang linkcal).
struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
}

/// Longest a load may take; real exports load in well under a second.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Watchdog {
    fn start(child: nix::unistd::Pid) -> Self {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(CHILD_LIMIT) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
        });
        Watchdog { done }
    }

    fn stop(self) {
        let _ = self.done.send(());
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut buf);
    buf
}

fn child<F>(load: F, out: OwnedFd, err: OwnedFd) -> !
where
    F: FnOnce() -> Result<(Vec<PciNode>, Source), TopologyError>,
{
    // SAFETY: dup2 onto fd 2 of this (single-threaded) child; `err` stays open until _exit.
    unsafe { libc::dup2(err.as_raw_fd(), 2) };
    std::panic::set_hook(Box::new(|_| {}));
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)) {
        Ok(Ok((tree, source))) => ChildResult::Ok(tree, source),
        Ok(Err(TopologyError::Input { message, .. })) => ChildResult::BadInput(message),
        Ok(Err(e)) => ChildResult::Failed(e.to_string()),
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ChildResult::BadInput(format!("hwlocality cannot read an attribute of it ({why}); {ADVICE}"))
        }
    };
    let mut f = std::fs::File::from(out);
    let ok = serde_json::to_writer(&mut f, &result).is_ok() && f.flush().is_ok();
    drop(f);
    // SAFETY: leave at once, without unwinding or atexit handlers of the parent's state.
    unsafe { libc::_exit(if ok { 0 } else { 3 }) }
}

fn parent_result(path: &Path, status: WaitStatus, out: &[u8], stderr: &[u8]) -> Result<(Vec<PciNode>, Source), TopologyError> {
    let said = String::from_utf8_lossy(stderr);
    let said = said.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with("note:")).unwrap_or("").trim().to_string();
    match (status, serde_json::from_slice::<ChildResult>(out)) {
        (WaitStatus::Exited(_, 0), Ok(ChildResult::Ok(tree, source))) => Ok((tree, source)),
        (_, Ok(ChildResult::BadInput(m))) => Err(TopologyError::input(path, m)),
        (_, Ok(ChildResult::Failed(m))) => Err(TopologyError::Hwloc(m)),
        (WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _), _) => Err(TopologyError::Hwloc(format!(
            "loading {} took longer than {} s and was stopped",
            path.display(),
            CHILD_LIMIT.as_secs()
        ))),
        (WaitStatus::Signaled(_, sig, _), _) => {
            let said = if said.is_empty() { String::new() } else { format!(": {said}") };
            Err(TopologyError::input(path, format!("hwloc crashed ({sig}) loading it{said}; {ADVICE}")))
        }
        (other, _) => Err(TopologyError::Hwloc(format!("loading {} in a child process ended with {other:?}", path.display()))),
    }
}
