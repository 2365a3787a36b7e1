"""Products through the public call (device arrays, output allocated by the call, best of 5
after a warm-up) beside numpy in the same process, for the clgemm found first on sys.path.
Run once per tree, alternating (run_ab.sh): one JSON line per product."""
import json
import sys
import time

import numpy as np

import clgemm
from clgemm.runtime import get_runtime

SHAPES = [  # (m, n, k, trans_b): LLaMA-7B and TinyLlama prefill, BERT, ResNet fc, KPI squares
    (512, 4096, 4096, True), (512, 11008, 4096, True), (512, 4096, 11008, True),
    (512, 32000, 4096, True), (512, 5632, 2048, True), (1024, 768, 768, True),
    (1024, 2304, 768, True), (1024, 3072, 768, True), (32, 1000, 2048, True),
    (64, 4096, 1024, True), (1400, 1400, 1400, False), (2048, 2048, 2048, False),
    (25088, 128, 1152, False), (2048, 1024, 4096, False),
]


def best(f, sync, reps=5):
    f()
    sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    q = get_runtime().user_queue
    rng = np.random.default_rng(0)
    for m, n, k, tb in SHAPES:
        A = rng.standard_normal((m, k)).astype(np.float32)
        W = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        a, w = clgemm.to_device(A), clgemm.to_device(W)
        ours = best(lambda: clgemm.matmul(a, w, trans_b=tb), q.finish)
        ref = best(lambda: A @ (W.T if tb else W), lambda: None, 3)
        print(json.dumps({"tree": sys.argv[1], "shape": [m, n, k], "trans_b": tb,
                          "clgemm_s": ours, "numpy_s": ref, "ratio": ours / ref}), flush=True)


main()
