//! `linkcal discover` end to end: live discovery on this machine, JSON / text / dot output on
//! the real fixtures, `--check`, and bad input (exit 2, the file named, no panic).

use std::path::PathBuf;

use assert_cmd::Command;
use linkcal::topology::TopologyReport;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/topo-fixtures").join(name)
}

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

fn json(args: &[&str]) -> TopologyReport {
    let out = linkcal().arg("discover").args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn live_discovery_runs_and_says_what_is_missing() {
    let r = json(&[]);
    assert_eq!(r.schema, "linkcal.topology/2");
    assert_eq!(serde_json::to_value(r.source.kind).unwrap(), "live");
    if r.gpus.is_empty() {
        assert!(r.notes.iter().any(|n| n.contains("no GPU found")), "{:?}", r.notes);
    }
    if r.nics.iter().all(|n| n.kind != linkcal::topology::NicKind::Rdma) {
        assert!(r.notes.iter().any(|n| n.contains("no RDMA NIC found")), "{:?}", r.notes);
    }
    // Every GPU/NIC found live sits in the tree it came from.
    for g in &r.gpus {
        assert_eq!(r.tree[g.node].pci, g.pci);
    }
    let out = linkcal().args(["discover", "--as", "decode"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("live hwloc discovery"), "{text}");
    assert!(text.contains("As decode server:"), "{text}");
    if r.gpus.is_empty() {
        assert!(text.contains("no GPU found") && text.contains("DOES NOT CONFORM"), "{text}");
    }
    if r.gpus.is_empty() && r.nics.iter().all(|n| n.kind != linkcal::topology::NicKind::Rdma) {
        assert!(text.contains("this machine has no GPU and no RDMA NIC"), "{text}");
    }
}

#[test]
fn json_round_trips_and_matches_its_schema_file() {
    let r = json(&["--xml", fixture("LLNL_mpibind_cts1-pascal.xml").to_str().unwrap(), "--as", "prefill"]);
    let c = r.conformance.as_ref().unwrap();
    assert!(c.conforms);
    assert_eq!(c.proposed_nic_map_arg.as_deref(), Some("0,0"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/topology.schema.json")).unwrap(),
    )
    .unwrap();
    let v = serde_json::to_value(&r).unwrap();
    for field in schema["required"].as_array().unwrap() {
        assert!(v.get(field.as_str().unwrap()).is_some(), "missing {field}");
    }
}

#[test]
fn text_dot_and_check_on_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let dot = dir.path().join("pascal.dot");
    let out = linkcal()
        .args(["discover", "--xml"])
        .arg(fixture("LLNL_mpibind_cts1-pascal.xml"))
        .args(["--as", "prefill", "--pp-prefill", "2", "--ib-cards", "1", "--check", "--dot"])
        .arg(&dot)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CONFORMS to the spec") && text.contains("--nic-map 0,0"), "{text}");
    let d = std::fs::read_to_string(&dot).unwrap();
    for want in ["digraph", "GPU_P[0]_PCI", "GPU_P[1]_PCI", "IB_NIC_P[0]_PCI", "Uplink_P_PCI (outside spec)", "10b5:8796"] {
        assert!(d.contains(want), "dot lacks {want}:\n{d}");
    }
    // Decode role: decode segment names, the outside-spec IB NIC link marked.
    let out = linkcal()
        .args(["discover", "--xml"])
        .arg(fixture("LLNL_mpibind_cts1-pascal.xml"))
        .args(["--as", "decode", "--decode-index", "1", "--dot"])
        .arg(&dot)
        .output()
        .unwrap();
    assert!(out.status.success());
    let d = std::fs::read_to_string(&dot).unwrap();
    for want in ["GPU_D[1]_PCI", "Eth_NIC_D[1]_PCI", "IB_NIC_D[1]_PCI (outside spec)"] {
        assert!(d.contains(want), "dot lacks {want}:\n{d}");
    }
    assert!(!d.contains("GPU_P["), "{d}");
    // lassen does not conform: --check turns that into exit 1 and the reasons are printed.
    let out = linkcal()
        .args(["discover", "--xml"])
        .arg(fixture("LLNL_mpibind_coral-lassen.xml"))
        .args(["--as", "prefill", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("DOES NOT CONFORM") && text.contains("would cross the CPU root complex"), "{text}");
    // The proposed map is accepted by `linkcal paths`.
    let r = json(&["--xml", fixture("ParaStation_psmgmt_topo.jwb0004.xml").to_str().unwrap(), "--as", "prefill"]);
    let map = r.conformance.unwrap().proposed_nic_map_arg.unwrap();
    linkcal().args(["paths", "--pp-prefill", "4", "--pp-decode", "4", "--ib-cards", "4", "--nic-map", &map]).assert().success();
}

fn bad(args: &[&str], want: &[&str]) {
    let out = linkcal().arg("discover").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "args {args:?}: stderr lacks '{w}': {err}");
    }
}

#[test]
fn bad_input_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("notxml.xml"), "this is not xml\n").unwrap();
    std::fs::write(p("empty.xml"), "").unwrap();
    let full = std::fs::read_to_string(fixture("LLNL_mpibind_cts1-pascal.xml")).unwrap();
    std::fs::write(p("truncated.xml"), &full[..full.len() / 2]).unwrap();
    std::fs::write(p("html.xml"), "<html><body>hi</body></html>").unwrap();
    bad(&["--xml", &p("missing.xml")], &["missing.xml", "cannot read"]);
    bad(&["--xml", &p("notxml.xml")], &["notxml.xml", "not XML"]);
    bad(&["--xml", &p("empty.xml")], &["empty.xml", "empty"]);
    bad(&["--xml", &p("truncated.xml")], &["truncated.xml", "truncated"]);
    bad(&["--xml", &p("html.xml")], &["html.xml", "<html>"]);
    let f = fixture("LLNL_mpibind_cts1-pascal.xml");
    let f = f.to_str().unwrap();
    bad(&["--xml", f, "--as", "prefill", "--nics", "mlx5_9"], &["mlx5_9", "mlx5_0"]);
    bad(&["--xml", f, "--as", "prefill", "--pp-prefill", "0"], &["--pp-prefill"]);
    bad(&["--xml", f, "--pp-prefill", "2"], &["--as"]);
}

