//! The emulated rack: Linux network namespaces (one per endpoint and switch of the spec) joined
//! by one veth pair per segment, shaped with `tc tbf` on both ends (each direction its own
//! rate), routes that make every route cross exactly its segments, an unshaped management
//! network for the control plane, and an agent in every endpoint namespace. Everything is
//! named from a prefix, so `down` cleans up after a crash and parallel racks do not collide.

pub mod health;
pub mod link;
pub mod netns;
pub mod rates;
pub mod topo;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::rack::{Emulation, RackFile, RACK_SCHEMA};
use crate::spec::RackShape;
pub use rates::Rates;
pub use topo::Plan;

/// Failures building or removing the emulated rack.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// Not root.
    #[error("the emulated rack needs root (network namespaces, veth, tc): run as root (e.g. sudo)")]
    NotRoot,
    /// A tool is missing or failed to start.
    #[error("cannot run `{tool}`: {source} (the emulated rack needs iproute2: apt-get install iproute2)")]
    Tool {
        /// The tool.
        tool: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command.
        command: String,
        /// Its stderr.
        stderr: String,
    },
    /// Namespaces of this prefix exist already.
    #[error("{} network namespaces with prefix '{prefix}' exist already (e.g. {}), probably from a crashed run: remove them with `linkcal emulate down --prefix {prefix}` (or pass --replace)", .namespaces.len(), .namespaces.first().map(String::as_str).unwrap_or(""))]
    Leftover {
        /// The prefix.
        prefix: String,
        /// The namespaces found.
        namespaces: Vec<String>,
    },
    /// Bad input in a rates file or flag (a rate above what the host carries, an unknown
    /// congestion control).
    #[error(transparent)]
    Input(#[from] crate::error::InputError),
    /// Bad prefix.
    #[error("--prefix '{0}': use 1 to 8 lowercase letters or digits, starting with a letter")]
    Prefix(String),
    /// Bad shape for emulation.
    #[error(transparent)]
    Shape(#[from] topo::PlanError),
    /// Cannot join a namespace.
    #[error("cannot enter network namespace {netns}: {message} (is the emulated rack up? `linkcal emulate status`)")]
    Enter {
        /// The namespace.
        netns: String,
        /// Why.
        message: String,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An agent did not come up.
    #[error("agent {host} did not answer within {timeout_s} s: {message} (its log: {log})")]
    Agent {
        /// Agent name.
        host: String,
        /// Wait, seconds.
        timeout_s: f64,
        /// Last error.
        message: String,
        /// Log file.
        log: String,
    },
}

impl From<crate::control::netns::NetnsError> for EmulateError {
    fn from(e: crate::control::netns::NetnsError) -> Self {
        EmulateError::Enter { netns: e.netns, message: e.message }
    }
}

impl crate::error::Classified for EmulateError {
    /// A prefix, shape or rates file is bad input; everything the OS refuses is run time.
    fn exit_class(&self) -> crate::error::ExitClass {
        match self {
            EmulateError::Prefix(_) | EmulateError::Shape(_) | EmulateError::Input(_) => crate::error::ExitClass::BadInput,
            _ => crate::error::ExitClass::Runtime,
        }
    }
}

/// Checks a prefix: 1..=8 chars, `[a-z][a-z0-9]*` (no `_`, so `{prefix}_` never matches another prefix).
pub fn check_prefix(p: &str) -> Result<(), EmulateError> {
    let ok = (1..=8).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(EmulateError::Prefix(p.into()))
    }
}

/// What `up` builds.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Name prefix.
    pub prefix: String,
    /// Spec shape.
    pub shape: RackShape,
    /// Rates and MTU.
    pub rates: Rates,
    /// Where rack.json, ground-truth.json, the token and agent logs go.
    pub out: PathBuf,
    /// Remove leftovers of this prefix first instead of failing.
    pub replace: bool,
    /// The linkcal binary the agents run.
    pub exe: PathBuf,
    /// Start the agents (false: the operator launches them, e.g. over ssh, as on a real rack).
    pub start_agents: bool,
}

/// What `up` wrote.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// The rack file.
    pub rack_file: PathBuf,
    /// The ground-truth file.
    pub ground_truth_file: PathBuf,
    /// Namespaces created.
    pub namespaces: usize,
    /// Agents started.
    pub agents: usize,
    /// Seconds it took.
    pub seconds: f64,
}

fn require_root() -> Result<(), EmulateError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(EmulateError::NotRoot);
    }
    netns::run(&["ip", "-V"]).map(|_| ())
}

