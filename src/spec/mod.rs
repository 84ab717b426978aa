//! The rack spec as code: parameters, segments with the spec's names, the three paths (and the
//! outside-spec isolation routes real hardware offers), the NIC mapping and the contention
//! structure (which routes cross the same segment in the same direction).

mod experiments;
mod paths;
mod segment;

pub use experiments::{spec_experiments, Experiment};
pub use paths::{contention, handoff_pairs, stage_ranges, Contention, HopOptions, PathRef, Route, RouteKind, RouteSet};
pub use segment::{Dir, Hop, SegmentId, SegmentKind};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors in spec parameters, segment names or NIC maps. Each message names the flag or field
/// and says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A stage count, card count or size parameter is zero.
    #[error("{flag} must be at least 1 (got 0)")]
    Zero {
        /// The flag or field, e.g. `--pp-prefill`.
        flag: &'static str,
    },
    /// A stage or card count beyond what linkcal models.
    #[error("{flag} is {value}, more than the {max} linkcal models: check the value")]
    TooLarge {
        /// The flag or field, e.g. `--pp-prefill`.
        flag: &'static str,
        /// The value given.
        value: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The NIC map has the wrong number of entries.
    #[error("--nic-map has {got} entries but --pp-prefill is {want}: give one NIC index per prefill GPU")]
    NicMapLength {
        /// Entries given.
        got: usize,
        /// Entries needed (PP_prefill).
        want: usize,
    },
    /// A NIC map entry names a card that does not exist.
    #[error("--nic-map entry {position} is {index}, but there are only {cards} IB cards (valid: 0..{cards}); fix the map or raise --ib-cards")]
    NicMapIndex {
        /// Position in the map (prefill GPU index).
        position: usize,
        /// The NIC index given.
        index: usize,
        /// Num_IB_Cards.
        cards: usize,
    },
    /// A NIC map that does not parse.
    #[error("--nic-map: '{0}' is not a comma-separated list of NIC indexes (e.g. 0,1,0,1)")]
    NicMapSyntax(String),
    /// Unknown segment name.
    #[error("unknown segment '{0}': expected a spec name such as GPU_P[0]_PCI, IB_NIC_P[1]_PCI, IB_Cable_P[1], IB_Cable_D[0], GPU_D[0]_PCI, Eth_NIC_D[0]_PCI, Eth_Cable_D[0] (or Uplink_P_PCI, Uplink_D[j]_PCI, IB_NIC_D[j]_PCI)")]
    UnknownSegment(String),
    /// Unknown direction.
    #[error("unknown direction '{0}': expected 'up' or 'down'")]
    UnknownDirection(String),
    /// A segment index beyond the rack's shape.
    #[error(
        "segment {segment} does not exist in a rack with PP_prefill={pp_prefill}, PP_decode={pp_decode}, Num_IB_Cards={ib_cards}"
    )]
    SegmentOutOfRange {
        /// The segment name.
        segment: String,
        /// PP_prefill.
        pp_prefill: usize,
        /// PP_decode.
        pp_decode: usize,
        /// Num_IB_Cards.
        ib_cards: usize,
    },
    /// Fewer model layers than pipeline stages.
    #[error("the model has {layers} layers, fewer than the {stages} stages of {flag}: every stage needs at least one layer")]
    TooFewLayers {
        /// Layers in the model.
        layers: u32,
        /// Stage count.
        stages: usize,
        /// The stage flag.
        flag: &'static str,
    },
}

impl crate::error::Classified for SpecError {
    /// Every SpecError is about the user's input.
    fn exit_class(&self) -> crate::error::ExitClass {
        crate::error::ExitClass::BadInput
    }
}

/// Most pipeline stages (PP_prefill, PP_decode) a shape may have.
pub const MAX_STAGES: usize = 1024;
/// Most IB cards (Num_IB_Cards) a shape may have.
pub const MAX_IB_CARDS: usize = 64;

// Read from a file a shape is checked as `RackShape::with_nic_map` checks flags (bounds, one
// NIC per prefill GPU, every NIC index a card), so no later index can fall outside it.
/// The rack's shape: the spec's PP_prefill, PP_decode, Num_IB_Cards and the NIC mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "ShapeFields")]
pub struct RackShape {
    /// PP_prefill: prefill pipeline stages = prefill GPUs on the prefill server.
    pub pp_prefill: usize,
    /// PP_decode: decode pipeline stages = decode servers (one GPU each).
    pub pp_decode: usize,
    /// Num_IB_Cards: IB NICs on the prefill server.
    pub ib_cards: usize,
    /// NIC used by each prefill GPU i (length PP_prefill). The spec's default is i mod Num_IB_Cards.
    pub nic_map: Vec<usize>,
}

