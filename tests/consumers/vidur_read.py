"""Reads linkcal's send_recv.csv the way Vidur's sklearn execution-time predictor does
(pd.read_csv with no options, drop_duplicates, rows of collective send_recv and the node
type's devices_per_node, num_tokens = size / embedding_dim / 2) and fits time_stats.send_recv
.median against num_tokens with a degree-1 least-squares fit (Vidur's linear-regression
predictor), then predicts one size.

usage: vidur_read.py CSV DEVICES_PER_NODE EMBEDDING_DIM SIZE_BYTES
Prints one JSON line: {"rows", "sizes", "predicted_ms"}.
"""
import json
import sys

import numpy as np
import pandas as pd

path, dpn, h, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
df = pd.read_csv(path).drop_duplicates()
df = df[(df["collective"] == "send_recv") & (df["devices_per_node"] == dpn)].copy()
df["num_tokens"] = df["size"] / h / 2
slope, icpt = np.polyfit(df["num_tokens"], df["time_stats.send_recv.median"], 1)
print(json.dumps({"rows": len(df), "sizes": int(df["size"].nunique()), "predicted_ms": float(icpt + slope * size / h / 2)}))
