//! Statistics of measured samples: hdrhistogram quantiles, the mean with its 95% confidence
//! interval (Student's t), and Tukey outliers. Produces [`crate::model::results::Summary`].

use hdrhistogram::Histogram;

use crate::model::results::Summary;

pub mod rng;
pub mod stop;

pub use stop::StopRule;

/// Significant digits the histograms keep (quantiles are exact to 0.01%).
pub const SIGFIG: u8 = 4;

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110,
        2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => {
            // Cornish-Fisher expansion around the normal quantile.
            let (z, n) = (1.959_964_f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * n) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// Mean, sample standard deviation and 95% half-width of the mean (`None` below 2 samples).
pub fn mean_ci(x: &[f64]) -> (f64, Option<f64>, Option<f64>) {
    let n = x.len();
    if n == 0 {
        return (f64::NAN, None, None);
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None, None);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    (mean, Some(sd), Some(t95(n - 1) * sd / (n as f64).sqrt()))
}

/// Relative 95% half-width of the mean (half-width / mean); `None` below 2 samples.
pub fn relative_half_width(x: &[f64]) -> Option<f64> {
    let (mean, _, hw) = mean_ci(x);
    hw.map(|h| if mean > 0.0 { h / mean } else { f64::INFINITY })
}

/// Summary of positive samples. `quantum` is the unit the histogram counts in (1 for B/s,
/// 1e-9 for seconds); quantiles come from the histogram, mean/CI/min/max from the samples.
pub fn summarize(x: &[f64], quantum: f64) -> Option<Summary> {
    if x.is_empty() {
        return None;
    }
    let mut h = Histogram::<u64>::new(SIGFIG).expect("valid sigfig");
    for v in x {
        let _ = h.record(((v / quantum).round() as u64).max(1));
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 * quantum;
    let (mean, sd, hw) = mean_ci(x);
    let min = x.iter().copied().fold(f64::INFINITY, f64::min);
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // The median from the samples themselves: the middle one, or the mean of the two middle
    // ones (the histogram's nearest rank would take the lower of the two, which reads low
    // when delays only ever slow a transfer).
    let p50 = median(x);
    Some(Summary {
        p50,
        mean,
        ci95_low: hw.map(|h| mean - h),
        ci95_high: hw.map(|h| mean + h),
        min,
        max,
        p99: (x.len() >= 2).then(|| q(0.99).clamp(min, max)),
        stddev: sd,
    })
}

/// The median of samples: the middle one, or the mean of the two middle ones (NaN when
/// empty); sorts a copy.
pub fn median(x: &[f64]) -> f64 {
    median_in_place(&mut x.to_vec())
}

/// [`median`], reordering `v` (O(n)).
pub fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, |a, b| a.total_cmp(b));
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// The histogram quantum of rates: 1 B/s.
pub const RATE_QUANTUM: f64 = 1.0;
/// The histogram quantum of times: 1 ns, in seconds.
pub const TIME_QUANTUM: f64 = 1e-9;

/// Goodput summary (B/s).
pub fn summarize_rate(x: &[f64]) -> Option<Summary> {
    summarize(x, RATE_QUANTUM)
}

/// Time summary (seconds, nanosecond resolution).
pub fn summarize_time(x: &[f64]) -> Option<Summary> {
    summarize(x, TIME_QUANTUM)
}

/// Indexes of Tukey outliers (outside 1.5 x IQR beyond the quartiles); none below 4 samples.
pub fn outliers(x: &[f64]) -> Vec<usize> {
    if x.len() < 4 {
        return Vec::new();
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let quart = |p: f64| {
        let pos = p * (s.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
    };
    let (q1, q3) = (quart(0.25), quart(0.75));
    let iqr = q3 - q1;
    let (lo, hi) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    x.iter().enumerate().filter(|(_, v)| **v < lo || **v > hi).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_of_known_sample() {
        let x = [10.0, 12.0, 11.0, 9.0, 13.0];
        let (m, sd, hw) = mean_ci(&x);
        assert_eq!(m, 11.0);
        assert!((sd.unwrap() - 1.581_138_8).abs() < 1e-6);
        assert!((hw.unwrap() - 2.776 * 1.581_138_8 / 5f64.sqrt()).abs() < 1e-6);
        assert_eq!(mean_ci(&[1.0]).2, None);
        assert!((t95(1000) - 1.962).abs() < 0.001);
        assert!(t95(31) < t95(30) && t95(31) > 2.03);
    }

    #[test]
    fn summary_quantiles_and_bounds() {
        let x: Vec<f64> = (1..=1000).map(|v| v as f64 * 1e6).collect();
        let s = summarize_rate(&x).unwrap();
        assert!((s.p50 / 500e6 - 1.0).abs() < 1e-3, "{}", s.p50);
        assert!((s.p99.unwrap() / 990e6 - 1.0).abs() < 1e-3);
        assert_eq!((s.min, s.max), (1e6, 1e9));
        assert!(s.ci95_low.unwrap() < s.mean && s.mean < s.ci95_high.unwrap());
        let t = summarize_time(&[0.5]).unwrap();
        assert_eq!((t.p50, t.ci95_low, t.p99), (0.5, None, None));
        assert!(summarize_time(&[]).is_none());
        assert!(relative_half_width(&[100.0, 100.0, 100.0]).unwrap() == 0.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_between_the_middle_two() {
        // Six transfers, two slowed: the lower middle would be 113.31.
        let x = [110.7, 114.61, 115.11, 113.31, 115.24, 115.13];
        assert_eq!(summarize_rate(&x).unwrap().p50, (114.61 + 115.11) / 2.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[4.0]), 4.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn tukey_outliers() {
        let x = [10.0, 11.0, 10.5, 10.2, 50.0, 10.1];
        assert_eq!(outliers(&x), vec![4]);
        assert!(outliers(&[1.0, 2.0, 3.0]).is_empty());
    }
}