/// Builds the rack, writes its files, starts its agents. On failure it removes what it built.
pub fn up(o: &UpOptions) -> Result<UpReport, EmulateError> {
    let t0 = Instant::now();
    check_prefix(&o.prefix)?;
    link::check_cc(&o.rates.tcp_cc, o.rates.file.as_deref())?;
    require_root()?;
    let left = netns::list(&o.prefix);
    if !left.is_empty() {
        if !o.replace {
            return Err(EmulateError::Leftover { prefix: o.prefix.clone(), namespaces: left });
        }
        down(&o.prefix)?;
    }
    let plan = Plan::new(&o.prefix, &o.shape)?;
    if o.rates.shaped {
        let top = o.rates.segments.values().flat_map(|r| [r.up_Bps, r.down_Bps]).fold(0.0, f64::max);
        let veth = link::veth_capacity(&o.prefix, o.rates.mtu, top / link::MAX_SHARE_OF_VETH)?;
        o.rates.check_max(veth * link::MAX_SHARE_OF_VETH, veth)?;
    }
    let r = build(&plan, o).and_then(|(agents, cc)| write_files(&plan, o, cc).map(|files| (agents, files)));
    match r {
        Ok((agents, (rack_file, ground_truth_file))) => Ok(UpReport {
            rack_file,
            ground_truth_file,
            namespaces: plan.nodes.len() + 1,
            agents,
            seconds: t0.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            let _ = down(&o.prefix);
            Err(e)
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> EmulateError + '_ {
    move |source| EmulateError::Io { path: path.display().to_string(), source }
}

fn build(plan: &Plan, o: &UpOptions) -> Result<(usize, link::CcMode), EmulateError> {
    let mgmt = plan.mgmt_netns();
    let mut cc = link::CcMode::NamespaceDefault;
    let mut all: Vec<String> = plan.nodes.iter().map(|n| plan.netns(*n)).collect();
    all.push(mgmt.clone());
    netns::batch("ip", None, &all.iter().map(|n| format!("netns add {n}")).collect::<Vec<_>>())?;
    for ns in &all {
        netns::sysctl(
            ns,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                ("net/ipv4/tcp_slow_start_after_idle", "0"),
            ],
        )?;
        if link::apply_cc(ns, &o.rates.tcp_cc)? == link::CcMode::PerSocket {
            cc = link::CcMode::PerSocket;
        }
    }
    let mtu = o.rates.mtu;
    let mut root = Vec::new();
    for l in &plan.links {
        root.push(format!(
            "link add {} netns {} mtu {mtu} type veth peer name {} netns {} mtu {mtu}",
            l.lower_if,
            plan.netns(l.lower),
            l.upper_if,
            plan.netns(l.upper)
        ));
    }
    let agents: Vec<_> = plan.nodes.iter().copied().filter(|n| n.host().is_some()).collect();
    for (m, n) in agents.iter().enumerate() {
        root.push(format!("link add m{m} netns {mgmt} type veth peer name mgmt netns {}", plan.netns(*n)));
    }
    netns::batch("ip", None, &root)?;
    let mut mg = vec!["link set lo up".to_string(), "link add br0 type bridge".into(), "link set br0 up".into()];
    mg.push(format!("addr add {}/16 dev br0", topo::MGMT_COORDINATOR));
    for m in 0..agents.len() {
        mg.push(format!("link set m{m} master br0"));
        mg.push(format!("link set m{m} up"));
    }
    netns::batch("ip", Some(&mgmt), &mg)?;
    for n in &plan.nodes {
        netns::batch("ip", Some(&plan.netns(*n)), &node_commands(plan, *n))?;
        link::offloads_off(&plan.netns(*n), &data_links(plan, *n))?;
        if o.rates.shaped {
            netns::batch("tc", Some(&plan.netns(*n)), &tc_commands(plan, &o.rates, *n))?;
        }
    }
    let started = if o.start_agents {
        start_agents(plan, o, &agents)?
    } else {
        write_token(o)?;
        0
    };
    Ok((started, cc))
}

/// The data links (veth ends) of namespace `n`.
fn data_links(plan: &Plan, n: topo::Node) -> Vec<String> {
    let mut v = Vec::new();
    for l in &plan.links {
        if l.lower == n {
            v.push(l.lower_if.clone());
        }
        if l.upper == n {
            v.push(l.upper_if.clone());
        }
    }
    v
}

/// `ip` batch lines for one namespace: loopback addresses, links up, routes.
fn node_commands(plan: &Plan, n: topo::Node) -> Vec<String> {
    let mut v = vec!["link set lo up".to_string()];
    let links = data_links(plan, n);
    let on_link = plan.data_link_addr(n).filter(|_| links.len() == 1);
    for a in &plan.addrs[&n] {
        let dev = if on_link == Some(*a) { links[0].as_str() } else { "lo" };
        v.push(format!("addr add {a}/32 dev {dev}"));
    }
    for l in &plan.links {
        if l.lower == n {
            v.push(format!("link set {} up", l.lower_if));
        }
        if l.upper == n {
            v.push(format!("link set {} up", l.upper_if));
        }
    }
    if n.host().is_some() {
        v.push(format!("addr add {}/16 dev mgmt", plan.mgmt_addr(n)));
        v.push("link set mgmt up".into());
    }
    for r in plan.routes.get(&n).into_iter().flatten() {
        let src = r.src.map(|s| format!(" src {s}")).unwrap_or_default();
        v.push(format!("route add {}/32 via {} dev {} onlink{src}", r.dst, r.via, r.dev));
    }
    v
}

/// Token bucket of every segment direction, frames (of MTU + 14 bytes) at least ...
pub const BUCKET_FRAMES: u64 = 5;
/// ... and seconds at the segment's rate at least.
pub const BUCKET_S: f64 = 5e-4;
/// Niceness of the agents: on a busy host they win the CPU, so a sender never leaves a
/// shaped link idle (a link idle for want of CPU loses capacity no bucket gives back).
pub const AGENT_NICE: i32 = -10;

/// tbf bucket (burst), bytes: the larger of [`BUCKET_FRAMES`] frames and [`BUCKET_S`] at the
/// rate. With offloads off tbf sees single frames; the bucket then absorbs a dequeue that runs
/// late (a timer or softirq delayed by other work on the CPU) without losing tokens, which a
/// 2-frame bucket cannot (the link then runs 1-3% below its rate when a faster hop feeds it or
/// the CPU is busy). The price: after an idle gap a transfer may run ahead of the line rate by
/// at most the bucket (45 KB at MTU 9000 below 90 MB/s; rate x 0.5 ms above), which shortens a
/// 64 KiB transfer noticeably and a 16 MiB one by under 0.3%.
#[allow(non_snake_case)]
pub fn tbf_burst(rate_Bps: f64, mtu: u64) -> u64 {
    ((rate_Bps * BUCKET_S) as u64).max(BUCKET_FRAMES * (mtu + 14))
}

/// What the rack file and results record about the shaping.
pub fn emulation_info(cc: link::CcMode) -> Emulation {
    Emulation {
        shaper: "tbf".into(),
        bucket_frames: BUCKET_FRAMES,
        bucket_s: BUCKET_S,
        offloads: "off".into(),
        tcp_congestion_control_applied: cc.as_str().into(),
        agent_nice: AGENT_NICE,
    }
}

/// `tc` batch lines for one namespace: tbf on every segment end, `up` rate on the device end.
fn tc_commands(plan: &Plan, rates: &Rates, n: topo::Node) -> Vec<String> {
    let mut v = Vec::new();
    for l in &plan.links {
        let r = rates.segments[&l.segment];
        for (end, ifname, rate) in [(l.lower, &l.lower_if, r.up_Bps), (l.upper, &l.upper_if, r.down_Bps)] {
            if end == n {
                let bits = (rate * 8.0).round() as u64;
                v.push(format!(
                    "qdisc add dev {ifname} root tbf rate {bits}bit burst {} latency 50ms",
                    tbf_burst(rate, rates.mtu)
                ));
            }
        }
    }
    v
}

/// Writes the rack's token (mode 600) into the output directory; returns it.
fn write_token(o: &UpOptions) -> Result<String, EmulateError> {
    let token_file = o.out.join("token");
    let token = crate::control::new_token().map_err(io_err(&token_file))?;
    write_private(&token_file, &token)?;
    Ok(token)
}

fn start_agents(plan: &Plan, o: &UpOptions, agents: &[topo::Node]) -> Result<usize, EmulateError> {
    let logs = o.out.join("agents");
    std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let token_file = o.out.join("token");
    let token = write_token(o)?;
    let token_abs = std::fs::canonicalize(&token_file).map_err(io_err(&token_file))?;
    let hosts = plan.hosts();
    for h in &hosts {
        let args = vec![
            "agent".to_string(),
            "--listen".into(),
            h.control_addr.clone(),
            "--token-file".into(),
            token_abs.display().to_string(),
            "--name".into(),
            h.name.clone(),
        ];
        netns::spawn_agent(h.netns.as_deref().unwrap_or_default(), &o.exe, &args, &logs.join(format!("{}.log", h.name)))?;
    }
    wait_agents(&plan.mgmt_netns(), &hosts, &token, &logs, Duration::from_secs(20))?;
    debug_assert_eq!(hosts.len(), agents.len());
    Ok(hosts.len())
}

fn write_private(path: &Path, text: &str) -> Result<(), EmulateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io_err(path))?;
    std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes()).map_err(io_err(path))
}

