"""The hot path's host time with and without replay (lanes/recording.py), on this machine's
device: each product called through `clgemm.matmul` on device arrays, its output allocated
by the call, the perf_counter around the call (nothing waited for; the queue finished every
`--chain` calls outside the timed span), rounds alternating CLGEMM_REPLAY on and off in one
process. Optionally (`--stub`) with the kernel enqueue replaced by a no-op, so that what is
left is the Python path alone (the figure a GPU's driver then adds its enqueue to).

The CPU device's own route runs the direct form, which is not replayed: the products here run
the lanes in their GPU form (the small-rows lane's dot and axpy kernels with K split as on a
device of 132 units; the float32 family's work-group form through `schedule=`; tensor cores
claimed, their PTX emulated, for rel_tol's call judged on the device), as tests/test_replay.py
does.

    python3 benchmarks/plan/replay_host.py --out replay-host.json [--stub]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import statistics
import sys
import time

import numpy as np
import pyopencl as cl

import clgemm
from clgemm import route
from clgemm.bench.env import fingerprint
from clgemm.kernels.gemv import default_schedule
from clgemm.lanes import gemv as gemv_lane
from clgemm.lanes.mma import DEFAULT_SCHEDULES
from clgemm.lanes.probe import TcSupport
from clgemm.lanes.recording import Recording
from clgemm.runtime import LruMemo, get_runtime
from clgemm.schedule import Schedule

plan_module = importlib.import_module("clgemm.plan")

WORK_GROUP = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
                      stage_a=1, stage_b=1, unroll_k=1, double_buffer=0, strided=1,
                      local_pad=1)
# (name, batch, m, n, k, trans_b, schedule, rel_tol): decode products of LLaMA-7B's shapes, K
# cut short (the host's time does not depend on K; the CPU device's does), and a rel_tol call
# that TF32 serves, judged on the device (approx/judged.py: the product, the probes' draw,
# three probe products with their K splits, the judge, the gated exact fallback)
PRODUCTS = [
    ("decode 1 row x W^T", None, 1, 4096, 512, True, None, None),
    ("decode 16 rows x W^T (K split)", None, 16, 4096, 512, True, None, None),
    ("decode-attn context, batch 32", 32, 1, 128, 1024, False, None, None),
    ("float32 work-group form", None, 96, 96, 64, False, WORK_GROUP, None),
    ("rel_tol=1e-2, TF32 judged", None, 192, 160, 1024, False, WORK_GROUP, 1e-2),
]


def gpu_form(rt) -> None:
    """The small-rows lane in its GPU form behind the route, on a device of 132 units, and
    tensor cores claimed (their PTX emulated, small tiles)."""
    schedule = dataclasses.replace(default_schedule("GPU"), direct_rows=0)
    route.device_schedule = lambda rt: schedule
    gemv_lane.device_schedule = lambda rt: schedule
    rt._memo.pop("gemv lane", None)
    rt.plans = LruMemo(64)
    rt.device = dataclasses.replace(rt.device, compute_units=132)
    # tensor cores claimed, their PTX emulated in OpenCL C (small tiles: PoCL compiles the
    # emulated 128 x 128 kernels for minutes), as the tests do
    os.environ["CLGEMM_TC_EMULATE"] = "1"
    rt._memo["tc support"] = TcSupport(True, "emulated", async_copy=True)
    rt._memo["tc schedules"] = LruMemo(64)
    for mode, s in list(DEFAULT_SCHEDULES.items()):
        DEFAULT_SCHEDULES[mode] = dataclasses.replace(s, block_m=32, block_n=16, block_k=16,
                                                      warps_m=2, warps_n=1)


def operands(batch, m, n, k, trans_b, rng):
    lead = (batch,) if batch else ()
    a = clgemm.to_device(rng.standard_normal(lead + (m, k), np.float32))
    b = clgemm.to_device(rng.standard_normal(lead + ((n, k) if trans_b else (k, n)),
                                             np.float32))
    return a, b


def time_calls(call, rt, calls: int, chain: int) -> list[float]:
    """Host seconds of each call (the queue finished every `chain` calls, untimed)."""
    out = []
    for i in range(calls):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
        if i % chain == chain - 1:
            rt.user_queue.finish()
    rt.user_queue.finish()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=300, help="calls a round and side")
    ap.add_argument("--chain", type=int, default=10)
    ap.add_argument("--stub", action="store_true", help="kernel enqueues replaced by no-ops")
    args = ap.parse_args(argv)
    rt = get_runtime()
    gpu_form(rt)
    rng = np.random.default_rng(0)
    rows = []
    stubbed = None
    for name, batch, m, n, k, trans_b, schedule, rel_tol in PRODUCTS:
        a, b = operands(batch, m, n, k, trans_b, rng)
        p = clgemm.plan(m, n, k, trans_b=trans_b, batch=batch, schedule=schedule,
                        rel_tol=rel_tol)
        if rel_tol is not None and not p.judged:
            raise SystemExit(f"{name}: the plan is not judged on the device ({p.why})")

        def call(a=a, b=b, trans_b=trans_b, schedule=schedule, rel_tol=rel_tol):
            clgemm.matmul(a, b, trans_b=trans_b, schedule=schedule, rel_tol=rel_tol)

        for replay in (True, False):  # warm both: kernels, plans, the recording
            plan_module.REPLAY = replay
            time_calls(call, rt, 20, args.chain)
        if args.stub:
            stubbed = cl.enqueue_nd_range_kernel
            cl.enqueue_nd_range_kernel = lambda *a, **k: None
        sides: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for replay in ((True, False) if r % 2 == 0 else (False, True)):
                plan_module.REPLAY = replay
                sides[replay] += time_calls(call, rt, args.calls, args.chain)
        if stubbed is not None:
            cl.enqueue_nd_range_kernel = stubbed
        plan_module.REPLAY = True
        recordings = [x for x in (p.replays.values() if p.replays is not None else ())
                      if isinstance(x, Recording)]
        row = {"product": name, "batch": batch, "m": m, "n": n, "k": k, "trans_b": trans_b,
               "rel_tol": rel_tol, "lane": "judged tf32" if p.judged else p.lane.name,
               "replayable": p.replays is not None, "recordings": len(recordings),
               "launches": sum(1 for s in recordings[0].steps if s.bound is not None)
               if recordings else None}
        for replay, xs in sides.items():
            key = "replay" if replay else "no_replay"
            row[f"{key}_median_s"] = statistics.median(xs)
            row[f"{key}_p10_s"] = float(np.percentile(xs, 10))
        row["ratio"] = row["no_replay_median_s"] / row["replay_median_s"]
        rows.append(row)
        print(f"{name:34s} {row['lane']:11s} replay {row['replay_median_s'] * 1e6:6.2f} us  "
              f"without {row['no_replay_median_s'] * 1e6:6.2f} us  {row['ratio']:.2f}x",
              flush=True)
    data = {"command": sys.argv, "env": fingerprint(rt.device, sys.argv), "stub": args.stub,
            "rows": rows}
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
