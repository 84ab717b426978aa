//! What one side of an RDMA connection tells the other over the agent control plane (as
//! perftest exchanges it over its TCP side channel): queue pair numbers and start PSNs, the
//! port's LID and GID, the path MTU, and the registered buffer (address, length, rkey).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RdmaError;

/// A 128-bit GID, written as eight colon-separated groups of four hex digits
/// (`fe80:0000:0000:0000:0c42:a103:0065:0a2e`, the `show_gids` form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gid(pub [u8; 16]);

impl Gid {
    /// True for the all-zero GID (an empty table entry).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl FromStr for Gid {
    type Err = RdmaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || RdmaError::Endpoint { field: "gid", message: format!("'{s}' is not eight ':'-separated groups of 4 hex digits") };
        let groups: Vec<&str> = s.trim().split(':').collect();
        if groups.len() != 8 {
            return Err(bad());
        }
        let mut raw = [0u8; 16];
        for (i, g) in groups.iter().enumerate() {
            if g.len() != 4 {
                return Err(bad());
            }
            let v = u16::from_str_radix(g, 16).map_err(|_| bad())?;
            raw[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
        }
        Ok(Gid(raw))
    }
}

impl Serialize for Gid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Gid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Gid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Gid".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^([0-9a-fA-F]{4}:){7}[0-9a-fA-F]{4}$" })
    }
}

/// The port's link layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkLayer {
    /// InfiniBand: addressed by LID (GID optional, for routed fabrics).
    Infiniband,
    /// RoCE: addressed by GID only.
    Ethernet,
}

/// Where the registered buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// GPU memory (GPUDirect RDMA).
    Gpu,
    /// Host memory.
    Host,
}

/// One queue pair's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QpInfo {
    /// Queue pair number (24 bits).
    pub qpn: u32,
    /// Starting packet sequence number (24 bits).
    pub psn: u32,
}

/// One side's connection description, exchanged as JSON over the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Endpoint {
    /// RDMA device name, e.g. `mlx5_0` (for messages).
    pub device: String,
    /// Port number on the device (1-based).
    pub port: u8,
    /// Link layer of the port.
    pub link_layer: LinkLayer,
    /// Port LID (InfiniBand; 0 on RoCE).
    pub lid: u16,
    /// GID at the chosen index (required on RoCE, used for routed IB when present).
    pub gid: Option<Gid>,
    /// Active MTU of the port, bytes (256, 512, 1024, 2048 or 4096).
    pub mtu_bytes: u32,
    /// The queue pairs, in order; QP q of one side connects to QP q of the other.
    pub qps: Vec<QpInfo>,
    /// Address of the registered buffer (the iova remote writes target).
    pub addr: u64,
    /// Length of the registered buffer, bytes.
    pub len_bytes: u64,
    /// Remote key of the buffer.
    pub rkey: u32,
    /// Where the buffer lives.
    pub memory: MemoryKind,
}

/// The MTUs verbs knows, smallest first.
pub const MTUS: [u32; 5] = [256, 512, 1024, 2048, 4096];

impl Endpoint {
    /// Checks every field a peer will rely on; the error names the field.
    pub fn validate(&self) -> Result<(), RdmaError> {
        let bad = |field: &'static str, message: String| Err(RdmaError::Endpoint { field, message });
        if self.qps.is_empty() {
            return bad("qps", "no queue pairs".into());
        }
        for (i, q) in self.qps.iter().enumerate() {
            if q.qpn >= 1 << 24 || q.psn >= 1 << 24 {
                return bad("qps", format!("entry {i}: QPN {} / PSN {} exceed 24 bits", q.qpn, q.psn));
            }
        }
        if !MTUS.contains(&self.mtu_bytes) {
            return bad("mtu_bytes", format!("{} is not one of {MTUS:?}", self.mtu_bytes));
        }
        match (self.link_layer, &self.gid) {
            (LinkLayer::Ethernet, None) => return bad("gid", "RoCE needs a GID (choose a GID index with one)".into()),
            (LinkLayer::Ethernet, Some(g)) if g.is_zero() => return bad("gid", "GID is all zero: pick another GID index".into()),
            (LinkLayer::Infiniband, None) if self.lid == 0 => {
                return bad("lid", "InfiniBand port has LID 0 and no GID: is the subnet manager running?".into())
            }
            _ => {}
        }
        if self.len_bytes == 0 {
            return bad("len_bytes", "registered buffer is empty".into());
        }
        if self.addr.checked_add(self.len_bytes).is_none() {
            return bad("addr", "buffer wraps around the address space".into());
        }
        Ok(())
    }

    /// The JSON sent over the control plane.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("endpoint serialises")
    }

    /// Parses and validates a peer's endpoint.
    pub fn decode(text: &str) -> Result<Endpoint, RdmaError> {
        let e: Endpoint =
            serde_json::from_str(text).map_err(|e| RdmaError::Endpoint { field: "json", message: e.to_string() })?;
        e.validate()?;
        Ok(e)
    }
}

/// The path MTU both ports support, bytes.
pub fn path_mtu(a: u32, b: u32) -> u32 {
    a.min(b)
}

/// Verbs' enum value for an MTU in bytes (`IBV_MTU_256` = 1 ... `IBV_MTU_4096` = 5).
pub fn mtu_enum(bytes: u32) -> Option<u32> {
    MTUS.iter().position(|&m| m == bytes).map(|p| p as u32 + 1)
}

