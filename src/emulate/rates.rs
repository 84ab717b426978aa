//! Segment rates of the emulated rack: the defaults (a rack scaled about 500x down), the
//! rates file that overrides them, and the ground truth written from them.
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::InputError;
use crate::model::rack::{GroundTruth, TrueSegment, GROUND_TRUTH_SCHEMA};
use crate::spec::{Dir, RackShape, SegmentId, SegmentKind};

/// Default MTU of the data links, bytes.
pub const DEFAULT_MTU: u64 = 9000;
/// TCP congestion control every namespace of the rack uses unless the rates file names
/// another. Loss-based cubic shares a tbf FIFO between flows close to max-min fairness, as the
/// credit-arbitrated PCIe and IB links it stands for do; BBR (many hosts' default) keeps a
/// flow that is limited elsewhere below its rate when it crosses a saturated link.
pub const DEFAULT_TCP_CC: &str = "cubic";
/// How far the default rates are scaled down from real hardware.
pub const DEFAULT_SCALE: f64 = 500.0;

/// PCIe Gen5 x16 (~63 GB/s per direction) / 500, B/s.
pub const PCIE_BPS: f64 = 126e6;
/// NDR InfiniBand (400 Gb/s = 50 GB/s) / 500, B/s.
pub const IB_BPS: f64 = 100e6;
/// 100 GbE (12.5 GB/s) / 500, B/s.
pub const ETH_BPS: f64 = 25e6;
/// Prefill GPU links towards the GPU (`GPU_P[i]_PCI down`) run a little slower than up
/// (host-to-device below device-to-host, as on many real GPUs): the asymmetric default.
pub const GPU_P_DOWN_BPS: f64 = 120e6;

/// Highest line rate a rates file may name, B/s (checked before anything is built; `up` then
/// holds every rate to a quarter of what one veth hop carries on this host).
pub const MAX_RATE_BPS: f64 = 1e11;

/// Line rate of one segment, per direction, B/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentRate {
    /// `up` (towards the switch), B/s.
    pub up_Bps: f64,
    /// `down` (away from the switch), B/s.
    pub down_Bps: f64,
}

impl SegmentRate {
    /// The rate in `dir`.
    pub fn get(&self, dir: Dir) -> f64 {
        match dir {
            Dir::Up => self.up_Bps,
            Dir::Down => self.down_Bps,
        }
    }
}

/// The default line rate of a segment kind.
pub fn default_rate(kind: SegmentKind) -> SegmentRate {
    let sym = |r| SegmentRate { up_Bps: r, down_Bps: r };
    match kind {
        SegmentKind::GpuP => SegmentRate { up_Bps: PCIE_BPS, down_Bps: GPU_P_DOWN_BPS },
        SegmentKind::IbNicP | SegmentKind::GpuD | SegmentKind::EthNicD => sym(PCIE_BPS),
        SegmentKind::UplinkP | SegmentKind::UplinkD | SegmentKind::IbNicD => sym(PCIE_BPS),
        SegmentKind::IbCableP | SegmentKind::IbCableD => sym(IB_BPS),
        SegmentKind::EthCableD => sym(ETH_BPS),
    }
}

/// Rates of every segment of a rack, and the MTU.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// MTU of the data links, bytes.
    pub mtu: u64,
    /// False: no tbf at all (unshaped veths; for comparing with iperf3 at full speed).
    pub shaped: bool,
    /// TCP congestion control of every namespace (`net.ipv4.tcp_congestion_control`).
    pub tcp_cc: String,
    /// Per segment.
    pub segments: BTreeMap<SegmentId, SegmentRate>,
    /// The rates file these came from (for error messages); None: the defaults.
    pub file: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    mtu: Option<u64>,
    #[serde(default = "yes")]
    shape: bool,
    tcp_congestion_control: Option<String>,
    #[serde(default)]
    segments: BTreeMap<String, RateEntry>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateEntry {
    up_Bps: Option<f64>,
    down_Bps: Option<f64>,
}

