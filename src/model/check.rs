//! The one place where the numbers of schema-versioned files (rack, results, calibration,
//! ground truth) are checked before any reader uses them: every rate, time, size and
//! efficiency finite and in range, named by its field path. The checks follow the model's
//! naming: `*_Bps` is a rate in B/s, `*_s` a time in seconds, summaries of either hold
//! positive quantiles.

use std::path::Path;

use serde_json::Value;

use crate::error::InputError;

/// Largest rate any file may hold, B/s (1 PB/s: far above any link).
pub const MAX_RATE_BPS: f64 = 1e15;
/// Largest time any file may hold, seconds (about 116 days).
pub const MAX_TIME_S: f64 = 1e7;

/// The unit a key's suffix names.
#[derive(Clone, Copy)]
enum Unit {
    Rate,
    Time,
}

impl Unit {
    fn of(key: &str) -> Option<Unit> {
        if key.ends_with("_Bps") {
            Some(Unit::Rate)
        } else if key.ends_with("_s") {
            Some(Unit::Time)
        } else {
            None
        }
    }

    fn max(self) -> f64 {
        match self {
            Unit::Rate => MAX_RATE_BPS,
            Unit::Time => MAX_TIME_S,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Rate => "rate (B/s)",
            Unit::Time => "time (s)",
        }
    }
}

/// Checks every number of `v` (a parsed file) by its key; the error names the file and the
/// field path (e.g. `measurements[3].aggregate.makespan_s.p50`) and the accepted range.
pub fn check_numbers(path: &Path, v: &Value) -> Result<(), InputError> {
    walk(v, "").map_err(|(field, message)| InputError::field(path, field, message))
}

