//! The local driver against a stand-in transport that moves no data but keeps the contract:
//! prepared receiver served on a thread, per-transfer time, finish, receiver's count; its
//! multi-lane call records each sample's plan (lanes, copies) before running it the default
//! way. Options `fail_after` and `waive` make it fail or be waived, to check the run goes on.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::*;
use crate::gpu::CudaDevice;
use crate::hwprobe::{catalogue, Inventory, Nic, Role};
use crate::model::results::StopReason;
use crate::transport::lanes::{self, LaneRun, MIN_COPIES_PER_SAMPLE};
use crate::transport::{Applicability, FlowSpec, PreparedReceiver, Receiver, ReceiverStats, Sender, Transport};

/// Every multi-lane sample the stand-in ran: (first flow id, lanes, copies per lane).
fn samples() -> &'static Mutex<Vec<(u64, usize, u32)>> {
    static S: OnceLock<Mutex<Vec<(u64, usize, u32)>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn chans() -> &'static Mutex<HashMap<u64, mpsc::Sender<u64>>> {
    static C: OnceLock<Mutex<HashMap<u64, mpsc::Sender<u64>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

struct Fake(TransportKind);
struct FakeSender {
    id: u64,
    tx: mpsc::Sender<u64>,
    left: Option<u64>,
}
struct FakeReceiver(mpsc::Receiver<u64>);

impl Transport for Fake {
    fn kind(&self) -> TransportKind {
        self.0
    }
    fn applicability(&self) -> Applicability {
        Applicability::Applies
    }
    fn prepare_receiver(&self, flow: &FlowSpec) -> Result<PreparedReceiver, TransportError> {
        if flow.options.get("waive").is_some() {
            return Err(TransportError::Waived { kind: self.0, reason: "stand-in waiver".into() });
        }
        let (tx, rx) = mpsc::channel();
        chans().lock().unwrap().insert(flow.id, tx);
        Ok(PreparedReceiver { endpoint: serde_json::json!({ "id": flow.id }), receiver: Box::new(FakeReceiver(rx)) })
    }
    fn connect_sender(&self, flow: &FlowSpec, endpoint: &serde_json::Value) -> Result<Box<dyn Sender>, TransportError> {
        assert_eq!(endpoint["id"], flow.id);
        let tx = chans().lock().unwrap().remove(&flow.id).unwrap();
        Ok(Box::new(FakeSender { id: flow.id, tx, left: flow.options.get("fail_after").and_then(|v| v.as_u64()) }))
    }
    fn run_lanes(&self, senders: &mut [&mut dyn Sender], bytes: u64, copies: u32) -> Result<LaneRun, TransportError> {
        let first = senders[0].as_any_mut().and_then(|a| a.downcast_mut::<FakeSender>()).unwrap().id;
        samples().lock().unwrap().push((first, senders.len(), copies));
        // The lanes' transfers run as the default does, but start together as behind a device
        // gate: on a loaded host thread start-up can exceed a stand-in lane's 2 ms, the lanes
        // then do not overlap at all, and what the set carried is not the sum of its lanes.
        let mut run = lanes::by_threads(senders, bytes, copies)?;
        run.lanes.iter_mut().for_each(|l| l.start_s = 0.0);
        Ok(LaneRun { gate: lanes::LaneGate::Device, ..run })
    }
}

