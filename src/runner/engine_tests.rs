//! The measurement loop against a fake driver on a fake clock: every window costs the time
//! its transfers take (the driver advances the clock), so convergence, both caps and a failing
//! flow are checked without sockets, agents or root.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::model::results::StopReason;

/// A clock the fake driver moves.
#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<f64>>);

impl Clock for FakeClock {
    fn now_s(&self) -> f64 {
        self.0.get()
    }
}

/// Flows whose k-th measured transfer (per flow) takes `times[flow](k)` seconds; every window
/// makes `min_count` transfers back to back (or one when the window asks for none), all flows
/// from t = 0. `fail_at`: the window (counted from 1) that fails.
struct FakeDriver {
    clock: FakeClock,
    times: Vec<fn(usize) -> f64>,
    made: Vec<usize>,
    windows: Vec<Window>,
    fail_at: Option<usize>,
    opened: bool,
    closed: bool,
    aborted: bool,
}

impl FakeDriver {
    fn new(clock: &FakeClock, times: Vec<fn(usize) -> f64>) -> Self {
        let n = times.len();
        FakeDriver {
            clock: clock.clone(),
            times,
            made: vec![0; n],
            windows: Vec::new(),
            fail_at: None,
            opened: false,
            closed: false,
            aborted: false,
        }
    }
}

impl FlowDriver for FakeDriver {
    type Error = String;

    fn flows(&self) -> usize {
        self.times.len()
    }

    fn open(&mut self, _bytes: u64) -> Result<(), String> {
        self.opened = true;
        Ok(())
    }

    fn window(&mut self, w: &Window) -> Result<Vec<WindowResult>, String> {
        self.windows.push(*w);
        if self.fail_at == Some(self.windows.len()) {
            return Err(format!("flow 1 failed in window {}", self.windows.len()));
        }
        let count = if w.warmup > 0 { 0 } else { w.min_count.max(1) as usize };
        let mut longest: f64 = 0.0;
        let mut out = Vec::new();
        for (n, f) in self.times.iter().enumerate() {
            let (mut starts, mut times, mut t) = (Vec::new(), Vec::new(), 0.0);
            for _ in 0..count {
                let d = f(self.made[n]);
                self.made[n] += 1;
                starts.push(t);
                times.push(d);
                t += d;
            }
            longest = longest.max(t);
            out.push(WindowResult { starts_s: starts, times_s: times, warmup_done: w.warmup, ..WindowResult::empty(n as u64) });
        }
        self.clock.0.set(self.clock.0.get() + longest);
        Ok(out)
    }

    fn close(&mut self) -> Result<(), String> {
        self.closed = true;
        Ok(())
    }

    fn abort(&mut self) {
        self.aborted = true;
    }
}

const MB: u64 = 1_000_000;

fn opts() -> EngineOptions {
    EngineOptions {
        stop: StopRule { min_samples: 5, max_samples: 40, ci_target: 0.01, time_cap_s: 1.0, hard_cap_s: 10.0 },
        warmup: 2,
        warmup_max_bytes: 4096,
        warmup_full: false,
        window_s: 0.0,
        contended_min_count: 1,
        bursts: 0,
    }
}

/// 10 ms per transfer, steady: 100 MB/s for 1 MB.
fn steady(_: usize) -> f64 {
    0.010
}

/// +-30% around 10 ms: the interval never gets within 1%.
fn noisy(k: usize) -> f64 {
    if k % 2 == 0 {
        0.013
    } else {
        0.007
    }
}

/// 250 ms per transfer on average, +-50% (exact in binary): the time cap comes first.
fn slow_noisy(k: usize) -> f64 {
    if k % 2 == 0 {
        0.375
    } else {
        0.125
    }
}

