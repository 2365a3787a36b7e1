"""The Ozaki lane's host time a product (one K chunk: its scale, split and product kernels,
some 40 scalar arguments), kernel enqueues stubbed out, on this machine's device with the
emulated dialect (plain OpenCL C for the PTX): what the lane's Python and pyopencl's argument
setting cost before a driver's enqueue is added. Run with PYTHONPATH at another tree to
compare (c4f7f8e set the kernels' scalar types once; before it every scalar went through
Kernel.set_arg).

    python3 benchmarks/plan/ozaki_host.py LABEL [--calls N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pyopencl as cl

from clgemm.kernels.ozaki import OzDialect
from clgemm.lanes import ozaki
from clgemm.operands import Operand
from clgemm.runtime import get_runtime

EMULATED = OzDialect(emulate=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("label")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rt = get_runtime()
    m = n = k = 256
    rng = np.random.default_rng(0)

    def device(x: np.ndarray) -> "cl.Buffer":
        return cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                         hostbuf=x)

    a = Operand(device(rng.standard_normal((m, k), np.float32)), 0, k, False)
    b = Operand(device(rng.standard_normal((k, n), np.float32)), 0, n, False)
    c = Operand(device(np.zeros((m, n), np.float32)), 0, n, False)
    for _ in range(3):  # kernels built, workspace made
        ozaki.enqueue_product(rt, m, n, k, 1.0, 0.0, a, b, c, dialect=EMULATED)
    rt.queue.finish()
    enqueue = cl.enqueue_nd_range_kernel
    cl.enqueue_nd_range_kernel = lambda *a, **k: None
    try:
        per_call = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(args.calls):
                ozaki.enqueue_product(rt, m, n, k, 1.0, 0.0, a, b, c, dialect=EMULATED)
            per_call.append((time.perf_counter() - t) / args.calls)
    finally:
        cl.enqueue_nd_range_kernel = enqueue
    row = {"label": args.label, "device": rt.device.name, "m": m, "n": n, "k": k,
           "calls": args.calls, "rounds_us": [1e6 * x for x in per_call],
           "median_us": 1e6 * statistics.median(per_call)}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