/// The rack's shape: the spec's PP_prefill, PP_decode, Num_IB_Cards and the NIC mapping.
/// (As written in a file, before [`RackShape`]'s checks; same fields, same schema.)
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "RackShape")]
struct ShapeFields {
    /// PP_prefill: prefill pipeline stages = prefill GPUs on the prefill server.
    pp_prefill: usize,
    /// PP_decode: decode pipeline stages = decode servers (one GPU each).
    pp_decode: usize,
    /// Num_IB_Cards: IB NICs on the prefill server.
    ib_cards: usize,
    /// NIC used by each prefill GPU i (length PP_prefill). The spec's default is i mod Num_IB_Cards.
    nic_map: Vec<usize>,
}

impl TryFrom<ShapeFields> for RackShape {
    type Error = String;

    fn try_from(f: ShapeFields) -> Result<Self, String> {
        RackShape::with_nic_map(f.pp_prefill, f.pp_decode, f.ib_cards, Some(f.nic_map)).map_err(|e| {
            // Name the file's fields, not the flags.
            let text = e.to_string();
            let text = text.replace("--pp-prefill", "pp_prefill").replace("--pp-decode", "pp_decode");
            format!("shape: {}", text.replace("--ib-cards", "ib_cards").replace("--nic-map", "nic_map"))
        })
    }
}

impl RackShape {
    /// A shape with the spec's NIC mapping k = i mod Num_IB_Cards.
    pub fn new(pp_prefill: usize, pp_decode: usize, ib_cards: usize) -> Result<Self, SpecError> {
        Self::with_nic_map(pp_prefill, pp_decode, ib_cards, None)
    }

    /// A shape with an explicit NIC map (or the spec's default when `None`).
    pub fn with_nic_map(
        pp_prefill: usize,
        pp_decode: usize,
        ib_cards: usize,
        nic_map: Option<Vec<usize>>,
    ) -> Result<Self, SpecError> {
        for (value, flag) in [(pp_prefill, "--pp-prefill"), (pp_decode, "--pp-decode"), (ib_cards, "--ib-cards")] {
            if value == 0 {
                return Err(SpecError::Zero { flag });
            }
            let max = if flag == "--ib-cards" { MAX_IB_CARDS } else { MAX_STAGES };
            if value > max {
                return Err(SpecError::TooLarge { flag, value, max });
            }
        }
        let nic_map = match nic_map {
            None => (0..pp_prefill).map(|i| i % ib_cards).collect(),
            Some(map) => {
                if map.len() != pp_prefill {
                    return Err(SpecError::NicMapLength { got: map.len(), want: pp_prefill });
                }
                if let Some((position, &index)) = map.iter().enumerate().find(|(_, &k)| k >= ib_cards) {
                    return Err(SpecError::NicMapIndex { position, index, cards: ib_cards });
                }
                map
            }
        };
        Ok(RackShape { pp_prefill, pp_decode, ib_cards, nic_map })
    }

    /// The NIC k used by prefill GPU i.
    pub fn nic_of(&self, gpu: usize) -> usize {
        self.nic_map[gpu]
    }

    /// Every segment of this rack, spec segments first, then the outside-spec links.
    pub fn segments(&self) -> Vec<SegmentId> {
        let mut out = Vec::new();
        for kind in SegmentKind::ALL {
            for index in 0..self.count(kind) {
                out.push(SegmentId::new(kind, index));
            }
        }
        out
    }

    /// How many segments of `kind` this rack has.
    pub fn count(&self, kind: SegmentKind) -> usize {
        match kind {
            SegmentKind::GpuP => self.pp_prefill,
            SegmentKind::IbNicP | SegmentKind::IbCableP => self.ib_cards,
            SegmentKind::IbCableD
            | SegmentKind::GpuD
            | SegmentKind::EthNicD
            | SegmentKind::EthCableD
            | SegmentKind::UplinkD
            | SegmentKind::IbNicD => self.pp_decode,
            SegmentKind::UplinkP => 1,
        }
    }

    /// Checks that `id` exists in this rack.
    pub fn check_segment(&self, id: SegmentId) -> Result<(), SpecError> {
        if id.index < self.count(id.kind) {
            Ok(())
        } else {
            Err(SpecError::SegmentOutOfRange {
                segment: id.to_string(),
                pp_prefill: self.pp_prefill,
                pp_decode: self.pp_decode,
                ib_cards: self.ib_cards,
            })
        }
    }
}

