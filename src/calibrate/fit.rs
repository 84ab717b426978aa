//! Per-path fits: piecewise alpha-beta by Theil-Sen (median of pairwise slopes, median
//! intercept: a median regression robust to outliers), the efficiency curve with the raw
//! percentiles beside it, and per-segment latency by non-negative least squares.

use std::collections::BTreeMap;

use crate::model::calibration::{AlphaBeta, EfficiencyPoint, RawPoint};
use crate::model::results::FlowResult;
use crate::spec::Hop;

use crate::stats::median_in_place as median;

/// Theil-Sen fit of time = alpha + bytes / beta over (bytes, seconds) points. Alpha is clamped
/// at 0 (then beta is the median of bytes/time). None when no positive slope exists.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.is_empty() {
        return None;
    }
    let mut slopes = Vec::new();
    for (a, p) in points.iter().enumerate() {
        for q in &points[a + 1..] {
            if (q.0 - p.0).abs() > 0.0 {
                slopes.push((q.1 - p.1) / (q.0 - p.0));
            }
        }
    }
    let through_origin = |pts: &[(f64, f64)]| {
        let mut r: Vec<f64> = pts.iter().filter(|p| p.1 > 0.0).map(|p| p.0 / p.1).collect();
        (!r.is_empty()).then(|| (0.0, median(&mut r)))
    };
    if slopes.is_empty() {
        return through_origin(points);
    }
    let slope = median(&mut slopes);
    if slope <= 0.0 {
        return through_origin(points);
    }
    let mut icpt: Vec<f64> = points.iter().map(|p| p.1 - slope * p.0).collect();
    let alpha = median(&mut icpt);
    if alpha < 0.0 {
        return through_origin(points);
    }
    Some((alpha, 1.0 / slope))
}

fn abs_rel_error(points: &[(f64, f64)], alpha: f64, beta: f64) -> f64 {
    points.iter().map(|p| ((alpha + p.0 / beta) / p.1 - 1.0).abs()).sum()
}

/// Piecewise alpha-beta over per-size medians: one piece, or two when a split at some size
/// (at least 3 sizes each side) cuts the total relative error by more than a third.
pub fn alpha_beta(points: &[(u64, f64)]) -> Vec<AlphaBeta> {
    let pts: Vec<(f64, f64)> = points.iter().map(|(b, t)| (*b as f64, *t)).collect();
    let piece = |lo: usize, hi: usize| -> Option<(AlphaBeta, f64)> {
        let (a, b) = theil_sen(&pts[lo..hi])?;
        let ab = AlphaBeta { min_bytes: points[lo].0, max_bytes: points[hi - 1].0, alpha_s: a, beta_Bps: b };
        Some((ab, abs_rel_error(&pts[lo..hi], a, b)))
    };
    let Some((one, err1)) = piece(0, pts.len()) else {
        return Vec::new();
    };
    let mut best: Option<(Vec<AlphaBeta>, f64)> = None;
    for k in 3..pts.len().saturating_sub(2) {
        if let (Some((a, ea)), Some((b, eb))) = (piece(0, k), piece(k, pts.len())) {
            if best.as_ref().is_none_or(|(_, e)| ea + eb < *e) {
                best = Some((vec![a, b], ea + eb));
            }
        }
    }
    match best {
        Some((two, e2)) if e2 < err1 * (2.0 / 3.0) => two,
        _ => vec![one],
    }
}

/// Interval of a piece's fixed cost: the 2.5% and 97.5% quantiles (linear interpolation) of the
/// per-size intercepts `time - bytes / beta` over the sizes the piece covers, seconds, clamped
/// at 0 below and always containing the piece's alpha.
pub fn alpha_interval(points: &[(u64, f64)], piece: &AlphaBeta) -> (f64, f64) {
    let mut icpt: Vec<f64> = points
        .iter()
        .filter(|(b, _)| *b >= piece.min_bytes && *b <= piece.max_bytes)
        .map(|(b, t)| t - *b as f64 / piece.beta_Bps)
        .collect();
    icpt.sort_by(f64::total_cmp);
    let q = |p: f64| -> f64 {
        if icpt.is_empty() {
            return piece.alpha_s;
        }
        let x = p * (icpt.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        icpt[lo] + (icpt[hi] - icpt[lo]) * (x - lo as f64)
    };
    (q(0.025).min(piece.alpha_s).max(0.0), q(0.975).max(piece.alpha_s))
}

/// Raw percentiles per size, the efficiency curve (median goodput / peak) and the peak.
pub fn curve(flows: &BTreeMap<u64, FlowResult>) -> (Vec<RawPoint>, Vec<EfficiencyPoint>, Option<f64>) {
    let raw: Vec<RawPoint> = flows
        .iter()
        .map(|(b, f)| RawPoint {
            payload_bytes: *b,
            p50_Bps: f.goodput_Bps.p50,
            ci95_low_Bps: f.goodput_Bps.ci95_low,
            ci95_high_Bps: f.goodput_Bps.ci95_high,
            time_p50_s: f.transfer_time_s.p50,
        })
        .collect();
    let peak = raw.iter().map(|r| r.p50_Bps).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let eff = match peak {
        Some(p) if p > 0.0 => {
            raw.iter().map(|r| EfficiencyPoint { payload_bytes: r.payload_bytes, efficiency: r.p50_Bps / p }).collect()
        }
        _ => Vec::new(),
    };
    (raw, eff, peak)
}

/// Rank of a matrix (rows of equal length) by Gaussian elimination with partial pivoting.
fn rank(mut m: Vec<Vec<f64>>) -> usize {
    let cols = m.first().map_or(0, Vec::len);
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..m.len()).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs())) else {
            break;
        };
        if m[p][c].abs() < 1e-9 {
            continue;
        }
        m.swap(r, p);
        let pivot = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
        r += 1;
    }
    r
}

