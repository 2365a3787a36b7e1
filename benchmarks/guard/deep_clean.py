"""False positives of check=True on clean products of inner dimension 512-8191 (campaign.deep_case:
every kind of data, alpha/beta, transposes), where the judge's Gaussian-tail branch may engage.

    python benchmarks/guard/deep_clean.py OUT [seeds] [per_seed] [--float-branch] [--mid|--big]

`--float-branch` turns the branch on where the check's sums are float (abft.GAUSS_ON_FLOAT_SUMS;
off by default since 2026-12-02), for the A/B on a device without cl_khr_fp64. `--mid`: m and n
log-uniform in [384, 2048], K in [512, 4096] instead (blocks of 8-128 rows, where the branch
may engage with blocks of 32 rows and more); `--big`: m and n in [1024, 3072] (blocks of 32 and
128 rows: where the branch engages since it needs 128-row blocks). Writes
OUT/deep-clean.json: per seed the flagged products (kind, shape, first max ratio, T, T_c).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    args = [a for a in argv if not a.startswith("--")]
    out = Path(args[0] if args else "/tmp/deep-clean")
    seeds = int(args[1]) if len(args) > 1 else 10
    per_seed = int(args[2]) if len(args) > 2 else 300
    import clgemm
    from clgemm.guard import abft
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    abft.GAUSS_ON_FLOAT_SUMS = "--float-branch" in flags
    rt = get_runtime()
    mid = "--mid" in flags or "--big" in flags
    lo, hi = (1024, 3072) if "--big" in flags else (384, 2048)
    report: dict = {"device": rt.device.name, "mid": mid,
                    "m_n_range": [lo, hi] if mid else None,
                    "float_branch": abft.GAUSS_ON_FLOAT_SUMS, "centred_mode": abft.CENTRED_MODE,
                    "gauss_min_block": abft.GAUSS_MIN_BLOCK, "per_seed": per_seed,
                    "seeds": {}, "t0": time.time()}
    total, flagged = 0, 0
    for seed in range(1, seeds + 1):
        rng = np.random.default_rng(seed)
        hits = []
        for t in range(per_seed):
            if mid:
                A, B, C0, alpha, beta, ta, tb, kind = campaign.sized_case(rng, lo, hi)
            else:
                A, B, C0, alpha, beta, ta, tb, kind = campaign.deep_case(
                    rng, int(rng.integers(9, 13)))
            try:
                _, info = clgemm.matmul(A, B, C=C0, alpha=alpha, beta=beta, trans_a=ta,
                                        trans_b=tb, check=True, return_info=True)
            except clgemm.FaultError as exc:  # a clean product refused: the worst outcome
                hits.append({"case": t, "kind": kind, "shape": [A.shape, B.shape],
                             "fault_error": str(exc)})
                continue
            v = info.extra["abft"]
            if v["detected"]:
                hits.append({"case": t, "kind": kind, "shape": list(v["shape"]),
                             "block": v["block"],
                             "first_max_ratio": v["first"]["max_ratio"],
                             "threshold": v["threshold"],
                             "threshold_centred": v["threshold_centred"]})
        total += per_seed
        flagged += len(hits)
        report["seeds"][seed] = hits
        print(seed, len(hits), json.dumps(hits), flush=True)
    report["products"], report["false_positives"] = total, flagged
    out.mkdir(parents=True, exist_ok=True)
    (out / "deep-clean.json").write_text(json.dumps(report, indent=1))
    print("false positives", flagged, "of", total)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
