//! A calibration a prediction can rest on: the current schema, every capacity, rate and time a
//! finite number (capacities and rates positive), a payload scale and sharing efficiency in
//! range, and the rack shape the planner asks about. Each failure names the file and field.
#![allow(non_snake_case)]

use std::path::Path;

use crate::error::InputError;
use crate::model::{Calibration, CALIBRATION_SCHEMA};

/// Reads and checks a calibration file (schema `linkcal.calibration/2`), naming file and
/// field on error.
pub fn load_calibration(path: &Path) -> Result<Calibration, InputError> {
    parse_calibration(path, &crate::error::read_input(path)?)
}

/// [`load_calibration`] on text already read from `path` (named in errors only).
pub fn parse_calibration(path: &Path, text: &str) -> Result<Calibration, InputError> {
    if let Some((field, token, line)) = non_finite_literal(text) {
        return Err(InputError::field(
            path,
            field,
            format!("is {token} (line {line}): capacities, rates and times must be finite numbers; re-run `linkcal calibrate`"),
        ));
    }
    let cal: Calibration = crate::model::parse(path, text, CALIBRATION_SCHEMA)?;
    check_values(path, &cal)?;
    Ok(cal)
}

/// The first `NaN` / `Infinity` literal (not valid JSON, but what Python's `json` writes for a
/// non-finite float): the key it belongs to (or `line N`), the token and its line (1-based).
fn non_finite_literal(text: &str) -> Option<(String, &'static str, usize)> {
    // Every token holds one of these: most files hold neither, and need no line-by-line scan.
    if !text.contains("NaN") && !text.contains("Infinity") {
        return None;
    }
    for (n, line) in text.lines().enumerate() {
        let bare = outside_strings(line);
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| bare.split(|c: char| matches!(c, ',' | '[' | ']' | ':') || c.is_whitespace()).any(|w| w == *t));
        if let Some(token) = token {
            let key = line.split('"').nth(1).filter(|_| line.contains(':')).map(str::to_string);
            return Some((key.unwrap_or_else(|| format!("line {}", n + 1)), token, n + 1));
        }
    }
    None
}

/// `line` with the contents of its JSON strings blanked out.
fn outside_strings(line: &str) -> String {
    let (mut out, mut inside, mut escaped) = (String::with_capacity(line.len()), false, false);
    for c in line.chars() {
        match (inside, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => inside = !inside,
            (false, _, c) => out.push(c),
            (true, false, _) => {}
        }
        if inside {
            out.push(' ');
        }
    }
    out
}

/// A rate (B/s) that must be finite and positive when present.
fn rate(path: &Path, field: String, v: Option<f64>) -> Result<(), InputError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(InputError::field(
            path,
            field,
            format!("is {x}: a capacity or rate must be a positive, finite number of B/s; re-run `linkcal calibrate`"),
        )),
        _ => Ok(()),
    }
}

/// A time (seconds) that must be finite when present (fitted fixed costs may dip below 0; the
/// simulator counts them as 0).
fn time(path: &Path, field: String, v: Option<f64>) -> Result<(), InputError> {
    match v {
        Some(x) if !x.is_finite() => {
            Err(InputError::field(path, field, format!("is {x}: a time must be a finite number of seconds")))
        }
        _ => Ok(()),
    }
}

/// Checks every number a prediction reads.
pub fn check_values(path: &Path, cal: &Calibration) -> Result<(), InputError> {
    let scale = cal.origin.payload_scale;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(InputError::field(
            path,
            "origin.payload_scale",
            format!("is {scale}: must be a positive number (1 on a real rack)"),
        ));
    }
    if let Some(s) = cal.sharing_efficiency.filter(|s| !(s.is_finite() && *s > 0.0 && *s <= 1.0)) {
        return Err(InputError::field(path, "sharing_efficiency", format!("is {s}: must be in (0, 1]")));
    }
    for (i, s) in cal.segments.iter().enumerate() {
        let f = |name: &str| format!("segments[{i}].{name}");
        rate(path, f("capacity_Bps"), s.capacity_Bps)?;
        rate(path, f("ci95_low_Bps"), s.ci95_low_Bps)?;
        rate(path, f("ci95_high_Bps"), s.ci95_high_Bps)?;
        rate(path, f("lower_bound_Bps"), s.lower_bound_Bps)?;
        rate(path, f("nominal_Bps"), s.nominal_Bps)?;
        time(path, f("latency_s"), s.latency_s)?;
        if s.method.identified() && s.capacity_Bps.is_none() {
            return Err(InputError::field(path, f("capacity_Bps"), "is null while method says it was identified"));
        }
    }
    for (i, g) in cal.series_groups.iter().enumerate() {
        rate(path, format!("series_groups[{i}].capacity_Bps"), g.capacity_Bps)?;
    }
    for (i, p) in cal.paths.iter().enumerate() {
        rate(path, format!("paths[{i}].capacity_Bps"), p.capacity_Bps)?;
        time(path, format!("paths[{i}].alpha_s"), p.alpha_s)?;
        for (k, piece) in p.pieces.iter().enumerate() {
            rate(path, format!("paths[{i}].pieces[{k}].beta_Bps"), Some(piece.beta_Bps))?;
            time(path, format!("paths[{i}].pieces[{k}].alpha_s"), Some(piece.alpha_s))?;
        }
    }
    Ok(())
}

/// Checks `--pp-prefill` / `--pp-decode` against the calibrated rack's shape.
pub fn check_shape(
    path: &Path,
    cal: &Calibration,
    pp_prefill: Option<usize>,
    pp_decode: Option<usize>,
) -> Result<(), InputError> {
    for (want, have, field, flag) in [
        (pp_prefill, cal.shape.pp_prefill, "shape.pp_prefill", "--pp-prefill"),
        (pp_decode, cal.shape.pp_decode, "shape.pp_decode", "--pp-decode"),
    ] {
        if let Some(w) = want.filter(|w| *w != have) {
            return Err(InputError::field(
                path,
                field,
                format!(
                    "is {have} but {flag} is {w}: this calibration measured a ({},{},{}) rack; calibrate the rack you plan for, or leave the flag out",
                    cal.shape.pp_prefill, cal.shape.pp_decode, cal.shape.ib_cards
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::non_finite_literal;

    #[test]
    fn finds_non_finite_literals_and_their_keys() {
        let t = "{\n  \"a\": 1.0,\n  \"capacity_Bps\": NaN,\n}";
        assert_eq!(non_finite_literal(t), Some(("capacity_Bps".into(), "NaN", 3)));
        let t = "{\n  \"x\": [\n    1,\n    -Infinity\n  ]\n}";
        assert_eq!(non_finite_literal(t), Some(("line 4".into(), "-Infinity", 4)));
        assert_eq!(non_finite_literal("{\"reason\": \"NaN is rejected\", \"v\": 2}"), None);
    }
}
