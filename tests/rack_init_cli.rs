//! `linkcal rack init` and `rack check` end to end on loopback: agents on 127.0.0.1 stand in
//! for a prefill and two decode hosts (no GPU here: the inventory says host_tcp_only), the
//! composed rack.json drives `linkcal run`, and bad input exits 2 naming host and field.

mod launch_support;

use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use launch_support::{inventory, start_agents};

fn linkcal(args: &[&str]) -> std::process::Output {
    Command::new(cargo_bin("linkcal")).args(args).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn inventory_to_rack_to_run_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "dec0", "dec1"];
    let (inv, addrs) = inventory(dir.path(), &names, "");
    let _agents = start_agents(dir.path(), &names, &addrs);
    let rack = dir.path().join("rack.json");
    let o = linkcal(&["rack", "init", inv.to_str().unwrap(), "-o", rack.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for want in ["choice  pre0", "data_addr", "= 127.0.0.1", "override: prefill.data_addr", "host memory (no GPU)"] {
        assert!(out.contains(want), "missing '{want}' in:\n{out}");
    }
    let p3 = out.lines().find(|l| l.starts_with("route") && l.contains("decode_inter_rank:0->1")).unwrap_or_default();
    assert!(p3.contains(" ok ") && p3.contains("host_tcp"), "{out}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rack).unwrap()).unwrap();
    assert_eq!(r["schema"], "linkcal.rack/2");
    assert_eq!(r["shape"]["pp_decode"], 2);
    assert_eq!(r["hosts"][2]["name"], "dec1");
    assert_eq!(r["hosts"][2]["role"], "decode_server");
    let routes = r["routes"].as_array().unwrap();
    let checks = r["composed"]["route_checks"].as_array().unwrap();
    assert_eq!(routes.len(), checks.len());
    assert!(checks.iter().all(|c| c["goodput_Bps"].as_f64().unwrap() > 0.0 && c["transport"] == "host_tcp"));
    let p2 = routes.iter().find(|x| x["path"]["kind"] == "prefill_to_decode" && x["path"]["dst"] == 1).unwrap();
    assert_eq!((p2["src_host"].as_str(), p2["dst_host"].as_str()), (Some("pre0"), Some("dec1")));
    // The composed file drives a run.
    let res = dir.path().join("out");
    let o = linkcal(&[
        "run",
        "--rack",
        rack.to_str().unwrap(),
        "--out",
        res.to_str().unwrap(),
        "--quick",
        "--contention",
        "none",
        "--paths",
        "prefill_to_decode:0->1,decode_inter_rank:0->1",
        "--sizes",
        "64KiB",
        "--time-cap",
        "0.2",
        "--no-progress",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["measurements"].as_array().unwrap().len(), 2);
    // And re-verifies against the live hosts.
    let o = linkcal(&["rack", "check", rack.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("holds"), "{}", text(&o));
}

#[test]
fn rack_check_fails_when_a_host_is_gone_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "dec0"];
    let (inv, addrs) = inventory(dir.path(), &names, "");
    let mut agents = start_agents(dir.path(), &names, &addrs);
    let rack = dir.path().join("rack.json");
    let o = linkcal(&["rack", "init", inv.to_str().unwrap(), "-o", rack.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut dec0 = agents.0.pop().unwrap();
    dec0.kill().unwrap();
    dec0.wait().unwrap();
    let o = linkcal(&["rack", "check", rack.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("dec0") && out.contains(&addrs[1]), "{out}");
}

#[test]
fn bad_inventories_and_hosts_exit_2_naming_host_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["pre0", "dec0"];
    let (inv, addrs) = inventory(dir.path(), &names, "");
    let rack = dir.path().join("rack.json");
    let init = |inv: &std::path::Path| linkcal(&["rack", "init", inv.to_str().unwrap(), "-o", rack.to_str().unwrap()]);
    // No agent running: unreachable hosts are named with what to do.
    let o = init(&inv);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pre0") && text(&o).contains("launch-ssh"), "{}", text(&o));
    let _agents = start_agents(dir.path(), &names, &addrs);
    let original = std::fs::read_to_string(&inv).unwrap();
    let cases = [
        (original.replace("host_tcp_only = true", "host_tcp_only = false"), "no GPU"),
        (original.replace("name = \"dec0\"", "name = \"dec9\""), "dec9"),
        (original.replace("host_tcp_only = true", "host_tcp_only = true\ndata_addr = 1"), "data_addr"),
        (original.replace("name = \"dec0\"", "name = \"dec0\"\ndata_addr = \"192.0.2.7\""), "decode[0].data_addr"),
        (original.replace("host_tcp_only = true", "host_tcp_only = true\nnic_map = [3]"), "nic_map"),
        (original.replace("name = \"dec0\"", "name = \"pre0\""), "decode[0].name"),
    ];
    for (text_in, want) in cases {
        std::fs::write(&inv, &text_in).unwrap();
        let o = init(&inv);
        assert_eq!(o.status.code(), Some(2), "{want}: {}", text(&o));
        assert!(text(&o).contains(want), "{want}: {}", text(&o));
        assert!(!rack.exists(), "{want}: a rack file was written");
    }
}
