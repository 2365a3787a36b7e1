"""The exact contract through `clgemm.matmul` on the H100, end to end: the promoted 3xTF32 lane
against the float32 family (CLGEMM_EXACT_LANE=fp32), interleaved call by call in one process:
device arrays and numpy arrays, wall time per call (queue drained), error against float64 on
fresh inputs.

    source .carry/gpu-env.sh && python3 benchmarks/tc/exact_lane_e2e.py $OUT/exact-lane.json
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

SIZES = (1400, 2048, 3072, 4096)


def measure() -> dict:
    """Both lanes interleaved in one process (CLGEMM_EXACT_LANE is read on every call)."""
    import clgemm

    lanes = {"table": None, "fp32": "fp32"}
    out = {lane: {"sizes": {}} for lane in lanes}
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))

    def use(lane):
        if lanes[lane]:
            os.environ["CLGEMM_EXACT_LANE"] = lanes[lane]
        else:
            os.environ.pop("CLGEMM_EXACT_LANE", None)

    import torch

    for n in SIZES:
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        ref = (torch.from_numpy(A).cuda().double() @ torch.from_numpy(B).cuda().double()).cpu().numpy()
        np_err = float(np.linalg.norm(A @ B - ref) / np.linalg.norm(ref))
        dA, dB = clgemm.to_device(A), clgemm.to_device(B)
        dC = clgemm.to_device(np.full((n, n), np.nan, np.float32))
        walls = {lane: [] for lane in lanes}
        host = {lane: [] for lane in lanes}
        infos = {}
        for lane in lanes:  # warm-up, builds
            use(lane)
            _, infos[lane] = clgemm.matmul(dA, dB, C=dC, return_info=True)
            clgemm.matmul(A, B)
        queue = dC.queue
        for _ in range(15):
            for lane in lanes:
                use(lane)
                queue.finish()
                t0 = time.perf_counter()
                clgemm.matmul(dA, dB, C=dC)
                queue.finish()
                walls[lane].append(time.perf_counter() - t0)
        for _ in range(5):
            for lane in lanes:
                use(lane)
                t0 = time.perf_counter()
                got = clgemm.matmul(A, B)
                host[lane].append(time.perf_counter() - t0)
                err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
                out[lane]["sizes"].setdefault(n, {"errors": []})["errors"].append(err)
        for lane in lanes:
            w = float(np.median(walls[lane]))
            info = infos[lane]
            e = out[lane]["sizes"][n]
            e.update({"schedule": info.schedule, "lane": info.extra.get("lane", "fp32"),
                      "kernel_s": info.kernel_s, "device_call_wall_s": w,
                      "device_call_tflops": 2 * n**3 / w / 1e12,
                      "host_call_wall_s": float(np.median(host[lane])),
                      "host_call_walls_s": host[lane],
                      "rel_error": max(e["errors"]), "numpy_rel_error": np_err,
                      "error_ratio": max(e["errors"]) / np_err})
            print(n, lane, json.dumps({k: v for k, v in e.items() if k not in ("errors", "host_call_walls_s")}), flush=True)
    return out


def main() -> None:
    with open(sys.argv[1], "w") as f:
        json.dump(measure(), f, indent=1)


if __name__ == "__main__":
    main()
