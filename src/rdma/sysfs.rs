//! What the kernel says about an RDMA port under `<sysfs>/class/infiniband/<dev>/ports/<p>/`:
//! state and link layer (which NICs may be paired), the GID table with each entry's type (RoCE
//! v2 must be chosen by type: index 0 on mlx5 is the RoCE v1 link-local GID, which fails with
//! retry-exceeded across subnets), and the error counters read around a run (RNR NAKs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Gid, LinkLayer};

fn port_dir(sysfs: &Path, dev: &str, port: u8) -> PathBuf {
    sysfs.join("class/infiniband").join(dev).join("ports").join(port.to_string())
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// A port as sysfs describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// `state` is `4: ACTIVE`.
    pub active: bool,
    /// `link_layer`: `InfiniBand` or `Ethernet` (`None` when unreadable or another value).
    pub link_layer: Option<LinkLayer>,
}

/// State and link layer of port `port` of `dev`, or `None` when sysfs has no such port.
pub fn port_info(sysfs: &Path, dev: &str, port: u8) -> Option<PortInfo> {
    let dir = port_dir(sysfs, dev, port);
    let state = read(&dir.join("state"))?;
    let link_layer = match read(&dir.join("link_layer")).as_deref() {
        Some("InfiniBand") => Some(LinkLayer::Infiniband),
        Some("Ethernet") => Some(LinkLayer::Ethernet),
        _ => None,
    };
    Some(PortInfo { active: state.ends_with("ACTIVE") && !state.contains("INIT"), link_layer })
}

/// One GID table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GidEntry {
    /// Index in the port's table.
    pub index: u8,
    /// The GID.
    pub gid: Gid,
    /// True when `gid_attrs/types/<index>` says `RoCE v2`.
    pub roce_v2: bool,
}

/// The non-empty entries of the port's GID table (entries whose type cannot be read, as the
/// kernel answers for unused slots, are skipped).
pub fn gid_table(sysfs: &Path, dev: &str, port: u8) -> Vec<GidEntry> {
    let dir = port_dir(sysfs, dev, port);
    let mut out = Vec::new();
    for index in 0..=255u8 {
        let Some(text) = read(&dir.join("gids").join(index.to_string())) else { break };
        let Ok(gid) = text.parse::<Gid>() else { continue };
        if gid.is_zero() {
            continue;
        }
        let Some(kind) = read(&dir.join("gid_attrs/types").join(index.to_string())) else { continue };
        out.push(GidEntry { index, gid, roce_v2: kind.eq_ignore_ascii_case("RoCE v2") });
    }
    out
}

/// True for an IPv4-mapped GID (`::ffff:a.b.c.d`): routable RoCE v2 over IPv4.
fn ipv4_mapped(g: &Gid) -> bool {
    g.0[..10].iter().all(|&b| b == 0) && g.0[10] == 0xff && g.0[11] == 0xff
}

/// True for a link-local GID (`fe80::/10`).
fn link_local(g: &Gid) -> bool {
    g.0[0] == 0xfe && g.0[1] & 0xc0 == 0x80
}

/// The GID index a RoCE connection should use: a RoCE v2 entry, preferring IPv4-mapped, then
/// global IPv6, then link-local (NCCL's and perftest's preference); the lowest index within a
/// class. `None` when the port has no RoCE v2 GID (no IP address on the netdev).
pub fn pick_roce_v2(table: &[GidEntry]) -> Option<u8> {
    let rank = |e: &GidEntry| {
        if ipv4_mapped(&e.gid) {
            0
        } else if !link_local(&e.gid) {
            1
        } else {
            2
        }
    };
    table.iter().filter(|e| e.roce_v2).min_by_key(|e| (rank(e), e.index)).map(|e| e.index)
}

/// Error counters read around a run (`hw_counters/`), the ones that reveal stalls the
/// figures hide: RNR NAKs (`out_of_buffer` at the responder, `rnr_nak_retry_err` at the
/// requester), retransmissions and sequence errors.
pub const COUNTERS: [&str; 5] =
    ["out_of_buffer", "rnr_nak_retry_err", "local_ack_timeout_err", "packet_seq_err", "out_of_sequence"];

/// The [`COUNTERS`] this port exposes, by name.
pub fn read_counters(sysfs: &Path, dev: &str, port: u8) -> BTreeMap<&'static str, u64> {
    let dir = port_dir(sysfs, dev, port).join("hw_counters");
    COUNTERS.iter().filter_map(|&c| Some((c, read(&dir.join(c))?.parse().ok()?))).collect()
}

