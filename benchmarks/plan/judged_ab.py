"""rel_tol=1e-2's judged call on device arrays (approx/judged.py), chained with C given, with
and without replay where the tree has it (plan.REPLAY): host time and wall per call, 7 rounds
of 30; the reported call's wall; a cProfile of calls without replay at 2048; the cost of one
scalar kernel argument through Kernel.set_arg and through the byte setter that
lanes/recording.set_arg uses. LABEL names the run; one ending in "slowset" sets scalars
through Kernel.set_arg as before a68b238. Run with PYTHONPATH at another tree (9226fef: before
the judged call was recorded) to compare trees on one machine, runs interleaved:

    python3 benchmarks/plan/judged_ab.py LABEL OUT.json
"""

from __future__ import annotations

import cProfile
import importlib
import io
import json
import pstats
import sys
import time

import numpy as np
import pyopencl as cl

import clgemm
from clgemm.runtime import get_runtime


def slow_scalars() -> None:
    """Scalar arguments through Kernel.set_arg (the path before a68b238)."""
    from clgemm.lanes import fp32, recording

    def set_arg(kernel, index, value, dtype):
        kernel.set_arg(index, value if dtype is None else dtype(value))

    fp32.set_arg = recording.set_arg = set_arg


def chained(call, rt) -> dict:
    """Median host time and wall (the queue finished) a call, 7 rounds of 30."""
    for _ in range(5):
        call()
    rt.user_queue.finish()
    walls, hosts = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(30):
            call()
        t1 = time.perf_counter()
        rt.user_queue.finish()
        hosts.append((t1 - t0) / 30)
        walls.append((time.perf_counter() - t0) / 30)
    return {"wall_us": 1e6 * float(np.median(walls)), "host_us": 1e6 * float(np.median(hosts))}


def main(label: str, out_path: str) -> None:
    if label.endswith("slowset"):
        slow_scalars()
    rt = get_runtime()
    plan_module = importlib.import_module("clgemm.plan")
    sides = (True, False) if hasattr(plan_module, "REPLAY") else (None,)
    rng = np.random.default_rng(0)
    out = {"label": label, "file": clgemm.__file__, "rows": []}
    for n in (1400, 2048):
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        c = clgemm.matmul(a, b, rel_tol=1e-2)
        rt.user_queue.finish()
        row = {"n": n}
        for replay in sides:
            if replay is not None:
                plan_module.REPLAY = replay
            row[f"replay={replay}"] = chained(
                lambda: clgemm.matmul(a, b, C=c, rel_tol=1e-2), rt)
        if sides[0] is not None:
            plan_module.REPLAY = True
        walls = []
        for _ in range(7):
            t0 = time.perf_counter()
            clgemm.matmul(a, b, rel_tol=1e-2, return_info=True)
            walls.append(time.perf_counter() - t0)
        row["reported_us"] = 1e6 * float(np.median(walls))
        out["rows"].append(row)
        print(label, json.dumps(row), flush=True)
    if sides[0] is not None:
        plan_module.REPLAY = False
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(60):
        clgemm.matmul(a, b, C=c, rel_tol=1e-2)
    profile.disable()
    rt.user_queue.finish()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(18)
    out["profile"] = text.getvalue()
    kernel = cl.Program(rt.context, "__kernel void k(uint a, __global float* x){x[0]=a;}"
                        ).build().k
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 64)
    kernel.set_arg(1, buf)
    for name, set_one in (("set_arg(np.uint32)", lambda: kernel.set_arg(0, np.uint32(5))),
                          ("_set_arg_buf(bytes)",
                           lambda: kernel._set_arg_buf(0, np.uint32(5).tobytes())),
                          ("set_arg(buffer)", lambda: kernel.set_arg(1, buf))):
        t = time.perf_counter()
        for _ in range(20000):
            set_one()
        out[name] = (time.perf_counter() - t) / 20000 * 1e6
        print(label, name, round(out[name], 2), "us", flush=True)
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
