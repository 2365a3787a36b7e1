"""Why a fault of 1e-5 max|C| is or is not seen at n: for each kind of data, the threshold T
of a clean n x n x n product, its largest |r| / scale, and the |r| / scale of the block-column
that a fault of 1e-5 max|C| lands in (the fault's z). Writes fault_margin.json into OUT.

    python benchmarks/guard/fault_margin.py OUT [n]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else ".")
    n = int(argv[1]) if len(argv) > 1 else 3072
    import clgemm
    from clgemm.guard import abft
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    rng = np.random.default_rng(31)
    rows = []
    for kind in ("normal", "uniform", "rowscaled", "lowrank"):
        for _ in range(3):
            A, B = campaign.gen(rng, kind, (n, n)), campaign.gen(rng, kind, (n, n))
            C = clgemm.matmul(A, B)
            keep: list = []
            a = abft._as_view(rt, "A", A, False, keep)
            b = abft._as_view(rt, "B", B, False, keep)
            lane = "fp32"
            c_dev = abft.calibration_for(rt, lane, n)
            vc, s = abft.check_views(rt, a, b, abft._as_view(rt, "C", C, False, keep), 1.0,
                                     0.0, None, c_dev, locate_cells=False)
            i, j = int(rng.integers(n)), int(rng.integers(n))
            bad = C.copy()
            bad[i, j] += np.float32(1.01e-5 * float(np.abs(C).max()))
            vf, sf = abft.check_views(rt, a, b, abft._as_view(rt, "C", bad, False, keep), 1.0,
                                      0.0, None, c_dev, locate_cells=False)
            rows.append({"kind": kind, "n": n, "c_dev": c_dev, "block": vc.block,
                         "threshold": vc.threshold, "level_p75": abft.summary_level(s),
                         "clean_max_z": s["max_z"], "clean_max_ratio": vc.max_ratio,
                         "fault_max_z": sf["max_z"], "fault_max_ratio": vf.max_ratio,
                         "fault_detected": not vf.ok})
            print(json.dumps(rows[-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fault_margin.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