/// Well-formed but inconsistent exports (hwloc itself asserted, crashed or refused on these):
/// read in Rust, each is either read (a cpuset hwloc's consistency check would reject does not
/// matter to the PCI tree) or exit 2 naming the file, the line and the value, never a crash.
#[test]
fn corrupted_exports_are_bad_input_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let lassen = std::fs::read_to_string(fixture("LLNL_mpibind_coral-lassen.xml")).unwrap();
    let pascal = std::fs::read_to_string(fixture("LLNL_mpibind_cts1-pascal.xml")).unwrap();
    let cases = [
        // A PU whose complete cpuset does not contain its cpuset: hwloc's debug check aborted.
        (
            "cpuset",
            &lassen,
            r#"os_index="28" cpuset="0x10000000" complete_cpuset="0x10000000""#,
            r#"os_index="28" cpuset="0x10000000" complete_cpuset="0x1""#,
            None,
        ),
        // An impossible bridge type: hwlocality panicked.
        ("bridge", &pascal, r#"bridge_type="1-1""#, r#"bridge_type="PCIDev""#, Some(r#"bridge_type="PCIDev""#)),
        // An unknown object type: hwloc refused the file.
        ("type", &lassen, r#"type="Bridge""#, r#"type="NaN""#, Some(r#"unknown hwloc object type "NaN""#)),
    ];
    for (name, text, from, to, want) in cases {
        assert!(text.contains(from), "{name}: fixture changed");
        let damaged = text.replacen(from, to, 1);
        let line = damaged[..damaged.find(to).unwrap()].lines().count();
        let p = dir.path().join(format!("{name}.xml"));
        std::fs::write(&p, &damaged).unwrap();
        let out = linkcal().args(["discover", "--xml"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let Some(want) = want else {
            assert_eq!(out.status.code(), Some(0), "{name}: {err}");
            continue;
        };
        assert_eq!(out.status.code(), Some(2), "{name}: {:?} {err}", out.status);
        assert!(err.contains(&format!("{name}.xml")) && err.contains(want), "{name}: {err}");
        assert!(err.contains(&format!("line {line}:")), "{name}: the line of the damaged object is {line}: {err}");
    }
}

/// Seeded random attribute damage to the fixtures: every outcome is exit 0 or 2, never a
/// signal or a panic.
#[test]
fn damaged_exports_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = ["LLNL_mpibind_cts1-pascal.xml", "open-mpi_hwloc_nvidiaDGX2.xml", "LLNL_mpibind_coral-lassen.xml"]
        .iter()
        .map(|f| std::fs::read_to_string(fixture(f)).unwrap())
        .collect();
    let values = ["", "-1", "zz", "0xffffffffffff", "1e309", "0000:zz:00.0", "Bridge", "PCIDev", "NaN", "0x1"];
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rnd = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut ok, mut bad) = (0, 0);
    for it in 0..40 {
        let mut t = texts[rnd(texts.len())].clone();
        for _ in 0..1 + rnd(3) {
            // Replace the value of a random attribute.
            let quotes: Vec<usize> = t.match_indices("=\"").map(|(i, _)| i + 2).collect();
            let start = quotes[rnd(quotes.len())];
            let end = start + t[start..].find('"').unwrap();
            t.replace_range(start..end, values[rnd(values.len())]);
        }
        let p = dir.path().join(format!("damaged{it}.xml"));
        std::fs::write(&p, &t).unwrap();
        let out = linkcal().args(["discover", "--json", "--as", "prefill", "--xml"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => ok += 1,
            Some(2) => {
                assert!(err.contains(&format!("damaged{it}.xml")), "{err}");
                bad += 1
            }
            other => panic!("damaged{it}.xml: exit {other:?} ({:?}): {err}", out.status),
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(ok + bad, 40);
}
