//! `linkcal discover` on what operators already have: NCCL/RCCL topology XML (`--nccl-topo`,
//! and `--xml` telling it by its root element), `nvidia-smi topo -m` output
//! (`--nvidia-smi-topo`), an hwloc export merged with an NCCL dump, and their bad inputs
//! (exit 2 naming the file and the line or element, never a panic).

use std::path::PathBuf;

use assert_cmd::Command;
use linkcal::topology::TopologyReport;

fn shared(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/topo-fixtures").join(name).to_str().unwrap().to_string()
}

fn smi(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("topo/fixtures").join(name).to_str().unwrap().to_string()
}

fn linkcal() -> Command {
    Command::cargo_bin("linkcal").unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = linkcal().arg("discover").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), err)
}

fn json(args: &[&str]) -> TopologyReport {
    let (code, out, err) = run(&[args, &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn nccl_topo_and_xml_detection_agree_and_say_which_reader() {
    let rocm = shared("ROCm_rccl_topo_8p_940vm.xml");
    let a = json(&["--nccl-topo", &rocm, "--as", "prefill"]);
    let b = json(&["--xml", &rocm, "--as", "prefill"]);
    assert_eq!((a.gpus.len(), a.nics.len(), a.gpu_links.len()), (b.gpus.len(), b.nics.len(), b.gpu_links.len()));
    assert_eq!(a.conformance, b.conformance);
    assert!(b.source.reader.as_deref().unwrap().contains("recognised by its root element"), "{:?}", b.source);
    let (code, text, _) = run(&["--xml", &rocm, "--as", "prefill", "--check"]);
    assert_eq!(code, 1, "the MI300X VM does not conform: --check exits 1");
    for want in [
        "read as: NCCL/RCCL topology XML <system version=\"2\">",
        "XGMI1",
        "p2p_over_pcie[0]",
        "bypass the PCIe switch",
        "line 400 Gb/s",
    ] {
        assert!(text.contains(want), "text lacks {want}:\n{text}");
    }
    // A hint file says what it cannot tell.
    let (code, text, _) = run(&["--nccl-topo", &shared("Azure_azhpc-images_ndv4-topo.xml")]);
    assert_eq!(code, 0);
    assert!(text.contains("vendor unknown") && text.contains("no <nic>/<net> element"), "{text}");
}

#[test]
fn nvidia_smi_text_dot_and_paths_map() {
    let dir = tempfile::tempdir().unwrap();
    let dot = dir.path().join("h100.dot");
    let h100 = smi("nvidia-smi_h100-sxm_sglang-30401.txt");
    let (code, text, err) = run(&["--nvidia-smi-topo", &h100, "--as", "prefill", "--dot", dot.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for want in
        ["nvidia-smi topo -m matrix (8 GPUs, 8 NICs)", "NV18", "no PCI bus ids", "p2p_over_pcie[3]", "--nic-map 0,1,2,3,4,5,6,7"]
    {
        assert!(text.contains(want), "text lacks {want}:\n{text}");
    }
    let d = std::fs::read_to_string(&dot).unwrap();
    assert!(d.contains("NVLink x18") && d.contains("GPU_P[7]_PCI") && d.contains("IB_NIC_P[0]_PCI"), "{d}");
    let r = json(&[
        "--nvidia-smi-topo",
        &smi("nvidia-smi_dgx-a100_oyanghd.txt"),
        "--as",
        "prefill",
        "--pp-prefill",
        "4",
        "--ib-cards",
        "2",
    ]);
    let map = r.conformance.unwrap().proposed_nic_map_arg.unwrap();
    linkcal().args(["paths", "--pp-prefill", "4", "--pp-decode", "4", "--ib-cards", "2", "--nic-map", &map]).assert().success();
    // --nvidia-smi-topo with another input is a usage error.
    let (code, _, err) = run(&["--nvidia-smi-topo", &h100, "--xml", &shared("Azure_azhpc-images_ndv4-topo.xml")]);
    assert_eq!(code, 2, "{err}");
}

/// An NCCL dump written for cts1-pascal's two P100s and mlx5_0 (bus ids from its hwloc
/// export), with 4 NVLinks between the GPUs, a 100 Gb/s port, one GPU hwloc does not have and
/// a slower GPU link: the merge keeps hwloc's tree, takes the links and NIC facts, and reports
/// the differences.
#[test]
fn hwloc_and_nccl_dump_merge_and_report_disagreements() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("pascal-nccl.xml");
    let gpu = |bus: &str, peer: &str, speed: &str| {
        format!(
            "    <pci busid=\"{bus}\" class=\"0x030200\" vendor=\"0x10de\" device=\"0x15f8\" link_speed=\"{speed}\" link_width=\"16\">\n      <gpu dev=\"0\" sm=\"60\" rank=\"0\" gdr=\"1\">\n        <nvlink target=\"{peer}\" count=\"4\" tclass=\"0x030200\"/>\n      </gpu>\n    </pci>\n"
        )
    };
    let xml = format!(
        "<system version=\"1\">\n  <cpu numaid=\"0\" affinity=\"ff\" arch=\"x86_64\">\n{}{}    <pci busid=\"0000:85:00.0\" class=\"0x030200\" link_speed=\"8 GT/s\" link_width=\"16\"/>\n    <pci busid=\"0000:08:00.0\" class=\"0x020700\" link_speed=\"8 GT/s\" link_width=\"16\">\n      <nic>\n        <net name=\"mlx5_0\" dev=\"0\" speed=\"100000\" port=\"1\" gdr=\"1\"/>\n      </nic>\n    </pci>\n  </cpu>\n</system>\n",
        gpu("0000:04:00.0", "0000:07:00.0", "8 GT/s"),
        gpu("0000:07:00.0", "0000:04:00.0", "2.5 GT/s")
    );
    std::fs::write(&dump, xml).unwrap();
    let r = json(&["--xml", &shared("LLNL_mpibind_cts1-pascal.xml"), "--nccl-topo", dump.to_str().unwrap(), "--as", "prefill"]);
    assert_eq!(serde_json::to_value(r.source.kind).unwrap(), "merged");
    assert_eq!(r.gpus.len(), 2, "hwloc's GPUs");
    assert_eq!(r.gpu_links.len(), 1);
    assert_eq!((r.gpu_links[0].a.as_str(), r.gpu_links[0].b.as_str(), r.gpu_links[0].links), ("0000:04:00.0", "0000:07:00.0", 4));
    let nic = r.nics.iter().find(|n| n.name == "mlx5_0").unwrap();
    assert_eq!((nic.line_rate_Bps, nic.port, nic.gdr), (Some(100e9 / 8.0), Some(1), Some(true)));
    let d = r.disagreements.join("\n");
    assert!(d.contains("GPU 0000:85:00.0 is in the NCCL dump but not in the hwloc export"), "{d}");
    assert!(d.contains("GPU 0000:07:00.0: PCIe link"), "{d}");
    assert!(!d.contains("0000:04:00.0: PCIe link"), "8 GT/s x16 = hwloc's 15.75 GB/s within 1%: {d}");
    let c = r.conformance.unwrap();
    assert!(c.checks.iter().any(|x| x.check == "p2p_over_pcie[0]" && !x.ok), "{:?}", c.checks);
    // Two NCCL files cannot be merged.
    let (code, _, err) = run(&["--xml", dump.to_str().unwrap(), "--nccl-topo", dump.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("pascal-nccl.xml") && err.contains("not an hwloc export"), "{err}");
}

fn bad(args: &[&str], want: &[&str]) {
    let (code, _, err) = run(args);
    assert_eq!(code, 2, "args {args:?}: stderr {err}");
    for w in want {
        assert!(err.contains(w), "args {args:?}: stderr lacks '{w}': {err}");
    }
}

#[test]
fn bad_nccl_and_smi_input_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let rocm = std::fs::read_to_string(shared("ROCm_rccl_topo_8p_940vm.xml")).unwrap();
    let write = |n: &str, t: &str| std::fs::write(p(n), t).unwrap();
    write("truncated.xml", &rocm[..rocm.len() / 2]);
    write("version.xml", &rocm.replacen("version=\"2\"", "version=\"7\"", 1));
    write("nobus.xml", &rocm.replacen("busid=\"0021:00:00.0\" ", "", 1));
    write("target.xml", &rocm.replacen("target=\"0031:00:00.0\"", "target=\"00aa:00:00.0\"", 1));
    bad(&["--nccl-topo", &p("truncated.xml")], &["truncated.xml", "truncated"]);
    bad(&["--xml", &p("version.xml")], &["version.xml", "version=\"7\"", "line 1"]);
    bad(&["--nccl-topo", &p("nobus.xml")], &["nobus.xml", "<pci> at line 3", "no busid"]);
    bad(&["--nccl-topo", &p("target.xml")], &["target.xml", "00aa:00:00.0", "line 6", "does not define"]);

    let h100 = std::fs::read_to_string(smi("nvidia-smi_h100-sxm_sglang-30401.txt")).unwrap();
    let line_of = |t: &str, pat: &str| t.lines().position(|l| l.contains(pat)).unwrap() + 1;
    let ragged = h100.replacen("PIX     NODE    NODE    NODE    SYS     SYS     SYS     SYS     0-47", "PIX     NODE", 1);
    write("ragged.txt", &ragged);
    bad(&["--nvidia-smi-topo", &p("ragged.txt")], &["ragged.txt", &format!("line {}", line_of(&ragged, "GPU0     X")), "ragged"]);
    let legend = h100.replacen("  PIX  = ", "  PXN  = ", 1);
    write("legend.txt", &legend);
    bad(
        &["--nvidia-smi-topo", &p("legend.txt")],
        &["legend.txt", &format!("line {}", line_of(&legend, "PXN")), "unknown legend entry 'PXN'"],
    );
    let nolegend = h100[..h100.find("NIC Legend:").unwrap()].to_string();
    write("nolegend.txt", &nolegend);
    bad(&["--nvidia-smi-topo", &p("nolegend.txt")], &["nolegend.txt", "NIC0", "no NIC Legend entry"]);
    let extra = h100.replacen("  NIC7: mlx5_7", "  NIC7: mlx5_7\n  NIC9: mlx5_9", 1);
    write("extra.txt", &extra);
    bad(&["--nvidia-smi-topo", &p("extra.txt")], &["extra.txt", "NIC9", "no column"]);
    let cell = h100.replacen("NV18", "QQ7", 1);
    write("cell.txt", &cell);
    bad(&["--nvidia-smi-topo", &p("cell.txt")], &["cell.txt", "unknown cell 'QQ7'"]);
    // GPU0 and NIC0 PIX but NIC0 and GPU0 SYS: not symmetric.
    let asym = h100.replacen("NIC0    PIX ", "NIC0    SYS ", 1);
    write("asym.txt", &asym);
    bad(&["--nvidia-smi-topo", &p("asym.txt")], &["asym.txt", "GPU0 / NIC0"]);
    write("empty.txt", "");
    bad(&["--nvidia-smi-topo", &p("empty.txt")], &["empty.txt", "no matrix header"]);
}
