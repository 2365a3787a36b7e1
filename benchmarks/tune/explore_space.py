"""First look at the H100: record a uniform sample of the schedule space at 2048, then check
and time the best schedules at the KPI sizes beside cuBLAS (PyTorch).

Run on the GPU machine:  source .carry/gpu-env.sh && python3 benchmarks/tune/explore_space.py
Writes under $OUT: space-2048.json (the recorded space), explore.json (top schedules), log.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from clgemm.lanes.fp32 import search_space
from clgemm.runtime import get_runtime
from clgemm.tune.measure import Bench, Problem
from clgemm.tune.record import record_space, sample_valid

OUT = Path(os.environ.get("OUT", "out"))
COUNT = int(os.environ.get("EXPLORE_COUNT", "2500"))
DEADLINE = float(os.environ.get("EXPLORE_DEADLINE_S", "330"))


def cublas_tflops(n: int) -> dict:
    try:
        import torch
    except ImportError:
        return {"absent": "torch not importable"}
    out = {}
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        ts = []
        for _ in range(15):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); a @ b; e.record(); torch.cuda.synchronize()
            ts.append(s.elapsed_time(e) * 1e-3)
        out["tf32" if tf32 else "fp32"] = 2 * n**3 / float(np.median(ts)) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def main() -> int:
    rt = get_runtime()
    print("device:", rt.device.name, rt.device.driver_version, file=sys.stderr)
    space = search_space(rt)
    schedules = sample_valid(space, COUNT, seed=2048)
    print(f"space: {space.size()} points, sampled {len(schedules)} valid", file=sys.stderr)
    problem = Problem(2048, 2048, 2048)
    data = record_space(problem, schedules, OUT / "space-2048.json", deadline_s=DEADLINE,
                        repeats=5)
    ok = sorted((r for r in data["records"] if r["time_s"]), key=lambda r: r["time_s"])
    fails = {}
    for r in data["records"]:
        if r["error"]:
            kind = r["error"].split(":")[0]
            fails[kind] = fails.get(kind, 0) + 1
    print(f"recorded {len(data['records'])}, ok {len(ok)}, failures {fails}", file=sys.stderr)
    top = [r["schedule"] for r in ok[:6]]
    from clgemm import Schedule

    results = {"top": [], "cublas": {}, "failures": fails}
    for n in (1400, 2048, 3072):
        results["cublas"][n] = cublas_tflops(n)
    for sd in top:
        s = Schedule.from_dict(sd)
        row = {"schedule": s.key(), "tflops": {}}
        for n in (1400, 2048, 3072):
            b = Bench(rt, Problem(n, n, n), repeats=10)
            m = b.measure(s)
            row["tflops"][n] = (b.problem.flops / m.time_s / 1e12) if m.ok else m.error
        # correctness at odd shapes and transposes through the public API
        import clgemm
        rng = np.random.default_rng()
        worst = 0.0
        for (mm, nn, kk, ta, tb) in [(1000, 1400, 777, False, False), (129, 4097, 65, True, False),
                                     (1401, 7, 999, False, True), (333, 555, 1400, True, True)]:
            A = rng.standard_normal((kk, mm) if ta else (mm, kk)).astype(np.float32)
            B = rng.standard_normal((nn, kk) if tb else (kk, nn)).astype(np.float32)
            C = clgemm.matmul(A, B, trans_a=ta, trans_b=tb, schedule=s, C=np.full((mm, nn), np.nan, np.float32))
            a64 = (A.T if ta else A).astype(np.float64); b64 = (B.T if tb else B).astype(np.float64)
            ref = a64 @ b64
            f32 = (A.T if ta else A) @ (B.T if tb else B)
            ratio = np.linalg.norm(C - ref) / np.linalg.norm(f32 - ref)
            worst = max(worst, float(ratio) if np.isfinite(C).all() else float("inf"))
        row["worst_error_ratio_vs_numpy"] = worst
        results["top"].append(row)
        print(json.dumps(row), file=sys.stderr)
    print("cublas:", results["cublas"], file=sys.stderr)
    (OUT / "explore.json").write_text(json.dumps(results, indent=1))
    # PTX + resource usage of the best kernel, for reading registers and spills.
    if top:
        from clgemm.lanes.fp32 import get_kernel
        s = Schedule.from_dict(top[0])
        k = get_kernel(rt, s, Problem(2048, 2048, 2048).layout(s))
        import pyopencl as cl
        raw = cl.Program(rt.context, k.source).build()
        (OUT / "best.ptx").write_bytes(raw.binaries[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