#[test]
fn steady_flows_converge_at_the_minimum_after_one_warmup_window() {
    let clock = FakeClock::default();
    let mut d = FakeDriver::new(&clock, vec![steady]);
    let out = measure(&mut d, &opts(), MB, &clock).unwrap();
    assert_eq!(out.stop, StopReason::Converged);
    assert_eq!(out.flows[0].times.len(), 5, "min_samples, one transfer per window");
    assert_eq!(out.flows[0].warmup, 2);
    // The warmup window carries warmup_max_bytes, the measured ones the payload.
    assert_eq!((d.windows[0].warmup, d.windows[0].warmup_bytes, d.windows[0].max_count), (2, 4096, 0));
    assert!(d.windows[1..].iter().all(|w| w.warmup == 0 && w.bytes == MB));
    assert!(d.opened && d.closed && !d.aborted);
    assert!(out.sums.is_empty() && out.makespans.is_empty(), "a solo flow has no aggregate");
}

#[test]
fn noisy_flows_stop_at_the_sample_cap_or_the_time_cap() {
    let clock = FakeClock::default();
    let mut d = FakeDriver::new(&clock, vec![noisy]);
    let out = measure(&mut d, &opts(), MB, &clock).unwrap();
    // 40 transfers of 10 ms average = 0.4 s < the 1 s time cap.
    assert_eq!((out.stop, out.flows[0].times.len()), (StopReason::SampleCap, 40));
    let clock = FakeClock::default();
    let mut d = FakeDriver::new(&clock, vec![slow_noisy]);
    let out = measure(&mut d, &opts(), MB, &clock).unwrap();
    // The 1 s cap is reached after 4 transfers, but it waits for min_samples (5): 1.375 s.
    assert_eq!((out.stop, out.flows[0].times.len()), (StopReason::TimeCap, 5));
    assert_eq!(clock.now_s(), 1.375);
}

#[test]
fn a_contended_set_aggregates_each_window_and_stops_on_its_sum() {
    let clock = FakeClock::default();
    let mut d = FakeDriver::new(&clock, vec![steady, steady]);
    let o = EngineOptions { contended_min_count: 3, bursts: 2, ..opts() };
    let out = measure(&mut d, &o, MB, &clock).unwrap();
    assert_eq!(out.stop, StopReason::Converged);
    // Burst windows: one transfer each, their spans are the makespans; windows after them
    // carry contended_min_count transfers per flow.
    assert_eq!(out.makespans, vec![0.010, 0.010]);
    assert_eq!((d.windows[1].min_count, d.windows[1].max_count), (1, 1));
    assert!(d.windows[3..].iter().all(|w| w.min_count == 3));
    // Each window: two flows of 100 MB/s over the whole common interval.
    assert!(out.sums.iter().all(|s| (s - 2e8).abs() < 1.0), "{:?}", out.sums);
    let routes = vec![
        (PathRef { kind: crate::spec::RouteKind::PrefillInterRank, src: 0, dst: 1 }, Vec::new()),
        (PathRef { kind: crate::spec::RouteKind::PrefillInterRank, src: 1, dst: 0 }, Vec::new()),
    ];
    let label = Label {
        id: "contended/x/1000000".into(),
        set: Some("x".into()),
        transport: "host_tcp".into(),
        kv_block: None,
        started_at: "now".into(),
        duration_s: 1.0,
    };
    let m = measurement(label, &routes, MB, &out).unwrap();
    let agg = m.aggregate.unwrap();
    assert!((agg.goodput_sum_Bps.p50 - 2e8).abs() < 1.0);
    assert_eq!(agg.fairness_max_over_min, Some(1.0));
    assert_eq!(m.flows[1].samples, out.flows[1].times.len() as u64);
    assert_eq!(m.kind, crate::model::results::MeasurementKind::Contended);
}

#[test]
fn a_failing_flow_aborts_the_measurement_and_is_reported() {
    let clock = FakeClock::default();
    let mut d = FakeDriver::new(&clock, vec![steady, noisy]);
    d.fail_at = Some(3);
    let e = measure(&mut d, &opts(), MB, &clock).unwrap_err();
    assert_eq!(e, "flow 1 failed in window 3");
    assert!(d.aborted && !d.closed, "a failed measurement is aborted, not closed");
    assert_eq!(d.windows.len(), 3);
}
