//! Is the emulated rack as `emulate up` built it? Links (veth pairs, one per segment) up at
//! both ends, and every planned /32 route in place. Linux deletes the routes through a device
//! when the device is set down, and does not restore them when it comes back up: after a
//! link flap (`ip link set X down`, then `up`) the routes through that link are gone and every
//! flow over them fails until they are re-installed. [`repair`] re-installs them (and sets every
//! link up); `linkcal run` on an emulated rack re-installs missing routes of links that are up
//! before it starts, and names a down link when a route stops moving data.

use std::collections::{BTreeMap, BTreeSet};

use super::topo::{Node, Plan};
use super::EmulateError;
use crate::model::RackFile;
use crate::spec::SegmentId;

/// Something of the built rack that is not as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A segment's veth pair is down (admin down or no carrier) at one end or both.
    LinkDown {
        /// The segment.
        segment: SegmentId,
        /// `namespace/interface` of each end that is down.
        ends: Vec<String>,
    },
    /// Planned routes missing from a namespace.
    RoutesMissing {
        /// The namespace.
        netns: String,
        /// How many are missing.
        missing: usize,
        /// How many were planned there.
        planned: usize,
        /// Segments of the devices the missing routes leave by.
        segments: BTreeSet<SegmentId>,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::LinkDown { segment, ends } => write!(f, "link of segment {segment} is down ({})", ends.join(", ")),
            Problem::RoutesMissing { netns, missing, planned, segments } => {
                let segs: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
                write!(f, "{netns}: {missing} of {planned} routes missing (via segment {})", segs.join(", "))
            }
        }
    }
}

impl Problem {
    /// The segments the problem touches.
    pub fn segments(&self) -> Vec<SegmentId> {
        match self {
            Problem::LinkDown { segment, .. } => vec![*segment],
            Problem::RoutesMissing { segments, .. } => segments.iter().copied().collect(),
        }
    }
}

/// The plan of an emulated rack file (its prefix from `control_netns`, `PREFIX_mgmt`); None for
/// a rack that is not emulated.
pub fn plan_of(rack: &RackFile) -> Option<Plan> {
    let prefix = rack.control_netns.as_deref()?.strip_suffix("_mgmt")?;
    if !rack.emulated {
        return None;
    }
    Plan::new(prefix, &rack.shape).ok()
}

/// Interfaces of a namespace that are up with a carrier (`ip -o link show`: flags UP and LOWER_UP).
fn links_up(ns: &str) -> Result<BTreeMap<String, bool>, EmulateError> {
    let text = super::netns::run_in(ns, &["ip", "-o", "link", "show"])?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ": ");
        let (Some(_), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let name = name.split('@').next().unwrap_or(name).to_string();
        let flags = rest.split_once('>').map_or("", |(f, _)| f).trim_start_matches('<');
        let up = flags.split(',').any(|f| f == "UP") && flags.split(',').any(|f| f == "LOWER_UP");
        out.insert(name, up);
    }
    Ok(out)
}

/// IPv4 destinations of a namespace's routes (`ip -4 route show`).
fn route_dsts(ns: &str) -> Result<BTreeSet<String>, EmulateError> {
    let text = super::netns::run_in(ns, &["ip", "-4", "route", "show"])?;
    Ok(text.lines().filter_map(|l| l.split_whitespace().next()).map(|d| d.trim_end_matches("/32").to_string()).collect())
}

/// The segment of the link a namespace's interface belongs to.
fn segment_of(plan: &Plan, n: Node, dev: &str) -> Option<SegmentId> {
    plan.links.iter().find(|l| (l.lower == n && l.lower_if == dev) || (l.upper == n && l.upper_if == dev)).map(|l| l.segment)
}

