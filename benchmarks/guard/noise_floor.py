"""How far a single-element fault of 1e-5 max|C| stands above float32 roundoff, per kind of
data and per checksum block: the limit any checksum over the product's own float32 result
runs into (issue 7's >= 99% detection of such faults at 3072).

    python benchmarks/guard/noise_floor.py OUT [N]

The float32 product is numpy's (OpenBLAS sgemm), a stand-in for the device kernel: both sum
in float32 with blocked K, so their roundoff has the same size, not the same values. For each
kind: the per-entry error e = C32 - C (float64 reference), its standard deviation, the fault
f = 1e-5 max|C|, and for column checksums over blocks of b rows the noise std of the block
sums of e and the fault's z = f / that std. A checksum test over b rows can only flag the
fault reliably when z stands well above the largest noise z over all blocks of the product
(about 4.5 for 10^5 Gaussian block sums): the last column shows that margin.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/noise-floor")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    kinds = {
        "normal": lambda: rng.standard_normal((n, n)),
        "uniform": lambda: rng.random((n, n)),  # non-negative: partial sums grow like k
    }
    report = {"n": n, "float32_product": "numpy (OpenBLAS sgemm)", "kinds": {}}
    for kind, draw in kinds.items():
        A = draw().astype(np.float32)
        B = draw().astype(np.float32)
        exact = A.astype(np.float64) @ B.astype(np.float64)
        err = (A @ B).astype(np.float64) - exact
        fault = 1e-5 * float(np.abs(exact).max())
        entry_std = float(err.std())
        rows = {}
        for b in (1, 8, 32, 64, 128):
            sums = err[: n - n % b].reshape(-1, b, n).sum(axis=1)  # column sums per block
            std = float(sums.std())
            blocks = sums.size
            # the largest of `blocks` Gaussian noise values, in stds (a tail bound)
            top = math.sqrt(2.0 * math.log(blocks))
            rows[str(b)] = {"block_sum_std": std, "fault_z": fault / std,
                            "largest_noise_z": float(np.abs(sums).max() / std),
                            "gaussian_max_z": top, "margin": fault / std / top}
        report["kinds"][kind] = {"max_abs_c": float(np.abs(exact).max()), "fault": fault,
                                 "entry_error_std": entry_std, "fault_over_entry_std":
                                 fault / entry_std, "blocks": rows}
        print(kind, f"max|C| {np.abs(exact).max():.4g}  fault {fault:.3g}  entry error std "
              f"{entry_std:.3g} (fault = {fault / entry_std:.1f} stds)", flush=True)
        for b, r in rows.items():
            print(f"   block {b:>3}: fault z {r['fault_z']:7.2f}  largest noise z "
                  f"{r['largest_noise_z']:5.2f}  margin {r['margin']:.2f}", flush=True)
    (out / "noise-floor.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
