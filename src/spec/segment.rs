//! Segment identifiers with the spec's exact names, plus the links real hardware crosses that
//! the spec does not name (marked `outside_spec`).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SpecError;

/// The family a segment belongs to. The first seven are the spec's segment groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// `GPU_P[i]_PCI`: PCIe lanes between prefill GPU i and the prefill PLX switch.
    GpuP,
    /// `IB_NIC_P[k]_PCI`: PCIe lanes between prefill IB NIC k and the prefill PLX switch.
    IbNicP,
    /// `IB_Cable_P[k]`: cable from prefill IB NIC k to the IB switch.
    IbCableP,
    /// `IB_Cable_D[j]`: cable from the IB switch to decode server j.
    IbCableD,
    /// `GPU_D[j]_PCI`: PCIe lanes between decode GPU j and its local switch.
    GpuD,
    /// `Eth_NIC_D[j]_PCI`: PCIe lanes between decode Ethernet NIC j and its local switch.
    EthNicD,
    /// `Eth_Cable_D[j]`: cable from decode Ethernet NIC j to the Ethernet switch.
    EthCableD,
    /// `Uplink_P_PCI` (outside spec): the prefill PCIe switch's uplink to the CPU / host memory.
    UplinkP,
    /// `Uplink_D[j]_PCI` (outside spec): decode server j's PCIe switch uplink to host memory.
    UplinkD,
    /// `IB_NIC_D[j]_PCI` (outside spec): decode server j's IB NIC PCIe link to its switch.
    IbNicD,
}

impl SegmentKind {
    /// Every kind, spec kinds first.
    pub const ALL: [SegmentKind; 10] = [
        SegmentKind::GpuP,
        SegmentKind::IbNicP,
        SegmentKind::IbCableP,
        SegmentKind::IbCableD,
        SegmentKind::GpuD,
        SegmentKind::EthNicD,
        SegmentKind::EthCableD,
        SegmentKind::UplinkP,
        SegmentKind::UplinkD,
        SegmentKind::IbNicD,
    ];

    /// True for links the spec does not name.
    pub fn outside_spec(self) -> bool {
        match self {
            SegmentKind::GpuP
            | SegmentKind::IbNicP
            | SegmentKind::IbCableP
            | SegmentKind::IbCableD
            | SegmentKind::GpuD
            | SegmentKind::EthNicD
            | SegmentKind::EthCableD => false,
            SegmentKind::UplinkP | SegmentKind::UplinkD | SegmentKind::IbNicD => true,
        }
    }

    /// True for PCIe links (as opposed to network cables).
    pub fn is_pcie(self) -> bool {
        match self {
            SegmentKind::GpuP
            | SegmentKind::IbNicP
            | SegmentKind::GpuD
            | SegmentKind::EthNicD
            | SegmentKind::UplinkP
            | SegmentKind::UplinkD
            | SegmentKind::IbNicD => true,
            SegmentKind::IbCableP | SegmentKind::IbCableD | SegmentKind::EthCableD => false,
        }
    }

    /// Whether the name carries an index (`Uplink_P_PCI` is the only one that does not).
    fn indexed(self) -> bool {
        !matches!(self, SegmentKind::UplinkP)
    }

    /// Name prefix and suffix around the `[index]`.
    fn affixes(self) -> (&'static str, &'static str) {
        match self {
            SegmentKind::GpuP => ("GPU_P", "_PCI"),
            SegmentKind::IbNicP => ("IB_NIC_P", "_PCI"),
            SegmentKind::IbCableP => ("IB_Cable_P", ""),
            SegmentKind::IbCableD => ("IB_Cable_D", ""),
            SegmentKind::GpuD => ("GPU_D", "_PCI"),
            SegmentKind::EthNicD => ("Eth_NIC_D", "_PCI"),
            SegmentKind::EthCableD => ("Eth_Cable_D", ""),
            SegmentKind::UplinkP => ("Uplink_P", "_PCI"),
            SegmentKind::UplinkD => ("Uplink_D", "_PCI"),
            SegmentKind::IbNicD => ("IB_NIC_D", "_PCI"),
        }
    }
}

/// One named segment, e.g. `GPU_P[0]_PCI`. Serialized as its spec name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId {
    /// The segment family.
    pub kind: SegmentKind,
    /// The index in brackets (0 for `Uplink_P_PCI`, which has none).
    pub index: usize,
}

impl SegmentId {
    /// A segment of `kind` with `index`.
    pub fn new(kind: SegmentKind, index: usize) -> Self {
        SegmentId { kind, index }
    }

