//! Waves: experiments that share no segment (in either direction: a flow's acknowledgements
//! run the reverse direction of every hop it crosses) and no endpoint host run at the same
//! time. First-fit in plan order, so a plan's order still decides what runs first.

use std::collections::BTreeSet;
use std::path::Path;

use super::resolve::resolve;
use crate::error::InputError;
use crate::model::RackFile;
use crate::spec::{Experiment, SegmentId};

/// What one experiment occupies while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Segments its flows cross (either direction).
    pub segments: BTreeSet<SegmentId>,
    /// Agents its flows start or end on.
    pub hosts: BTreeSet<String>,
}

impl Footprint {
    /// True when the two share a segment or a host.
    pub fn clashes(&self, other: &Footprint) -> bool {
        !self.segments.is_disjoint(&other.segments) || !self.hosts.is_disjoint(&other.hosts)
    }
}

/// The footprint of every experiment on `rack` (the hops and hosts the rack resolves).
pub fn footprints(rack: &RackFile, rack_path: &Path, experiments: &[Experiment]) -> Result<Vec<Footprint>, InputError> {
    experiments
        .iter()
        .map(|e| {
            let mut f = Footprint::default();
            for p in &e.flows {
                let r = resolve(rack, rack_path, p)?;
                f.segments.extend(r.segments.iter().map(|h| h.id));
                f.hosts.insert(r.src.name);
                f.hosts.insert(r.dst.name);
            }
            Ok(f)
        })
        .collect()
}

/// Groups experiment indices into waves: each joins the first wave it clashes with nothing in
/// (at most `max_per_wave` per wave; 1 = one at a time, in order).
pub fn waves(fp: &[Footprint], max_per_wave: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<(Vec<usize>, Footprint)> = Vec::new();
    for (n, f) in fp.iter().enumerate() {
        let slot = out.iter().position(|(members, used)| members.len() < max_per_wave.max(1) && !used.clashes(f));
        match slot {
            Some(w) => {
                let (members, used) = &mut out[w];
                members.push(n);
                used.segments.extend(f.segments.iter().copied());
                used.hosts.extend(f.hosts.iter().cloned());
            }
            None => out.push((vec![n], f.clone())),
        }
    }
    out.into_iter().map(|(m, _)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{spec_experiments, RackShape, RouteSet};

    fn fp(segs: &[&str], hosts: &[&str]) -> Footprint {
        Footprint {
            segments: segs.iter().map(|s| s.parse().unwrap()).collect(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn clashing_experiments_never_share_a_wave() {
        let a = fp(&["GPU_P[0]_PCI", "GPU_P[1]_PCI"], &["p0", "p1"]);
        let b = fp(&["GPU_P[2]_PCI", "GPU_P[3]_PCI"], &["p2", "p3"]);
        let c = fp(&["GPU_P[1]_PCI", "GPU_P[2]_PCI"], &["p1", "p2"]);
        let d = fp(&["GPU_D[0]_PCI"], &["p3", "d0"]);
        assert_eq!(waves(&[a.clone(), b.clone(), c.clone(), d.clone()], 8), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(waves(&[a.clone(), b.clone(), c.clone(), d.clone()], 1), vec![vec![0], vec![1], vec![2], vec![3]]);
        assert!(d.clashes(&b), "a shared host is a clash");
    }

    #[test]
    fn spec_plan_of_8_8_4_waves_are_disjoint_and_cover_everything() {
        let shape = RackShape::new(8, 8, 4).unwrap();
        let set = RouteSet::spec(&shape, None).unwrap();
        let exps = spec_experiments(&set, true);
        let fps: Vec<Footprint> = exps
            .iter()
            .map(|e| {
                let mut f = Footprint::default();
                for p in &e.flows {
                    let r = set.routes.iter().find(|r| r.path == *p).unwrap();
                    f.segments.extend(r.segments.iter().map(|h| h.id));
                    f.hosts.insert(format!("{:?}{}", p.kind, p.src));
                }
                f
            })
            .collect();
        let w = waves(&fps, 16);
        let mut all: Vec<usize> = w.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..exps.len()).collect::<Vec<_>>());
        for wave in &w {
            for (i, x) in wave.iter().enumerate() {
                for y in &wave[i + 1..] {
                    assert!(!fps[*x].clashes(&fps[*y]), "{} and {} share a wave", exps[*x].name, exps[*y].name);
                }
            }
        }
        assert!(w.len() < exps.len(), "some experiments run together");
    }
}
