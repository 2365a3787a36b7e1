"""Host-side costs around the guard's device work at one size: a cProfile of check=True and of
the approximate calls (device arrays), and the small dense linear algebra of the low-rank path
(numpy/LAPACK at the sketch's sizes), to tell host time from device time.

    python benchmarks/guard/host_costs.py [N]      (OPENBLAS_NUM_THREADS changes the BLAS pool)
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

import numpy as np


def per_call_us(f, reps: int = 20) -> float:
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3072
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((n, 144))
    G = Y.T @ Y
    x = rng.standard_normal((n, 16))
    print(f"[host] OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(default)')}")
    for name, f in [("eigh 128", lambda: np.linalg.eigh(G[:128, :128])),
                    ("cholesky 144", lambda: np.linalg.cholesky(G)),
                    ("inv 128", lambda: np.linalg.inv(G[:128, :128])),
                    ("matmul 128x128 @ 128x16", lambda: G[:128, :128] @ G[:128, :16]),
                    ("norm 3072x16", lambda: np.linalg.norm(x)),
                    ("sum of squares 3072x16", lambda: np.square(x).sum())]:
        print(f"[host] {name}: {per_call_us(f):.0f} us", flush=True)
    if os.environ.get("HOST_LINALG_ONLY"):
        return
    import clgemm
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    A, B = campaign.lowrank_operands(rng, n, n // 32)
    dA, dB = clgemm.to_device(A, rt.device), clgemm.to_device(B, rt.device)
    dC = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    F = rng.standard_normal((n, n)).astype(np.float32)
    dF = clgemm.to_device(F, rt.device)
    cases = {"plain": (dA, dict()), "checked": (dA, dict(check=True)),
             "approx 1e-2": (dA, dict(rel_tol=1e-2)), "approx 1e-4": (dA, dict(rel_tol=1e-4)),
             "approx 1e-4 full rank": (dF, dict(rel_tol=1e-4))}
    order = os.environ.get("HOST_SORT", "cumulative")
    for name, (a, kw) in cases.items():
        for _ in range(2):
            clgemm.matmul(a, dB, C=dC, device=rt.device, **kw)
        rt.finish()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(5):
            clgemm.matmul(a, dB, C=dC, device=rt.device, **kw)
            rt.finish()
        pr.disable()
        print(f"==== {name} (5 calls)")
        pstats.Stats(pr).sort_stats(order).print_stats(28)


if __name__ == "__main__":
    main()
