//! Interval for the relative change between two samples' means: a moving-block bootstrap
//! (blocks keep the serial correlation of back-to-back transfers), deterministic for a seed,
//! and a normal-approximation fallback for figures that come with intervals only.

/// SplitMix64: a small, well-mixed generator; enough for resampling indexes.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n
    }
}

/// Mean of a slice (NaN when empty).
pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Block length for a sample of `n`: about n^(1/3), at least 1.
pub fn block_len(n: usize) -> usize {
    ((n as f64).cbrt().round() as usize).clamp(1, n.max(1))
}

/// One moving-block bootstrap replicate of the mean, using prefix sums (O(n / block)).
fn replicate_mean(prefix: &[f64], n: usize, block: usize, rng: &mut SplitMix64) -> f64 {
    let starts = n - block + 1;
    let (mut sum, mut count) = (0.0, 0usize);
    while count < n {
        let take = block.min(n - count);
        let s = rng.below(starts);
        sum += prefix[s + take] - prefix[s];
        count += take;
    }
    sum / n as f64
}

fn prefix_sums(x: &[f64]) -> Vec<f64> {
    let mut p = Vec::with_capacity(x.len() + 1);
    p.push(0.0);
    for v in x {
        p.push(p.last().copied().unwrap_or(0.0) + v);
    }
    p
}

/// Percentile interval of `mean(new) / mean(base) - 1` at `confidence` (e.g. 0.95), from
/// `resamples` block-bootstrap replicates of each sample. Both samples need at least 2 values.
pub fn change_interval(base: &[f64], new: &[f64], confidence: f64, resamples: usize, seed: u64) -> Option<(f64, f64)> {
    if base.len() < 2 || new.len() < 2 || resamples < 10 {
        return None;
    }
    let (pb, pn) = (prefix_sums(base), prefix_sums(new));
    let (bb, bn) = (block_len(base.len()), block_len(new.len()));
    let mut rng = SplitMix64::new(seed);
    let mut reps: Vec<f64> = (0..resamples)
        .map(|_| replicate_mean(&pn, new.len(), bn, &mut rng) / replicate_mean(&pb, base.len(), bb, &mut rng) - 1.0)
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

/// Student-t quantile for `df` degrees of freedom: exact for 1 and 2, else the Cornish-Fisher
/// expansion around the normal quantile (Abramowitz & Stegun 26.7.5; < 0.2% error for df >= 3).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if df <= 1.0 {
        return (std::f64::consts::PI * (p - 0.5)).tan();
    }
    if df <= 2.0 {
        return (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
    }
    let z = normal_quantile(p);
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df.powi(2))
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * df.powi(4))
}

/// Welch interval of `mean(new) / mean(base) - 1` (delta method on the log ratio, Welch-
/// Satterthwaite degrees of freedom): honest for small samples, where a bootstrap is too narrow.
pub fn welch_change_interval(base: &[f64], new: &[f64], confidence: f64) -> Option<(f64, f64)> {
    if base.len() < 2 || new.len() < 2 {
        return None;
    }
    let rel_var = |x: &[f64]| {
        let m = mean(x);
        let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
        (m, v / (x.len() as f64 * m * m))
    };
    let ((mb, a), (mn, b)) = (rel_var(base), rel_var(new));
    if mb <= 0.0 || mn <= 0.0 {
        return None;
    }
    let se = (a + b).sqrt();
    let df = if a + b > 0.0 {
        (a + b).powi(2) / (a * a / (base.len() - 1) as f64 + b * b / (new.len() - 1) as f64)
    } else {
        f64::INFINITY
    };
    let t = if df.is_finite() { t_quantile(0.5 + confidence / 2.0, df) } else { normal_quantile(0.5 + confidence / 2.0) };
    let r = (mn / mb).ln();
    Some(((r - t * se).exp() - 1.0, (r + t * se).exp() - 1.0))
}

/// The union of the block-bootstrap and Welch intervals: the bootstrap keeps serial correlation
/// and skew, Welch keeps small samples honest; a change must clear both to count.
pub fn samples_change_interval(base: &[f64], new: &[f64], confidence: f64, resamples: usize, seed: u64) -> Option<(f64, f64)> {
    let w = welch_change_interval(base, new, confidence)?;
    Some(match change_interval(base, new, confidence, resamples, seed) {
        Some(b) => (b.0.min(w.0), b.1.max(w.1)),
        None => w,
    })
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

    fn noisy(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                // Sum of 12 uniforms: approximately normal.
                let s: f64 = (0..12).map(|_| (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64).sum();
                mean + sd * (s - 6.0)
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
    fn detects_a_ten_percent_drop_and_not_noise() {
        let base = noisy(60, 100.0, 3.0, 1);
        let same = noisy(60, 100.0, 3.0, 2);
        let down = noisy(60, 90.0, 3.0, 3);
        let (lo, hi) = change_interval(&base, &same, 0.95, 2000, 7).unwrap();
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
        assert!(hi - lo < 0.05);
        let (lo, hi) = change_interval(&base, &down, 0.95, 2000, 7).unwrap();
        assert!(hi < -0.07 && lo > -0.13, "{lo} {hi}");
        assert!(change_interval(&base[..1], &down, 0.95, 2000, 7).is_none());
    }

    #[test]
    fn t_quantiles() {
        for (df, want) in [(1.0, 12.7062), (2.0, 4.3027), (3.0, 3.1824), (5.0, 2.5706), (10.0, 2.2281), (30.0, 2.0423)] {
            let got = t_quantile(0.975, df);
            assert!((got / want - 1.0).abs() < 0.01, "df {df}: {got} vs {want}");
        }
    }

    #[test]
    fn welch_widens_small_samples() {
        let base = noisy(5, 100.0, 10.0, 1);
        let new = noisy(5, 100.0, 10.0, 2);
        let (wl, wh) = welch_change_interval(&base, &new, 0.95).unwrap();
        let (bl, bh) = change_interval(&base, &new, 0.95, 2000, 3).unwrap();
        assert!(wh - wl > bh - bl, "welch [{wl}, {wh}] bootstrap [{bl}, {bh}]");
        let (ul, uh) = samples_change_interval(&base, &new, 0.95, 2000, 3).unwrap();
        assert!(ul <= wl.min(bl) && uh >= wh.max(bh));
    }

    #[test]
    fn delta_method() {
        let (lo, hi) = change_interval_from_ci((100.0, Some(99.0), Some(101.0)), (90.0, Some(89.0), Some(91.0)), 0.95).unwrap();
        assert!(lo < -0.1 && lo > -0.13 && hi > -0.1 && hi < -0.08, "{lo} {hi}");
        assert!(change_interval_from_ci((100.0, None, Some(1.0)), (90.0, Some(89.0), Some(91.0)), 0.95).is_none());
    }
}
