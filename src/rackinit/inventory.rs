//! The rack inventory an operator writes: host names in spec order, their management (control)
//! addresses, and optional overrides of every choice `linkcal rack init` makes.
//!
//! ```toml
//! token_file = "token"          # relative to this file; mode 600
//! # host_tcp_only = true        # hosts without GPUs: every route over host TCP
//! # pp_prefill = 4              # default: the prefill GPUs found
//! # ib_cards = 2                # default: the prefill RDMA NICs found
//! # nic_map = [0, 1, 0, 1]      # default: the spec's k = i mod Num_IB_Cards
//! # tcp_congestion_control = "cubic"
//! # payload_scale = 1.0
//!
//! [prefill]
//! name = "pre0"                 # the agent's --name (and the ssh host, unless `ssh` says)
//! control = "10.0.0.10:7070"    # where its agent listens
//! # data_addr = "10.1.0.10"     # default: picked from the host's NICs
//! # gpus = ["0000:1b:00.0"]     # default: every GPU, by PCI bus id
//! # nics = ["mlx5_0"]           # default: every RDMA NIC, by PCI bus id
//!
//! [[decode]]                    # decode server 0, 1, ... in order
//! name = "dec0"
//! control = "10.0.0.20:7070"
//! ```
//!
//! Servers whose GPUs each run their own agent (one task per GPU, as `srun
//! --ntasks-per-node=<GPUs>` starts them; the emulated rack, one namespace per GPU) list the
//! agents instead of one `[prefill]`: `[[prefill_gpu]]` per GPU i in order, `[prefill_host]` for
//! the server's host memory, and `[[decode_host]]` per decode server beside `[[decode]]` (then a
//! decode entry stands for the decode GPU). Host TCP only. `[networks]` says which fabric each of
//! a host's addresses is on, when hosts have several:
//!
//! ```toml
//! [networks]
//! pcie = "10.1.0.0/16"          # flows inside a server (between its agents)
//! eth = "10.2.0.0/16"           # the decode servers' Ethernet (Path 3)
//! ib = ["10.10.0.0/16"]         # the IB fabric; one per prefill NIC k on separate rails
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// The inventory file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RackInventory {
    /// The run's token file (relative paths: to the inventory); mode 600.
    pub token_file: PathBuf,
    /// Hosts without GPUs are accepted: roles map onto host memory and every route runs over
    /// host TCP (default false: a role without its GPU is an error).
    #[serde(default)]
    pub host_tcp_only: bool,
    /// PP_prefill override.
    pub pp_prefill: Option<usize>,
    /// Num_IB_Cards override.
    pub ib_cards: Option<usize>,
    /// NIC map override (GPU i -> NIC k).
    pub nic_map: Option<Vec<usize>>,
    /// TCP congestion control of every TCP flow.
    pub tcp_congestion_control: Option<String>,
    /// Model payloads are divided by this (1 on hardware).
    #[serde(default = "one")]
    pub payload_scale: f64,
    /// Which fabric each address is on (default: picked from the hosts' NICs).
    #[serde(default)]
    pub networks: Networks,
    /// The prefill server, one agent for all its GPUs and NICs (or `prefill_gpu`).
    pub prefill: Option<HostSpec>,
    /// One agent per prefill GPU i, in order (instead of `prefill`; host TCP only).
    #[serde(default)]
    pub prefill_gpu: Vec<HostSpec>,
    /// The prefill server's host-memory agent beside `prefill_gpu` (the isolation routes need it).
    pub prefill_host: Option<HostSpec>,
    /// Decode servers 0, 1, ... in order (the decode GPUs' agents when `decode_host` is given).
    pub decode: Vec<HostSpec>,
    /// Decode server j's host-memory agent, one per decode entry, in order (or none).
    #[serde(default)]
    pub decode_host: Vec<HostSpec>,
    /// The file it was read from (for error messages).
    #[serde(skip)]
    pub path: PathBuf,
}

fn one() -> f64 {
    1.0
}

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Host name: the agent's `--name`, the rack file's `hosts[].name`, the ssh destination.
    pub name: String,
    /// Management address its agent listens on, `IP:port`.
    pub control: String,
    /// Data-plane address override (must be an address of the host).
    pub data_addr: Option<IpAddr>,
    /// GPUs to use, by PCI bus id.
    pub gpus: Option<Vec<String>>,
    /// NICs to use, by name or PCI bus id.
    pub nics: Option<Vec<String>>,
    /// ssh destination (`user@host`) for `scripts/launch-ssh`, when not the name.
    pub ssh: Option<String>,
}

