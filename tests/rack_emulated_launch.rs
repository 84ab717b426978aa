//! The emulated rack treated as a real one, end to end through the launchers operators run:
//! `emulate up --no-agents` builds the (2,2,1) rack without agents; the test then knows only
//! host names (one per endpoint namespace) and their management addresses, as an operator
//! knows a rack's. It writes an inventory, starts a real OpenSSH sshd (or real Slurm daemons:
//! munged, slurmctld, one slurmd per host) inside each host's namespace, and from the
//! management namespace launches the agents through that engine, which run `rack init`,
//! `run --plan calibrate --quick`, `calibrate` and `accept`. Only then does it open the
//! emulator's own rack.json and ground truth: every composed route must equal the emulator's
//! (hosts, addresses, hops), and the calibration must meet the configured rates. Root, iproute2,
//! openssh-server, slurm-wlm and munge: under CI=true their absence fails.

mod launch_support;
mod rack_support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use launch_support::in_netns;
use launch_support::openssh::{have_openssh, keygen, start_sshd, wait_listening_in, Sshd};
use launch_support::slurm::{self, have_slurm, Place};
use rack_support::{can_emulate, emulate_up_221, unique_prefix, RackGuard};
use serde_json::Value;

/// The two tests measure; one at a time keeps each calibration on a quiet CPU.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Host names and the namespaces the emulator gives them (an operator's "machines").
const HOSTS: [(&str, &str); 7] = [
    ("gpu_p0", "gp0"),
    ("gpu_p1", "gp1"),
    ("host_p", "ph"),
    ("gpu_d0", "dg0"),
    ("gpu_d1", "dg1"),
    ("host_d0", "dh0"),
    ("host_d1", "dh1"),
];

/// The management network's operator machine (the emulator's coordinator bridge).
const OPERATOR_ADDR: &str = "10.254.0.1";

/// A rack up without agents: its prefix, output dir, and each host's namespace and management address.
struct Rack {
    _guard: RackGuard,
    prefix: String,
    dir: tempfile::TempDir,
    hosts: Vec<(String, String, String)>,
}

