//! KV-transfer engines beside host TCP: the engine's efficiency per route, payload and KV
//! block, from solo runs of both transports on the same route and payload. Engine runs stay out
//! of the segment solver (the calibration stays per segment, measured by host transports).

use std::collections::BTreeMap;

use crate::model::calibration::{EngineCurve, EnginePoint};
use crate::model::results::{Measurement, MeasurementKind};
use crate::spec::PathRef;
use crate::transport::TransportKind;

/// The transport that engine runs are compared with.
pub const REFERENCE: TransportKind = TransportKind::HostTcp;

/// True when a measurement's transport (`a` or `a+b`) names a KV-transfer engine.
pub fn is_engine(transport: &str) -> bool {
    transport.split('+').any(|t| TransportKind::parse(t).is_some_and(TransportKind::is_kv_engine))
}

/// Mean transfer times (seconds) per (route, payload) of the solo measurements `keep` selects.
fn mean_times<'a>(ms: impl Iterator<Item = &'a Measurement>) -> BTreeMap<(PathRef, u64), (f64, usize)> {
    let mut out: BTreeMap<(PathRef, u64), (f64, usize)> = BTreeMap::new();
    for m in ms.filter(|m| m.kind == MeasurementKind::Solo) {
        for f in &m.flows {
            let e = out.entry((f.path, f.payload_bytes)).or_insert((0.0, 0));
            e.0 += f.transfer_time_s.mean;
            e.1 += 1;
        }
    }
    out
}

/// One curve per engine, route and KV block that host TCP measured at one payload or more.
/// Engine runs without a recorded block (`linkcal.results/2`) are left out.
pub fn efficiency(ms: &[Measurement]) -> Vec<EngineCurve> {
    let tcp = mean_times(ms.iter().filter(|m| m.transport == REFERENCE.as_str()));
    let mut keys: Vec<(String, u64, Option<u64>)> = ms
        .iter()
        .filter(|m| m.kind == MeasurementKind::Solo && is_engine(&m.transport))
        .filter_map(|m| Some((m.transport.clone(), m.kv_block_bytes?, m.kv_block_tokens)))
        .collect();
    keys.sort();
    keys.dedup();
    let mut curves = Vec::new();
    for (engine, block, tokens) in keys {
        let of = |m: &&Measurement| m.transport == engine && m.kv_block_bytes == Some(block) && m.kv_block_tokens == tokens;
        let eng = mean_times(ms.iter().filter(of));
        let mut by_route: BTreeMap<PathRef, Vec<EnginePoint>> = BTreeMap::new();
        for ((path, bytes), (sum, n)) in &eng {
            let Some((tsum, tn)) = tcp.get(&(*path, *bytes)) else { continue };
            let (host_tcp_time_s, engine_time_s) = (tsum / *tn as f64, sum / *n as f64);
            if host_tcp_time_s > 0.0 && engine_time_s > 0.0 {
                let ratio = host_tcp_time_s / engine_time_s;
                by_route.entry(*path).or_default().push(EnginePoint {
                    payload_bytes: *bytes,
                    host_tcp_time_s,
                    engine_time_s,
                    ratio,
                });
            }
        }
        for (path, points) in by_route {
            curves.push(EngineCurve { engine: engine.clone(), path, kv_block_bytes: block, kv_block_tokens: tokens, points });
        }
    }
    curves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::results::{FlowResult, StopReason, Summary};
    use crate::spec::RouteKind;

    fn m(transport: &str, block: Option<u64>, dst: usize, bytes: u64, time_s: f64) -> Measurement {
        let s = |v: f64| Summary { p50: v, mean: v, ci95_low: None, ci95_high: None, min: v, max: v, p99: None, stddev: None };
        let path = PathRef { kind: RouteKind::PrefillToDecode, src: 0, dst };
        Measurement {
            id: format!("solo/{path}/{bytes}"),
            kind: MeasurementKind::Solo,
            set: None,
            transport: transport.into(),
            kv_block_bytes: block,
            kv_block_tokens: block.map(|b| b / 2048),
            started_at: "t".into(),
            duration_s: 1.0,
            flows: vec![FlowResult {
                path,
                segments: Vec::new(),
                payload_bytes: bytes,
                goodput_Bps: s(bytes as f64 / time_s),
                transfer_time_s: s(time_s),
                samples: 3,
                warmup: 0,
                stop: StopReason::TimeCap,
                transfer_times_s: vec![time_s; 3],
            }],
            aggregate: None,
        }
    }

    #[test]
    fn ratio_per_route_payload_and_block() {
        let (small, big) = (32 << 10, 512 << 10);
        let ms = vec![
            m("host_tcp", None, 0, 4 << 20, 0.10),
            m("host_tcp", None, 0, 4 << 20, 0.12),
            m("host_tcp", None, 0, 16 << 20, 0.40),
            m("nixl", Some(small), 0, 4 << 20, 0.125),
            m("nixl", Some(small), 0, 16 << 20, 0.50),
            m("nixl", Some(big), 0, 16 << 20, 0.42),
            // No host TCP on route 0->1: no curve there; no block recorded: left out.
            m("nixl", Some(small), 1, 4 << 20, 0.2),
            m("nixl", None, 0, 4 << 20, 0.3),
        ];
        let c = efficiency(&ms);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].kv_block_bytes, c[0].kv_block_tokens, c[0].path.dst), (small, Some(16), 0));
        let p: Vec<(u64, f64)> = c[0].points.iter().map(|p| (p.payload_bytes, p.ratio)).collect();
        assert_eq!(p.len(), 2);
        assert!((p[0].1 - 0.11 / 0.125).abs() < 1e-12 && (p[1].1 - 0.40 / 0.50).abs() < 1e-12, "{p:?}");
        assert_eq!((c[1].kv_block_bytes, c[1].points.len()), (big, 1));
        assert!((c[1].points[0].ratio - 0.40 / 0.42).abs() < 1e-12);
        assert!(is_engine("nixl") && is_engine("host_tcp+nixl") && is_engine("mooncake") && !is_engine("host_tcp"));
    }
}
