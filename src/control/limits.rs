//! What an agent agrees to do: every size, chunk, count and timeout a request may carry is
//! checked against these before anything is allocated. The agent states its limits in its
//! `hello`; `linkcal run` checks its flags against the defaults up front.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::refusal::Refusal;
use super::WindowSpec;
use crate::transport::FlowSpec;
pub use crate::transport::{MAX_CHUNK_BYTES, MAX_TIMEOUT_S};

/// Default largest payload of one flow, bytes (4 GiB): the biggest model KV hand-off the sweep
/// sends after `payload_scale`, with room to spare.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// Largest window length, seconds (one hour).
pub const MAX_WINDOW_S: f64 = 3600.0;
/// Most measured transfers in one window.
pub const MAX_COUNT: u32 = 1_000_000;
/// Most warmup transfers in one window.
pub const MAX_WARMUP: u32 = 10_000;
/// Most flows open at once in one coordinator session.
pub const MAX_FLOWS: u32 = 256;
/// Default sum of `max_bytes` over the flows open at once in one session, bytes (16 GiB).
pub const DEFAULT_MAX_OPEN_BYTES: u64 = 16 << 30;

/// The bounds an agent enforces, as stated in its `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentLimits {
    /// Largest `max_bytes` of a flow and payload of a transfer, bytes.
    pub max_bytes: u64,
    /// Largest staging chunk, bytes.
    pub max_chunk_bytes: u64,
    /// Largest data-plane timeout, seconds.
    pub max_timeout_s: f64,
    /// Largest window length, seconds.
    pub max_window_s: f64,
    /// Most measured transfers in one window.
    pub max_count: u32,
    /// Most warmup transfers in one window.
    pub max_warmup: u32,
    /// Most flows open at once in one session.
    pub max_flows: u32,
    /// Largest sum of `max_bytes` over the flows open at once in one session, bytes.
    pub max_open_bytes: u64,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_chunk_bytes: MAX_CHUNK_BYTES,
            max_timeout_s: MAX_TIMEOUT_S,
            max_window_s: MAX_WINDOW_S,
            max_count: MAX_COUNT,
            max_warmup: MAX_WARMUP,
            max_flows: MAX_FLOWS,
            max_open_bytes: DEFAULT_MAX_OPEN_BYTES,
        }
    }
}

/// Whether `t` is a usable timeout: finite, positive, at most `max` seconds.
pub fn timeout_ok(t: f64, max: f64) -> bool {
    t.is_finite() && t > 0.0 && t <= max
}