impl Sender for FakeSender {
    fn transfer(&mut self, bytes: u64) -> Result<Duration, TransportError> {
        if let Some(n) = self.left.as_mut() {
            if *n == 0 {
                return Err(TransportError::protocol(0, "stand-in failure"));
            }
            *n -= 1;
        }
        let t = Instant::now();
        std::thread::sleep(Duration::from_micros(200 + bytes / 1_000_000));
        self.tx.send(bytes).unwrap();
        Ok(t.elapsed())
    }
    fn finish(self: Box<Self>) -> Result<(), TransportError> {
        self.tx.send(u64::MAX).unwrap();
        Ok(())
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

impl Receiver for FakeReceiver {
    fn serve(self: Box<Self>) -> Result<ReceiverStats, TransportError> {
        let mut s = ReceiverStats::default();
        loop {
            match self.0.recv_timeout(Duration::from_secs(5)) {
                Ok(u64::MAX) | Err(_) => return Ok(s),
                Ok(b) => {
                    s.transfers += 1;
                    s.bytes += b;
                }
            }
        }
    }
}

fn fake(kind: TransportKind) -> Box<dyn Transport> {
    Box::new(Fake(kind))
}

fn cfg() -> RunConfig {
    RunConfig {
        sizes: vec![1 << 20],
        warmup: 2,
        min_samples: 3,
        max_samples: 6,
        ci_target: 1e-9,
        time_cap_s: 60.0,
        timeout_s: 5.0,
        options: Default::default(),
    }
}

fn plan(options: serde_json::Value) -> FlowPlan {
    FlowPlan {
        kind: TransportKind::CudaP2p,
        options,
        path: Some(PathRef { kind: RouteKind::PrefillInterRank, src: 0, dst: 1 }),
        label: "p".into(),
    }
}

#[test]
fn solo_warms_up_then_stops_by_its_rule_and_the_counts_agree() {
    let out = measure(fake, &[plan(serde_json::json!({}))], 101, 1 << 20, &cfg()).unwrap();
    let t = &out.flows[0];
    assert_eq!(t.warmup, 2);
    assert_eq!(t.times.len(), 6, "an unreachable CI target runs to the sample cap");
    assert_eq!(out.stop, StopReason::SampleCap);
    let loose = RunConfig { ci_target: 10.0, ..cfg() };
    let out = measure(fake, &[plan(serde_json::json!({}))], 102, 1 << 20, &loose).unwrap();
    assert_eq!((out.flows[0].times.len(), out.stop), (3, StopReason::Converged));
    let e = measure(fake, &[plan(serde_json::json!({"fail_after": 3}))], 103, 1 << 20, &cfg()).unwrap_err();
    assert!(e.to_string().contains("stand-in failure"));
}

#[test]
fn a_contended_set_is_one_multi_lane_operation_per_sample() {
    let plans = vec![plan(serde_json::json!({})), plan(serde_json::json!({})), plan(serde_json::json!({}))];
    let out = measure(fake, &plans, 200, 1 << 20, &cfg()).unwrap();
    let n = out.flows[0].times.len();
    assert!(out.flows.iter().all(|f| f.times.len() == n && f.warmup == 2));
    assert_eq!((n, out.stop), (6, StopReason::SampleCap), "the stop rule runs sets too");
    // One call per sample, every lane in it, at least 8 copies per lane.
    let mine: Vec<(usize, u32)> = samples().lock().unwrap().iter().filter(|s| s.0 == 200).map(|s| (s.1, s.2)).collect();
    assert_eq!(mine, vec![(3, MIN_COPIES_PER_SAMPLE); n]);
    // Each window is one sample: every lane delivers its copies evenly over its own interval,
    // so over the interval common to all, the set carried the sum of the lanes' rates.
    assert_eq!(out.sums.len(), n);
    for (k, sum) in out.sums.iter().enumerate() {
        let want: f64 = out.flows.iter().map(|f| (1 << 20) as f64 / f.times[k]).sum();
        assert!((sum - want).abs() <= want * 1e-9, "sample {k}: {sum} vs {want}");
    }
    // --loops above the minimum sets the copies per lane.
    let mut c = cfg();
    c.options.insert("loops".into(), serde_json::json!(16));
    measure(fake, &plans[..2], 210, 1 << 20, &c).unwrap();
    assert!(samples().lock().unwrap().iter().filter(|s| s.0 == 210).all(|s| (s.1, s.2) == (2, 16)));
    // A lane that fails mid-sample does not hold the others at the gate.
    let plans = vec![plan(serde_json::json!({})), plan(serde_json::json!({"fail_after": 4}))];
    let e = measure(fake, &plans, 300, 1 << 20, &cfg()).unwrap_err();
    assert!(e.to_string().contains("stand-in failure"));
}

fn dev(ordinal: usize, bus: &str) -> CudaDevice {
    CudaDevice { ordinal, name: "GPU".into(), pci: bus.parse().unwrap(), total_mem_bytes: 1 << 30, dmabuf: true }
}

fn inventory() -> Inventory {
    Inventory {
        cuda: Ok(vec![dev(0, "1b:00.0"), dev(1, "3b:00.0")]),
        peers: vec![(0, 1, true)],
        amd: vec!["c1:00.0".parse().unwrap()],
        hip: crate::hwprobe::hip::HipInventory::absent(),
        rdma: Ok(vec![Nic { name: "mlx5_0".into(), numa_node: None, active: None, link_layer: None }]),
        peermem: false,
        cuda_links: crate::hwprobe::tests::switch_local(&["1b:00.0", "3b:00.0"]),
    }
}

#[test]
fn plans_split_routes_sets_and_loopbacks() {
    let c = catalogue(&inventory(), Role::Prefill, None, None);
    let Plans { solo: solo_p, sets, loopback: loops } = plans(&c);
    let kinds: Vec<&str> = solo_p.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["cuda_p2p", "cuda_d2h", "cuda_h2d", "cuda_d2h", "cuda_h2d"]);
    let names: Vec<&str> = sets.iter().map(|s| s.0.as_str()).collect();
    assert!(names[0].starts_with("bidir:cuda_p2p gpu0"));
    assert_eq!(&names[1..], ["all_d2h", "all_h2d"]);
    let back = &sets[0].1[1];
    assert_eq!(back.path, Some(PathRef { kind: RouteKind::PrefillInterRank, src: 1, dst: 0 }));
    assert_eq!(back.options, serde_json::json!({"src_gpu": 1, "dst_gpu": 0}));
    let lk: Vec<&str> = loops.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(lk, ["gpu_staged_tcp", "host_rdma", "gpudirect_rdma", "gpudirect_rdma"]);
    assert!(loops.iter().all(|p| p.path.is_none()), "loopbacks are not spec routes");
}

#[test]
fn a_local_run_writes_the_emulated_rack_files_and_goes_on_past_waivers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = catalogue(&inventory(), Role::Prefill, None, None);
    // One probe waived at run time by the transport itself.
    let cfg = RunConfig { sizes: vec![1 << 20, 4 << 20], ..cfg() };
    let h2d = c.iter_mut().find(|p| p.kind == ProbeKind::CudaH2d).unwrap();
    h2d.gpus = vec![0];
    let out = run(fake, &c, RackShape::new(2, 1, 1).unwrap(), &cfg, dir.path()).unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let r: Results = serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
    let ids = |r: &Results| r.measurements.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&r), ids(&out.results));
    assert_eq!(r.schema, RESULTS_SCHEMA);
    // 5 solo routes + 3 sets, at 2 sizes.
    assert_eq!(r.measurements.len(), 16);
    let m = r.measurements.iter().find(|m| m.id == "solo/prefill_inter_rank:0->1/1048576").unwrap();
    assert_eq!(m.transport, "cuda_p2p");
    assert_eq!(m.flows[0].segments.len(), 2);
    assert_eq!(m.flows[0].samples as usize, m.flows[0].transfer_times_s.len());
    let bidir = r.measurements.iter().find(|m| m.set.as_deref().is_some_and(|s| s.starts_with("bidir"))).unwrap();
    assert_eq!(bidir.flows.len(), 2);
    let back = &bidir.flows[1];
    assert_eq!((back.path.src, back.path.dst), (1, 0));
    assert_eq!(
        back.segments.iter().map(|h| format!("{} {:?}", h.id, h.dir)).collect::<Vec<_>>(),
        ["GPU_P[1]_PCI Up", "GPU_P[0]_PCI Down"]
    );
    assert!(bidir.aggregate.is_some());
    let d2h = r.measurements.iter().find(|m| m.id.starts_with("solo/prefill_gpu_to_host:1->0")).unwrap();
    assert_eq!(d2h.flows[0].segments[1].id.to_string(), "Uplink_P_PCI");
    let hip = "libamdhip64.so not found (AMD GPUs at 0000:c1:00.0: install the ROCm runtime)";
    assert!(r.waivers.iter().any(|w| w.probe == "hip_p2p all GPUs" && w.reason == hip), "{:?}", r.waivers);
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 16);
    assert!(dir.path().join("results.csv").exists());
    let lb: Vec<Loopback> = serde_json::from_str(&std::fs::read_to_string(dir.path().join("loopback.json")).unwrap()).unwrap();
    assert_eq!(lb.len(), 8, "4 loopback probes at 2 sizes");
    assert!(lb.iter().all(|l| l.goodput_Bps.is_some()));
}

