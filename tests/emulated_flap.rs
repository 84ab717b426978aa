//! A link flap on the emulated rack (root): a segment's veth set down, then up. Linux deletes
//! the routes through a device when it goes down and never puts them back, so before this the
//! run failed naming no link and every later run failed until the rack was rebuilt. Now
//! `emulate status` says the link is down (then that its routes are missing), the run skips
//! the route over it naming the route, its hops and the down link, and exits 1; once the link
//! is up the next run re-installs the routes and `--resume` measures what was skipped (and
//! nothing twice); `emulate repair` restores a link held down. Under `CI=true` a missing
//! capability fails the test.

use std::path::Path;
use std::process::Output;

use linkcal::emulate::Plan;
use linkcal::model::Results;
use linkcal::spec::{RackShape, SegmentId};

mod rack_support;

use rack_support::{can_emulate, emulate_up_221, linkcal, set_link, unique_prefix, RackGuard};

/// The route whose link flaps and the one that does not share it, on the (2,2,1) rack.
const FLAPPING: &str = "prefill_to_decode:1->1";
const STEADY: &str = "prefill_to_decode:0->0";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn status(prefix: &str, rack: &Path) -> Output {
    linkcal().args(["emulate", "status", "--prefix", prefix, "--rack"]).arg(rack).output().unwrap()
}

fn run(rack: &Path, out: &Path, resume: bool) -> Output {
    linkcal()
        .args(["run", "--quick", "--no-progress", "--contention", "none", "--sizes", "64KiB", "--time-cap", "0.3"])
        .args(["--paths", &format!("{FLAPPING},{STEADY}"), "--rack"])
        .arg(rack)
        .arg(if resume { "--resume" } else { "--out" })
        .arg(out)
        .output()
        .unwrap()
}

fn results(out: &Path) -> Results {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn a_link_flap_is_named_and_the_routes_come_back() {
    if !can_emulate("the link flap test") {
        return;
    }
    let prefix = unique_prefix("h12");
    let dir = tempfile::tempdir().unwrap();
    let rack_dir = dir.path().join("rack");
    let _guard = RackGuard(prefix.clone());
    let up = emulate_up_221(&prefix, &rack_dir).output().unwrap();
    assert!(up.status.success(), "emulate up: {}", text(&up.stderr));
    let rack = rack_dir.join("rack.json");
    let plan = Plan::new(&prefix, &RackShape::new(2, 2, 1).unwrap()).unwrap();
    let cable: SegmentId = "IB_Cable_D[1]".parse().unwrap();
    let down_said = format!("link of segment {cable} is down");
    let o = status(&prefix, &rack);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));

    set_link(&plan, cable, "down");
    let o = status(&prefix, &rack);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains(&down_said), "{}", text(&o.stdout));

    // The run skips the route over the down link, naming it, its hops and the link; the other
    // route is measured; exit 1.
    let out = dir.path().join("run");
    let o = run(&rack, &out, false);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("route {FLAPPING}")) && err.contains(&format!("{cable} down")), "{err}");
    assert!(err.contains(&down_said), "{err}");
    let r = results(&out);
    let ids = |r: &Results| r.measurements.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&r), vec![format!("solo/{STEADY}/65536")]);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(r.skipped[0].id.contains(FLAPPING) && r.skipped[0].reason.contains(&down_said), "{:?}", r.skipped);

    // Up again: the link carries nothing yet, its routes are gone.
    set_link(&plan, cable, "up");
    let o = status(&prefix, &rack);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("routes missing") && !text(&o.stdout).contains(&down_said), "{}", text(&o.stdout));

    // The next run puts the routes back and measures what was skipped, nothing twice.
    let o = run(&rack, &out, true);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("re-installed"), "{err}");
    let r = results(&out);
    assert_eq!(ids(&r), vec![format!("solo/{STEADY}/65536"), format!("solo/{FLAPPING}/65536")]);
    assert!(r.skipped.is_empty());
    assert_eq!(std::fs::read_to_string(out.join("journal.jsonl")).unwrap().lines().count(), 2);
    assert_eq!(status(&prefix, &rack).status.code(), Some(0));

    // A link held down: `emulate repair` sets it up and puts its routes back.
    set_link(&plan, cable, "down");
    let o = linkcal().args(["emulate", "repair", "--prefix", &prefix, "--rack"]).arg(&rack).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("1 links set up ({cable})")), "{}", text(&o.stdout));
    let o = status(&prefix, &rack);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}
