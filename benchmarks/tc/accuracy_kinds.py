"""Is 3xTF32 float32-level on every kind of data? The relative Frobenius error of the wgmma and
mma.sync 3xTF32 kernels and of the float32 family against float64, over every kind of
guard/campaign.KINDS (non-negative, constant, integer, scaled, heavy-tailed ...), as a ratio to
numpy float32's error on the same inputs (the issue's bar: at most 2). The ABFT residuals of the
wgmma lane ran 13x the float32 family's on uniform data (records/nvidia-h200/2026-12-02-guard-gauss3-lane):
this says whether its error does too.

    source .carry/gpu-env.sh; PYTHONPATH=src CLGEMM_DEVICE=NVIDIA python3 benchmarks/tc/accuracy_kinds.py OUT [n ...]

Methods the device does not offer are recorded absent. Writes OUT/accuracy-kinds.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyopencl as cl
from timing import poisoned_result


def reference(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B in float64 (on the GPU through PyTorch where it is installed)."""
    try:
        import torch

        if torch.cuda.is_available():
            return (torch.from_numpy(A).cuda().double() @ torch.from_numpy(B).cuda().double()).cpu().numpy()
    except ImportError:
        pass
    return A.astype(np.float64) @ B.astype(np.float64)


def main() -> None:
    from clgemm.lanes.probe import tensorcore_available, wgmma_support
    from clgemm.lanes.tc import schedule_for, tc_product, wgmma_3x_schedule
    from clgemm.lanes.fp32 import choose_schedule
    from clgemm.lab import guard_campaign as campaign
    from clgemm.lanes.fp32 import get_kernel, layout_for
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/accuracy-kinds"
    sizes = [int(x) for x in sys.argv[2:]] or [1400, 3072]
    os.makedirs(out, exist_ok=True)
    rt = get_runtime()
    has_tc = tensorcore_available(rt)
    has_wg = has_tc and wgmma_support(rt, 3).available
    rng = np.random.default_rng(77)
    rows = []
    for n in sizes:
        for kind in campaign.KINDS:
            A, B = campaign.gen(rng, kind, (n, n)), campaign.gen(rng, kind, (n, n))
            ref = reference(A, B)
            norm = np.linalg.norm(ref)
            if norm == 0 or not np.isfinite(norm):
                continue
            np_err = float(np.linalg.norm(A @ B - ref) / norm)
            row = {"n": n, "kind": kind, "numpy_err": np_err}

            def ratio(out_):
                err = float(np.linalg.norm(out_.astype(np.float64) - ref) / norm)
                return {"rel_err": err, "over_numpy": err / np_err if np_err > 0 else None}

            mf = cl.mem_flags
            a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, n, False)
            b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, n, False)
            c = Operand(cl.Buffer(rt.context, mf.READ_WRITE, 4 * n * n), 0, n, False)
            fp32 = choose_schedule(rt, n, n, n)
            row["fp32_family"] = ratio(poisoned_result(
                rt.queue, c.buffer, n,
                lambda: get_kernel(rt, fp32, layout_for(fp32, a, b, c)).enqueue(
                    n, n, n, 1.0, 0.0, a, b, c)))
            for name, schedule, offered in (
                    ("mma_sync_3xtf32", schedule_for(rt, "3xtf32", n, n, n) if has_tc else None, has_tc),
                    ("wgmma_3xtf32", wgmma_3x_schedule(rt, n, n), has_wg)):
                if not offered:
                    row[name] = {"status": "absent"}
                    continue
                got = poisoned_result(rt.queue, c.buffer, n, lambda s=schedule: tc_product(
                    rt, "3xtf32", n, n, n, 1.0, 0.0, a, b, c, s))
                row[name] = dict(ratio(got), schedule=schedule.key())
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(out, "accuracy-kinds.json"), "w") as f:
        json.dump({"device": rt.device.name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