/// Waits until every agent answers `hello`, from a thread inside the management namespace.
pub fn wait_agents(
    mgmt: &str,
    hosts: &[crate::model::rack::HostEntry],
    token: &str,
    logs: &Path,
    timeout: Duration,
) -> Result<(), EmulateError> {
    let (mgmt, hosts, token, logs) = (mgmt.to_string(), hosts.to_vec(), token.to_string(), logs.to_path_buf());
    std::thread::spawn(move || -> Result<(), EmulateError> {
        netns::enter(&mgmt)?;
        let deadline = Instant::now() + timeout;
        for h in &hosts {
            loop {
                match crate::control::Client::connect(&h.name, &h.control_addr, &token, Duration::from_secs(2)) {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(EmulateError::Agent {
                            host: h.name.clone(),
                            timeout_s: timeout.as_secs_f64(),
                            message: e.to_string(),
                            log: logs.join(format!("{}.log", h.name)).display().to_string(),
                        })
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(())
    })
    .join()
    // A panic there is a bug: carry it on here rather than dress it as an input error.
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn write_files(plan: &Plan, o: &UpOptions, cc: link::CcMode) -> Result<(PathBuf, PathBuf), EmulateError> {
    let token_abs = std::fs::canonicalize(o.out.join("token")).map_err(io_err(&o.out))?;
    let rack = RackFile {
        schema: RACK_SCHEMA.into(),
        shape: o.shape.clone(),
        emulated: true,
        payload_scale: rates::DEFAULT_SCALE,
        mtu_bytes: Some(o.rates.mtu),
        token_file: token_abs.display().to_string(),
        hosts: plan.hosts(),
        control_netns: Some(plan.mgmt_netns()),
        routes: plan.route_endpoints(),
        composed: None,
        tcp_congestion_control: Some(o.rates.tcp_cc.clone()),
        emulation: o.rates.shaped.then(|| emulation_info(cc)),
    };
    let rack_file = o.out.join("rack.json");
    crate::model::write_json(&rack_file, &rack).map_err(io_err(&rack_file))?;
    let gt = o.out.join("ground-truth.json");
    crate::model::write_json(&gt, &o.rates.ground_truth()).map_err(io_err(&gt))?;
    Ok((rack_file, gt))
}

/// Removes every namespace of `prefix` (stopping the processes inside first); returns their names.
pub fn down(prefix: &str) -> Result<Vec<String>, EmulateError> {
    check_prefix(prefix)?;
    require_root()?;
    let names = netns::list(prefix);
    let pids: Vec<i32> = names.iter().flat_map(|n| netns::pids(n)).collect();
    netns::stop(&pids, Duration::from_secs(3));
    netns::batch("ip", None, &names.iter().map(|n| format!("netns del {n}")).collect::<Vec<_>>())?;
    Ok(names)
}

/// What is up for a prefix: namespaces and the processes inside each.
pub fn status(prefix: &str) -> Result<Vec<(String, Vec<i32>)>, EmulateError> {
    check_prefix(prefix)?;
    Ok(netns::list(prefix).into_iter().map(|n| (n.clone(), netns::pids(&n))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["lc", "ci123", "abcdefgh"] {
            check_prefix(ok).unwrap();
        }
        for bad in ["", "1lc", "l_c", "LC", "abcdefghi", "a-b"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_cover_every_link_end() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let plan = Plan::new("t", &shape).unwrap();
        let mut rates = Rates::defaults(&shape);
        // Up and down differ on every segment, so an end shaped at the other direction's rate shows.
        for r in rates.segments.values_mut() {
            r.down_Bps = r.up_Bps / 2.0;
        }
        let tbf = |ifname: &str, rate: f64| {
            format!(
                "qdisc add dev {ifname} root tbf rate {}bit burst {} latency 50ms",
                (rate * 8.0).round(),
                tbf_burst(rate, rates.mtu)
            )
        };
        for l in &plan.links {
            let r = rates.segments[&l.segment];
            let (lower, upper) = (tc_commands(&plan, &rates, l.lower), tc_commands(&plan, &rates, l.upper));
            assert!(lower.contains(&tbf(&l.lower_if, r.up_Bps)), "{}: the lower end sends up: {lower:?}", l.segment);
            assert!(upper.contains(&tbf(&l.upper_if, r.down_Bps)), "{}: the upper end sends down: {upper:?}", l.segment);
        }
        let psw = node_commands(&plan, topo::Node::PrefillSwitch);
        assert!(psw.iter().any(|l| l.starts_with("route add") && l.contains("dev s-np0")), "{psw:?}");
        assert_eq!(tbf_burst(1e6, 9000), 5 * 9014, "slow links: five frames");
        assert_eq!(tbf_burst(200e6, 9000), 100_000, "fast links: 0.5 ms at the rate");
        assert_eq!(tbf_burst(10e6, 1500), 7570);
    }
}