/// Per-hop latency from path latencies: non-negative least squares (projected coordinate
/// descent) over rows `(hops of a path, latency in s)`. A hop's value is returned only when
/// the paths determine it (its unit vector lies in the span of the path rows).
pub fn segment_latency(rows: &[(Vec<Hop>, f64)]) -> BTreeMap<Hop, f64> {
    let mut hops: Vec<Hop> = rows.iter().flat_map(|(h, _)| h.iter().copied()).collect();
    hops.sort();
    hops.dedup();
    let col: BTreeMap<Hop, usize> = hops.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let n = hops.len();
    let a: Vec<Vec<f64>> = rows
        .iter()
        .map(|(hs, _)| {
            let mut r = vec![0.0; n];
            for h in hs {
                r[col[h]] = 1.0;
            }
            r
        })
        .collect();
    let b: Vec<f64> = rows.iter().map(|r| r.1).collect();
    // Normal equations Q x = c, Q = A'A, c = A'b; coordinate descent with x >= 0.
    let mut q = vec![vec![0.0; n]; n];
    let mut c = vec![0.0; n];
    for (r, bv) in a.iter().zip(&b) {
        for i in 0..n {
            c[i] += r[i] * bv;
            for j in 0..n {
                q[i][j] += r[i] * r[j];
            }
        }
    }
    let mut x = vec![0.0; n];
    for _ in 0..5000 {
        let mut delta = 0.0f64;
        for i in 0..n {
            if q[i][i] <= 0.0 {
                continue;
            }
            let g: f64 = (0..n).map(|j| q[i][j] * x[j]).sum::<f64>() - c[i];
            let nx = (x[i] - g / q[i][i]).max(0.0);
            delta = delta.max((nx - x[i]).abs());
            x[i] = nx;
        }
        if delta < 1e-15 {
            break;
        }
    }
    let base = rank(a.clone());
    let mut out = BTreeMap::new();
    for (i, h) in hops.iter().enumerate() {
        let mut m = a.clone();
        let mut e = vec![0.0; n];
        e[i] = 1.0;
        m.push(e);
        if rank(m) == base {
            out.insert(*h, x[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Dir, SegmentKind};

    #[test]
    fn alpha_interval_spans_the_intercepts() {
        // time = 1e-4 + b / 1e9 with +-2e-5 s of noise alternating: intercepts are 1e-4 +- 2e-5.
        let pts: Vec<(u64, f64)> =
            (1..=9u64).map(|k| (k << 20, 1e-4 + (k << 20) as f64 / 1e9 + if k % 2 == 0 { 2e-5 } else { -2e-5 })).collect();
        let piece = AlphaBeta { min_bytes: 1 << 20, max_bytes: 9 << 20, alpha_s: 1e-4, beta_Bps: 1e9 };
        let (lo, hi) = alpha_interval(&pts, &piece);
        assert!((lo - 0.8e-4).abs() < 1e-9 && (hi - 1.2e-4).abs() < 1e-9, "{lo} {hi}");
        let outside = AlphaBeta { min_bytes: 1 << 30, ..piece };
        assert_eq!(alpha_interval(&pts, &outside), (1e-4, 1e-4), "no size in range: the point value");
    }

    #[test]
    fn theil_sen_recovers_line_despite_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (1..=8).map(|k| (k as f64 * 1e6, 1e-4 + k as f64 * 1e6 / 1e9)).collect();
        pts[3].1 *= 5.0;
        let (a, b) = theil_sen(&pts).unwrap();
        assert!((a - 1e-4).abs() < 1e-6, "{a}");
        assert!((b / 1e9 - 1.0).abs() < 1e-6, "{b}");
    }

    #[test]
    fn two_pieces_when_the_slope_changes() {
        // Below 64 KiB: 2e8 B/s and 10 us; above: 1e9 B/s and 200 us.
        let sizes: Vec<u64> = (10..=20).map(|k| 1u64 << k).collect();
        let pts: Vec<(u64, f64)> =
            sizes.iter().map(|&s| (s, if s < 65536 { 1e-5 + s as f64 / 2e8 } else { 2e-4 + s as f64 / 1e9 })).collect();
        let p = alpha_beta(&pts);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!((p[1].beta_Bps / 1e9 - 1.0).abs() < 1e-3);
        assert!((p[0].beta_Bps / 2e8 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn latency_only_where_determined() {
        let a = Hop::new(SegmentKind::GpuP, 0, Dir::Up);
        let b = Hop::new(SegmentKind::GpuP, 1, Dir::Down);
        let c = Hop::new(SegmentKind::UplinkP, 0, Dir::Down);
        // a+b and a+c and a alone: all three determined. Then b+c only: neither.
        let lat = segment_latency(&[(vec![a, b], 3e-6), (vec![a, c], 4e-6), (vec![a], 1e-6)]);
        assert!((lat[&a] - 1e-6).abs() < 1e-9 && (lat[&b] - 2e-6).abs() < 1e-9 && (lat[&c] - 3e-6).abs() < 1e-9);
        let lat = segment_latency(&[(vec![b, c], 3e-6)]);
        assert!(lat.is_empty());
    }
}
