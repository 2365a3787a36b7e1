"""Where the time of each model-trace product goes on this device: the plan (its printout),
the kernel's time and the whole call's (device arrays, through the plan's reporting path,
which waits), and numpy's time on the same operands; each the best of three.

    python benchmarks/plan/trace_plans.py 5 plans.json   # products up to 5 GFLOP

A pre-pass (a transposed operand copied first, a few rows transposed out) is not in the
kernel's time: the reported event is the launch the call ends with.
"""

from __future__ import annotations

import glob
import json
import sys
import time

import numpy as np

import clgemm
from clgemm.bench.model import key_of, trace_calls


def main(argv: list[str]) -> int:
    max_gflop = float(argv[0]) if argv else 10.0
    rng = np.random.default_rng(0)
    seen, rows = set(), []
    for path in sorted(glob.glob("traces/models/*.jsonl")):
        for c in trace_calls(path):
            if key_of(c) in seen or c.flops > max_gflop * 1e9:
                continue
            seen.add(key_of(c))
            batch = c.batch if c.batch > 1 else None
            p = clgemm.plan(c.m, c.n, c.k, trans_a=c.trans_a, trans_b=c.trans_b, batch=batch)
            lead = (c.batch,) if batch else ()
            a = rng.standard_normal(lead + ((c.k, c.m) if c.trans_a else (c.m, c.k)), np.float32)
            b = rng.standard_normal(lead + ((c.n, c.k) if c.trans_b else (c.k, c.n)), np.float32)
            da, db = clgemm.to_device(a), clgemm.to_device(b)
            op_a = np.swapaxes(a, -1, -2) if c.trans_a else a
            op_b = np.swapaxes(b, -1, -2) if c.trans_b else b
            p(da, db, return_info=True)  # compiles, first allocations
            kernel, call, ref = [], [], []
            for _ in range(3):
                _, info = p(da, db, return_info=True)
                kernel.append(info.kernel_s)
                call.append(info.total_s)
                t0 = time.perf_counter()
                np.matmul(op_a, op_b)
                ref.append(time.perf_counter() - t0)
            row = dict(trace=path.split("/")[-1], name=c.name, m=c.m, n=c.n, k=c.k,
                       trans_a=c.trans_a, trans_b=c.trans_b, batch=c.batch,
                       lane=f"{p.lane.name} {p.lane.schedule.key()}", kernel_s=min(kernel),
                       call_s=min(call), numpy_s=min(ref), plan=str(p))
            rows.append(row)
            print(f"{row['trace'][:12]:12s} {c.name:22s} {c.m}x{c.n}x{c.k} "
                  f"t{int(c.trans_a)}{int(c.trans_b)} b{c.batch}: kernel "
                  f"{row['kernel_s'] * 1e3:.2f} ms call {row['call_s'] * 1e3:.2f} numpy "
                  f"{row['numpy_s'] * 1e3:.2f} ({row['call_s'] / row['numpy_s']:.2f}x) "
                  f"{row['lane']}", flush=True)
    if len(argv) > 1:
        with open(argv[1], "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
