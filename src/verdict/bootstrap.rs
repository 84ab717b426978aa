//! Intervals for the relative change in goodput between two runs. With raw transfer times: a
//! moving-block bootstrap (blocks keep the serial correlation of back-to-back transfers) of
//! the ratio of median transfer times, deterministic for a seed. The median, not the mean: on
//! a shared machine a few transfers stall for tens of milliseconds (scheduling, retransmits)
//! and drag the mean by 20-40% between otherwise identical runs, while the median stays put.
//! Figures that come with intervals only use a normal approximation (delta method).

use crate::stats::rng::SplitMix64;

use crate::stats::median_in_place;

/// Block length for a sample of `n`: about n^(1/3), at least 1.
pub fn block_len(n: usize) -> usize {
    ((n as f64).cbrt().round() as usize).clamp(1, n.max(1))
}

/// Fewest transfers per side for a bootstrap interval of the median.
pub const MIN_SAMPLES: usize = 8;

/// One moving-block bootstrap replicate of the median of `x`, built in `buf`.
fn replicate_median(x: &[f64], block: usize, rng: &mut SplitMix64, buf: &mut Vec<f64>) -> f64 {
    let n = x.len();
    buf.clear();
    while buf.len() < n {
        let take = block.min(n - buf.len());
        let s = rng.below(n - block + 1);
        buf.extend_from_slice(&x[s..s + take]);
    }
    median_in_place(buf)
}

/// Percentile interval, at `confidence`, of `median(base) / median(new) - 1` from `resamples`
/// block-bootstrap replicates: with transfer times as input this is the relative change of the
/// goodput at the median transfer. `None` with fewer than [`MIN_SAMPLES`] on a side.
pub fn median_change_interval(base: &[f64], new: &[f64], confidence: f64, resamples: usize, seed: u64) -> Option<(f64, f64)> {
    if base.len() < MIN_SAMPLES || new.len() < MIN_SAMPLES || resamples < 10 {
        return None;
    }
    let (bb, bn) = (block_len(base.len()), block_len(new.len()));
    let mut rng = SplitMix64::new(seed);
    let mut buf = Vec::with_capacity(base.len().max(new.len()));
    let mut reps: Vec<f64> = (0..resamples)
        .map(|_| {
            let b = replicate_median(base, bb, &mut rng, &mut buf);
            let n = replicate_median(new, bn, &mut rng, &mut buf);
            b / n - 1.0
        })
        .filter(|r| r.is_finite())
        .collect();
    if reps.len() < resamples / 2 {
        return None;
    }
    reps.sort_by(|a, b| a.total_cmp(b));
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| reps[((q * (reps.len() - 1) as f64).round() as usize).min(reps.len() - 1)];
    Some((at(tail), at(1.0 - tail)))
}

/// Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let p_low = 0.02425;
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Interval of `new / base - 1` from two values with 95% intervals (delta method on the log
/// ratio), at `confidence`. `None` when either interval is missing or degenerate.
pub fn change_interval_from_ci(
    base: (f64, Option<f64>, Option<f64>),
    new: (f64, Option<f64>, Option<f64>),
    confidence: f64,
) -> Option<(f64, f64)> {
    let z95 = normal_quantile(0.975);
    let rel_se = |(v, lo, hi): (f64, Option<f64>, Option<f64>)| -> Option<f64> {
        let (lo, hi) = (lo?, hi?);
        (v > 0.0 && hi >= lo).then(|| (hi - lo) / 2.0 / z95 / v)
    };
    let se = (rel_se(base)?.powi(2) + rel_se(new)?.powi(2)).sqrt();
    let z = normal_quantile(0.5 + confidence / 2.0);
    let r = (new.0 / base.0).ln();
    Some(((r - z * se).exp() - 1.0, (r + z * se).exp() - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transfer times around `t` with +-`noise` uniform jitter and a stall of `stall` x `t`
    /// every `every` transfers (the tail a shared machine adds).
    fn times(n: usize, t: f64, noise: f64, every: usize, stall: f64, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|i| {
                let u = (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                let base = t * (1.0 + noise * u);
                if every > 0 && i % every == every - 1 {
                    base * stall
                } else {
                    base
                }
            })
            .collect()
    }

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.005) + 2.575829).abs() < 1e-5);
    }

    #[test]
    fn stalls_do_not_move_the_median_but_a_slower_link_does() {
        let base = times(200, 0.0106, 0.01, 0, 1.0, 1);
        // Same link, one transfer in seven stalls for 10x: the mean moves ~130%, the median not.
        let stalled = times(200, 0.0106, 0.01, 7, 10.0, 2);
        let (lo, hi) = median_change_interval(&base, &stalled, 0.998, 2000, 7).unwrap();
        assert!(lo > -0.03 && hi < 0.03, "[{lo}, {hi}]");
        // A 10% slower link: transfer times 1/0.9 longer.
        let slow = times(200, 0.0106 / 0.9, 0.01, 7, 10.0, 3);
        let (lo, hi) = median_change_interval(&base, &slow, 0.998, 2000, 7).unwrap();
        assert!(hi < -0.07 && lo > -0.13, "[{lo}, {hi}]");
        assert!(median_change_interval(&base[..MIN_SAMPLES - 1], &slow, 0.95, 2000, 7).is_none());
    }

    #[test]
    fn delta_method() {
        let (lo, hi) = change_interval_from_ci((100.0, Some(99.0), Some(101.0)), (90.0, Some(89.0), Some(91.0)), 0.95).unwrap();
        assert!(lo < -0.1 && lo > -0.13 && hi > -0.1 && hi < -0.08, "{lo} {hi}");
        assert!(change_interval_from_ci((100.0, None, Some(1.0)), (90.0, Some(89.0), Some(91.0)), 0.95).is_none());
    }
}
