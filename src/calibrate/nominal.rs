//! Nominal per-direction capacities from a discovery file (`linkcal discover --json`,
//! schema `linkcal.topology/2` or `/1`), read loosely: any object naming a spec segment
//! (`segment` or `name`) with a `nominal_Bps` (or `nominal_up_Bps` / `nominal_down_Bps`)
//! number, and any map keyed by segment name whose value is a number or `{up, down}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::InputError;
use crate::spec::{Dir, Hop, SegmentId};

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| *x > 0.0)
}

fn put(out: &mut BTreeMap<Hop, f64>, id: SegmentId, dir: Option<Dir>, v: f64) {
    for d in [Dir::Up, Dir::Down] {
        if dir.is_none_or(|x| x == d) {
            out.entry(Hop { id, dir: d }).or_insert(v);
        }
    }
}

fn walk(v: &Value, out: &mut BTreeMap<Hop, f64>) {
    match v {
        Value::Object(map) => {
            let named = ["segment", "name"].iter().find_map(|k| map.get(*k)?.as_str()?.parse::<SegmentId>().ok());
            if let Some(id) = named {
                let dir = map.get("dir").and_then(Value::as_str).and_then(|d| d.parse().ok());
                if let Some(x) = num(map.get("nominal_Bps")) {
                    put(out, id, dir, x);
                }
                if let Some(x) = num(map.get("nominal_up_Bps")) {
                    put(out, id, Some(Dir::Up), x);
                }
                if let Some(x) = num(map.get("nominal_down_Bps")) {
                    put(out, id, Some(Dir::Down), x);
                }
            }
            for (k, child) in map {
                if let Ok(id) = k.parse::<SegmentId>() {
                    match child {
                        Value::Number(_) => {
                            if let Some(x) = num(Some(child)) {
                                put(out, id, None, x);
                            }
                        }
                        Value::Object(m) => {
                            for d in [Dir::Up, Dir::Down] {
                                if let Some(x) = num(m.get(d.as_str())).or_else(|| num(m.get(&format!("{d}_Bps")))) {
                                    put(out, id, Some(d), x);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                walk(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
        _ => {}
    }
}

/// Reads nominal capacities and the file's SHA-256 from a discovery JSON.
pub fn read_nominal(path: &Path) -> Result<(BTreeMap<Hop, f64>, String), InputError> {
    let bytes = std::fs::read(path).map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| InputError::file(path, format!("not valid JSON: {e}")))?;
    match v.get("schema").and_then(Value::as_str) {
        Some(s) if s.starts_with("linkcal.topology/") => {}
        Some(s) => {
            return Err(InputError::field(
                path,
                "schema",
                format!("is '{s}', expected 'linkcal.topology/2' or 'linkcal.topology/1' (from `linkcal discover --json`)"),
            ))
        }
        None => {
            return Err(InputError::field(path, "schema", "is missing; expected 'linkcal.topology/2' or 'linkcal.topology/1'"))
        }
    }
    let mut out = BTreeMap::new();
    walk(&v, &mut out);
    Ok((out, sha256_hex(&bytes)))
}

/// SHA-256 of `data`, lower-case hex (FIPS 180-4).
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];
    let mut h: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [t1.wrapping_add(t2), v[0], v[1], v[2], v[3].wrapping_add(t1), v[4], v[5], v[6]];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn reads_nominal_loosely() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let doc = serde_json::json!({
            "schema": "linkcal.topology/1",
            "links": [{"segment": "GPU_P[0]_PCI", "nominal_Bps": 3.2e10}, {"name": "IB_Cable_P[0]", "dir": "up", "nominal_Bps": 5e10}],
            "nominal": {"IB_Cable_D[1]": {"up": 1e10, "down": 2e10}}
        });
        std::fs::write(&p, doc.to_string()).unwrap();
        let (n, digest) = read_nominal(&p).unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(n[&"GPU_P[0]_PCI down".parse().unwrap()], 3.2e10);
        assert_eq!(n[&"IB_Cable_P[0] up".parse().unwrap()], 5e10);
        assert!(!n.contains_key(&"IB_Cable_P[0] down".parse().unwrap()));
        assert_eq!(n[&"IB_Cable_D[1] down".parse().unwrap()], 2e10);
        std::fs::write(&p, r#"{"schema":"linkcal.results/1"}"#).unwrap();
        assert!(read_nominal(&p).unwrap_err().to_string().contains("schema"));
    }
}
