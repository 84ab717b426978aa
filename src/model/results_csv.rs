//! `results.csv`: one row per flow of every measurement, derived from [`crate::model::Results`].
//! Units are in the column names; an unmeasured value is an empty cell.

use std::path::Path;

use crate::model::Results;

/// Column names, in order.
pub const COLUMNS: [&str; 22] = [
    "measurement_id",
    "kind",
    "set",
    "transport",
    "path_kind",
    "src",
    "dst",
    "payload_bytes",
    "samples",
    "warmup",
    "stop",
    "goodput_p50_Bps",
    "goodput_mean_Bps",
    "goodput_ci95_low_Bps",
    "goodput_ci95_high_Bps",
    "goodput_min_Bps",
    "goodput_max_Bps",
    "time_p50_s",
    "time_p99_s",
    "aggregate_goodput_sum_mean_Bps",
    "aggregate_makespan_mean_s",
    "segments",
];

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default()
}

/// The CSV text of a results file.
pub fn to_string(r: &Results) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for m in &r.measurements {
        for f in &m.flows {
            let segs: Vec<String> = f.segments.iter().map(|h| h.to_string()).collect();
            let agg = m.aggregate.as_ref();
            w.write_record([
                m.id.clone(),
                name(&m.kind),
                m.set.clone().unwrap_or_default(),
                m.transport.clone(),
                f.path.kind.as_str().to_string(),
                f.path.src.to_string(),
                f.path.dst.to_string(),
                f.payload_bytes.to_string(),
                f.samples.to_string(),
                f.warmup.to_string(),
                name(&f.stop),
                f.goodput_Bps.p50.to_string(),
                f.goodput_Bps.mean.to_string(),
                opt(f.goodput_Bps.ci95_low),
                opt(f.goodput_Bps.ci95_high),
                f.goodput_Bps.min.to_string(),
                f.goodput_Bps.max.to_string(),
                f.transfer_time_s.p50.to_string(),
                opt(f.transfer_time_s.p99),
                opt(agg.map(|a| a.goodput_sum_Bps.mean)),
                opt(agg.and_then(|a| a.makespan_s.map(|s| s.mean))),
                segs.join(" > "),
            ])?;
        }
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8(bytes).expect("csv of utf-8 fields is utf-8"))
}

/// Writes `results.csv` atomically (temp file, fsync, rename).
pub fn write(r: &Results, path: &Path) -> std::io::Result<()> {
    let text = to_string(r).map_err(std::io::Error::other)?;
    super::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::results::*;
    use crate::spec::{PathRef, RackShape, RouteKind};

    #[test]
    fn one_row_per_flow_with_empty_cells_for_nulls() {
        let s = Summary { p50: 2.0, mean: 2.0, ci95_low: None, ci95_high: None, min: 2.0, max: 2.0, p99: None, stddev: None };
        let f = FlowResult {
            path: PathRef { kind: RouteKind::PrefillInterRank, src: 0, dst: 1 },
            segments: vec!["GPU_P[0]_PCI up".parse().unwrap(), "GPU_P[1]_PCI down".parse().unwrap()],
            payload_bytes: 10,
            goodput_Bps: s,
            transfer_time_s: s,
            samples: 1,
            warmup: 0,
            stop: StopReason::TimeCap,
            transfer_times_s: vec![5.0],
        };
        let rack = RackSummary {
            payload_scale: 500.0,
            mtu_bytes: Some(9000),
            ..RackSummary::bare(RackShape::new(2, 2, 1).unwrap(), true)
        };
        let r = Results {
            measurements: vec![Measurement {
                id: "solo/x/10".into(),
                kind: MeasurementKind::Solo,
                set: None,
                transport: "host_tcp".into(),
                kv_block_bytes: None,
                kv_block_tokens: None,
                started_at: "t".into(),
                duration_s: 1.0,
                flows: vec![f.clone(), f],
                aggregate: None,
            }],
            ..Results::header(crate::model::Provenance::now(vec![]), rack)
        };
        let text = to_string(&r).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("solo/x/10,solo,,host_tcp,prefill_inter_rank,0,1,10,1,0,time_cap,2,2,,,"), "{}", lines[1]);
        assert!(lines[1].ends_with("GPU_P[0]_PCI up > GPU_P[1]_PCI down"));
    }
}
