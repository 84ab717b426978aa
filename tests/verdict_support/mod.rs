//! Synthetic results and calibrations for verdict and report tests: a rack with known per-hop
//! rates, transfer times = alpha + bytes / min(rate) with seeded multiplicative noise, and a
//! calibration derived the way the spec's paths allow (bottleneck, lower bound, series group).
#![allow(dead_code, non_snake_case)]

use std::collections::BTreeMap;
use std::path::Path;

use linkcal::model::calibration::{AlphaBeta, Method, PathModel, RawPoint, SegmentEstimate, SeriesGroup};
use linkcal::model::results::{Aggregate, FlowResult, Measurement, MeasurementKind, RackSummary, StopReason, Summary};
use linkcal::model::{Calibration, Provenance, Results};
use linkcal::spec::{Dir, Hop, HopOptions, RackShape, RouteKind, RouteSet, SegmentId};
use linkcal::stats::rng::SplitMix64;

/// A rack with known rates.
#[derive(Clone)]
pub struct Synth {
    pub shape: RackShape,
    /// Goodput capacity per segment direction, B/s.
    pub rates: BTreeMap<Hop, f64>,
    /// Relative noise (uniform, +-) on each transfer time.
    pub noise: f64,
    pub seed: u64,
    pub samples: usize,
    pub sizes: Vec<u64>,
    /// Fixed cost per transfer, s.
    pub alpha: f64,
    /// Also measure the isolation routes (GPU<->host copies, host RDMA), as real racks can.
    pub isolation: bool,
}

pub fn hop(s: &str) -> Hop {
    s.parse().unwrap()
}

impl Synth {
    /// A (2,2,1) rack: 118 MB/s everywhere except a 59 MB/s Eth cable up on server 0 and a
    /// 95 MB/s GPU_D[1]_PCI down, so Path 2 into server 1 has GPU_D[1] as its bottleneck.
    pub fn default_rack() -> Synth {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let mut rates = BTreeMap::new();
        for seg in shape.segments() {
            for dir in [Dir::Up, Dir::Down] {
                rates.insert(Hop { id: seg, dir }, 1.18e8);
            }
        }
        let mut s = Synth {
            shape,
            rates,
            noise: 0.01,
            seed: 1,
            samples: 40,
            sizes: vec![64 << 10, 1 << 20, 8 << 20],
            alpha: 2e-4,
            isolation: false,
        };
        s.set("Eth_Cable_D[0] up", 5.9e7);
        s.set("GPU_D[1]_PCI down", 9.5e7);
        s.set("GPU_P[0]_PCI down", 1.0e8);
        s
    }

    pub fn set(&mut self, h: &str, v: f64) -> &mut Self {
        self.rates.insert(hop(h), v);
        self
    }

    /// Same rack with `h` scaled by `factor` (e.g. 0.9 = 10% slower).
    pub fn scaled(&self, h: &str, factor: f64) -> Synth {
        let mut s = self.clone();
        let v = s.rates[&hop(h)] * factor;
        s.set(h, v);
        s
    }

    pub fn with_seed(&self, seed: u64) -> Synth {
        let mut s = self.clone();
        s.seed = seed;
        s
    }

    pub fn routes(&self) -> Vec<linkcal::spec::Route> {
        RouteSet::build(&self.shape, None, HopOptions::default(), self.isolation).unwrap().routes
    }

    fn route_rate(&self, hops: &[Hop]) -> f64 {
        hops.iter().map(|h| self.rates[h]).fold(f64::INFINITY, f64::min)
    }

