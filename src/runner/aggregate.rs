//! The rate a contended set carried: agents' windows put on one time line ([`align`]), then
//! the sum of what every flow delivered while all were active ([`window_aggregate`]).

use std::collections::HashMap;

use crate::control::WindowResult;

/// Puts every result's `starts_s` on one time line: agents are released one after another,
/// and each times its transfers from its own release, so a late agent's flow would look as if
/// it started with the others (and the others' solo head start would count as contended).
/// Uses the agents' wall clocks at release; without them every agent counts from its release.
pub fn align(results: &mut HashMap<u64, WindowResult>) {
    let Some(base) = results.values().map(|r| r.go_epoch_s).collect::<Option<Vec<f64>>>() else {
        return;
    };
    let first = base.iter().copied().fold(f64::INFINITY, f64::min);
    for r in results.values_mut() {
        let shift = r.go_epoch_s.unwrap_or(first) - first;
        // Beyond a second apart the clocks are not comparable (hosts without time sync).
        if shift.is_finite() && (0.0..1.0).contains(&shift) {
            r.starts_s.iter_mut().for_each(|s| *s += shift);
            r.delivered.iter_mut().for_each(|(t, _)| *t += shift);
        }
    }
}

/// Sum of the flows' rates while all were active, and the makespan of the window's first
/// round. The common interval runs from the last flow's first start to the first flow's last
/// end. Where every flow sampled its delivered bytes, each counts what it delivered within the
/// interval (interpolated between samples). Otherwise a transfer cut by the interval counts
/// at its flow's rate over the transfers wholly inside the interval (at its own average rate
/// when there are none): with few transfers per window that guess can read a few percent
/// high, as a flow's cut transfer ran faster once the others had finished.
pub fn window_aggregate(flows: &[&WindowResult], bytes: u64) -> Option<(f64, f64)> {
    if flows.len() < 2 || flows.iter().any(|f| f.times_s.is_empty()) {
        return None;
    }
    let t0 = flows.iter().map(|f| f.starts_s[0]).fold(f64::MIN, f64::max);
    let t1 = flows.iter().map(|f| f.end_s(f.times_s.len() - 1)).fold(f64::MAX, f64::min);
    if t1 <= t0 {
        return None;
    }
    let first_start = flows.iter().map(|f| f.starts_s[0]).fold(f64::MAX, f64::min);
    let first_end = flows.iter().map(|f| f.end_s(0)).fold(f64::MIN, f64::max);
    let sampled: Option<f64> =
        flows.iter().map(|f| Some(delivered_at(&f.delivered, t1)? - delivered_at(&f.delivered, t0)?)).sum();
    let sum = match sampled {
        Some(moved) => moved / (t1 - t0),
        None => transfer_sum(flows, bytes, t0, t1),
    };
    Some((sum, first_end - first_start))
}

/// Bytes delivered by time `t`, linear between the samples; None outside them.
fn delivered_at(samples: &[(f64, u64)], t: f64) -> Option<f64> {
    let i = samples.partition_point(|(s, _)| *s < t);
    let (t_hi, b_hi) = *samples.get(i)?;
    if t_hi == t {
        return Some(b_hi as f64);
    }
    let (t_lo, b_lo) = *samples.get(i.checked_sub(1)?)?;
    let w = if t_hi > t_lo { (t - t_lo) / (t_hi - t_lo) } else { 1.0 };
    Some(b_lo as f64 + w * (b_hi as f64 - b_lo as f64))
}

