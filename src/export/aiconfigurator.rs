//! AIConfigurator systems YAML: one complete file for the prefill server and one for a decode
//! server. linkcal supplies the `node:` block (the network, measured); every other block
//! (`data_dir`, `gpu:`, `misc:` ...) is copied from a base systems file of AIConfigurator's.

use std::fmt::Write;

use super::{min_capacity, min_over, need, typical_alpha, ExportError, ExportFile, Exporter, Options};
use crate::model::Calibration;
use crate::spec::{RouteKind, SegmentKind};

/// A number PyYAML's SafeLoader reads as a float (YAML 1.1 needs a dot and a signed exponent).
pub fn yaml_float(v: f64) -> String {
    let s = format!("{v:.6e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

/// The base file without its top-level `node:` block (and without comment-only lines).
fn base_without_node(base: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in base.lines() {
        let top = !line.starts_with([' ', '\t', '#']) && !line.trim().is_empty();
        if top {
            skipping = line.trim_start().starts_with("node:");
        }
        if !skipping && !line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

struct Node {
    gpus: usize,
    inter: f64,
    intra: f64,
    pcie: f64,
    lat: f64,
    what: [&'static str; 4],
}

fn file(cal: &Calibration, base_name: &str, base: &str, role: &str, n: &Node) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# linkcal {} -> AIConfigurator systems file, {role}.", cal.provenance.tool_version);
    let _ = writeln!(
        s,
        "# {} rack, payload scale {}, runs {}.",
        if cal.origin.emulated { "emulated" } else { "real" },
        cal.origin.payload_scale,
        cal.origin.run_ids.join(" ")
    );
    let _ =
        writeln!(s, "# node: measured by linkcal (B/s per GPU per direction, seconds). Other blocks: copied from {base_name}.");
    for w in n.what {
        let _ = writeln!(s, "# {w}");
    }
    let _ = writeln!(s, "# AIConfigurator's P2P op charges every pipeline hop bytes / inter_node_bw + p2p_latency.");
    let _ = writeln!(s, "# Dropped: contention (shared NICs, cables, PCIe links), per-direction and per-GPU differences,");
    let _ = writeln!(s, "# series groups, the small-payload pieces of the alpha-beta models, the intervals.");
    s.push_str(&base_without_node(base));
    let _ = writeln!(s, "node:");
    let _ = writeln!(s, "  num_gpus_per_node: {}", n.gpus);
    let _ = writeln!(s, "  inter_node_bw: {}", yaml_float(n.inter));
    let _ = writeln!(s, "  intra_node_bw: {}", yaml_float(n.intra));
    let _ = writeln!(s, "  pcie_bw: {}", yaml_float(n.pcie));
    let _ = writeln!(s, "  p2p_latency: {}", yaml_float(n.lat));
    s
}

/// `linkcal_prefill.yaml` and `linkcal_decode.yaml`, built on `base` (an AIConfigurator systems
/// YAML named `base_name`, e.g. its `h200_sxm.yaml`, for the GPU and memory figures).
pub fn aiconfigurator(cal: &Calibration, base_name: &str, base: &str) -> Result<Vec<ExportFile>, ExportError> {
    let gpu_p = need(min_over(cal, SegmentKind::GpuP), "GPU_P[i]_PCI")?;
    let gpu_d = need(min_over(cal, SegmentKind::GpuD), "GPU_D[j]_PCI")?;
    let prefill = Node {
        gpus: cal.shape.pp_prefill,
        inter: need(min_capacity(cal, RouteKind::PrefillToDecode), "Path 2 (prefill_to_decode) sustained rate")?,
        intra: min_capacity(cal, RouteKind::PrefillInterRank).unwrap_or(gpu_p),
        pcie: gpu_p,
        lat: need(typical_alpha(cal, RouteKind::PrefillToDecode), "Path 2 (prefill_to_decode) fixed cost")?,
        what: [
            "inter_node_bw: slowest Path-2 (KV handoff over IB) sustained rate; p2p_latency: its median fixed cost.",
            "intra_node_bw: slowest Path-1 sustained rate (GPU_P PCIe when PP_prefill = 1); pcie_bw: smallest",
            "GPU_P[i]_PCI capacity. The prefill pipeline runs over Path 1 (intra_node_bw), which AIConfigurator's",
            "P2P op does not use: for Path-1 times use `linkcal predict`.",
        ],
    };
    let decode = Node {
        gpus: 1,
        inter: need(min_capacity(cal, RouteKind::DecodeInterRank), "Path 3 (decode_inter_rank) sustained rate")?,
        intra: gpu_d,
        pcie: gpu_d,
        lat: need(typical_alpha(cal, RouteKind::DecodeInterRank), "Path 3 (decode_inter_rank) fixed cost")?,
        what: [
            "inter_node_bw: slowest Path-3 (decode inter-rank over Ethernet) sustained rate; p2p_latency: its",
            "median fixed cost. One decode GPU per server: intra_node_bw and pcie_bw are the smallest",
            "GPU_D[j]_PCI capacity.",
            "The decode pipeline's P2P is Path 3, as AIConfigurator charges it.",
        ],
    };
    Ok(vec![
        ExportFile { name: "linkcal_prefill.yaml".into(), text: file(cal, base_name, base, "prefill server", &prefill) },
        ExportFile { name: "linkcal_decode.yaml".into(), text: file(cal, base_name, base, "decode server", &decode) },
    ])
}

/// Two AIConfigurator systems YAMLs (prefill and decode server) on an `--aic-base` file.
pub struct Aiconfigurator;

impl Exporter for Aiconfigurator {
    fn files(&self, cal: &Calibration, opt: &Options) -> Result<Vec<ExportFile>, ExportError> {
        let (name, text) = opt.aic_base.as_ref().ok_or(ExportError::NeedsOption {
            format: "AIConfigurator",
            flag: "--aic-base",
            why: "GPU and memory figures linkcal does not measure come from one of its systems/*.yaml files",
        })?;
        aiconfigurator(cal, name, text)
    }
}
