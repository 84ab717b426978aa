//! `scripts/launch-slurm` under a real Slurm on loopback: the test writes a munge key and a
//! slurm.conf in a temp dir, runs munged (its own socket), slurmctld and one slurmd per host
//! (`slurmd -N <host>`, distinct ports, all on 127.0.0.1), each stopped by a guard however the
//! test ends, then `salloc -N 3 launch-slurm inventory -- rack init && run`. Needs root and
//! slurm-wlm + munge: under CI=true their absence fails; elsewhere the test is skipped with a
//! printed waiver.

mod launch_support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use launch_support::{free_port, inventory, nothing_listens};

/// Daemons started here, killed on drop (last started first).
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        // SIGTERM first, so each daemon stops its own helpers (slurmscriptd, slurmstepd).
        for c in self.0.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn have_slurm(what: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let bins = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/salloc"];
    let found = bins.iter().all(|b| Path::new(b).exists());
    if root && found {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {what} needs root and slurm-wlm + munge (root: {root}, binaries: {found}; scripts/setup installs them)"
    );
    eprintln!("SKIP: {what}: needs root and slurm-wlm + munge (root: {root}, binaries: {found})");
    false
}

fn spawn(dir: &Path, log: &str, cmd: &mut Command) -> Child {
    let f = std::fs::File::create(dir.join(log)).unwrap();
    cmd.stdout(Stdio::null()).stderr(f).spawn().unwrap()
}

/// Starts munged, slurmctld and one slurmd per node; returns them and the slurm.conf path.
fn start_slurm(dir: &Path, nodes: &[&str]) -> (Daemons, std::path::PathBuf) {
    let d = dir.display();
    let mut daemons = Daemons(Vec::new());
    std::fs::write(dir.join("munge.key"), (0..1024).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::set_permissions(dir.join("munge.key"), std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let sock = dir.join("munge.sock");
    daemons.0.push(spawn(
        dir,
        "munged.log",
        Command::new("/usr/sbin/munged")
            .arg("-F")
            .arg(format!("--key-file={d}/munge.key"))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={d}/munged.pid"))
            .arg(format!("--seed-file={d}/munge.seed"))
            .arg(format!("--log-file={d}/munged.file.log")),
    ));
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let host = host.split('.').next().unwrap().to_string();
    let mut conf = format!(
        "ClusterName=linkcal\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\nAuthType=auth/munge\nAuthInfo=socket={}\n\
         CredType=cred/munge\nSlurmUser=root\nSlurmdUser=root\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool-%n\n\
         SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd-%n.pid\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\nSwitchType=switch/none\nMpiDefault=none\n\
         SchedulerType=sched/builtin\nSelectType=select/linear\nReturnToService=2\n",
        free_port(),
        sock.display()
    );
    for n in nodes {
        conf.push_str(&format!(
            "NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={} CPUs=2 State=UNKNOWN\n",
            free_port()
        ));
    }
    conf.push_str("PartitionName=p Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n");
    let conf_path = dir.join("slurm.conf");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let slurm = |bin: &str| {
        let mut c = Command::new(bin);
        c.arg("-D").arg("-f").arg(&conf_path).env("SLURM_CONF", &conf_path);
        c
    };
    daemons.0.push(spawn(dir, "slurmctld.log", &mut slurm("/usr/sbin/slurmctld")));
    for n in nodes {
        daemons.0.push(spawn(dir, &format!("slurmd-{n}.log"), slurm("/usr/sbin/slurmd").args(["-N", n])));
    }
    (daemons, conf_path)
}

/// Waits until Slurm reports every node idle.
fn wait_idle(conf: &Path, nodes: usize, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = Command::new("sinfo").args(["-h", "-t", "idle", "-o", "%D"]).env("SLURM_CONF", conf).output().unwrap();
        let idle: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
        if idle >= nodes {
            return;
        }
        let logs = std::fs::read_to_string(dir.join("slurmctld.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "Slurm nodes not idle within 60 s: {}\n{logs}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn salloc(conf: &Path, dir: &Path, n: usize, names: &str, cmd: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/launch-slurm");
    Command::new("timeout")
        .args(["180", "salloc", "-N", &n.to_string(), "-w", names])
        .arg(script)
        .args(["inventory.toml", "--", "sh", "-c", cmd])
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .env("LINKCAL_BIN", cargo_bin("linkcal"))
        .env("LINKCAL_AGENT_WAIT", "20")
        .env("PATH", format!("{}:{}", cargo_bin("linkcal").parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn agents_launched_by_slurm_serve_rack_init_and_a_run_and_are_stopped() {
    if !have_slurm("launch_slurm") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "dec0", "dec1"];
    let (_, addrs) = inventory(dir.path(), &names, "");
    let (_daemons, conf) = start_slurm(dir.path(), &names);
    wait_idle(&conf, names.len(), dir.path());
    let up = t0.elapsed().as_secs_f64();
    let chain = "set -e; linkcal rack init inventory.toml -o rack.json; \
                 linkcal run --rack rack.json --out out --quick --contention none --sizes 64KiB --time-cap 0.2 --no-progress \
                 --paths 'prefill_to_decode:0->1,decode_inter_rank:0->1'";
    let o = salloc(&conf, dir.path(), 3, "pre0,dec0,dec1", chain);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for want in ["all agents up", "wrote", "agents stopped"] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    assert!(dir.path().join("out/results.json").exists());
    std::thread::sleep(Duration::from_millis(500));
    for a in &addrs {
        assert!(nothing_listens(a), "an agent still listens at {a}");
    }
    // Fewer nodes than hosts: exit 2 naming the allocation, before any agent starts.
    let o = salloc(&conf, dir.path(), 2, "pre0,dec0", "true");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("salloc -N 3"), "{}", text(&o));
    eprintln!("launch_slurm: Slurm up in {up:.1} s, whole chain {:.1} s", t0.elapsed().as_secs_f64());
}