/// The aggregate from whole transfers (see [`window_aggregate`]).
fn transfer_sum(flows: &[&WindowResult], bytes: u64, t0: f64, t1: f64) -> f64 {
    let mut sum = 0.0;
    for f in flows {
        let b = bytes as f64 * f64::from(f.copies.max(1));
        let spans: Vec<(f64, f64)> = (0..f.times_s.len()).map(|k| (f.starts_s[k], f.end_s(k))).collect();
        let inside: Vec<&(f64, f64)> = spans.iter().filter(|(s, e)| *s >= t0 && *e <= t1).collect();
        let inside_time: f64 = inside.iter().map(|(s, e)| e - s).sum();
        let rate_inside = (inside_time > 0.0).then(|| b * inside.len() as f64 / inside_time);
        let mut moved = 0.0;
        for (s, e) in &spans {
            let overlap = e.min(t1) - s.max(t0);
            if overlap <= 0.0 || e <= s {
                continue;
            }
            moved += if *s >= t0 && *e <= t1 { b } else { rate_inside.unwrap_or(b / (e - s)) * overlap };
        }
        sum += moved / (t1 - t0);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(starts: &[f64], times: &[f64]) -> WindowResult {
        WindowResult { starts_s: starts.to_vec(), times_s: times.to_vec(), ..WindowResult::empty(0) }
    }

    #[test]
    fn late_agents_are_put_on_one_time_line() {
        let mut a = w(&[0.0, 1.0], &[1.0, 1.0]);
        a.go_epoch_s = Some(100.0);
        let mut b = w(&[0.0, 1.0], &[1.0, 1.0]);
        b.go_epoch_s = Some(100.25);
        let mut m: HashMap<u64, WindowResult> = [(1, a), (2, b)].into_iter().collect();
        align(&mut m);
        assert_eq!(m[&1].starts_s, vec![0.0, 1.0]);
        assert_eq!(m[&2].starts_s, vec![0.25, 1.25], "released 0.25 s later");
        // Clocks more than a second apart are not comparable: left as they are.
        let mut c = w(&[0.0], &[1.0]);
        c.go_epoch_s = Some(105.0);
        let mut m: HashMap<u64, WindowResult> = [(1, w(&[0.0], &[1.0])), (3, c)].into_iter().collect();
        m.get_mut(&1).unwrap().go_epoch_s = Some(100.0);
        align(&mut m);
        assert_eq!(m[&3].starts_s, vec![0.0]);
    }

    #[test]
    fn aggregate_counts_only_the_common_interval() {
        // Two flows share 100 B/s: each gets 50 while both run; b finishes later (alone at 100).
        let a = w(&[0.0], &[2.0]); // 100 B in 2 s
        let b = w(&[0.0], &[1.5]); // hypothetically faster: 100 B in 1.5 s
        let (sum, span) = window_aggregate(&[&a, &b], 100).unwrap();
        // Common interval [0, 1.5]: a moved 75 B, b 100 B -> 175/1.5.
        assert!((sum - 175.0 / 1.5).abs() < 1e-9);
        assert_eq!(span, 2.0);
        assert!(window_aggregate(&[&a], 100).is_none());
        let back_to_back = w(&[0.0, 1.0, 2.0], &[1.0, 1.0, 1.0]);
        let (sum, _) = window_aggregate(&[&back_to_back, &w(&[0.0], &[2.5])], 50).unwrap();
        assert!((sum - (50.0 + 20.0)).abs() < 1e-9, "{sum}");
        // A cut transfer counts at the flow's rate over its whole transfers inside the interval:
        // c ran 10 B/s for two transfers, then its third was cut at t=2.5 (d's end).
        let c = w(&[0.0, 1.0, 2.0], &[1.0, 1.0, 2.0]);
        let d = w(&[0.0], &[2.5]);
        let (sum, _) = window_aggregate(&[&c, &d], 10).unwrap();
        assert!((sum - (25.0 / 2.5 + 4.0)).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn a_loop_of_copies_spans_its_copies() {
        // Two lanes of one sample each: 8 copies of 10 B at 0.1 s per copy (0.8 s in all) and
        // 8 at 0.2 s (1.6 s), the second starting 0.1 s late. Together for [0.1, 0.8]: 100 +
        // 50 B/s; the round's makespan runs to the slow lane's end at 1.7 s.
        let mut a = w(&[0.0], &[0.1]);
        let mut b = w(&[0.1], &[0.2]);
        a.copies = 8;
        b.copies = 8;
        let (sum, span) = window_aggregate(&[&a, &b], 10).unwrap();
        assert!((sum - 150.0).abs() < 1e-9, "{sum}");
        assert!((span - 1.7).abs() < 1e-9, "{span}");
        assert_eq!(b.end_s(0), 0.1 + 1.6);
    }

    #[test]
    fn sampled_delivery_is_exact_where_whole_transfers_guess_high() {
        // A link of 100 B/s: a starts alone (100 B/s), b joins at 0.5 s and both get 50 B/s;
        // a's one 100 B transfer ends at 1.5 s; b (held at 50 B/s elsewhere) ends at 2.5 s.
        let mut a = w(&[0.0], &[1.5]);
        let mut b = w(&[0.5], &[2.0]);
        // Common interval [0.5, 1.5]: the link carried 100 B/s; whole transfers guess a at its
        // average 100/1.5 and b at 100/2.
        let (guess, _) = window_aggregate(&[&a, &b], 100).unwrap();
        assert!((guess - (100.0 / 1.5 + 50.0)).abs() < 1e-9, "{guess}");
        a.delivered = vec![(0.0, 0), (0.5, 50), (1.0, 75), (1.5, 100)];
        b.delivered = vec![(0.5, 0), (1.0, 25), (1.5, 50), (2.5, 100)];
        let (sum, _) = window_aggregate(&[&a, &b], 100).unwrap();
        assert!((sum - 100.0).abs() < 1e-9, "{sum}");
        // Samples that do not cover the interval: back to whole transfers.
        b.delivered = vec![(0.9, 0), (1.5, 50)];
        assert_eq!(window_aggregate(&[&a, &b], 100).unwrap().0, guess);
        assert_eq!(delivered_at(&a.delivered, 0.25), Some(25.0));
        assert_eq!(delivered_at(&a.delivered, 1.5), Some(100.0));
        assert_eq!(delivered_at(&a.delivered, 1.6), None);
    }
}