/// An MTU in bytes from verbs' enum value.
pub fn mtu_bytes(e: u32) -> Option<u32> {
    MTUS.get((e as usize).checked_sub(1)?).copied()
}

/// Checks that two endpoints can be connected: same link layer, same number of queue pairs,
/// and the remote buffer can hold `payload` bytes.
pub fn check_pair(local: &Endpoint, remote: &Endpoint, payload: u64) -> Result<(), RdmaError> {
    if local.link_layer != remote.link_layer {
        return Err(RdmaError::Endpoint {
            field: "link_layer",
            message: format!("{} is {:?} but {} is {:?}", local.device, local.link_layer, remote.device, remote.link_layer),
        });
    }
    if local.qps.len() != remote.qps.len() {
        return Err(RdmaError::Endpoint {
            field: "qps",
            message: format!("{} queue pairs here, {} at the peer", local.qps.len(), remote.qps.len()),
        });
    }
    if remote.len_bytes < payload {
        return Err(RdmaError::Endpoint {
            field: "len_bytes",
            message: format!("peer buffer of {} bytes cannot take a {payload}-byte transfer", remote.len_bytes),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint {
            device: "mlx5_0".into(),
            port: 1,
            link_layer: LinkLayer::Infiniband,
            lid: 7,
            gid: Some("fe80:0000:0000:0000:0c42:a103:0065:0a2e".parse().unwrap()),
            mtu_bytes: 4096,
            qps: vec![QpInfo { qpn: 0x1a2, psn: 0xabcdef }, QpInfo { qpn: 0x1a3, psn: 1 }],
            addr: 0x7f12_3400_0000,
            len_bytes: 1 << 30,
            rkey: 0xdead_beef,
            memory: MemoryKind::Gpu,
        }
    }

    #[test]
    fn endpoint_round_trips_through_json() {
        let e = ep();
        let text = e.encode();
        assert!(text.contains("\"gid\":\"fe80:0000:0000:0000:0c42:a103:0065:0a2e\""), "{text}");
        assert!(text.contains("\"link_layer\":\"infiniband\""));
        assert_eq!(Endpoint::decode(&text).unwrap(), e);
    }

    #[test]
    fn gid_text_form() {
        let g: Gid = "fe80:0000:0000:0000:0C42:a103:0065:0a2e".parse().unwrap();
        assert_eq!(g.0[0], 0xfe);
        assert_eq!(g.0[8], 0x0c);
        assert_eq!(g.0[15], 0x2e);
        assert_eq!(g.to_string(), "fe80:0000:0000:0000:0c42:a103:0065:0a2e");
        for bad in ["", "fe80::1", "fe80:0:0:0:0:0:0:1", "zz80:0000:0000:0000:0000:0000:0000:0000"] {
            assert!(bad.parse::<Gid>().is_err(), "{bad}");
        }
        assert!(Gid::default().is_zero());
    }

    #[test]
    fn decode_names_the_bad_field() {
        let field = |e: Endpoint| match Endpoint::decode(&e.encode()).unwrap_err() {
            RdmaError::Endpoint { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(Endpoint { qps: vec![], ..ep() }), "qps");
        assert_eq!(field(Endpoint { qps: vec![QpInfo { qpn: 1 << 24, psn: 0 }], ..ep() }), "qps");
        assert_eq!(field(Endpoint { mtu_bytes: 9000, ..ep() }), "mtu_bytes");
        assert_eq!(field(Endpoint { link_layer: LinkLayer::Ethernet, gid: None, ..ep() }), "gid");
        assert_eq!(field(Endpoint { link_layer: LinkLayer::Ethernet, gid: Some(Gid::default()), ..ep() }), "gid");
        assert_eq!(field(Endpoint { lid: 0, gid: None, ..ep() }), "lid");
        assert_eq!(field(Endpoint { len_bytes: 0, ..ep() }), "len_bytes");
        assert_eq!(field(Endpoint { addr: u64::MAX, ..ep() }), "addr");
        assert!(matches!(Endpoint::decode("{}"), Err(RdmaError::Endpoint { field: "json", .. })));
        // RoCE with a GID and LID 0 is fine.
        let roce = Endpoint { link_layer: LinkLayer::Ethernet, lid: 0, ..ep() };
        assert!(roce.validate().is_ok());
    }

    #[test]
    fn mtu_mapping_and_pairing() {
        assert_eq!(mtu_enum(256), Some(1));
        assert_eq!(mtu_enum(4096), Some(5));
        assert_eq!(mtu_enum(1500), None);
        for m in MTUS {
            assert_eq!(mtu_bytes(mtu_enum(m).unwrap()), Some(m));
        }
        assert_eq!(mtu_bytes(0), None);
        assert_eq!(path_mtu(4096, 1024), 1024);
        let a = ep();
        assert!(check_pair(&a, &ep(), 1 << 30).is_ok());
        assert!(check_pair(&a, &ep(), (1 << 30) + 1).is_err());
        assert!(check_pair(&a, &Endpoint { qps: vec![QpInfo { qpn: 1, psn: 1 }], ..ep() }, 1).is_err());
        assert!(check_pair(&a, &Endpoint { link_layer: LinkLayer::Ethernet, ..ep() }, 1).is_err());
    }
}
