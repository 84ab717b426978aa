//! Which hosts and addresses a route's flows use, from the rack file: its `routes` table when
//! present (the emulated rack writes one), else host roles and the spec's hop lists.

use std::path::Path;

use crate::error::InputError;
use crate::model::rack::{HostEntry, HostRole, RackFile};
use crate::spec::{Hop, HopOptions, PathRef, Route, RouteKind};

/// A route ready to run: its two agents, addresses and hops.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The route.
    pub path: PathRef,
    /// Sending agent.
    pub src: HostEntry,
    /// Receiving agent.
    pub dst: HostEntry,
    /// Source address to bind.
    pub src_addr: Option<String>,
    /// Address the receiver listens on.
    pub dst_addr: String,
    /// Hops it crosses.
    pub segments: Vec<Hop>,
}

fn host<'a>(rack: &'a RackFile, file: &Path, name: &str, path: &PathRef) -> Result<&'a HostEntry, InputError> {
    rack.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
        InputError::field(
            file,
            "hosts",
            format!("no host named '{name}' (route {path} needs it): add it to hosts or fix routes[]"),
        )
    })
}

fn by_role<'a>(
    rack: &'a RackFile,
    file: &Path,
    roles: &[(HostRole, usize)],
    path: &PathRef,
) -> Result<&'a HostEntry, InputError> {
    roles.iter().find_map(|(role, idx)| rack.hosts.iter().find(|h| h.role == *role && h.index == *idx)).ok_or_else(|| {
        let want: Vec<String> = roles
            .iter()
            .map(|(r, i)| {
                format!("{} {i}", serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
            })
            .collect();
        InputError::field(file, "hosts", format!("no host with role {} (route {path} needs it)", want.join(" or ")))
    })
}

/// Resolves one route against the rack file.
pub fn resolve(rack: &RackFile, file: &Path, path: &PathRef) -> Result<Resolved, InputError> {
    if !rack.routes.is_empty() {
        let r = rack.routes.iter().find(|r| r.path == *path).ok_or_else(|| {
            InputError::field(file, "routes", format!("has no entry for route {path}; the rack does not carry it"))
        })?;
        return Ok(Resolved {
            path: *path,
            src: host(rack, file, &r.src_host, path)?.clone(),
            dst: host(rack, file, &r.dst_host, path)?.clone(),
            src_addr: r.src_addr.clone(),
            dst_addr: r.dst_addr.clone(),
            segments: r.segments.clone(),
        });
    }
    use HostRole::*;
    let (s, t) = (path.src, path.dst);
    let (src_roles, dst_roles) = match path.kind {
        RouteKind::PrefillInterRank => (vec![(PrefillGpu, s), (PrefillServer, 0)], vec![(PrefillGpu, t), (PrefillServer, 0)]),
        RouteKind::PrefillToDecode => (vec![(PrefillGpu, s), (PrefillServer, 0)], vec![(DecodeGpu, t), (DecodeServer, t)]),
        RouteKind::DecodeInterRank => (vec![(DecodeGpu, s), (DecodeServer, s)], vec![(DecodeGpu, t), (DecodeServer, t)]),
        RouteKind::PrefillGpuToHost => (vec![(PrefillGpu, s), (PrefillServer, 0)], vec![(PrefillHost, 0), (PrefillServer, 0)]),
        RouteKind::PrefillHostToGpu => (vec![(PrefillHost, 0), (PrefillServer, 0)], vec![(PrefillGpu, t), (PrefillServer, 0)]),
        RouteKind::DecodeGpuToHost => (vec![(DecodeGpu, s), (DecodeServer, s)], vec![(DecodeHost, s), (DecodeServer, s)]),
        RouteKind::DecodeHostToGpu => (vec![(DecodeHost, t), (DecodeServer, t)], vec![(DecodeGpu, t), (DecodeServer, t)]),
        RouteKind::HostRdma => (vec![(PrefillHost, 0), (PrefillServer, 0)], vec![(DecodeHost, t), (DecodeServer, t)]),
    };
    let src = by_role(rack, file, &src_roles, path)?.clone();
    let dst = by_role(rack, file, &dst_roles, path)?.clone();
    let opt = HopOptions::default();
    let route = match path.kind {
        RouteKind::PrefillInterRank => Route::prefill_inter_rank(s, opt),
        RouteKind::PrefillToDecode => {
            Route::prefill_to_decode(s, rack.shape.nic_of(s.min(rack.shape.pp_prefill.saturating_sub(1))), t, opt)
        }
        RouteKind::DecodeInterRank => Route::decode_inter_rank(s, opt),
        kind => Route::isolation(kind, s, t, opt),
    };
    let dst_addr = dst.data_addr.clone();
    Ok(Resolved { path: *path, src_addr: None, dst_addr, segments: route.segments, src, dst })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RackShape;

    fn rack(hosts: Vec<HostEntry>) -> RackFile {
        RackFile {
            schema: crate::model::RACK_SCHEMA.into(),
            shape: RackShape::new(2, 2, 1).unwrap(),
            emulated: false,
            payload_scale: 1.0,
            mtu_bytes: None,
            token_file: "t".into(),
            hosts,
            control_netns: None,
            routes: Vec::new(),
            composed: None,
            tcp_congestion_control: None,
            emulation: None,
        }
    }

    fn h(name: &str, role: HostRole, index: usize) -> HostEntry {
        HostEntry {
            name: name.into(),
            role,
            index,
            control_addr: "10.0.0.1:7100".into(),
            data_addr: format!("10.9.0.{index}"),
            netns: None,
        }
    }

    #[test]
    fn roles_resolve_and_missing_hosts_are_named() {
        let r = rack(vec![h("pre", HostRole::PrefillServer, 0), h("dec0", HostRole::DecodeServer, 0)]);
        let f = Path::new("rack.json");
        let p = PathRef { kind: RouteKind::PrefillToDecode, src: 1, dst: 0 };
        let x = resolve(&r, f, &p).unwrap();
        assert_eq!((x.src.name.as_str(), x.dst.name.as_str(), x.dst_addr.as_str()), ("pre", "dec0", "10.9.0.0"));
        assert_eq!(x.segments.len(), 5);
        let p = PathRef { kind: RouteKind::DecodeInterRank, src: 0, dst: 1 };
        let e = resolve(&r, f, &p).unwrap_err();
        assert!(e.to_string().contains("rack.json") && e.to_string().contains("decode_gpu 1"), "{e}");
    }
}
