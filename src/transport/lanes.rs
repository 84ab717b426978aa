//! Multi-lane sets: several flows of one transport moving data at once as ONE operation, all
//! lanes started from one gate, with several transfers per lane per sample (nvbandwidth starts
//! every stream from one event and times a loop of copies). A contended set of `probe --run`
//! is one such operation per sample ([`super::Transport::run_lanes`]).
//!
//! Transports that can start every lane from one device-side gate say so ([`LaneGate::Device`]:
//! the CUDA copies hold every lane's stream behind one spin kernel flag). The others use
//! [`by_threads`]: one thread per lane, released by one barrier, each timing its own
//! transfers; their start skew (thread wake-up, microseconds) is measured and reported.

use std::sync::Barrier;
use std::time::Instant;

use super::{Sender, TransportError};

/// Transfers per lane per sample at least, in a multi-lane set: with one transfer, the skew of
/// the start (tens of microseconds) is a few percent of a 32 MiB copy and inflates the sum.
pub const MIN_COPIES_PER_SAMPLE: u32 = 8;

/// How the lanes of a sample were started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneGate {
    /// One device-side gate held every lane; they started together (offsets are 0).
    Device,
    /// One thread per lane, released by one barrier; offsets are measured on one clock.
    Threads,
}

/// One lane's part of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneSample {
    /// When the lane's first transfer started, seconds after the sample's origin.
    pub start_s: f64,
    /// From the lane's first transfer's start to its last one's end, seconds.
    pub elapsed_s: f64,
    /// Payloads of the sample's size the lane moved (its copies).
    pub copies: u32,
    /// Transfers the lane's sender made (what its receiver counts): `copies` for one
    /// transfer per copy, 1 where one transfer is the whole gated loop of copies.
    pub transfers: u64,
}

/// One sample of a multi-lane set.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneRun {
    /// How the lanes were started.
    pub gate: LaneGate,
    /// Per lane, in the order the senders were given.
    pub lanes: Vec<LaneSample>,
}

/// The default multi-lane sample: one thread per lane, released together by one barrier, each
/// making `copies` transfers of `bytes` back to back, timed on one clock (the instant before
/// the barrier). A lane that fails does not hold the others: there is one barrier per sample,
/// and every lane passes it before its first transfer. The first error is returned.
pub fn by_threads(senders: &mut [&mut dyn Sender], bytes: u64, copies: u32) -> Result<LaneRun, TransportError> {
    let copies = copies.max(1);
    let barrier = Barrier::new(senders.len());
    let origin = Instant::now();
    let results: Vec<Result<LaneSample, TransportError>> = std::thread::scope(|s| {
        let handles: Vec<_> = senders
            .iter_mut()
            .map(|sender| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..copies {
                        sender.transfer(bytes)?;
                    }
                    Ok(LaneSample {
                        start_s: start.duration_since(origin).as_secs_f64(),
                        elapsed_s: start.elapsed().as_secs_f64(),
                        copies,
                        transfers: u64::from(copies),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(TransportError::protocol(0, "lane thread panicked"))))
            .collect()
    });
    let lanes = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(LaneRun { gate: LaneGate::Threads, lanes })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// A sender that sleeps `each` per transfer and fails once it has made `fail_after`.
    pub(crate) struct Sleepy {
        pub each: Duration,
        pub made: u64,
        pub fail_after: Option<u64>,
    }

    impl Sender for Sleepy {
        fn transfer(&mut self, _bytes: u64) -> Result<Duration, TransportError> {
            if self.fail_after == Some(self.made) {
                return Err(TransportError::protocol(7, "stand-in lane failure"));
            }
            std::thread::sleep(self.each);
            self.made += 1;
            Ok(self.each)
        }
        fn finish(self: Box<Self>) -> Result<(), TransportError> {
            Ok(())
        }
    }

    pub(crate) fn sleepy(ms: u64, fail_after: Option<u64>) -> Sleepy {
        Sleepy { each: Duration::from_millis(ms), made: 0, fail_after }
    }

    #[test]
    fn threads_start_every_lane_together_and_time_all_its_copies() {
        let (mut a, mut b) = (sleepy(2, None), sleepy(4, None));
        let run = by_threads(&mut [&mut a, &mut b], 1, MIN_COPIES_PER_SAMPLE).unwrap();
        assert_eq!(run.gate, LaneGate::Threads);
        assert_eq!((a.made, b.made), (8, 8), "every lane makes all its copies");
        assert!(run.lanes.iter().all(|l| l.copies == 8 && l.transfers == 8));
        // Each lane's interval holds its 8 sleeps; both were released by one barrier, so the
        // lanes ran at the same time (one started before the other's interval ended).
        let l = &run.lanes;
        assert!(l[0].elapsed_s >= 0.016 && l[1].elapsed_s >= 0.032, "{l:?}");
        assert!((l[0].start_s - l[1].start_s).abs() < l[0].elapsed_s.min(l[1].elapsed_s), "{l:?}");
    }

    #[test]
    fn a_failing_lane_does_not_hold_the_others() {
        let (mut a, mut b) = (sleepy(1, None), sleepy(1, Some(3)));
        let e = by_threads(&mut [&mut a, &mut b], 1, 8).unwrap_err();
        assert!(e.to_string().contains("stand-in lane failure"));
        assert_eq!((a.made, b.made), (8, 3), "the healthy lane ran its sample to the end");
    }
}
