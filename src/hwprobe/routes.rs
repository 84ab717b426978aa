//! Which hardware probe measures each spec route on a real rack (the route's hardware
//! transport, see [`crate::transport::routes`]), and the flow options for running a catalogue
//! probe inside one host.

use serde_json::{json, Value};

use super::{Probe, ProbeKind};
use crate::spec::{PathRef, RackShape};

/// The probe kind (its `as_str` is the transport name) and flow options for `path`: GPUs and
/// NICs by bus order, as [`crate::transport::routes::hardware_flow`] names them.
pub fn hardware_flow(path: &PathRef, shape: &RackShape) -> (ProbeKind, Value) {
    let (t, options) = crate::transport::routes::hardware_flow(path, shape);
    let probe = ProbeKind::ALL.into_iter().find(|p| p.as_str() == t.as_str()).expect("every hardware transport is a probe kind");
    (probe, options)
}

/// Flow options for running a catalogue probe inside one host: GPUs by CUDA ordinal, NICs by
/// name; an RDMA probe writes from its NIC to the receiving end the catalogue chose
/// ([`Probe::peer`]: a NIC of the same link layer and, for GPUDirect, the GPU nearest that NIC
/// or host memory), so both NICs and the cable or loopback between them are crossed.
pub fn local_flow(p: &Probe) -> Option<Value> {
    let gpu = |i: usize| p.gpus.get(i).copied();
    Some(match p.kind {
        ProbeKind::CudaP2p | ProbeKind::GpuStagedTcp | ProbeKind::HipP2p | ProbeKind::HipStagedTcp => {
            json!({ "src_gpu": gpu(0)?, "dst_gpu": gpu(1)? })
        }
        ProbeKind::CudaD2h | ProbeKind::HipD2h => json!({ "src_gpu": gpu(0)? }),
        ProbeKind::CudaH2d | ProbeKind::HipH2d => json!({ "dst_gpu": gpu(0)? }),
        ProbeKind::GpudirectRdma => {
            let (nic, peer) = (p.nic.clone()?, p.peer.clone()?);
            let mut o = json!({ "src_gpu": gpu(0)?, "src_nic": nic, "dst_nic": peer.nic });
            match peer.gpu {
                Some(g) => o["dst_gpu"] = json!(g),
                None => o["dst_memory"] = json!("host"),
            }
            o
        }
        ProbeKind::HostRdma => json!({ "src_nic": p.nic.clone()?, "dst_nic": p.peer.clone()?.nic }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hwprobe::Status;
    use crate::spec::{HopOptions, RouteKind, RouteSet};

    #[test]
    fn every_route_of_a_rack_has_a_hardware_probe() {
        let shape = RackShape::with_nic_map(4, 2, 2, Some(vec![0, 1, 1, 0])).unwrap();
        let set = RouteSet::build(&shape, None, HopOptions::default(), true).unwrap();
        for r in &set.routes {
            let (kind, opt) = hardware_flow(&r.path, &shape);
            let want = match r.path.kind {
                RouteKind::PrefillInterRank => "cuda_p2p",
                RouteKind::PrefillToDecode => "gpudirect_rdma",
                RouteKind::DecodeInterRank => "gpu_staged_tcp",
                RouteKind::PrefillGpuToHost | RouteKind::DecodeGpuToHost => "cuda_d2h",
                RouteKind::PrefillHostToGpu | RouteKind::DecodeHostToGpu => "cuda_h2d",
                RouteKind::HostRdma => "host_rdma",
            };
            assert_eq!(kind.as_str(), want, "{}", r.path);
            assert!(opt.is_object());
        }
        // Path 2 from prefill GPU 2 uses NIC 1 (the explicit map), by bus order.
        let (_, o) = hardware_flow(&PathRef { kind: RouteKind::PrefillToDecode, src: 2, dst: 1 }, &shape);
        assert_eq!(
            o,
            json!({"src_gpu": {"by_bus": 2}, "src_nic": {"by_bus": 1}, "dst_gpu": {"by_bus": 0}, "dst_nic": {"by_bus": 0}})
        );
        let (_, o) = hardware_flow(&PathRef { kind: RouteKind::PrefillHostToGpu, src: 0, dst: 3 }, &shape);
        assert_eq!(o, json!({"dst_gpu": {"by_bus": 3}}));
        // The options parse back into the selectors the transports read.
        let sel = crate::gpu::device::GpuSelector::from_options(&o, "dst_gpu").unwrap();
        assert_eq!(sel, Some(crate::gpu::device::GpuSelector::BusOrder { by_bus: 3 }));
    }

    fn probe(kind: ProbeKind, gpus: Vec<usize>, nic: Option<&str>, peer: Option<(&str, Option<usize>)>) -> Probe {
        let peer = peer.map(|(n, gpu)| crate::hwprobe::nics::LocalPeer { nic: n.to_string(), gpu });
        Probe { kind, target: String::new(), path: None, gpus, nic: nic.map(str::to_string), peer, status: Status::Applies }
    }

    #[test]
    fn local_runs_go_to_the_chosen_peer() {
        assert_eq!(
            local_flow(&probe(ProbeKind::HostRdma, vec![], Some("mlx5_1"), Some(("mlx5_0", None)))),
            Some(json!({"src_nic": "mlx5_1", "dst_nic": "mlx5_0"}))
        );
        assert_eq!(local_flow(&probe(ProbeKind::HostRdma, vec![], Some("mlx5_1"), None)), None, "no peer, no run");
        let g = local_flow(&probe(ProbeKind::GpudirectRdma, vec![3], Some("mlx5_0"), Some(("mlx5_1", Some(5))))).unwrap();
        assert_eq!(g, json!({"src_gpu": 3, "src_nic": "mlx5_0", "dst_nic": "mlx5_1", "dst_gpu": 5}), "into the GPU near mlx5_1");
        let h = local_flow(&probe(ProbeKind::GpudirectRdma, vec![3], Some("mlx5_0"), Some(("mlx5_1", None)))).unwrap();
        assert_eq!(h["dst_memory"], "host");
        assert!(h.get("dst_gpu").is_none());
        assert_eq!(local_flow(&probe(ProbeKind::CudaP2p, vec![1, 0], None, None)), Some(json!({"src_gpu": 1, "dst_gpu": 0})));
        assert_eq!(local_flow(&probe(ProbeKind::CudaH2d, vec![2], None, None)), Some(json!({"dst_gpu": 2})));
        assert_eq!(local_flow(&probe(ProbeKind::CudaP2p, vec![1], None, None)), None, "a pair needs two GPUs");
        assert_eq!(local_flow(&probe(ProbeKind::HipP2p, vec![2, 3], None, None)), Some(json!({"src_gpu": 2, "dst_gpu": 3})));
        assert_eq!(local_flow(&probe(ProbeKind::HipD2h, vec![4], None, None)), Some(json!({"src_gpu": 4})));
        assert_eq!(local_flow(&probe(ProbeKind::HipH2d, vec![], None, None)), None, "a copy needs its GPU");
    }
}