impl Rates {
    /// The defaults for `shape`.
    pub fn defaults(shape: &RackShape) -> Rates {
        let segments = shape.segments().into_iter().map(|s| (s, default_rate(s.kind))).collect();
        Rates { mtu: DEFAULT_MTU, shaped: true, tcp_cc: DEFAULT_TCP_CC.into(), segments, file: None }
    }

    /// The defaults overridden by a rates file and an `--mtu` flag.
    pub fn load(shape: &RackShape, file: Option<&Path>, mtu: Option<u64>) -> Result<Rates, InputError> {
        let file = match file {
            Some(path) => Some((path, crate::error::read_input(path)?)),
            None => None,
        };
        Rates::parse(shape, file.as_ref().map(|(p, t)| (*p, t.as_str())), mtu)
    }

    /// [`Rates::load`] on a rates file's text already read (with its path, named in errors).
    pub fn parse(shape: &RackShape, file: Option<(&Path, &str)>, mtu: Option<u64>) -> Result<Rates, InputError> {
        let mut r = Rates::defaults(shape);
        if let Some((path, text)) = file {
            let f: RatesFile = crate::error::parse_json(path, text)?;
            r.file = Some(path.to_path_buf());
            r.shaped = f.shape;
            if let Some(cc) = f.tcp_congestion_control {
                if cc.is_empty() || !cc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(InputError::field(
                        path,
                        "tcp_congestion_control",
                        format!("is {cc:?}: name a kernel algorithm, e.g. cubic or bbr (default {DEFAULT_TCP_CC})"),
                    ));
                }
                r.tcp_cc = cc;
            }
            if let Some(m) = f.mtu {
                r.mtu = m;
            }
            for (name, e) in f.segments {
                let field = format!("segments.{name}");
                let id: SegmentId =
                    name.parse().map_err(|e: crate::spec::SpecError| InputError::field(path, &field, e.to_string()))?;
                shape.check_segment(id).map_err(|e| InputError::field(path, &field, e.to_string()))?;
                let slot = r.segments.get_mut(&id).expect("segment of this shape");
                for (value, dir, target) in [(e.up_Bps, "up_Bps", &mut slot.up_Bps), (e.down_Bps, "down_Bps", &mut slot.down_Bps)]
                {
                    if let Some(v) = value {
                        if !(v.is_finite() && v > 0.0) {
                            return Err(InputError::field(
                                path,
                                format!("{field}.{dir}"),
                                format!("is {v}: a line rate must be a positive number of bytes/s"),
                            ));
                        }
                        if v > MAX_RATE_BPS {
                            return Err(InputError::field(
                                path,
                                format!("{field}.{dir}"),
                                format!(
                                    "is {v:e} B/s: no host's veth carries that (about 1e9-1e10 B/s; `emulate up` \
                                     measures this host's and allows a quarter of it): use at most {MAX_RATE_BPS:e}"
                                ),
                            ));
                        }
                        *target = v;
                    }
                }
            }
        }
        if let Some(m) = mtu {
            r.mtu = m;
        }
        if !(576..=65_535).contains(&r.mtu) {
            let src = file.map(|(p, _)| p.display().to_string()).unwrap_or_else(|| "--mtu".into());
            return Err(InputError::field(src, "mtu", format!("is {}: use 576..=65535 (default {DEFAULT_MTU})", r.mtu)));
        }
        Ok(r)
    }

    /// Checks every rate is at most `max_Bps` (what this host's veth links carry, scaled);
    /// the error names the rates file field (or the default) and the measured capacity.
    pub fn check_max(&self, max_Bps: f64, veth_Bps: f64) -> Result<(), InputError> {
        for (id, r) in &self.segments {
            for (dir, v) in [("up_Bps", r.up_Bps), ("down_Bps", r.down_Bps)] {
                if v > max_Bps {
                    let src = self.file.clone().unwrap_or_else(|| "(default rates)".into());
                    return Err(InputError::field(
                        src,
                        format!("segments.{id}.{dir}"),
                        format!(
                            "is {v:.4e} B/s, above what this host can emulate: one veth hop carried {veth_Bps:.4e} B/s \
                             at MTU {} (measured at `emulate up`), and a segment may use at most {:.0}% of that \
                             ({max_Bps:.4e} B/s) since routes cross several hops on shared CPUs: lower it (the rack \
                             is a scaled model; see payload_scale)",
                            self.mtu,
                            100.0 * max_Bps / veth_Bps
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Expected TCP goodput for a line rate: rate x (MTU-52)/(MTU+14).
    pub fn goodput(&self, rate_Bps: f64) -> f64 {
        rate_Bps * (self.mtu as f64 - 52.0) / (self.mtu as f64 + 14.0)
    }

    /// The ground truth: every shaped segment direction with its rate and expected goodput
    /// (empty when unshaped).
    pub fn ground_truth(&self) -> GroundTruth {
        let mut segments = Vec::new();
        if self.shaped {
            for (id, r) in &self.segments {
                for dir in [Dir::Up, Dir::Down] {
                    let rate = r.get(dir);
                    segments.push(TrueSegment { segment: *id, dir, rate_Bps: rate, goodput_Bps: self.goodput(rate) });
                }
            }
        }
        GroundTruth { schema: GROUND_TRUTH_SCHEMA.into(), mtu_bytes: self.mtu, segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let p = dir.path().join("rates.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_and_overrides() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            r#"{"mtu": 1500, "segments": {"GPU_P[1]_PCI": {"up_Bps": 5e7}, "Eth_Cable_D[0]": {"up_Bps": 1e7, "down_Bps": 2e7}}}"#,
        );
        let r = Rates::load(&shape, Some(&p), None).unwrap();
        assert_eq!(r.mtu, 1500);
        let g = r.segments[&"GPU_P[1]_PCI".parse().unwrap()];
        assert_eq!((g.up_Bps, g.down_Bps), (5e7, GPU_P_DOWN_BPS));
        let gt = r.ground_truth();
        let e = gt.segments.iter().find(|s| s.segment.to_string() == "Eth_Cable_D[0]" && s.dir == Dir::Down).unwrap();
        assert!((e.goodput_Bps - 2e7 * 1448.0 / 1514.0).abs() < 1e-6);
        assert_eq!(Rates::load(&shape, Some(&p), Some(9000)).unwrap().mtu, 9000);
        let any_asym = Rates::defaults(&shape).segments.values().any(|r| r.up_Bps != r.down_Bps);
        assert!(any_asym, "defaults need an asymmetric segment");
    }

    #[test]
    fn bad_files_name_the_field() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let d = tempfile::tempdir().unwrap();
        for (text, field) in [
            (r#"{"segments": {"GPU_X[0]": {"up_Bps": 1}}}"#, "segments.GPU_X[0]"),
            (r#"{"segments": {"IB_NIC_P[3]_PCI": {"up_Bps": 1}}}"#, "segments.IB_NIC_P[3]_PCI"),
            (r#"{"segments": {"GPU_P[0]_PCI": {"down_Bps": -5}}}"#, "segments.GPU_P[0]_PCI.down_Bps"),
            (r#"{"segments": {"GPU_P[0]_PCI": {"up_Bps": 0}}}"#, "segments.GPU_P[0]_PCI.up_Bps"),
            (r#"{"mtu": 100}"#, "mtu"),
            (r#"{"tcp_congestion_control": "cubic; rm"}"#, "tcp_congestion_control"),
        ] {
            let p = write(&d, text);
            let e = Rates::load(&shape, Some(&p), None).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.to_string().contains("rates.json"), "{e}");
        }
        let p = write(&d, r#"{"segmnts": {}}"#);
        assert!(Rates::load(&shape, Some(&p), None).is_err());
    }
}