impl Rack {
    fn up(tag: &str) -> Rack {
        let prefix = unique_prefix(tag);
        let dir = tempfile::tempdir().unwrap();
        let guard = RackGuard(prefix.clone());
        let o = emulate_up_221(&prefix, &dir.path().join("emu")).args(["--replace", "--no-agents"]).output().unwrap();
        assert!(o.status.success(), "emulate up: {}", text(&o));
        let hosts = HOSTS
            .iter()
            .map(|(name, short)| {
                let ns = format!("{prefix}_{short}");
                let o = in_netns(Some(&ns), "ip").args(["-4", "-o", "addr", "show", "dev", "mgmt"]).output().unwrap();
                let line = String::from_utf8_lossy(&o.stdout).to_string();
                let addr = line.split_whitespace().nth(3).and_then(|a| a.split('/').next()).unwrap_or_default().to_string();
                assert!(!addr.is_empty(), "{ns}: no management address: {line}");
                (name.to_string(), ns, addr)
            })
            .collect();
        Rack { _guard: guard, prefix, dir, hosts }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mgmt_ns(&self) -> String {
        format!("{}_mgmt", self.prefix)
    }

    /// The inventory an operator writes: host names, management addresses, the fabrics'
    /// address blocks, host TCP (no GPU), the congestion control to use.
    fn write_inventory(&self) {
        launch_support::token(self.path());
        let mut t = String::from(
            "token_file = \"token\"\nhost_tcp_only = true\ntcp_congestion_control = \"cubic\"\npayload_scale = 500.0\n\
             [networks]\npcie = \"10.1.0.0/16\"\neth = \"10.2.0.0/16\"\nib = [\"10.10.0.0/16\"]\n",
        );
        for (name, _, addr) in &self.hosts {
            let table = match name.as_str() {
                n if n.starts_with("gpu_p") => "[[prefill_gpu]]",
                "host_p" => "[prefill_host]",
                n if n.starts_with("gpu_d") => "[[decode]]",
                _ => "[[decode_host]]",
            };
            t.push_str(&format!("\n{table}\nname = \"{name}\"\ncontrol = \"{addr}:7100\"\n"));
        }
        std::fs::write(self.path().join("inventory.toml"), t).unwrap();
    }

    /// The operator's chain, run by the launcher once the agents are up.
    fn chain(&self) -> String {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/emulated-default.toml");
        format!(
            "set -e; linkcal rack init inventory.toml -o rack.json > init.log 2>&1; \
             linkcal run --rack rack.json --plan calibrate --quick --out out --no-progress > run.log 2>&1; \
             linkcal calibrate --results out --out cal.json > cal.log 2>&1; \
             rc=0; linkcal accept --rules {} --calibration cal.json --results out --json acceptance.json > accept.log 2>&1 || rc=$?; \
             echo $rc > accept.rc",
            rules.display()
        )
    }

    fn json(&self, rel: &str) -> Value {
        let p = self.path().join(rel);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    }

    fn log(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    /// The launcher ran the chain: exit 0 and every line in `wants` in its output (else the
    /// output and the chain's own logs).
    fn launched(&self, o: &Output, wants: &[&str]) {
        let out = text(o);
        let logs = format!("{out}\ninit:\n{}\nrun:\n{}", self.log("init.log"), self.log("run.log"));
        assert_eq!(o.status.code(), Some(0), "{logs}");
        for want in wants {
            assert!(out.contains(want), "missing '{want}' in:\n{logs}");
        }
    }

    /// Every check on what the chain wrote; returns a line for the closing note.
    fn verify(&self) -> String {
        let composed = self.json("rack.json");
        let routes = check_routes(&composed, &self.json("emu/rack.json"));
        let (ident, bounds, worst) = check_calibration(&self.json("cal.json"), &self.json("emu/ground-truth.json"));
        let acc = self.json("acceptance.json");
        let rc: i32 = self.log("accept.rc").trim().parse().unwrap();
        let count = |o: &str| acc["items"].as_array().unwrap().iter().filter(|i| i["outcome"] == o).count();
        let (pass, fail) = (count("pass"), count("fail"));
        assert_eq!(fail, 0, "acceptance failed items:\n{}", self.log("accept.log"));
        assert!(pass >= 15, "only {pass} items passed:\n{}", self.log("accept.log"));
        assert!(rc == 0 || (rc == 1 && count("not_measured") > 0), "accept exit {rc}:\n{}", self.log("accept.log"));
        // No agent is left in any host's namespace.
        for (name, ns, _) in &self.hosts {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output().unwrap();
            assert!(pids.status.success(), "ip netns pids {ns}: {}", String::from_utf8_lossy(&pids.stderr));
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                assert!(!cmd.contains(" agent "), "{name}: an agent still runs: {cmd}");
            }
        }
        format!(
            "{routes} routes identical to the emulator's; {ident} identified capacities within {worst:.2}% of truth, \
             {bounds} lower bounds at most truth +3%; accept: {pass} pass, 0 fail (exit {rc})"
        )
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn key(r: &Value) -> (String, u64, u64) {
    let p = if r.get("path").is_some() { &r["path"] } else { r };
    (p["kind"].as_str().unwrap().to_string(), p["src"].as_u64().unwrap(), p["dst"].as_u64().unwrap())
}

/// The composed routes are the spec's (as `linkcal paths --outside-spec` lists them, hops
/// included), and each equals the emulator's own entry: hosts, addresses and hops.
fn check_routes(composed: &Value, emulated: &Value) -> usize {
    let o = Command::new(cargo_bin("linkcal"))
        .args(["paths", "--pp-prefill", "2", "--pp-decode", "2", "--ib-cards", "1", "--outside-spec", "--json"])
        .output()
        .unwrap();
    let spec: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut want: Vec<_> = spec["paths"].as_array().unwrap().iter().map(key).collect();
    let routes = composed["routes"].as_array().unwrap();
    let mut got: Vec<_> = routes.iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the composed rack's routes are not the spec's");
    for r in routes {
        let e = emulated["routes"].as_array().unwrap().iter().find(|e| key(e) == key(r)).expect("the emulator carries it");
        for f in ["src_host", "dst_host", "src_addr", "dst_addr", "segments"] {
            assert_eq!(r[f], e[f], "route {:?}: {f} differs from the emulator's", key(r));
        }
        let s = spec["paths"].as_array().unwrap().iter().find(|s| key(s) == key(r)).unwrap();
        assert_eq!(r["segments"], s["segments"], "route {:?}: hops differ from the spec's", key(r));
    }
    routes.len()
}

/// Identified capacities within 5% of the configured goodput; lower bounds at most 3% over it.
/// Returns (identified, lower bounds, worst identified error in %).
fn check_calibration(cal: &Value, truth: &Value) -> (usize, usize, f64) {
    let (mut ident, mut bounds, mut worst) = (0, 0, 0.0f64);
    for s in cal["segments"].as_array().unwrap() {
        let t = truth["segments"].as_array().unwrap().iter().find(|t| t["segment"] == s["segment"] && t["dir"] == s["dir"]);
        let Some(t) = t.and_then(|t| t["goodput_Bps"].as_f64()) else { continue };
        let name = format!("{} {}", s["segment"], s["dir"]);
        if let Some(c) = s["capacity_Bps"].as_f64() {
            let err = (c / t - 1.0).abs() * 100.0;
            assert!(err < 5.0, "{name}: calibrated {c:.4e} B/s, truth {t:.4e} B/s ({err:.2}% off)");
            ident += 1;
            worst = worst.max(err);
        } else if let Some(lb) = s["lower_bound_Bps"].as_f64() {
            assert!(lb <= t * 1.03, "{name}: lower bound {lb:.4e} B/s over truth {t:.4e} B/s");
            bounds += 1;
        }
    }
    assert!(ident >= 6, "only {ident} capacities identified");
    (ident, bounds, worst)
}

#[test]
fn an_emulated_rack_as_a_real_one_through_openssh() {
    if !(can_emulate("rack_emulated_launch (ssh)") && have_openssh("rack_emulated_launch")) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let rack = Rack::up("rs");
    rack.write_inventory();
    let dir = rack.path();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("id_client"));
    std::fs::copy(dir.join("id_client.pub"), dir.join("authorized_keys")).unwrap();
    let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let host_key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let (mut known, mut cfg, mut sshds): (String, String, Vec<Sshd>) = Default::default();
    for (name, ns, addr) in &rack.hosts {
        sshds.push(start_sshd(dir, &format!("{addr}:22"), Some(ns), name));
        known.push_str(&format!("{addr} {}\n", host_key.join(" ")));
        cfg.push_str(&format!(
            "Host {name}\n  HostName {addr}\n  User root\n  IdentityFile {d}/id_client\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n",
            d = dir.display()
        ));
    }
    std::fs::write(dir.join("known_hosts"), known).unwrap();
    std::fs::write(dir.join("ssh_config"), cfg).unwrap();
    for (name, _, addr) in &rack.hosts {
        let ok = wait_listening_in(Some(&rack.mgmt_ns()), &format!("{addr}:22"), Duration::from_secs(10));
        assert!(ok, "sshd of {name} did not start: {}", rack.log(&format!("sshd-{name}.log")));
    }
    let up = t0.elapsed().as_secs_f64();
    let bin = cargo_bin("linkcal");
    let o = in_netns(Some(&rack.mgmt_ns()), "timeout")
        .arg("600")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/launch-ssh"))
        .args(["run", "inventory.toml", "--", "sh", "-c", &rack.chain()])
        .current_dir(dir)
        .env("LINKCAL_SSH_CONFIG", dir.join("ssh_config"))
        .env("LINKCAL_BIN", &bin)
        .env("LINKCAL_REMOTE_DIR", dir.join("remote"))
        .env("PATH", format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap();
    rack.launched(&o, &["copied", "all agents up", "stopped agent gpu_p0", "stopped agent host_d1"]);
    let summary = rack.verify();
    drop(sshds);
    eprintln!(
        "rack_emulated_launch (OpenSSH): sshd in 7 namespaces up in {up:.1} s; whole chain {:.1} s; {summary}",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn an_emulated_rack_as_a_real_one_under_slurm() {
    if !(can_emulate("rack_emulated_launch (slurm)") && have_slurm("rack_emulated_launch")) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let rack = Rack::up("rl");
    rack.write_inventory();
    let dir = rack.path();
    let ctl = Place { name: "operator".into(), addr: OPERATOR_ADDR.into(), netns: Some(rack.mgmt_ns()) };
    let nodes: Vec<Place> =
        rack.hosts.iter().map(|(n, ns, a)| Place { name: n.clone(), addr: a.clone(), netns: Some(ns.clone()) }).collect();
    let cluster = slurm::start(dir, &ctl, &nodes);
    cluster.wait_idle(nodes.len(), dir);
    let up = t0.elapsed().as_secs_f64();
    let names: Vec<&str> = rack.hosts.iter().map(|h| h.0.as_str()).collect();
    let o = cluster.salloc(dir, names.len(), &names.join(","), &rack.chain(), 600);
    rack.launched(&o, &["all agents up", "agents stopped"]);
    std::thread::sleep(Duration::from_millis(500));
    let summary = rack.verify();
    // Fewer nodes than hosts: exit 2 naming the allocation, before any agent starts.
    let o = cluster.salloc(dir, 6, &names[..6].join(","), "true", 60);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("salloc -N 7"), "{}", text(&o));
    drop(cluster);
    eprintln!(
        "rack_emulated_launch (Slurm): munged, slurmctld, 7 slurmd up in {up:.1} s; whole chain {:.1} s; {summary}",
        t0.elapsed().as_secs_f64()
    );
}
