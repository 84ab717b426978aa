//! Helpers shared by the tests that build the emulated rack (namespaces + tbf; needs root):
//! the capability check (a failure, never a skip, under `CI=true`), a unique namespace prefix
//! per test process, and a guard that takes the rack down however the test ends.
#![allow(dead_code)]

use std::process::Command;

/// The linkcal binary under test.
pub fn linkcal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_linkcal"))
}

/// True when this process may build network namespaces (root and a working `ip netns`).
/// Under `CI=true` a missing capability is a failure, never a silent skip; `what` names the
/// test in the message.
pub fn can_emulate(what: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let ip = Command::new("ip").args(["netns", "list"]).output().map(|o| o.status.success()).unwrap_or(false);
    if root && ip {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {what} cannot build the emulated rack here (root: {root}, `ip netns` works: {ip})"
    );
    eprintln!("SKIP: {what}: the emulated rack needs root and iproute2 (root: {root}, ip netns: {ip})");
    false
}

/// A namespace prefix unique per test process (`tag` of at most 3 of a-z0-9, then at most 5
/// hex digits of the process id): every worktree runs these tests, often at once.
/// `LINKCAL_TEST_NS_TAG` (at most 3 of a-z0-9) replaces `tag`, for a machine where each user
/// keeps to a prefix of their own.
pub fn unique_prefix(tag: &str) -> String {
    let tag = match std::env::var("LINKCAL_TEST_NS_TAG") {
        Ok(t) => {
            let ok = !t.is_empty() && t.len() <= 3 && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            assert!(ok, "LINKCAL_TEST_NS_TAG={t:?}: use 1 to 3 of a-z0-9");
            t
        }
        Err(_) => tag.to_string(),
    };
    format!("{tag}{:x}", std::process::id() % 0xfffff)
}

/// Takes the rack of a prefix down when dropped, however the test ends.
pub struct RackGuard(pub String);

impl Drop for RackGuard {
    fn drop(&mut self) {
        let _ = linkcal().args(["emulate", "down", "--prefix", &self.0]).output();
    }
}

/// `linkcal emulate up` of the small (2,2,1) rack under `prefix`, writing into `out`; callers
/// add flags such as `--rates` or `--replace`.
pub fn emulate_up_221(prefix: &str, out: &std::path::Path) -> Command {
    let mut c = linkcal();
    c.args(["emulate", "up", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "1", "--prefix", prefix, "--out"]).arg(out);
    c
}

/// Sets the device end of `segment`'s veth pair `state` (`down` or `up`), entering its
/// namespace with linkcal's setns (`ip -n` also needs a mount namespace, which fails in a
/// chroot).
pub fn set_link(plan: &linkcal::emulate::Plan, segment: linkcal::spec::SegmentId, state: &str) {
    let l = plan.links.iter().find(|l| l.segment == segment).expect("the segment's link");
    let mut c = Command::new("ip");
    c.args(["link", "set", &l.lower_if, state]);
    let _ns = linkcal::emulate::netns::in_netns(&mut c, &plan.netns(l.lower)).expect("enter namespace");
    let ok = c.status().unwrap();
    assert!(ok.success(), "ip link set {} {state}", l.lower_if);
}
