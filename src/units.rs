//! Sizes and rates with units as operators write them, and printed back with an explicit unit:
//! the one grammar and the one formatter of each. Rates (`"25 GB/s"`, `"200 Gbit/s"`, `1.25e8`)
//! parse to bytes per second (SI: 1 GB/s = 1e9 B/s; `GiB/s` = 2^30 B/s; bits are divided by 8);
//! sizes (`4096`, `64K`, `16MiB`, `10MB`) parse to bytes (K/M/G and KiB/MiB/GiB binary,
//! kB/MB/GB SI). Imports nothing of the library.
#![allow(non_snake_case)]

/// Why a rate string did not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateError {
    /// The number part is missing or not a number.
    #[error("'{0}' is not a rate: expected a number and a unit, e.g. \"25 GB/s\", \"200 Gbit/s\" or a number of B/s")]
    Syntax(String),
    /// The unit is not one of the known ones.
    #[error("unknown unit '{unit}' in '{text}': use B/s, kB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s (or Gbps, Mbps)")]
    Unit {
        /// The unit as written.
        unit: String,
        /// The whole value.
        text: String,
    },
    /// Zero, negative or not finite.
    #[error("rate '{0}' must be a positive, finite number")]
    NotPositive(String),
}

/// Multiplier to bytes/s for a unit, or `None` when the unit is unknown.
fn unit_factor(unit: &str) -> Option<f64> {
    let f = match unit {
        "B/s" | "Bps" => 1.0,
        "kB/s" | "KB/s" => 1e3,
        "MB/s" => 1e6,
        "GB/s" => 1e9,
        "TB/s" => 1e12,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        "GiB/s" => 1024.0 * 1024.0 * 1024.0,
        "bit/s" | "b/s" | "bps" => 1.0 / 8.0,
        "kbit/s" | "kb/s" | "kbps" => 1e3 / 8.0,
        "Mbit/s" | "Mb/s" | "Mbps" => 1e6 / 8.0,
        "Gbit/s" | "Gb/s" | "Gbps" => 1e9 / 8.0,
        "Tbit/s" | "Tb/s" | "Tbps" => 1e12 / 8.0,
        _ => return None,
    };
    Some(f)
}

/// Parses `"25 GB/s"`, `"200Gbit/s"`, `"1.25e8 B/s"` or a bare number (B/s) into bytes/s.
pub fn parse_rate(text: &str) -> Result<f64, RateError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num = num.replace('_', "");
    let value: f64 = num.trim().parse().map_err(|_| RateError::Syntax(text.to_string()))?;
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1.0
    } else {
        unit_factor(unit).ok_or_else(|| RateError::Unit { unit: unit.to_string(), text: text.to_string() })?
    };
    let v = value * factor;
    if !(v.is_finite() && v > 0.0) {
        return Err(RateError::NotPositive(text.to_string()));
    }
    Ok(v)
}

/// Why a size string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a positive size: bytes, or a whole number with a unit (e.g. 4096, 64K, 64KiB, 16MiB, 10MB)")]
pub struct SizeError(pub String);

/// Bytes per unit of a size, or `None` when the unit is unknown: K/M/G (either case) and
/// KiB/MiB/GiB are binary, kB/KB/MB/GB are SI.
fn size_factor(unit: &str) -> Option<u64> {
    let f = match unit {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" | "m" => 1 << 20,
        "GiB" | "G" | "g" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    Some(f)
}

/// Parses a positive size such as `4096`, `64K`, `4KiB`, `16MiB`, `1g`, `10MB` into bytes (the
/// grammar of every `--sizes`-like flag).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let err = || SizeError(text.to_string());
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let factor = size_factor(unit.trim()).ok_or_else(err)?;
    n.checked_mul(factor).filter(|v| *v > 0).ok_or_else(err)
}

/// Parses a comma-separated list of sizes (`4K,64K,16MiB`) into bytes, in the order given.
pub fn parse_sizes(list: &str) -> Result<Vec<u64>, SizeError> {
    list.split(',').map(parse_size).collect()
}

/// A rate in B/s printed with an SI unit chosen for readability, e.g. `23.84 GB/s`.
pub fn fmt_rate(rate_Bps: f64) -> String {
    let (div, unit) = rate_scale(rate_Bps.abs());
    let v = rate_Bps / div;
    if v.abs() >= 100.0 {
        format!("{v:.1} {unit}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2} {unit}")
    } else {
        format!("{v:.3} {unit}")
    }
}

/// The SI divisor and unit label that keep `rate_Bps` between 1 and 1000.
pub fn rate_scale(rate_Bps: f64) -> (f64, &'static str) {
    if rate_Bps >= 1e12 {
        (1e12, "TB/s")
    } else if rate_Bps >= 1e9 {
        (1e9, "GB/s")
    } else if rate_Bps >= 1e6 {
        (1e6, "MB/s")
    } else if rate_Bps >= 1e3 {
        (1e3, "kB/s")
    } else {
        (1.0, "B/s")
    }
}

/// A byte count printed with a binary unit when it is a whole number of them, e.g. `4 MiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (div, unit) in UNITS {
        if bytes >= div {
            let v = bytes as f64 / div as f64;
            return if bytes % div == 0 { format!("{} {unit}", bytes / div) } else { format!("{v:.2} {unit}") };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_rate("25 GB/s").unwrap(), 25e9);
        assert_eq!(parse_rate("200Gbit/s").unwrap(), 25e9);
        assert_eq!(parse_rate("1.25e8").unwrap(), 1.25e8);
        assert_eq!(parse_rate("1.25e8 B/s").unwrap(), 1.25e8);
        assert_eq!(parse_rate("1 GiB/s").unwrap(), 1073741824.0);
        assert_eq!(parse_rate("400 Gbps").unwrap(), 50e9);
        assert_eq!(parse_rate("100_000 kB/s").unwrap(), 1e8);
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(matches!(parse_rate("25 GB"), Err(RateError::Unit { .. })));
        assert!(matches!(parse_rate("25 furlongs/s"), Err(RateError::Unit { .. })));
        assert!(matches!(parse_rate("fast"), Err(RateError::Syntax(_))));
        assert!(matches!(parse_rate("0 GB/s"), Err(RateError::NotPositive(_))));
        assert!(matches!(parse_rate("-3 GB/s"), Err(RateError::NotPositive(_))));
    }

    #[test]
    fn parses_sizes_of_every_form() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("4KiB", 4096),
            ("16M", 16 << 20),
            ("16MiB", 16 << 20),
            ("16 MiB", 16 << 20),
            ("1g", 1 << 30),
            ("1GiB", 1 << 30),
            ("10MB", 10_000_000),
            ("2kB", 2_000),
            ("123B", 123),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "0", "M", "1.5M", "-1", "1T", "4XB", "0KiB"] {
            assert_eq!(parse_size(bad), Err(SizeError(bad.into())), "{bad}");
        }
        assert_eq!(parse_sizes("4K,16MiB"), Ok(vec![4096, 16 << 20]));
        assert!(parse_sizes("4K,,16M").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_rate(25e9), "25.00 GB/s");
        assert_eq!(fmt_rate(1.1842e8), "118.4 MB/s");
        assert_eq!(fmt_rate(1.5e3), "1.500 kB/s");
        assert_eq!(fmt_bytes(4 << 20), "4 MiB");
        assert_eq!(fmt_bytes(1000), "1000 B");
        assert_eq!(fmt_bytes(1536), "1.50 KiB");
        assert_eq!(fmt_bytes(16 << 20), "16 MiB");
        assert_eq!(fmt_bytes(3 << 40), "3 TiB");
    }
}