/// A warning naming every counter that rose between `before` and `after`, or `None`.
pub fn counter_warning(dev: &str, before: &BTreeMap<&'static str, u64>, after: &BTreeMap<&'static str, u64>) -> Option<String> {
    let rose: Vec<String> = after
        .iter()
        .filter_map(|(k, &a)| {
            let d = a.saturating_sub(*before.get(k)?);
            (d > 0).then(|| format!("{k} +{d}"))
        })
        .collect();
    (!rose.is_empty())
        .then(|| format!("{dev}: {} during the flow (RNR NAKs stall a queue pair for 0.64 ms or more each)", rose.join(", ")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fake port: state, link layer and GID entries `(index, gid, type)`.
    pub(crate) fn fake_port(root: &Path, dev: &str, active: bool, layer: &str, gids: &[(u8, &str, &str)]) {
        let dir = port_dir(root, dev, 1);
        std::fs::create_dir_all(dir.join("gids")).unwrap();
        std::fs::create_dir_all(dir.join("gid_attrs/types")).unwrap();
        std::fs::write(dir.join("state"), if active { "4: ACTIVE\n" } else { "1: DOWN\n" }).unwrap();
        std::fs::write(dir.join("link_layer"), format!("{layer}\n")).unwrap();
        let max = gids.iter().map(|g| g.0).max().unwrap_or(0);
        for i in 0..=max {
            let (gid, kind) =
                gids.iter().find(|g| g.0 == i).map(|g| (g.1, g.2)).unwrap_or(("0000:0000:0000:0000:0000:0000:0000:0000", ""));
            std::fs::write(dir.join("gids").join(i.to_string()), format!("{gid}\n")).unwrap();
            if !kind.is_empty() {
                std::fs::write(dir.join("gid_attrs/types").join(i.to_string()), format!("{kind}\n")).unwrap();
            }
        }
    }

    #[test]
    fn roce_v2_gid_is_chosen_by_type_not_index_zero() {
        let root = tempfile::tempdir().unwrap();
        // The mlx5 layout: v1 and v2 link-local at 0/1, v1 and v2 IPv4-mapped at 2/3.
        fake_port(
            root.path(),
            "mlx5_0",
            true,
            "Ethernet",
            &[
                (0, "fe80:0000:0000:0000:0c42:a1ff:fe03:0a2e", "IB/RoCE v1"),
                (1, "fe80:0000:0000:0000:0c42:a1ff:fe03:0a2e", "RoCE v2"),
                (2, "0000:0000:0000:0000:0000:ffff:0a00:0102", "IB/RoCE v1"),
                (3, "0000:0000:0000:0000:0000:ffff:0a00:0102", "RoCE v2"),
            ],
        );
        let t = gid_table(root.path(), "mlx5_0", 1);
        assert_eq!(t.len(), 4);
        assert_eq!(pick_roce_v2(&t), Some(3));
        // Without an IP address only the link-local v2 entry remains.
        assert_eq!(pick_roce_v2(&t[..2]), Some(1));
        // A v1-only table has no answer.
        assert_eq!(pick_roce_v2(&[t[0], t[2]]), None);
        let p = port_info(root.path(), "mlx5_0", 1).unwrap();
        assert_eq!(p, PortInfo { active: true, link_layer: Some(LinkLayer::Ethernet) });
        assert_eq!(port_info(root.path(), "mlx5_9", 1), None);
    }

    #[test]
    fn empty_slots_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        fake_port(root.path(), "mlx5_1", false, "InfiniBand", &[(2, "0000:0000:0000:0000:0000:ffff:0a00:0103", "RoCE v2")]);
        let t = gid_table(root.path(), "mlx5_1", 1);
        assert_eq!(t.iter().map(|e| e.index).collect::<Vec<_>>(), [2]);
        let p = port_info(root.path(), "mlx5_1", 1).unwrap();
        assert!(!p.active);
        assert_eq!(p.link_layer, Some(LinkLayer::Infiniband));
    }

    #[test]
    fn counters_that_rose_are_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = port_dir(root.path(), "mlx5_0", 1).join("hw_counters");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("out_of_buffer"), "5\n").unwrap();
        std::fs::write(dir.join("packet_seq_err"), "0\n").unwrap();
        let before = read_counters(root.path(), "mlx5_0", 1);
        assert_eq!(before.len(), 2);
        assert_eq!(counter_warning("mlx5_0", &before, &before), None);
        std::fs::write(dir.join("out_of_buffer"), "17\n").unwrap();
        let after = read_counters(root.path(), "mlx5_0", 1);
        let w = counter_warning("mlx5_0", &before, &after).unwrap();
        assert!(w.contains("out_of_buffer +12") && !w.contains("packet_seq_err"), "{w}");
    }
}