/// The fabric of each address, as CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Networks {
    /// Flows inside one server, between its agents (the emulated rack's PCIe plane).
    pub pcie: Option<Cidr>,
    /// The decode servers' Ethernet (Path 3).
    pub eth: Option<Cidr>,
    /// The IB fabric: one block, or one per prefill NIC k (rails); Path 2 from GPU i uses
    /// block `nic_map[i]` when it exists.
    #[serde(default)]
    pub ib: Vec<Cidr>,
}

/// An address block `ADDR/PREFIX` (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length, bits.
    pub prefix: u8,
}

impl Cidr {
    /// True when `a` lies in the block.
    pub fn contains(&self, a: IpAddr) -> bool {
        let bits = |x: IpAddr| match x {
            IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32u32),
            IpAddr::V6(v) => (u128::from(v), 128u32),
        };
        let ((net, nw), (got, gw)) = (bits(self.addr), bits(a));
        let p = u32::from(self.prefix);
        nw == gw && (p == 0 || (net ^ got) >> (128 - p) == 0)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        let bad = || format!("'{s}' is not an address block ADDR/PREFIX, e.g. 10.1.0.0/16");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("'{s}': prefix {prefix} is longer than {max} bits"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A host with its place in the rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The prefill server (one agent).
    Prefill,
    /// Prefill GPU i's own agent.
    PrefillGpu(usize),
    /// The prefill server's host-memory agent.
    PrefillHost,
    /// Decode server j (or its GPU's agent when the inventory lists `decode_host`).
    Decode(usize),
    /// Decode server j's host-memory agent.
    DecodeHost(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Prefill => write!(f, "prefill"),
            Place::PrefillGpu(i) => write!(f, "prefill_gpu[{i}]"),
            Place::PrefillHost => write!(f, "prefill_host"),
            Place::Decode(j) => write!(f, "decode[{j}]"),
            Place::DecodeHost(j) => write!(f, "decode_host[{j}]"),
        }
    }
}

impl Place {
    /// True for the places on the prefill server.
    pub fn is_prefill(self) -> bool {
        matches!(self, Place::Prefill | Place::PrefillGpu(_) | Place::PrefillHost)
    }
}

impl RackInventory {
    /// Reads and checks an inventory file; every error names the field and what to do.
    pub fn read(path: &Path) -> Result<RackInventory, InputError> {
        let text = crate::error::read_input(path)?;
        let mut inv: RackInventory = crate::error::parse_toml(path, &text)?;
        inv.check(path)?;
        inv.path = path.to_path_buf();
        if inv.token_file.is_relative() {
            inv.token_file = path.parent().unwrap_or(Path::new(".")).join(&inv.token_file);
        }
        Ok(inv)
    }

    /// Hosts in rack order with their places: the prefill server (or its GPUs' agents, then
    /// its host-memory agent), the decode servers, their host-memory agents.
    pub fn hosts(&self) -> Vec<(Place, &HostSpec)> {
        let mut v: Vec<(Place, &HostSpec)> = self.prefill.iter().map(|h| (Place::Prefill, h)).collect();
        v.extend(self.prefill_gpu.iter().enumerate().map(|(i, h)| (Place::PrefillGpu(i), h)));
        v.extend(self.prefill_host.iter().map(|h| (Place::PrefillHost, h)));
        v.extend(self.decode.iter().enumerate().map(|(j, h)| (Place::Decode(j), h)));
        v.extend(self.decode_host.iter().enumerate().map(|(j, h)| (Place::DecodeHost(j), h)));
        v
    }

    /// True when the servers are listed as one agent per endpoint (`prefill_gpu`).
    pub fn per_endpoint(&self) -> bool {
        !self.prefill_gpu.is_empty()
    }

    /// The control address of a host (checked by [`RackInventory::read`]).
    pub fn control_of(h: &HostSpec) -> SocketAddr {
        h.control.parse().expect("checked when read")
    }

    fn check(&self, path: &Path) -> Result<(), InputError> {
        let field = |f: String, m: String| InputError::field(path, f, m);
        if self.decode.is_empty() {
            return Err(field("decode".into(), "no decode host: add one [[decode]] table per decode server, in order".into()));
        }
        self.check_form(path)?;
        if !(self.payload_scale.is_finite() && self.payload_scale > 0.0) {
            return Err(field("payload_scale".into(), "must be a positive number (1 on hardware)".into()));
        }
        let (mut names, mut addrs) = (HashSet::new(), HashSet::new());
        for (place, h) in self.hosts() {
            let ok_name = !h.name.is_empty()
                && h.name.len() <= 64
                && h.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok_name {
                let m = format!("'{}' is not a host name (letters, digits, '.', '_', '-'; at most 64)", h.name);
                return Err(field(format!("{place}.name"), m));
            }
            if !names.insert(h.name.as_str()) {
                let m = format!("'{}' appears twice: each host takes one role; remove the duplicate", h.name);
                return Err(field(format!("{place}.name"), m));
            }
            let Ok(sa) = h.control.parse::<SocketAddr>() else {
                let m = format!("'{}' is not IP:port (the management address its agent listens on)", h.control);
                return Err(field(format!("{place}.control"), m));
            };
            if !addrs.insert(sa) {
                let m = format!("{sa} is also another host's control address: each agent listens on its own");
                return Err(field(format!("{place}.control"), m));
            }
        }
        Ok(())
    }

