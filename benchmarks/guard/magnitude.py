"""Faults in data of extreme magnitude: `clgemm.abft.verify` on products of normal entries
times SCALE (20 random shapes, K 600-8000), one fault of 1e-3 max|C| each; a clean check of
every product first (it must pass).

    python benchmarks/guard/magnitude.py OUT.json [SCALE ...]     (default 1e15 1e17 1e-15 1)
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    import clgemm
    import clgemm.abft
    from clgemm.runtime import get_runtime

    out = argv[0] if argv else "/tmp/magnitude.json"
    scales = [float(x) for x in argv[1:]] or [1e15, 1e17, 1e-15, 1.0]
    report: dict = {"device": get_runtime().device.name, "scales": {}}
    for scale in scales:
        rng = np.random.default_rng(5)
        missed = clean_flagged = 0
        for _ in range(20):
            m, n, k = (int(x) for x in rng.integers([2, 2, 600], [200, 200, 8000]))
            A = (rng.standard_normal((m, k)) * scale).astype(np.float32)
            B = (rng.standard_normal((k, n)) * scale).astype(np.float32)
            C = clgemm.matmul(A, B)
            clean_flagged += not clgemm.abft.verify(A, B, C).ok
            bad = C.copy()
            bad[rng.integers(m), rng.integers(n)] += np.float32(1e-3 * np.abs(C).max())
            missed += clgemm.abft.verify(A, B, bad).ok
        report["scales"][f"{scale:g}"] = {"products": 20, "faults_missed": missed,
                                          "clean_flagged": clean_flagged}
        print(f"{scale:g}", report["scales"][f"{scale:g}"], flush=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
