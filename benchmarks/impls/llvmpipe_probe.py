"""What bounds a GEMM kernel on a CPU OpenCL device (written for Rusticl on llvmpipe): the
multiply-add rate of registers alone, the rate of one work-item's loads from global and from
local memory (addresses differ between work-items, as a GEMM tile's rows do), the cost of a
work-group narrower than the SIMD width along dimension 0, and the worker threads (rerun with
LP_NUM_THREADS=1 to compare). Host wall clock over chained launches (Rusticl's event clock
reads ~1 ns), best of --repeats.

    RUSTICL_ENABLE=llvmpipe CLGEMM_DEVICE=rusticl PYTHONPATH=src \\
        python3 benchmarks/impls/llvmpipe_probe.py -o probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pyopencl as cl

from clgemm.runtime import get_runtime

CHAINS = 16  # independent multiply-add chains per work-item (latency hidden)

SOURCE = """
#define LOAD_RATE(NAME, TABLE, PROLOGUE) \\
__kernel void NAME(__global const float* restrict t, __global float* out, const int n) { \\
  PROLOGUE \\
  const int g = get_global_id(0); \\
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f; \\
  for (int i = 0; i < n; i++) { \\
    const int b = (g * 17 + i * 4) & 4092; \\
    s0 += TABLE[b]; s1 += TABLE[b + 1]; s2 += TABLE[b + 2]; s3 += TABLE[b + 3]; \\
  } \\
  out[g] = s0 + s1 + s2 + s3; \\
}

__kernel void fma_rate(__global float* out, const int n, const float x, const float y) {
  float a[CHAINS];
  for (int j = 0; j < CHAINS; j++) a[j] = get_global_id(0) * 1e-6f + j;
  for (int i = 0; i < n; i++) {
    #pragma unroll
    for (int j = 0; j < CHAINS; j++) a[j] = a[j] * x + y;
  }
  float s = 0.0f;
  for (int j = 0; j < CHAINS; j++) s += a[j];
  out[get_global_id(0)] = s;
}

/* 4 loads a step from a 16 KB table (cache resident): the load's cost, not memory's */
LOAD_RATE(global_load_rate, t, )
LOAD_RATE(local_load_rate, l,
  __local float l[4096];
  for (int i = get_local_id(0); i < 4096; i += get_local_size(0)) l[i] = t[i];
  barrier(CLK_LOCAL_MEM_FENCE);)
""".replace("CHAINS", str(CHAINS))


def best_seconds(queue, launch, repeats: int, chain: int) -> float:
    launch()  # warm-up (the driver may compile at the first launch)
    queue.finish()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(chain):
            launch()
        queue.finish()
        best = min(best, (time.perf_counter() - t0) / chain)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chain", type=int, default=3)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    rt = get_runtime()
    ctx, queue = rt.context, rt.queue
    prog = cl.Program(ctx, SOURCE).build(options="-cl-mad-enable")
    work = 8192
    out = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, 4 * work)
    table = cl.Buffer(ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                      hostbuf=np.random.default_rng(0).standard_normal(4096).astype(np.float32))
    result = {"schema": "clgemm.cpu-probe/1", "device": rt.device.name,
              "platform": rt.device.platform, "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"),
              "timer": "host wall clock over chained launches, best of repeats",
              "work_items": work}

    fma = prog.fma_rate
    n = 2048
    rates = {}
    for local in ((64, 1), (8, 8), (4, 16), (1, 64)):  # dimension 0 is the SIMD one
        def launch(local=local):
            return cl.enqueue_nd_range_kernel(queue, fma, (work // local[1], local[1]), local)
        fma.set_args(out, np.int32(n), np.float32(0.999999), np.float32(1e-7))
        s = best_seconds(queue, launch, args.repeats, args.chain)
        rates[f"{local[0]}x{local[1]}"] = 2.0 * work * n * CHAINS / s / 1e9
    result["fma_gflops_by_local_size"] = rates
    result["fma_gflops"] = max(rates.values())

    for name in ("global_load_rate", "local_load_rate"):
        kern = getattr(prog, name)
        n = 2048
        kern.set_args(table, out, np.int32(n))
        s = best_seconds(queue, lambda kern=kern: cl.enqueue_nd_range_kernel(
            queue, kern, (work,), (64,)), args.repeats, args.chain)
        result[name.replace("_rate", "s_per_s")] = 4.0 * work * n / s  # one work-item's loads
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
