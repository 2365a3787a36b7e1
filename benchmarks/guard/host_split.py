"""Where the host time of check=True goes at one size (device arrays): the wall of the plain
and the checked call timed in turn, for each way of reading the summary (a blocking read, or
an enqueued read waited for as the plain call waits for its kernel), and the moments the
checked call reaches each step before its product is enqueued. Writes host_split.json.

    python benchmarks/guard/host_split.py OUT [N]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else ".")
    n = int(argv[1]) if len(argv) > 1 else 3072
    import pyopencl as cl

    import clgemm
    from clgemm.guard import abft
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    rng = np.random.default_rng(3)
    A = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    B = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    C = clgemm.to_device(np.zeros((n, n), np.float32), rt.device)

    def plain():
        clgemm.matmul(A, B, C=C, device=rt.device, return_info=True)

    def checked():
        clgemm.matmul(A, B, C=C, check=True, device=rt.device, return_info=True)

    result: dict = {"n": n, "device": rt.device.name}
    for mode in (False, True, False, True):
        abft.READ_BY_EVENT = mode
        t_plain, t_check = campaign._interleaved_walls((plain, checked), 30, rt)
        key = "read_by_event" if mode else "blocking_read"
        result.setdefault(key, []).append({"plain_us": t_plain * 1e6, "checked_us": t_check * 1e6,
                                           "overhead": (t_check - t_plain) / t_plain})
        print(key, result[key][-1], flush=True)
    abft.READ_BY_EVENT = False

    # Moments, from the call, at which the checked call enters each step (median of 30).
    marks: list = []
    wrapped = {}
    import clgemm.guard.abft as G
    import clgemm.operands as O

    def probe(mod, name):
        fn = getattr(mod, name)
        wrapped[(mod, name)] = fn

        def inner(*a, **k):
            marks.append((name, time.perf_counter()))
            return fn(*a, **k)
        setattr(mod, name, inner)

    for mod, name in ((G, "checked_matmul"), (O, "run_product"), (G, "checked_core"),
                      (G, "guard_device"), (G, "calibration_for"), (G, "block_check"),
                      (G, "_enqueue_product"), (G, "_launch")):
        probe(mod, name)
    orig_nd, orig_copy, orig_marker = (cl.enqueue_nd_range_kernel, cl.enqueue_copy,
                                       cl.enqueue_marker)

    def nd(q, k, *a, **kw):
        marks.append(("enqueue:" + k.function_name, time.perf_counter()))
        return orig_nd(q, k, *a, **kw)

    def cp(*a, **kw):
        marks.append(("copy", time.perf_counter()))
        r = orig_copy(*a, **kw)
        marks.append(("copy returned", time.perf_counter()))
        return r

    def mk(*a, **kw):
        marks.append(("marker", time.perf_counter()))
        return orig_marker(*a, **kw)

    cl.enqueue_nd_range_kernel, cl.enqueue_copy, cl.enqueue_marker = nd, cp, mk
    rows = []
    for _ in range(40):
        marks.clear()
        rt.finish()
        t0 = time.perf_counter()
        checked()
        t1 = time.perf_counter()
        rows.append([(name, (t - t0) * 1e6) for name, t in marks] + [("return", (t1 - t0) * 1e6)])
    cl.enqueue_nd_range_kernel, cl.enqueue_copy, cl.enqueue_marker = orig_nd, orig_copy, orig_marker
    for (mod, name), fn in wrapped.items():
        setattr(mod, name, fn)
    steps = [name for name, _ in rows[-1]]
    med = np.median(np.array([[t for _, t in r] for r in rows[10:] if len(r) == len(steps)]),
                    axis=0)
    result["checked_steps_us"] = [[s, float(t)] for s, t in zip(steps, med)]
    for s, t in result["checked_steps_us"]:
        print(f"  {t:8.1f} us  {s}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "host_split.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
