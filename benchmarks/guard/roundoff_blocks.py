"""Roundoff of block-column sums of a float32 product (numpy's sgemm, blocked accumulation)
against a single fault of 1e-5 of the largest entry, at one size: how many standard
deviations of the summed roundoff such a fault stands at, per block height.

    python benchmarks/guard/roundoff_blocks.py OUT [N]     (CPU only; writes OUT/roundoff-blocks.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    err = (A @ B).astype(np.float64) - exact
    fault = 1e-5 * float(np.abs(exact).max())
    rows = []
    for bs in (8, 16, 32, 64, 128, 256):
        sums = err[: n // bs * bs].reshape(n // bs, bs, n).sum(axis=1)
        rows.append({"block_rows": bs, "sum_roundoff_std": float(sums.std()),
                     "sum_roundoff_max": float(np.abs(sums).max()),
                     "fault_over_std": fault / float(sums.std())})
    res = {"n": n, "gemm": "numpy float32 (OpenBLAS sgemm)", "fault_1e-5_of_max": fault,
           "entry_roundoff_std": float(err.std()), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "roundoff-blocks.json").write_text(json.dumps(res, indent=1))
    for r in rows:
        print(f"{r['block_rows']:4d} rows: roundoff std {r['sum_roundoff_std']:.3g}, "
              f"fault / std {r['fault_over_std']:.1f}")


if __name__ == "__main__":
    main()