    /// One prefill form (`prefill`, or `prefill_gpu` with host TCP only), and one host-memory
    /// agent per decode entry when any is listed.
    fn check_form(&self, path: &Path) -> Result<(), InputError> {
        let field = |f: &str, m: &str| InputError::field(path, f, m.to_string());
        match (&self.prefill, self.prefill_gpu.is_empty()) {
            (None, true) => {
                return Err(field("prefill", "no prefill host: add a [prefill] table (or one [[prefill_gpu]] per GPU agent)"))
            }
            (Some(_), false) => {
                return Err(field(
                    "prefill_gpu",
                    "give either [prefill] (one agent for the server) or [[prefill_gpu]] (one agent per GPU), not both",
                ))
            }
            _ => {}
        }
        if self.prefill.is_some() && self.prefill_host.is_some() {
            return Err(field(
                "prefill_host",
                "goes with [[prefill_gpu]]: a [prefill] server agent measures its host memory itself",
            ));
        }
        if self.per_endpoint() && !self.host_tcp_only {
            return Err(field("host_tcp_only", "one agent per GPU ([[prefill_gpu]]) measures host TCP only: set host_tcp_only = true, or list the server as [prefill]"));
        }
        if !self.decode_host.is_empty() && self.decode_host.len() != self.decode.len() {
            let m = format!(
                "{} [[decode_host]] for {} [[decode]]: give one per decode server, in order, or none",
                self.decode_host.len(),
                self.decode.len()
            );
            return Err(field("decode_host", &m));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<RackInventory, InputError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("inv.toml");
        std::fs::write(&p, text).unwrap();
        RackInventory::read(&p)
    }

    const GOOD: &str = r#"
token_file = "token"
[prefill]
name = "pre0"
control = "127.0.0.1:7000"
[[decode]]
name = "dec0"
control = "127.0.0.1:7001"
"#;

    #[test]
    fn a_good_inventory_reads_in_order() {
        let inv = read(GOOD).unwrap();
        let names: Vec<String> = inv.hosts().iter().map(|(p, h)| format!("{p}={}", h.name)).collect();
        assert_eq!(names, ["prefill=pre0", "decode[0]=dec0"]);
        assert!(inv.token_file.is_absolute());
        assert_eq!(inv.payload_scale, 1.0);
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases = [
            (GOOD.replace("127.0.0.1:7001", "dec0:7001"), "decode[0].control"),
            (GOOD.replace("\"dec0\"", "\"pre0\""), "decode[0].name"),
            (GOOD.replace("\"dec0\"", "\"a b\""), "decode[0].name"),
            (GOOD.replace("127.0.0.1:7001", "127.0.0.1:7000"), "decode[0].control"),
            (GOOD.replace("token_file", "tokn_file"), "tokn_file"),
            (GOOD.replace("[[decode]]\nname = \"dec0\"\ncontrol = \"127.0.0.1:7001\"\n", ""), "decode"),
            (format!("payload_scale = 0\n{GOOD}"), "payload_scale"),
            (format!("{GOOD}[[prefill_gpu]]\nname = \"g0\"\ncontrol = \"127.0.0.1:7002\"\n"), "prefill_gpu"),
            (GOOD.replace("[prefill]", "[[prefill_gpu]]"), "host_tcp_only"),
            (GOOD.replace("[prefill]", "[prefill_host]"), "prefill"),
            (format!("{GOOD}[[decode_host]]\nname = \"h0\"\ncontrol = \"127.0.0.1:7002\"\n[[decode_host]]\nname = \"h1\"\ncontrol = \"127.0.0.1:7003\"\n"), "decode_host"),
            (format!("[networks]\neth = \"10.2.0.0/33\"\n{GOOD}"), "networks.eth"),
        ];
        for (text, want) in cases {
            let e = read(&text).expect_err(want);
            assert_eq!(e.field.as_deref(), Some(want), "{e}");
        }
    }
}
