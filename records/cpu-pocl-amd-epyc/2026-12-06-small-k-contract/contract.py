"""Relative Frobenius error of clgemm.matmul against float64, as a multiple of numpy
float32's on the same inputs, at small shapes with B stored plainly and transposed (20 fresh
standard-normal inputs per shape and layout, outputs poisoned). Writes JSON to argv[1]."""
import json
import sys

import numpy as np

import clgemm

rng = np.random.default_rng(0)
rows = []
for m, n, k in [(33, 20, 150), (40, 30, 60), (37, 29, 45), (64, 64, 64), (100, 80, 500)]:
    for tb in (False, True):
        ratios = []
        for _ in range(20):
            A = rng.standard_normal((m, k)).astype(np.float32)
            B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            op = B.T if tb else B
            ref = A.astype(np.float64) @ op.astype(np.float64)
            np_err = np.linalg.norm((A @ op) - ref) / np.linalg.norm(ref)
            out, info = clgemm.matmul(A, B, C=np.full((m, n), np.nan, np.float32),
                                      trans_b=tb, return_info=True)
            ratios.append(float(np.linalg.norm(out - ref) / np.linalg.norm(ref) / np_err))
        rows.append({"m": m, "n": n, "k": k, "trans_b": tb, "schedule": info.schedule,
                     "worst": max(ratios), "median": float(np.median(ratios))})
        print(rows[-1], flush=True)
json.dump({"device": info.device, "rows": rows}, open(sys.argv[1], "w"), indent=1)