#[test]
fn waived_and_failing_flows_are_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory {
        cuda: Ok(vec![dev(0, "1b:00.0")]),
        peers: vec![],
        amd: vec![],
        hip: crate::hwprobe::hip::HipInventory::absent(),
        rdma: Err(crate::rdma::Unavailable::NoDevice(None)),
        peermem: false,
        cuda_links: Default::default(),
    };
    let c = catalogue(&inv, Role::Decode, None, None);
    let mut cfg = cfg();
    cfg.options.insert("waive".into(), serde_json::json!(true));
    let out = run(fake, &c, RackShape::new(1, 1, 1).unwrap(), &cfg, dir.path()).unwrap();
    assert!(out.results.measurements.is_empty());
    assert!(out.results.waivers.iter().any(|w| w.reason == "stand-in waiver" && w.probe.starts_with("cuda_d2h")));
    assert!(out.results.waivers.iter().any(|w| w.reason.starts_with("no RDMA device")));
    let mut cfg = RunConfig { sizes: vec![1 << 20], ..super::tests::cfg() };
    cfg.options.insert("fail_after".into(), serde_json::json!(1));
    let out = run(fake, &c, RackShape::new(1, 1, 1).unwrap(), &cfg, dir.path()).unwrap();
    assert_eq!(out.failures.len(), 2, "{:?}", out.failures);
    assert!(out.failures[0].contains("stand-in failure"));
}
