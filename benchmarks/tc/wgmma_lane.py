"""The library's TF32 product (tc_product, mode "tf32") with the wgmma kernel against
the mma.sync kernel and cuBLAS (TF32 and fp32, PyTorch), one process, NN layout (B stored
K x N: the wgmma route transposes it into scratch, and that transpose is in the timing).

    source .carry/gpu-env.sh; PYTHONPATH=src CLGEMM_DEVICE=NVIDIA python3 benchmarks/tc/wgmma_lane.py OUT

Time per call: the device span between two markers around the call (every command the call
enqueues, and the gaps between them), median of 20 after 3 warm-ups. Writes OUT/wgmma-lane.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyopencl as cl


def main() -> None:
    import torch
    from timing import cublas_seconds, device_span

    from clgemm.lanes.probe import wgmma_support

    from clgemm.lanes.tc import schedule_for, tc_product

    from clgemm.lanes.wgmma import enqueue_wgmma
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgmma-lane"
    os.makedirs(out_dir, exist_ok=True)
    rt = get_runtime()
    report = {"device": rt.device.name, "wgmma": vars(wgmma_support(rt)), "sizes": []}
    print(report["wgmma"], flush=True)
    mf = cl.mem_flags

    def span(fn):
        return device_span(rt.queue, fn)

    cublas = cublas_seconds

    for n in (1400, 2048, 3072, 4096):
        rng = np.random.default_rng(n)
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, n, False)
        b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, n, False)
        c = Operand(cl.Buffer(rt.context, mf.READ_WRITE, 4 * n * n), 0, n, False)
        mma = schedule_for(rt, "tf32", n, n, n)
        ref = (torch.from_numpy(A).cuda().double() @ torch.from_numpy(B).cuda().double()).cpu().numpy()
        row = {"n": n, "mma_schedule": mma.key()}
        bt = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR,
                               hostbuf=np.ascontiguousarray(B.T)), 0, n, True)  # B stored N x K
        from clgemm.kernels.wgmma import DEFAULT, WgSchedule

        runs = (("wgmma", lambda: tc_product(rt, "tf32", n, n, n, 1.0, 0.0, a, b, c)),
                ("wgmma_nt", lambda: tc_product(rt, "tf32", n, n, n, 1.0, 0.0, a, bt, c)),
                ("wgmma_nt_1wg", lambda: enqueue_wgmma(rt, n, n, n, 1.0, 0.0, a, bt, c,
                                                          schedule=WgSchedule(warpgroups=1))),
                ("mma_sync", lambda: tc_product(rt, "tf32", n, n, n, 1.0, 0.0, a, b, c, mma)))
        for name, fn in runs:
            t = span(fn)
            kernel = []
            for _ in range(10):  # the product's own event: kernel time without the host's gaps
                ev = fn()
                ev.wait()
                kernel.append((ev.profile.end - ev.profile.start) * 1e-9)
            got = np.empty((n, n), np.float32)
            cl.enqueue_copy(rt.queue, got, c.buffer)
            k_s = float(np.median(kernel))
            row[name] = {"s": t, "tflops": 2.0 * n ** 3 / t / 1e12, "kernel_s": k_s,
                         "kernel_tflops": 2.0 * n ** 3 / k_s / 1e12,
                         "rel_err": float(np.linalg.norm(got - ref) / np.linalg.norm(ref))}
        row["default_schedule"] = DEFAULT.key()
        for name, tf32 in (("cublas_tf32", True), ("cublas_fp32", False)):
            t = cublas(n, tf32)
            row[name] = {"s": t, "tflops": 2.0 * n ** 3 / t / 1e12}
        row["cublas_tf32_again"] = {"tflops": 2.0 * n ** 3 / cublas(n, True) / 1e12}
        best_ct = max(row["cublas_tf32"]["tflops"], row["cublas_tf32_again"]["tflops"])
        row["wgmma_share_of_cublas_tf32"] = row["wgmma"]["tflops"] / best_ct
        report["sizes"].append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(out_dir, "wgmma-lane.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
