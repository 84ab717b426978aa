//! The one stopping rule of every measurement (agents' windows in `run`, in-process transfers
//! in `probe --run`): repeat until the goodputs' 95% interval is tight enough, or a sample or
//! time cap is reached. Time is passed in (`elapsed_s`), so the rule is tested without a clock.

use crate::model::results::StopReason;

/// When a measurement stops repeating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// Transfers per flow before any stop but the hard cap.
    pub min_samples: u32,
    /// Transfers per flow at most.
    pub max_samples: u32,
    /// Converged when the 95% CI half-width of the mean goodput is at most this fraction of it.
    pub ci_target: f64,
    /// Stop after this long, seconds, once every flow has `min_samples`.
    pub time_cap_s: f64,
    /// Stop after this long, seconds, whatever the samples (infinite: no hard cap).
    pub hard_cap_s: f64,
}

fn converged(goodputs: &[f64], target: f64) -> bool {
    crate::stats::relative_half_width(goodputs).is_some_and(|h| h <= target)
}

impl StopRule {
    /// Why to stop now, or `None` to go on. `times` holds each flow's measured seconds per
    /// transfer of `bytes`; `sums` the contended set's aggregate goodputs so far (B/s; empty
    /// for a single flow), which converge on their own (single flows' shares may keep wandering:
    /// TCP is not max-min fair); `elapsed_s` the time since measuring began.
    pub fn decide(&self, times: &[&[f64]], bytes: u64, sums: &[f64], elapsed_s: f64) -> Option<StopReason> {
        let n_min = times.iter().map(|t| t.len() as u32).min().unwrap_or(0);
        let goodputs = |t: &[f64]| t.iter().map(|s| bytes as f64 / s.max(1e-12)).collect::<Vec<f64>>();
        let flows_converged = n_min >= self.min_samples && times.iter().all(|t| converged(&goodputs(t), self.ci_target));
        let sum_converged = times.len() > 1 && sums.len() as u32 >= self.min_samples && converged(sums, self.ci_target);
        if flows_converged || sum_converged {
            return Some(StopReason::Converged);
        }
        if n_min >= self.max_samples {
            return Some(StopReason::SampleCap);
        }
        if (elapsed_s >= self.time_cap_s && n_min >= self.min_samples) || elapsed_s >= self.hard_cap_s {
            return Some(StopReason::TimeCap);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: StopRule = StopRule { min_samples: 5, max_samples: 20, ci_target: 0.01, time_cap_s: 2.0, hard_cap_s: 10.0 };
    const MB: u64 = 1_000_000;

    /// `n` transfers of 1 MB alternating between two times `spread` apart around 10 ms.
    fn times(n: usize, spread: f64) -> Vec<f64> {
        (0..n).map(|k| 0.01 * (1.0 + if k % 2 == 0 { spread } else { -spread })).collect()
    }

    #[test]
    fn steady_goodputs_converge_once_there_are_enough() {
        let t = times(4, 0.0);
        assert_eq!(RULE.decide(&[&t], MB, &[], 0.1), None, "fewer than min_samples");
        let t = times(5, 0.0);
        assert_eq!(RULE.decide(&[&t], MB, &[], 0.1), Some(StopReason::Converged));
    }

    #[test]
    fn noisy_goodputs_run_to_a_cap() {
        // +-20%: the interval stays wide.
        let t = times(8, 0.2);
        assert_eq!(RULE.decide(&[&t], MB, &[], 1.9), None);
        assert_eq!(RULE.decide(&[&t], MB, &[], 2.0), Some(StopReason::TimeCap));
        let t = times(20, 0.2);
        assert_eq!(RULE.decide(&[&t], MB, &[], 0.5), Some(StopReason::SampleCap));
        // The time cap waits for min_samples; the hard cap does not.
        let t = times(2, 0.2);
        assert_eq!(RULE.decide(&[&t], MB, &[], 5.0), None);
        assert_eq!(RULE.decide(&[&t], MB, &[], 10.0), Some(StopReason::TimeCap));
    }

    #[test]
    fn a_contended_set_stops_when_its_sum_converges_though_shares_wander() {
        let (a, b) = (times(6, 0.2), times(6, 0.3));
        assert_eq!(RULE.decide(&[&a, &b], MB, &[2e8; 4], 0.5), None, "fewer sums than min_samples");
        assert_eq!(RULE.decide(&[&a, &b], MB, &[2e8; 5], 0.5), Some(StopReason::Converged));
        // A single flow never stops on sums.
        assert_eq!(RULE.decide(&[&a], MB, &[2e8; 5], 0.5), None);
        // Every flow must have its minimum for the flows' own convergence.
        let (c, d) = (times(6, 0.0), times(3, 0.0));
        assert_eq!(RULE.decide(&[&c, &d], MB, &[], 0.5), None);
    }
}
