//! Which hardware transport carries each spec route on a real rack, and the flow options that
//! name its GPUs and NICs. GPUs and NICs are named by PCI bus order (`{"by_bus": n}`), the
//! numbering discovery uses, so every agent resolves them on its own host: prefill GPU i is
//! the i-th GPU by bus id on the prefill server, its NIC k the k-th RDMA NIC by bus id, and a
//! decode server's GPU and NIC are its first.

use serde_json::{json, Value};

use super::TransportKind;
use crate::spec::{PathRef, RackShape, RouteKind};

fn bus(n: usize) -> Value {
    json!({ "by_bus": n })
}

/// The hardware transport of a route kind.
pub fn hardware_transport(kind: RouteKind) -> TransportKind {
    match kind {
        RouteKind::PrefillInterRank => TransportKind::CudaP2p,
        RouteKind::PrefillToDecode => TransportKind::GpudirectRdma,
        RouteKind::DecodeInterRank => TransportKind::GpuStagedTcp,
        RouteKind::PrefillGpuToHost | RouteKind::DecodeGpuToHost => TransportKind::CudaD2h,
        RouteKind::PrefillHostToGpu | RouteKind::DecodeHostToGpu => TransportKind::CudaH2d,
        RouteKind::HostRdma => TransportKind::HostRdma,
    }
}

/// The hardware transport of `path` and the flow options (GPUs and NICs by bus order) it needs.
pub fn hardware_flow(path: &PathRef, shape: &RackShape) -> (TransportKind, Value) {
    let (s, d) = (path.src, path.dst);
    let options = match path.kind {
        RouteKind::PrefillInterRank => json!({ "src_gpu": bus(s), "dst_gpu": bus(d) }),
        RouteKind::PrefillToDecode => {
            let k = shape.nic_map.get(s).copied().unwrap_or(s % shape.ib_cards.max(1));
            json!({ "src_gpu": bus(s), "src_nic": bus(k), "dst_gpu": bus(0), "dst_nic": bus(0) })
        }
        RouteKind::DecodeInterRank => json!({ "src_gpu": bus(0), "dst_gpu": bus(0) }),
        RouteKind::PrefillGpuToHost => json!({ "src_gpu": bus(s) }),
        RouteKind::PrefillHostToGpu => json!({ "dst_gpu": bus(d) }),
        RouteKind::DecodeGpuToHost => json!({ "src_gpu": bus(0) }),
        RouteKind::DecodeHostToGpu => json!({ "dst_gpu": bus(0) }),
        RouteKind::HostRdma => json!({ "src_nic": bus(s), "dst_nic": bus(0) }),
    };
    (hardware_transport(path.kind), options)
}

/// The options a flow of transport `kind` on `path` needs: the hardware flow's when `kind` is
/// the hardware transport of the route (GPUs and NICs by bus order), else none (`null`).
pub fn flow_options(kind: TransportKind, path: &PathRef, shape: &RackShape) -> Value {
    let (hw, options) = hardware_flow(path, shape);
    if hw == kind {
        options
    } else {
        Value::Null
    }
}

/// The options of a NIXL flow on `path`: the run's NIXL options plus, with `mem: vram`, the
/// GPUs (by bus order) the route's hardware flow names.
pub fn nixl_options(nixl: &Value, path: &PathRef, shape: &RackShape) -> Value {
    let mut o = if nixl.is_object() { nixl.clone() } else { json!({}) };
    if o.get("mem").and_then(Value::as_str) == Some("vram") {
        let (_, hw) = hardware_flow(path, shape);
        for key in ["src_gpu", "dst_gpu"] {
            if let Some(g) = hw.get(key) {
                o[key] = g.clone();
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_flows_get_options_only_for_their_hardware_transport() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let p = PathRef { kind: RouteKind::PrefillInterRank, src: 0, dst: 1 };
        assert_eq!(flow_options(TransportKind::CudaP2p, &p, &shape), json!({"src_gpu": {"by_bus": 0}, "dst_gpu": {"by_bus": 1}}));
        assert_eq!(flow_options(TransportKind::HostTcp, &p, &shape), Value::Null);
        let p = PathRef { kind: RouteKind::HostRdma, src: 0, dst: 1 };
        assert_eq!(flow_options(TransportKind::HostRdma, &p, &shape)["src_nic"], json!({"by_bus": 0}));
        let p2 = PathRef { kind: RouteKind::PrefillToDecode, src: 1, dst: 0 };
        let o = nixl_options(&json!({"mem": "vram", "block_bytes": 4096}), &p2, &shape);
        assert_eq!((o["src_gpu"].clone(), o["dst_gpu"].clone(), o["block_bytes"].clone()), (bus(1), bus(0), json!(4096)));
        assert_eq!(nixl_options(&Value::Null, &p2, &shape), json!({}));
        // Every hardware transport the runner picks per route gets its options.
        for kind in RouteKind::ALL {
            let t = hardware_transport(kind);
            let p = PathRef { kind, src: 0, dst: 1 };
            assert!(flow_options(t, &p, &shape).is_object(), "{kind:?} -> {t}");
        }
    }
}
