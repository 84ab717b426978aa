//! `scripts/launch-slurm` under a real Slurm on loopback: the test writes a munge key and a
//! slurm.conf in a temp dir, runs munged (its own socket), slurmctld and one slurmd per host
//! (`slurmd -N <host>`, distinct ports, all on 127.0.0.1), each stopped by a guard however the
//! test ends, then `salloc -N 3 launch-slurm inventory -- rack init && run`. Needs root and
//! slurm-wlm + munge: under CI=true their absence fails; elsewhere the test is skipped with a
//! printed waiver.

mod launch_support;

use std::process::Output;
use std::time::{Duration, Instant};

use launch_support::slurm::{self, have_slurm, Place};
use launch_support::{inventory, nothing_listens};

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
    let here = |name: &str| Place { name: name.into(), addr: "127.0.0.1".into(), netns: None };
    let nodes: Vec<Place> = names.iter().map(|n| here(n)).collect();
    let cluster = slurm::start(dir.path(), &here("ctl"), &nodes);
    cluster.wait_idle(names.len(), dir.path());
    let up = t0.elapsed().as_secs_f64();
    let chain = "set -e; linkcal rack init inventory.toml -o rack.json; \
                 linkcal run --rack rack.json --out out --quick --contention none --sizes 64KiB --time-cap 0.2 --no-progress \
                 --paths 'prefill_to_decode:0->1,decode_inter_rank:0->1'";
    let o = cluster.salloc(dir.path(), 3, "pre0,dec0,dec1", chain, 180);
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
    let o = cluster.salloc(dir.path(), 2, "pre0,dec0", "true", 180);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("salloc -N 3"), "{}", text(&o));
    eprintln!("launch_slurm: Slurm up in {up:.1} s, whole chain {:.1} s", t0.elapsed().as_secs_f64());
}
