"""Extra 3xTF32 wgmma schedules at the KPI sizes beside the route's choice and the mma.sync
lane, one process, NN layout, call spans (benchmarks/tc/timing.py): which tile fills 2048.

    source .carry/gpu-env.sh; PYTHONPATH=src CLGEMM_DEVICE=NVIDIA python3 benchmarks/tc/wgmma_3x_probe.py OUT
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyopencl as cl
from timing import device_span, poisoned_result


def main() -> None:
    from clgemm.lanes.tc import schedule_for, tc_product, wgmma_3x_schedule
    from clgemm.kernels.wgmma import WgSchedule
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgmma-3x-probe"
    os.makedirs(out, exist_ok=True)
    rt = get_runtime()
    z = dict(in_flight=0, splits=3, swizzle=64, block_k=16)
    extra = [WgSchedule(block_m=64, block_n=64, stages=2, warpgroups=1, **z),
             WgSchedule(block_m=64, block_n=64, stages=3, warpgroups=1, **z),
             WgSchedule(block_m=128, block_n=64, stages=2, warpgroups=1, **z)]
    rows = []
    for n in (1400, 2048, 3072):
        rng = np.random.default_rng(n)
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        mf = cl.mem_flags
        a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, n, False)
        b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, n, False)
        c = Operand(cl.Buffer(rt.context, mf.READ_WRITE, 4 * n * n), 0, n, False)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        for s in [schedule_for(rt, "3xtf32", n, n, n), wgmma_3x_schedule(rt, n, n)] + extra:
            try:
                fn = lambda s=s: tc_product(rt, "3xtf32", n, n, n, 1.0, 0.0, a, b, c, s)  # noqa: E731
                got = poisoned_result(rt.queue, c.buffer, n, fn)
                t = device_span(rt.queue, fn)
                row = {"n": n, "schedule": s.key(), "tflops": 2.0 * n ** 3 / t / 1e12,
                       "rel_err": float(np.linalg.norm(got - ref) / np.linalg.norm(ref))}
            except Exception as exc:  # noqa: BLE001 - a failing candidate is data
                row = {"n": n, "schedule": s.key(), "error": f"{type(exc).__name__}: {exc}"[:300]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(out, "wgmma-3x-probe.json"), "w") as f:
        json.dump({"device": rt.device.name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
