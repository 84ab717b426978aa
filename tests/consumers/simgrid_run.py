"""Loads a linkcal SimGrid platform with SimGrid's Python bindings and times transfers.

usage: simgrid_run.py PLATFORM.xml TRANSFERS.json
TRANSFERS.json: {"solo": [{"src", "dst", "bytes"}], "burst": [{"name", "src", "dst", "bytes"}]}
Prints one JSON line: {"solo": [seconds, ...], "burst": {name: seconds}}. Solo transfers run
one at a time (1000 s apart); the burst's flows all start together afterwards. The platform's
sharing efficiency (zone prop linkcal_sharing_efficiency) is applied, as its header says: a
controller actor scales every segment link that two or more burst flows cross by it when the
burst starts (the burst's flows are equal, so the sharers stay two or more until all finish).
"""
import json
import sys
import xml.etree.ElementTree as ET

from simgrid import Actor, Engine, Host, Link, Mailbox, this_actor

e = Engine(sys.argv[:1] + ["--log=root.thres:warning"])
e.load_platform(sys.argv[1])
zone = ET.parse(sys.argv[1]).getroot().find("zone")
eff = float(next(p.get("value") for p in zone.findall("prop") if p.get("id") == "linkcal_sharing_efficiency"))
route_links = {(r.get("src"), r.get("dst")): [c.get("id") for c in r.findall("link_ctn")] for r in zone.findall("route")}
work = json.load(open(sys.argv[2]))
solo = [None] * len(work["solo"])
burst = {}
BURST_AT = 1000.0 * (len(work["solo"]) + 1)


def sender(mb, size, at):
    this_actor.sleep_until(at)
    Mailbox.by_name(mb).put("x", size)


def receiver(mb, at, done):
    Mailbox.by_name(mb).get()
    done(Engine.clock - at)


for k, t in enumerate(work["solo"]):
    at = 1000.0 * k
    Actor.create(f"s{k}", Host.by_name(t["src"]), sender, f"solo{k}", t["bytes"], at)
    Actor.create(f"r{k}", Host.by_name(t["dst"]), receiver, f"solo{k}", at, lambda d, k=k: solo.__setitem__(k, d))
def controller(at, names):
    this_actor.sleep_until(at)
    for n in names:
        link = Link.by_name(n)
        link.set_bandwidth(link.bandwidth * eff)


crossings = {}
for f in work["burst"]:
    for n in route_links[(f["src"], f["dst"])]:
        crossings[n] = crossings.get(n, 0) + 1
shared = sorted(n for n, c in crossings.items() if c >= 2 and not n.startswith("route:"))
Actor.create("controller", Host.by_name(work["burst"][0]["src"]), controller, BURST_AT - 1.0, shared)
for f in work["burst"]:
    n = f["name"]
    Actor.create("s_" + n, Host.by_name(f["src"]), sender, n, f["bytes"], BURST_AT)
    Actor.create("r_" + n, Host.by_name(f["dst"]), receiver, n, BURST_AT, lambda d, n=n: burst.__setitem__(n, d))
e.run()
print(json.dumps({"solo": solo, "burst": burst}))