impl AgentLimits {
    /// Checks a flow before anything is allocated for it; the error says which field is out of
    /// bounds and the bound.
    pub fn check_flow(&self, flow: &FlowSpec) -> Result<(), Refusal> {
        let id = flow.id;
        if flow.max_bytes == 0 || flow.max_bytes > self.max_bytes {
            return Err(Refusal::MaxBytes { id, bytes: flow.max_bytes, limit: self.max_bytes });
        }
        if !timeout_ok(flow.timeout_s, self.max_timeout_s) {
            return Err(Refusal::Timeout { id, timeout_s: flow.timeout_s, limit_s: self.max_timeout_s });
        }
        match flow.options.get("chunk_bytes") {
            None | Some(serde_json::Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if (1..=self.max_chunk_bytes).contains(&n) => {}
                _ => return Err(Refusal::ChunkBytes { id, value: v.clone(), limit: self.max_chunk_bytes }),
            },
        }
        if let Some(cc) = &flow.tcp_congestion {
            // Linux names congestion controls in at most 15 characters (TCP_CA_NAME_MAX).
            if cc.is_empty() || cc.len() > 15 || !cc.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(Refusal::Congestion { id, name: cc.clone() });
            }
        }
        Ok(())
    }

    /// Checks a window before it runs.
    pub fn check_window(&self, w: &WindowSpec) -> Result<(), Refusal> {
        let id = w.flow_id;
        let bytes_ok = |b: u64| (1..=self.max_bytes).contains(&b);
        if !bytes_ok(w.bytes) || (w.warmup > 0 && !bytes_ok(w.warmup_bytes)) {
            return Err(Refusal::WindowBytes { id, bytes: w.bytes, warmup_bytes: w.warmup_bytes, limit: self.max_bytes });
        }
        if w.max_count > self.max_count || w.min_count > w.max_count || w.warmup > self.max_warmup {
            return Err(Refusal::WindowCounts {
                id,
                min: w.min_count,
                max: w.max_count,
                warmup: w.warmup,
                max_count: self.max_count,
                max_warmup: self.max_warmup,
            });
        }
        if !(w.duration_s.is_finite() && (0.0..=self.max_window_s).contains(&w.duration_s)) {
            return Err(Refusal::WindowLength { id, duration_s: w.duration_s, limit_s: self.max_window_s });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportKind;

    fn flow(max_bytes: u64, timeout_s: f64, options: serde_json::Value) -> FlowSpec {
        FlowSpec {
            id: 7,
            transport: TransportKind::StagedTcp,
            local_addr: None,
            max_bytes,
            timeout_s,
            options,
            tcp_congestion: None,
        }
    }

    #[test]
    fn flows_out_of_bounds_are_refused_naming_the_field() {
        let l = AgentLimits::default();
        assert!(l.check_flow(&flow(1 << 20, 30.0, serde_json::json!({"chunk_bytes": 1 << 20}))).is_ok());
        assert!(l.check_flow(&flow(l.max_bytes, l.max_timeout_s, serde_json::Value::Null)).is_ok());
        let cases = [
            (flow(1 << 40, 30.0, serde_json::Value::Null), "max_bytes 1099511627776"),
            (flow(1 << 63, 30.0, serde_json::Value::Null), "max_bytes 9223372036854775808"),
            (flow(0, 30.0, serde_json::Value::Null), "max_bytes 0"),
            (flow(1, 1e308, serde_json::Value::Null), "timeout_s"),
            (flow(1, f64::NAN, serde_json::Value::Null), "timeout_s"),
            (flow(1, -1.0, serde_json::Value::Null), "timeout_s"),
            (flow(1, 30.0, serde_json::json!({"chunk_bytes": 1u64 << 40})), "chunk_bytes"),
            (flow(1, 30.0, serde_json::json!({"chunk_bytes": 0})), "chunk_bytes"),
            (flow(1, 30.0, serde_json::json!({"chunk_bytes": "x"})), "chunk_bytes"),
        ];
        for (f, want) in cases {
            let e = l.check_flow(&f).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("flow 7"), "{e}");
        }
        let mut f = flow(1, 30.0, serde_json::Value::Null);
        f.tcp_congestion = Some("cubic; rm".into());
        assert!(matches!(l.check_flow(&f), Err(Refusal::Congestion { id: 7, .. })));
        f.tcp_congestion = Some("bbr".into());
        assert!(l.check_flow(&f).is_ok());
    }

    #[test]
    fn windows_out_of_bounds_are_refused() {
        let l = AgentLimits::default();
        let ok = WindowSpec {
            flow_id: 1,
            bytes: 1 << 20,
            warmup: 2,
            warmup_bytes: 1 << 20,
            min_count: 1,
            max_count: 10,
            duration_s: 0.5,
        };
        assert!(l.check_window(&ok).is_ok());
        let bad = [
            WindowSpec { bytes: 0, ..ok.clone() },
            WindowSpec { bytes: l.max_bytes + 1, ..ok.clone() },
            WindowSpec { warmup_bytes: 1 << 62, ..ok.clone() },
            WindowSpec { max_count: u32::MAX, ..ok.clone() },
            WindowSpec { min_count: 11, ..ok.clone() },
            WindowSpec { warmup: u32::MAX, ..ok.clone() },
            WindowSpec { duration_s: 1e308, ..ok.clone() },
            WindowSpec { duration_s: f64::NAN, ..ok.clone() },
            WindowSpec { duration_s: -1.0, ..ok.clone() },
        ];
        for w in bad {
            assert!(l.check_window(&w).unwrap_err().to_string().contains("arm: window of flow 1"), "{w:?}");
        }
        // No warmup: its payload size does not matter.
        assert!(l.check_window(&WindowSpec { warmup: 0, warmup_bytes: 0, ..ok }).is_ok());
    }
}
