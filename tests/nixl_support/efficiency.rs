//! The engine's efficiency as the tests derive it from results files, and as `calibrate`,
//! `report` and `predict` show it.

use std::collections::BTreeMap;

use serde_json::Value;

/// (transport, route, KV block bytes or 0 without blocks, payload bytes).
pub type Key = (String, String, u64, u64);

/// Mean over a run's solo flows of their mean transfer time, seconds, per [`Key`].
pub fn mean_times(results: &Value) -> BTreeMap<Key, f64> {
    let mut acc: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
    for m in results["measurements"].as_array().unwrap().iter().filter(|m| m["kind"] == "solo") {
        let block = m["kv_block_bytes"].as_u64().unwrap_or(0);
        for f in m["flows"].as_array().unwrap() {
            let p = &f["path"];
            let route = format!("{}:{}->{}", p["kind"].as_str().unwrap(), p["src"], p["dst"]);
            let transport = m["transport"].as_str().unwrap().to_string();
            let e = acc.entry((transport, route, block, f["payload_bytes"].as_u64().unwrap())).or_default();
            e.0 += f["transfer_time_s"]["mean"].as_f64().unwrap();
            e.1 += 1.0;
        }
    }
    acc.into_iter().map(|(k, (s, n))| (k, s / n)).collect()
}

/// Host TCP's time over the engine's, per (engine, route, block, payload) both measured.
pub fn expected_ratios(tcp: &Value, engine_runs: &[&Value]) -> BTreeMap<Key, f64> {
    let t = mean_times(tcp);
    let mut out = BTreeMap::new();
    for r in engine_runs {
        for ((engine, route, block, bytes), e) in mean_times(r) {
            if let Some(h) = t.get(&("host_tcp".to_string(), route.clone(), 0, bytes)) {
                out.insert((engine, route, block, bytes), h / e);
            }
        }
    }
    out
}

/// The calibration's `engine_efficiency` ratios, per (engine, route, block, payload).
pub fn calibration_ratios(cal: &Value) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for c in cal["engine_efficiency"].as_array().unwrap() {
        let p = &c["path"];
        let route = format!("{}:{}->{}", p["kind"].as_str().unwrap(), p["src"], p["dst"]);
        for pt in c["points"].as_array().unwrap() {
            let engine = c["engine"].as_str().unwrap().to_string();
            let key = (engine, route.clone(), c["kv_block_bytes"].as_u64().unwrap(), pt["payload_bytes"].as_u64().unwrap());
            out.insert(key, pt["ratio"].as_f64().unwrap());
        }
    }
    out
}

fn attr(row: &str, name: &str) -> String {
    let start = row.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {row}")) + name.len() + 2;
    row[start..start + row[start..].find('"').unwrap()].to_string()
}

/// The report's engine-efficiency rows (`data-*` attributes), per (engine, route, block, payload).
pub fn report_ratios(html: &str) -> BTreeMap<Key, f64> {
    html.split("<tr ")
        .skip(1)
        .filter(|r| r.contains("data-ratio="))
        .map(|r| {
            let route = attr(r, "data-route").replace("&gt;", ">");
            let key = (
                attr(r, "data-engine"),
                route,
                attr(r, "data-block-bytes").parse().unwrap(),
                attr(r, "data-payload-bytes").parse().unwrap(),
            );
            (key, attr(r, "data-ratio").parse().unwrap())
        })
        .collect()
}

/// A curve's ratio at `bytes`: linear in ln(payload) between the measured payloads around it,
/// the nearest one's outside them. `pts` = (payload, ratio) sorted by payload.
pub fn interpolate(pts: &[(u64, f64)], bytes: u64) -> f64 {
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    if bytes <= first.0 {
        return first.1;
    }
    if bytes >= last.0 {
        return last.1;
    }
    let k = pts.iter().position(|p| p.0 >= bytes).unwrap();
    let ((xa, ya), (xb, yb)) = (pts[k - 1], pts[k]);
    let w = ((bytes as f64).ln() - (xa as f64).ln()) / ((xb as f64).ln() - (xa as f64).ln());
    ya + w * (yb - ya)
}

/// The ratio `predict --kv-engine ENGINE` should apply to `route` at `bytes` with `block`: the
/// route's own curve, or the mean over every route's curve at that block when it has none.
pub fn expected_predict_ratio(ratios: &BTreeMap<Key, f64>, engine: &str, route: &str, block: u64, bytes: u64) -> f64 {
    let curve = |r: &str| -> Vec<(u64, f64)> {
        ratios
            .iter()
            .filter(|((e, rr, b, _), _)| e == engine && rr == r && *b == block)
            .map(|((_, _, _, p), v)| (*p, *v))
            .collect()
    };
    let own = curve(route);
    if !own.is_empty() {
        return interpolate(&own, bytes);
    }
    let mut routes: Vec<&String> = ratios.keys().filter(|k| k.0 == engine && k.2 == block).map(|k| &k.1).collect();
    routes.dedup();
    routes.iter().map(|r| interpolate(&curve(r), bytes)).sum::<f64>() / routes.len() as f64
}