    /// True for links the spec does not name.
    pub fn outside_spec(&self) -> bool {
        self.kind.outside_spec()
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pre, post) = self.kind.affixes();
        if self.kind.indexed() {
            write!(f, "{pre}[{}]{post}", self.index)
        } else {
            write!(f, "{pre}{post}")
        }
    }
}

impl FromStr for SegmentId {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        for kind in SegmentKind::ALL {
            let (pre, post) = kind.affixes();
            if !kind.indexed() {
                if s == format!("{pre}{post}") {
                    return Ok(SegmentId::new(kind, 0));
                }
                continue;
            }
            let Some(rest) = s.strip_prefix(pre).and_then(|r| r.strip_prefix('[')) else {
                continue;
            };
            let Some(inner) = rest.strip_suffix(post).and_then(|r| r.strip_suffix(']')) else {
                continue;
            };
            if let Ok(index) = inner.parse::<usize>() {
                return Ok(SegmentId::new(kind, index));
            }
        }
        Err(SpecError::UnknownSegment(s.to_string()))
    }
}

impl Serialize for SegmentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SegmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for SegmentId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SegmentId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Segment name as the spec writes it, e.g. GPU_P[0]_PCI, IB_Cable_D[1]; outside-spec links: Uplink_P_PCI, Uplink_D[j]_PCI, IB_NIC_D[j]_PCI",
            "pattern": "^(GPU_P|IB_NIC_P|IB_Cable_P|IB_Cable_D|GPU_D|Eth_NIC_D|Eth_Cable_D|Uplink_D|IB_NIC_D)\\[[0-9]+\\](_PCI)?$|^Uplink_P_PCI$"
        })
    }
}

/// Direction of a traversal. `up` = toward the switch the segment hangs off (GPU/NIC/host to
/// the PCIe switch; NIC to the network switch); `down` = away from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Toward the switch.
    Up,
    /// Away from the switch.
    Down,
}

impl Dir {
    /// The other direction.
    pub fn reverse(self) -> Dir {
        match self {
            Dir::Up => Dir::Down,
            Dir::Down => Dir::Up,
        }
    }

    /// `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dir {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(Dir::Up),
            "down" => Ok(Dir::Down),
            other => Err(SpecError::UnknownDirection(other.to_string())),
        }
    }
}

/// One traversal of a segment in one direction: the unit of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Hop {
    /// The segment, by its spec name.
    pub id: SegmentId,
    /// The direction of the traversal.
    pub dir: Dir,
}

impl Hop {
    /// `id` traversed in `dir`.
    pub fn new(kind: SegmentKind, index: usize, dir: Dir) -> Hop {
        Hop { id: SegmentId::new(kind, index), dir }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.dir)
    }
}

impl FromStr for Hop {
    type Err = SpecError;
    /// Parses `GPU_P[0]_PCI up` (or `GPU_P[0]_PCI:up`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (seg, dir) = s.rsplit_once([' ', ':']).ok_or_else(|| SpecError::UnknownSegment(s.to_string()))?;
        Ok(Hop { id: seg.trim().parse()?, dir: dir.trim().parse()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "GPU_P[0]_PCI",
            "IB_NIC_P[1]_PCI",
            "IB_Cable_P[1]",
            "IB_Cable_D[0]",
            "GPU_D[0]_PCI",
            "Eth_NIC_D[0]_PCI",
            "Eth_Cable_D[12]",
            "Uplink_P_PCI",
            "Uplink_D[3]_PCI",
            "IB_NIC_D[2]_PCI",
        ] {
            let id: SegmentId = name.parse().unwrap();
            assert_eq!(id.to_string(), name);
        }
    }

    #[test]
    fn rejects_near_misses() {
        for bad in ["GPU_P[0]", "GPU_P[x]_PCI", "IB_Cable_P[1]_PCI", "gpu_p[0]_pci", "Uplink_P[0]_PCI", ""] {
            assert!(bad.parse::<SegmentId>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn outside_spec_flags() {
        assert!(!"GPU_P[0]_PCI".parse::<SegmentId>().unwrap().outside_spec());
        assert!("Uplink_P_PCI".parse::<SegmentId>().unwrap().outside_spec());
        assert!("IB_NIC_D[0]_PCI".parse::<SegmentId>().unwrap().outside_spec());
    }

    #[test]
    fn hop_parses_and_serializes() {
        let h: Hop = "IB_Cable_P[1] up".parse().unwrap();
        assert_eq!(h, Hop::new(SegmentKind::IbCableP, 1, Dir::Up));
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(j, r#"{"id":"IB_Cable_P[1]","dir":"up"}"#);
        assert_eq!(serde_json::from_str::<Hop>(&j).unwrap(), h);
    }
}