type Bad = (String, String);

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn walk(v: &Value, at: &str) -> Result<(), Bad> {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let here = join(at, k);
                check_key(k, x, &here)?;
                walk(x, &here)?;
            }
        }
        Value::Array(items) => {
            for (n, x) in items.iter().enumerate() {
                walk(x, &format!("{at}[{n}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn num(x: &Value) -> Option<f64> {
    x.as_f64()
}

/// `lo < x <= hi` (or `lo <= x` when `closed`).
fn in_range(x: f64, lo: f64, hi: f64, closed: bool) -> bool {
    x.is_finite() && x <= hi && if closed { x >= lo } else { x > lo }
}

fn check_key(key: &str, x: &Value, at: &str) -> Result<(), Bad> {
    let bad = |what: String| Err((at.to_string(), what));
    match (key, x) {
        ("sharing_efficiency", Value::Number(n)) => {
            let e = n.as_f64().unwrap_or(f64::NAN);
            if !in_range(e, 0.0, 1.0, false) {
                return bad(format!("{e} is not an efficiency in (0, 1]; re-run `linkcal calibrate`"));
            }
        }
        ("efficiency", Value::Number(n)) => {
            let e = n.as_f64().unwrap_or(f64::NAN);
            if !in_range(e, 0.0, 1e3, false) {
                return bad(format!("{e} is not a positive finite efficiency"));
            }
        }
        ("payload_bytes", Value::Number(n)) if n.as_u64() == Some(0) => {
            return bad("is 0: payloads are at least 1 byte".into());
        }
        _ => {}
    }
    let Some(unit) = Unit::of(key) else { return Ok(()) };
    let interval = key.starts_with("ci95");
    match x {
        Value::Number(_) => scalar(num(x).unwrap_or(f64::NAN), unit, key, interval).map_err(|m| (at.to_string(), m)),
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                if let Some(v) = num(item) {
                    scalar(v, unit, key, false).map_err(|m| (format!("{at}[{n}]"), m))?;
                }
            }
            Ok(())
        }
        Value::Object(map) if map.contains_key("p50") && map.contains_key("mean") => summary(map, unit, at),
        _ => Ok(()),
    }
}

/// One number of `unit`: rates positive, times non-negative (`start`/`alpha`/offsets may be
/// 0), transfer times positive; interval ends only finite and bounded.
fn scalar(v: f64, unit: Unit, key: &str, interval: bool) -> Result<(), String> {
    let max = unit.max();
    let ok = if interval {
        v.is_finite() && v.abs() <= max
    } else {
        match unit {
            Unit::Rate => in_range(v, 0.0, max, false),
            Unit::Time if key == "transfer_times_s" => in_range(v, 0.0, max, false),
            Unit::Time => v.is_finite() && v.abs() <= max,
        }
    };
    if ok {
        return Ok(());
    }
    let range = match (unit, interval) {
        (_, true) => format!("[-{max:e}, {max:e}]"),
        (Unit::Rate, _) => format!("(0, {max:e}]"),
        (Unit::Time, _) => format!("a finite {} of magnitude at most {max:e}", unit.name()),
    };
    Err(format!("{v} is not a {} in {range}; the file is damaged or was edited by hand", unit.name()))
}

/// A summary (results' goodputs, transfer times, makespans): quantiles positive and bounded,
/// interval ends finite, spread non-negative.
fn summary(map: &serde_json::Map<String, Value>, unit: Unit, at: &str) -> Result<(), Bad> {
    let max = unit.max();
    for (k, x) in map {
        let Some(v) = num(x) else { continue };
        let ok = match k.as_str() {
            "ci95_low" | "ci95_high" => v.is_finite() && v.abs() <= max,
            "stddev" => in_range(v, 0.0, max, true),
            _ => in_range(v, 0.0, max, false),
        };
        if !ok {
            let what =
                format!("{v} is not a positive {} at most {max:e}; the file is damaged or was edited by hand", unit.name());
            return Err((format!("{at}.{k}"), what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: Value) -> Option<String> {
        check_numbers(Path::new("f.json"), &v).err().map(|e| format!("{}: {}", e.field.unwrap_or_default(), e.message))
    }

    #[test]
    fn numbers_are_checked_by_their_unit_and_named_by_path() {
        let s = |p50: f64| serde_json::json!({"p50": p50, "mean": 1.0, "ci95_low": -0.5, "ci95_high": 2.0, "min": 0.5, "max": 2.0, "p99": null, "stddev": 0.1});
        let ok = serde_json::json!({"measurements": [{"payload_bytes": 1, "transfer_time_s": s(1.0), "transfer_times_s": [1.0], "aggregate": {"makespan_s": s(0.3)}}]});
        assert_eq!(field(ok), None);
        let e = field(serde_json::json!({"measurements": [{"aggregate": {"makespan_s": s(0.0)}}]})).unwrap();
        assert!(e.starts_with("measurements[0].aggregate.makespan_s.p50: 0 is not a positive time"), "{e}");
        let e = field(serde_json::json!({"m": [{"goodput_Bps": s(1e308)}]})).unwrap();
        assert!(e.starts_with("m[0].goodput_Bps.p50: 100000000000000000000000000000"), "{e}");
        let cases = [
            (serde_json::json!({"segments": [{"capacity_Bps": 0.0}]}), "segments[0].capacity_Bps"),
            (serde_json::json!({"segments": [{"capacity_Bps": -1.0}]}), "segments[0].capacity_Bps"),
            (serde_json::json!({"sharing_efficiency": -0.5}), "sharing_efficiency"),
            (serde_json::json!({"sharing_efficiency": 1.5}), "sharing_efficiency"),
            (serde_json::json!({"pieces": [{"alpha_s": 1e300}]}), "pieces[0].alpha_s"),
            (serde_json::json!({"f": [{"transfer_times_s": [1.0, 0.0]}]}), "f[0].transfer_times_s[1]"),
            (serde_json::json!({"f": [{"payload_bytes": 0}]}), "f[0].payload_bytes"),
            (serde_json::json!({"efficiency": 0.0}), "efficiency"),
        ];
        for (v, want) in cases {
            let e = field(v).unwrap();
            assert!(e.starts_with(&format!("{want}: ")), "{want}: {e}");
        }
        // Interval ends may be negative; nulls and non-numbers are left to the parser.
        assert_eq!(field(serde_json::json!({"ci95_low_Bps": -3.0, "capacity_Bps": null, "latency_s": 0.0})), None);
    }
}
