//! Provenance: where a results or calibration file came from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who made a file, when, with what, from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// linkcal version (Cargo package version).
    pub tool_version: String,
    /// Git commit of the linkcal build, when known at build or run time.
    pub git_sha: Option<String>,
    /// Hostname of the machine that wrote the file.
    pub host: String,
    /// Hosts that took part (agents), by name.
    pub hosts: Vec<String>,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// End time, RFC 3339 UTC (null while running).
    pub finished_at: Option<String>,
    /// The command line.
    pub argv: Vec<String>,
}

impl Provenance {
    /// Provenance for this process, started now.
    pub fn now(hosts: Vec<String>) -> Provenance {
        Provenance {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            git_sha: git_sha(),
            host: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            hosts,
            started_at: rfc3339_now(),
            finished_at: None,
            argv: std::env::args().collect(),
        }
    }
}

/// The git sha: `LINKCAL_GIT_SHA` if set, else `git rev-parse HEAD` in the current directory.
fn git_sha() -> Option<String> {
    if let Ok(s) = std::env::var("LINKCAL_GIT_SHA") {
        return Some(s);
    }
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Current UTC time as RFC 3339 with second precision.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_996_800), "2026-11-30T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
