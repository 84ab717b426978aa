//! A real Slurm for the launcher tests: munged with its own key and socket, slurmctld and one
//! slurmd per node (`slurmd -N <node>`), each on loopback or inside a network namespace of the
//! emulated rack, stopped by a guard however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, in_netns};

/// Daemons started here, stopped on drop (last started first).
pub struct Daemons(pub Vec<Child>);

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

/// True when this is root and slurm-wlm + munge are installed; under CI=true their absence fails.
pub fn have_slurm(what: &str) -> bool {
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

/// Where a Slurm daemon runs: its address and network namespace (None: here).
#[derive(Debug, Clone)]
pub struct Place {
    /// Node name (`NodeName`, the agent's host name), or the controller's.
    pub name: String,
    /// Address it is reached at.
    pub addr: String,
    /// Its network namespace.
    pub netns: Option<String>,
}

/// A running Slurm cluster.
pub struct Cluster {
    /// The daemons.
    pub daemons: Daemons,
    /// Its slurm.conf.
    pub conf: PathBuf,
    /// Where the controller runs (salloc and sinfo run there too).
    pub ctl: Place,
}

/// Starts munged (here: its socket is a file every namespace sees), slurmctld at `ctl` and one
/// slurmd per node at its place.
pub fn start(dir: &Path, ctl: &Place, nodes: &[Place]) -> Cluster {
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
        "ClusterName=linkcal\nSlurmctldHost={host}({})\nSlurmctldPort={}\nAuthType=auth/munge\nAuthInfo=socket={}\n\
         CredType=cred/munge\nSlurmUser=root\nSlurmdUser=root\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool-%n\n\
         SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd-%n.pid\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\nSwitchType=switch/none\nMpiDefault=none\n\
         SchedulerType=sched/builtin\nSelectType=select/linear\nReturnToService=2\n",
        ctl.addr,
        free_port(),
        sock.display()
    );
    for n in nodes {
        let port = free_port();
        conf.push_str(&format!("NodeName={} NodeHostname={host} NodeAddr={} Port={port} CPUs=2 State=UNKNOWN\n", n.name, n.addr));
    }
    conf.push_str("PartitionName=p Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n");
    let conf_path = dir.join("slurm.conf");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    for n in nodes {
        std::fs::create_dir_all(dir.join(format!("spool-{}", n.name))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let slurm = |netns: Option<&str>, bin: &str| {
        let mut c = in_netns(netns, bin);
        c.arg("-D").arg("-f").arg(&conf_path).env("SLURM_CONF", &conf_path);
        c
    };
    daemons.0.push(spawn(dir, "slurmctld.log", &mut slurm(ctl.netns.as_deref(), "/usr/sbin/slurmctld")));
    for n in nodes {
        let log = format!("slurmd-{}.log", n.name);
        daemons.0.push(spawn(dir, &log, slurm(n.netns.as_deref(), "/usr/sbin/slurmd").args(["-N", &n.name])));
    }
    Cluster { daemons, conf: conf_path, ctl: ctl.clone() }
}

impl Cluster {
    /// Waits until Slurm reports `nodes` nodes idle.
    pub fn wait_idle(&self, nodes: usize, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = in_netns(self.ctl.netns.as_deref(), "sinfo")
                .args(["-h", "-t", "idle", "-o", "%D"])
                .env("SLURM_CONF", &self.conf)
                .output()
                .unwrap();
            let idle: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
            if idle >= nodes {
                return;
            }
            let logs = std::fs::read_to_string(dir.join("slurmctld.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "Slurm nodes not idle within 60 s: {}\n{logs}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `salloc -N n -w names scripts/launch-slurm inventory.toml -- sh -c cmd` in `dir`, bounded
    /// by `limit_s` seconds.
    pub fn salloc(&self, dir: &Path, n: usize, names: &str, cmd: &str, limit_s: u32) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/launch-slurm");
        let bin = assert_cmd::cargo::cargo_bin("linkcal");
        in_netns(self.ctl.netns.as_deref(), "timeout")
            .args([&limit_s.to_string(), "salloc", "-N", &n.to_string(), "-w", names])
            .arg(script)
            .args(["inventory.toml", "--", "sh", "-c", cmd])
            .current_dir(dir)
            .env("SLURM_CONF", &self.conf)
            .env("LINKCAL_BIN", &bin)
            .env("LINKCAL_AGENT_WAIT", "20")
            .env("PATH", format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap()))
            .output()
            .unwrap()
    }
}