/// Checks every link and planned route of the rack built from `plan`.
pub fn check(plan: &Plan) -> Result<Vec<Problem>, EmulateError> {
    let mut down: BTreeMap<SegmentId, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for &n in &plan.nodes {
        let ns = plan.netns(n);
        let up = links_up(&ns)?;
        for l in &plan.links {
            for (end, dev) in [(l.lower, &l.lower_if), (l.upper, &l.upper_if)] {
                if end == n && !up.get(dev).copied().unwrap_or(false) {
                    down.entry(l.segment).or_default().push(format!("{ns}/{dev}"));
                }
            }
        }
        let planned = plan.routes.get(&n).map(Vec::as_slice).unwrap_or(&[]);
        let have = route_dsts(&ns)?;
        let missing: Vec<_> = planned.iter().filter(|r| !have.contains(&r.dst.to_string())).collect();
        if !missing.is_empty() {
            problems.push(Problem::RoutesMissing {
                netns: ns,
                missing: missing.len(),
                planned: planned.len(),
                segments: missing.iter().filter_map(|r| segment_of(plan, n, &r.dev)).collect(),
            });
        }
    }
    let mut out: Vec<Problem> = down.into_iter().map(|(segment, ends)| Problem::LinkDown { segment, ends }).collect();
    out.extend(problems);
    Ok(out)
}

/// What [`repair`] and [`restore_routes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Links set up again (segments).
    pub links_up: Vec<SegmentId>,
    /// Routes re-installed.
    pub routes: usize,
    /// Links still down afterwards (their routes cannot be installed).
    pub still_down: Vec<SegmentId>,
}

/// Restores the rack as `emulate up` built it: every link set up, every planned route
/// re-installed where it is missing (`ip route replace`, so a route in place is untouched).
pub fn repair(plan: &Plan) -> Result<Repaired, EmulateError> {
    restore(plan, true)
}

/// Re-installs the missing planned routes of every link that is up; links that are down stay
/// down (an operator may hold them down on purpose) and are returned in `still_down`.
pub fn restore_routes(plan: &Plan) -> Result<Repaired, EmulateError> {
    restore(plan, false)
}

fn restore(plan: &Plan, set_up: bool) -> Result<Repaired, EmulateError> {
    let before = check(plan)?;
    let down: BTreeSet<SegmentId> =
        before.iter().filter(|p| matches!(p, Problem::LinkDown { .. })).flat_map(Problem::segments).collect();
    let mut done = Repaired::default();
    if set_up {
        for &n in &plan.nodes {
            let lines: Vec<String> = plan
                .links
                .iter()
                .filter(|l| down.contains(&l.segment))
                .flat_map(|l| [(l.lower, &l.lower_if), (l.upper, &l.upper_if)])
                .filter(|(end, _)| *end == n)
                .map(|(_, dev)| format!("link set {dev} up"))
                .collect();
            super::netns::batch("ip", Some(&plan.netns(n)), &lines)?;
        }
        done.links_up = down.iter().copied().collect();
    }
    for p in &before {
        let Problem::RoutesMissing { netns, .. } = p else { continue };
        let Some(&n) = plan.nodes.iter().find(|n| plan.netns(**n) == *netns) else { continue };
        let have = route_dsts(netns)?;
        let lines: Vec<String> = plan.routes[&n]
            .iter()
            .filter(|r| !have.contains(&r.dst.to_string()))
            .filter(|r| set_up || segment_of(plan, n, &r.dev).is_none_or(|s| !down.contains(&s)))
            .map(|r| {
                let src = r.src.map(|s| format!(" src {s}")).unwrap_or_default();
                format!("route replace {}/32 via {} dev {} onlink{src}", r.dst, r.via, r.dev)
            })
            .collect();
        done.routes += lines.len();
        super::netns::batch("ip", Some(netns), &lines)?;
    }
    // A neighbour that did not answer while its link was down stays FAILED for a while, and
    // packets to it bounce as "No route to host": forget those, so the link carries at once.
    for &n in &plan.nodes {
        super::netns::batch("ip", Some(&plan.netns(n)), &["neigh flush nud failed".to_string()])?;
    }
    if !set_up {
        done.still_down = down.into_iter().collect();
    }
    Ok(done)
}

/// For a route that stopped moving data on an emulated rack: what is wrong with the links of
/// `segments` (down, or routes missing through them), one line each; empty when nothing is
/// or the rack is not emulated.
pub fn explain(rack: &RackFile, segments: &BTreeSet<SegmentId>) -> Vec<String> {
    let Some(plan) = plan_of(rack) else { return Vec::new() };
    match check(&plan) {
        Ok(problems) => problems
            .iter()
            .filter(|p| p.segments().iter().any(|s| segments.contains(s)))
            .map(|p| format!("emulated rack: {p}"))
            .collect(),
        Err(e) => vec![format!("emulated rack: links not checked ({e})")],
    }
}