    /// Uniform noise in [-1, 1), one stream per seed and salt.
    fn noise_seq(&self, salt: u64) -> impl Iterator<Item = f64> {
        let mut rng = SplitMix64::new(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
        std::iter::repeat_with(move || rng.range(-1.0, 1.0))
    }

    fn flow(&self, hops: &[Hop], path: linkcal::spec::PathRef, bytes: u64, rate: f64, salt: u64) -> FlowResult {
        let base = self.alpha + bytes as f64 / rate;
        let times: Vec<f64> = self.noise_seq(salt).take(self.samples).map(|u| base * (1.0 + self.noise * u)).collect();
        let good: Vec<f64> = times.iter().map(|t| bytes as f64 / t).collect();
        FlowResult {
            path,
            segments: hops.to_vec(),
            payload_bytes: bytes,
            goodput_Bps: rate_summary(&good),
            transfer_time_s: time_summary(&times),
            samples: times.len() as u64,
            warmup: 2,
            stop: StopReason::Converged,
            transfer_times_s: times,
        }
    }

    pub fn results(&self) -> Results {
        let mut measurements = Vec::new();
        let routes = self.routes();
        for (ri, r) in routes.iter().enumerate() {
            for (si, &b) in self.sizes.iter().enumerate() {
                let f = self.flow(&r.segments, r.path, b, self.route_rate(&r.segments), (ri * 100 + si) as u64);
                measurements.push(Measurement {
                    id: format!("solo/{}/{b}", r.path),
                    kind: MeasurementKind::Solo,
                    set: None,
                    transport: "host_tcp".into(),
                    kv_block_bytes: None,
                    kv_block_tokens: None,
                    started_at: "2026-11-24T00:00:00Z".into(),
                    duration_s: 1.0,
                    flows: vec![f],
                    aggregate: None,
                });
            }
        }
        // All Path-2 flows share IB_Cable_P[0] up: each gets its share of it (or its own bottleneck).
        let p2: Vec<_> = routes.iter().filter(|r| r.path.kind == RouteKind::PrefillToDecode).collect();
        let shared = self.rates[&hop("IB_Cable_P[0] up")] / p2.len() as f64;
        let b = *self.sizes.last().unwrap();
        let flows: Vec<FlowResult> = p2
            .iter()
            .enumerate()
            .map(|(i, r)| self.flow(&r.segments, r.path, b, self.route_rate(&r.segments).min(shared), 9000 + i as u64))
            .collect();
        let sum: Vec<f64> = (0..self.samples).map(|k| flows.iter().map(|f| b as f64 / f.transfer_times_s[k]).sum()).collect();
        measurements.push(Measurement {
            id: "contended/kv_burst".into(),
            kind: MeasurementKind::Contended,
            set: Some("kv_burst".into()),
            transport: "host_tcp".into(),
            kv_block_bytes: None,
            kv_block_tokens: None,
            started_at: "2026-11-24T00:00:00Z".into(),
            duration_s: 1.0,
            flows,
            aggregate: Some(Aggregate {
                goodput_sum_Bps: rate_summary(&sum),
                makespan_s: None,
                fairness_max_over_min: Some(1.0),
            }),
        });
        Results {
            schema: "linkcal.results/1".into(),
            provenance: provenance(),
            rack: RackSummary {
                shape: self.shape.clone(),
                emulated: true,
                payload_scale: 500.0,
                mtu_bytes: Some(9000),
                tcp_congestion_control: None,
                emulation: None,
            },
            payloads: None,
            measurements,
            waivers: vec![],
            skipped: vec![],
        }
    }

    /// Calibration as the spec's paths allow: a route's bottleneck is identified (unless it is a
    /// member of the NIC/cable series group), other crossed hops are lower bounds.
    pub fn calibration(&self) -> Calibration {
        let routes = self.routes();
        let group: Vec<Hop> = vec![hop("IB_NIC_P[0]_PCI down"), hop("IB_Cable_P[0] up")];
        let mut segments = Vec::new();
        for seg in self.shape.segments() {
            for dir in [Dir::Up, Dir::Down] {
                let h = Hop { id: seg, dir };
                let crossing: Vec<f64> =
                    routes.iter().filter(|r| r.segments.contains(&h)).map(|r| self.route_rate(&r.segments)).collect();
                let rate = self.rates[&h];
                let (method, cap, lb) = if crossing.is_empty() {
                    (Method::Unobserved, None, None)
                } else if group.contains(&h) {
                    (Method::LowerBound, None, Some(crossing.iter().copied().fold(0.0, f64::max)))
                } else if crossing.contains(&rate) {
                    (Method::Bottleneck, Some(rate), None)
                } else {
                    (Method::LowerBound, None, Some(crossing.iter().copied().fold(0.0, f64::max)))
                };
                segments.push(SegmentEstimate {
                    segment: seg,
                    dir,
                    outside_spec: seg.outside_spec(),
                    method,
                    capacity_Bps: cap,
                    ci95_low_Bps: cap.map(|c| c * 0.995),
                    ci95_high_Bps: cap.map(|c| c * 1.005),
                    lower_bound_Bps: lb,
                    latency_s: None,
                    nominal_Bps: None,
                    series_group: group.contains(&h).then(|| "G1".to_string()),
                    evidence: vec![],
                });
            }
        }
        let paths = routes
            .iter()
            .map(|r| {
                let beta = self.route_rate(&r.segments);
                PathModel {
                    path: r.path,
                    segments: r.segments.clone(),
                    capacity_Bps: Some(beta),
                    raw_peak_Bps: Some(beta),
                    alpha_s: Some(self.alpha),
                    alpha_ci95_low_s: Some(self.alpha),
                    alpha_ci95_high_s: Some(self.alpha),
                    pieces: vec![AlphaBeta {
                        min_bytes: self.sizes[0],
                        max_bytes: *self.sizes.last().unwrap(),
                        alpha_s: self.alpha,
                        beta_Bps: beta,
                    }],
                    efficiency: vec![],
                    raw: self
                        .sizes
                        .iter()
                        .map(|&b| {
                            let g = b as f64 / (self.alpha + b as f64 / beta);
                            RawPoint {
                                payload_bytes: b,
                                p50_Bps: g,
                                ci95_low_Bps: Some(g * 0.995),
                                ci95_high_Bps: Some(g * 1.005),
                                time_p50_s: b as f64 / g,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Calibration {
            schema: "linkcal.calibration/3".into(),
            provenance: provenance(),
            origin: linkcal::model::calibration::Origin {
                emulated: false,
                payload_scale: 1.0,
                mtu_bytes: None,
                run_ids: vec!["synthetic".into()],
                hosts: vec![],
                run_tool_versions: vec![],
            },
            shape: self.shape.clone(),
            sources: vec!["synthetic".into()],
            topology_digest: None,
            segments,
            series_groups: vec![SeriesGroup {
                id: "G1".into(),
                members: group.clone(),
                capacity_Bps: Some(group.iter().map(|h| self.rates[h]).fold(f64::INFINITY, f64::min)),
                ci95_low_Bps: None,
                ci95_high_Bps: None,
                reason: "always crossed together by Path 2".into(),
            }],
            paths,
            notes: vec!["synthetic calibration for tests".into()],
            sharing_efficiency: None,
            engine_efficiency: Vec::new(),
        }
    }

    /// Writes results.json into `dir` (created) and calibration.json beside it; returns their paths.
    pub fn write(&self, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let r = dir.join("results.json");
        let c = dir.join("calibration.json");
        std::fs::write(&r, serde_json::to_string_pretty(&self.results()).unwrap()).unwrap();
        std::fs::write(&c, serde_json::to_string_pretty(&self.calibration()).unwrap()).unwrap();
        (r, c)
    }
}

pub fn segment(s: &str) -> SegmentId {
    s.parse().unwrap()
}

pub fn provenance() -> Provenance {
    Provenance {
        tool_version: "test".into(),
        git_sha: None,
        host: "synthetic".into(),
        hosts: vec![],
        started_at: "2026-11-24T00:00:00Z".into(),
        finished_at: Some("2026-11-24T00:01:00Z".into()),
        argv: vec![],
    }
}

/// The runner's summary of a rate sample, B/s (the library's one summary builder).
pub fn rate_summary(x: &[f64]) -> Summary {
    linkcal::stats::summarize_rate(x).expect("a sample of at least one transfer")
}

/// The runner's summary of a time sample, seconds.
pub fn time_summary(x: &[f64]) -> Summary {
    linkcal::stats::summarize_time(x).expect("a sample of at least one transfer")
}

/// A rules file judging every spec segment direction and spec path at 0.95 of `synth`'s truth
/// (warn at 0.98), written to `path`.
pub fn truth_rules(synth: &Synth, path: &Path) {
    let mut s = String::from("schema = \"linkcal.rules/1\"\ntitle = \"synthetic truth\"\n");
    for (h, v) in &synth.rates {
        if h.id.outside_spec() {
            continue;
        }
        s += &format!(
            "[[rule]]\nsegments = [\"{}\"]\ndir = \"{}\"\nfloor = \"{} B/s\"\nwarn_floor = {}\n",
            h.id,
            h.dir,
            v * 0.95,
            v * 0.98
        );
    }
    std::fs::write(path, s).unwrap();
}

/// The segment items an accept report fails, by name.
pub fn failed_segments(v: &serde_json::Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "segment" && i["outcome"] == "fail")
        .map(|i| i["item"].as_str().unwrap().to_string())
        .collect()
}

/// The emulated rack's configured truth for `shape` at its default rates: the expected TCP
/// goodput of every segment direction, from the emulator's own rate model (what `emulate up`
/// writes as ground-truth.json), so tests never restate rates or the MTU factor.
pub fn emulated_default_truth(shape: &linkcal::spec::RackShape) -> Vec<(Hop, f64)> {
    let truth = linkcal::emulate::Rates::defaults(shape).ground_truth();
    truth.segments.iter().map(|t| (Hop { id: t.segment, dir: t.dir }, t.goodput_Bps)).collect()
}