/// Parses a `--nic-map` value such as `0,1,0,1`.
pub fn parse_nic_map(s: &str) -> Result<Vec<usize>, SpecError> {
    s.split(',').map(|p| p.trim().parse::<usize>().map_err(|_| SpecError::NicMapSyntax(s.to_string()))).collect()
}

/// The spec's workload parameters N, T, M.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// N: batch size (concurrent requests).
    pub n: u64,
    /// T: context length in tokens per request.
    pub t: u64,
    /// M: prefill chunk size in tokens per pipeline step.
    pub m: u64,
}

impl Workload {
    /// Checks that N, T and M are positive.
    pub fn new(n: u64, t: u64, m: u64) -> Result<Self, SpecError> {
        for (value, flag) in [(n, "--n"), (t, "--t"), (m, "--m")] {
            if value == 0 {
                return Err(SpecError::Zero { flag });
            }
        }
        Ok(Workload { n, t, m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_nic_map_is_i_mod_k() {
        let s = RackShape::new(8, 8, 3).unwrap();
        assert_eq!(s.nic_map, vec![0, 1, 2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn bad_shapes_name_the_flag() {
        assert_eq!(RackShape::new(0, 1, 1).unwrap_err(), SpecError::Zero { flag: "--pp-prefill" });
        assert_eq!(RackShape::new(1, 0, 1).unwrap_err(), SpecError::Zero { flag: "--pp-decode" });
        assert_eq!(RackShape::new(1, 1, 0).unwrap_err(), SpecError::Zero { flag: "--ib-cards" });
        let e = RackShape::with_nic_map(2, 2, 2, Some(vec![0])).unwrap_err();
        assert_eq!(e, SpecError::NicMapLength { got: 1, want: 2 });
        let e = RackShape::with_nic_map(2, 2, 2, Some(vec![0, 2])).unwrap_err();
        assert_eq!(e, SpecError::NicMapIndex { position: 1, index: 2, cards: 2 });
        assert!(e.to_string().contains("--nic-map"));
        assert!(parse_nic_map("0,x").is_err());
        assert_eq!(parse_nic_map("1, 0").unwrap(), vec![1, 0]);
        assert_eq!(Workload::new(1, 0, 1).unwrap_err(), SpecError::Zero { flag: "--t" });
        let e = RackShape::new(1 << 63, 1, 1).unwrap_err();
        assert_eq!(e, SpecError::TooLarge { flag: "--pp-prefill", value: 1 << 63, max: MAX_STAGES });
        assert!(RackShape::new(1, MAX_STAGES + 1, 1).is_err() && RackShape::new(1, 1, MAX_IB_CARDS + 1).is_err());
        assert!(RackShape::new(MAX_STAGES, MAX_STAGES, MAX_IB_CARDS).is_ok());
    }

    /// A shape read from a file is checked as the flags are: no later index can fall outside it.
    #[test]
    fn shapes_in_files_are_checked() {
        let read = |v: serde_json::Value| serde_json::from_value::<RackShape>(v).map_err(|e| e.to_string());
        let ok = serde_json::json!({"pp_prefill": 2, "pp_decode": 1, "ib_cards": 2, "nic_map": [1, 0]});
        assert_eq!(read(ok).unwrap().nic_of(1), 0);
        let short = serde_json::json!({"pp_prefill": 2, "pp_decode": 1, "ib_cards": 1, "nic_map": [0]});
        let e = read(short).unwrap_err();
        assert!(e.contains("nic_map has 1 entries but pp_prefill is 2") && !e.contains("--"), "{e}");
        let e = read(serde_json::json!({"pp_prefill": 1, "pp_decode": 1, "ib_cards": 1, "nic_map": [3]})).unwrap_err();
        assert!(e.contains("nic_map entry 0 is 3"), "{e}");
        let e = read(serde_json::json!({"pp_prefill": 1, "pp_decode": 1u64 << 40, "ib_cards": 1, "nic_map": [0]})).unwrap_err();
        assert!(e.contains("pp_decode is 1099511627776"), "{e}");
    }

    #[test]
    fn segment_inventory() {
        let s = RackShape::new(2, 3, 1).unwrap();
        let names: Vec<String> = s.segments().iter().map(|x| x.to_string()).collect();
        assert_eq!(names.len(), 2 + 1 + 1 + 3 * 4 + 1 + 3 + 3);
        assert!(names.contains(&"IB_Cable_D[2]".to_string()));
        assert!(s.check_segment("IB_NIC_P[1]_PCI".parse().unwrap()).is_err());
    }
}
