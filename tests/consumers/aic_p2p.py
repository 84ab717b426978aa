"""Loads linkcal's AIConfigurator systems files through aiconfigurator's own loader
(PerfDatabase reads <systems_root>/<system>.yaml with PyYAML's SafeLoader) and evaluates its
P2P op for one pipeline hop of `tokens` tokens of hidden size `hidden`.

usage: aic_p2p.py SYSTEMS_ROOT BACKEND VERSION TOKENS HIDDEN SYSTEM...
Prints one JSON line: {system: {"p2p_ms", "inter_node_bw", "p2p_latency", "types"}}.
"""
import json
import sys

from aiconfigurator_core.sdk import operations as ops
from aiconfigurator_core.sdk.perf_database import PerfDatabase

root, backend, version, tokens, hidden = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
out = {}
for system in sys.argv[6:]:
    db = PerfDatabase(system, backend, version, systems_root=root)
    node = db.system_spec["node"]
    p2p = ops.P2P("p2p", 1, hidden, 2)
    ms = float(p2p._engine_query(db, x=tokens))
    out[system] = {
        "p2p_ms": ms,
        "inter_node_bw": node["inter_node_bw"],
        "p2p_latency": node["p2p_latency"],
        "types": sorted({type(v).__name__ for v in node.values()}),
    }
print(json.dumps(out))
