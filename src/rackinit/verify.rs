//! Checks a composed rack against the live hosts: every route carries a tiny timed transfer
//! (through the runner, so with the rack's own addresses and the agents' peer lists), and
//! `rack check` re-reads every host to see that what the rack file relies on is still there.
#![allow(non_snake_case)]

use std::path::Path;
use std::sync::atomic::AtomicU64;

use super::inventory::Place;
use super::{describe_host, HostSpec, RackInitError};
use crate::model::rack::{HostRole, RouteCheck};
use crate::model::RackFile;
use crate::runner::measure::{measure, Ctx};
use crate::runner::{hardware_transports, RunOptions};
use crate::spec::Experiment;
use crate::transport::TransportKind;

/// Payload of a route check, bytes.
pub const CHECK_BYTES: u64 = 64 << 10;
/// Data-plane timeout of a route check, seconds.
pub const CHECK_TIMEOUT_S: f64 = 5.0;

/// Short measurement options: a few 64 KiB transfers, every wait bounded.
fn check_options(hardware: bool) -> RunOptions {
    RunOptions {
        per_route: if hardware { hardware_transports() } else { Vec::new() },
        time_cap_s: 0.2,
        hard_cap_s: CHECK_TIMEOUT_S,
        min_samples: 3,
        max_samples: 50,
        warmup: 1,
        window_s: 0.05,
        timeout_s: CHECK_TIMEOUT_S,
        progress: false,
        ..RunOptions::quick()
    }
}

/// Checks every route of `rack` in order with a tiny timed transfer, over the hardware
/// transports when `hardware` (falling back to host TCP, with the waiver kept, where one does
/// not apply), else over host TCP. `each` sees every check as it finishes. The first route
/// that fails is an error naming it.
pub fn check_routes(
    rack: &RackFile,
    rack_path: &Path,
    token: &str,
    hardware: bool,
    mut each: impl FnMut(&RouteCheck),
) -> Result<Vec<RouteCheck>, RackInitError> {
    let (hw, tcp) = (check_options(hardware), check_options(false));
    let ids = AtomicU64::new(1);
    let mut ctx = Ctx::new(rack, rack_path, token.to_string(), &hw, &ids);
    let mut fallback = Ctx::new(rack, rack_path, token.to_string(), &tcp, &ids);
    let mut out = Vec::new();
    for r in &rack.routes {
        let exp = Experiment::solo(r.path);
        let fail = |message: String| RackInitError::Route {
            path: r.path.to_string(),
            src: r.src_host.clone(),
            dst: r.dst_host.clone(),
            message,
        };
        let what = format!("cannot carry {} KiB to {} within {CHECK_TIMEOUT_S} s", CHECK_BYTES >> 10, r.dst_addr);
        let advice = "check the link, the addresses in the rack file and any firewall between the hosts";
        let (m, transport, waived) = match measure(&mut ctx, &exp, CHECK_BYTES) {
            Ok(Ok(m)) => (m, hw.transport_of(r.path.kind), None),
            Ok(Err(waivers)) => {
                let reason: Vec<String> = waivers.iter().map(|w| format!("{}: {}", w.probe, w.reason)).collect();
                match measure(&mut fallback, &exp, CHECK_BYTES) {
                    Ok(Ok(m)) => (m, TransportKind::HostTcp, Some(reason.join("; "))),
                    Ok(Err(_)) => return Err(fail(format!("no transport applies: {}", reason.join("; ")))),
                    Err(e) => return Err(fail(format!("{what}: {e}: {advice}"))),
                }
            }
            Err(e) => return Err(fail(format!("{what}: {e}: {advice}"))),
        };
        let check = RouteCheck {
            path: r.path,
            transport: transport.to_string(),
            goodput_Bps: m.flows.first().map(|f| f.goodput_Bps.p50),
            waived,
        };
        each(&check);
        out.push(check);
    }
    Ok(out)
}

/// One finding of `rack check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Host it concerns (null: a route).
    pub host: Option<String>,
    /// What was checked.
    pub what: String,
    /// True when it still holds.
    pub ok: bool,
    /// What was found, and what to do when it does not hold.
    pub detail: String,
}

fn finding(host: &str, what: &str, ok: bool, detail: String) -> Finding {
    Finding { host: Some(host.into()), what: what.into(), ok, detail }
}

/// Re-reads every host of `rack` and checks what the file relies on: the agent answers under
/// its name, `data_addr` is still an address of the host and up, and (for composed files) the
/// GPUs and RDMA NICs used are still there and active.
pub fn check_hosts(rack: &RackFile, token: &str) -> Result<Vec<Finding>, RackInitError> {
    let mut out = Vec::new();
    for h in &rack.hosts {
        let place = match h.role {
            HostRole::DecodeServer | HostRole::DecodeGpu => Place::Decode(h.index),
            HostRole::DecodeHost => Place::DecodeHost(h.index),
            HostRole::PrefillGpu => Place::PrefillGpu(h.index),
            HostRole::PrefillHost => Place::PrefillHost,
            HostRole::PrefillServer => Place::Prefill,
        };
        let spec = HostSpec {
            name: h.name.clone(),
            control: h.control_addr.clone(),
            data_addr: None,
            gpus: None,
            nics: None,
            ssh: None,
        };
        let d = describe_host(place, &spec, token)?;
        out.push(finding(&h.name, "agent", true, format!("answers at {} (host {})", h.control_addr, d.hostname)));
        let addr_ok = h.data_addr.parse().ok().and_then(|a| d.interface_of(a)).filter(|i| i.up);
        let detail = match addr_ok {
            Some(i) => format!("{} on {} (up)", h.data_addr, i.name),
            None => format!(
                "{} is not an up address of the host (it has: {}): run `linkcal rack init` again",
                h.data_addr,
                d.all_addrs()
            ),
        };
        out.push(finding(&h.name, "data_addr", addr_ok.is_some(), detail));
        let Some(facts) = rack.composed.as_ref().and_then(|c| c.hosts.iter().find(|f| f.name == h.name)) else { continue };
        let gpus: Vec<&str> = d.topology.iter().flat_map(|t| t.gpus.iter().map(|g| g.pci.as_str())).collect();
        for g in &facts.gpus {
            let ok = gpus.contains(&g.as_str());
            out.push(finding(
                &h.name,
                "gpu",
                ok,
                if ok { g.clone() } else { format!("{g} is gone (found: {})", gpus.join(", ")) },
            ));
        }
        for nic in &facts.rdma_nics {
            let port = d.rdma_ports.iter().find(|p| &p.device == nic);
            let ok = port.is_some_and(|p| p.is_active());
            let state = port.map(|p| p.state.clone()).unwrap_or_else(|| "absent".into());
            out.push(finding(&h.name, "rdma_nic", ok, format!("{nic}: {state}")));
        }
    }
    Ok(out)
}
