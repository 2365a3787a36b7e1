"""Issue 7's detection bar at n x n x n (default 3072) and the false positives of the judge's
Gaussian-tail branch (abft_kernels.GAUSS_*), in one process:

* detection: for every kind of campaign.KINDS, `products` clean products (the library's exact
  product, on the device table's exact lane where it has one, judged with that lane's floor)
  and, in each, `faults` single-element faults of 1.01e-5 max|C| at random cells,
  each checked on its own (check_views, as clgemm.abft.verify does); the clean check's T and
  largest |r| / scale beside it;
* false positives: check=True (matmul) on `deep` clean products of inner dimension 512-8191
  (campaign.deep_case: every kind, alpha/beta, transposes), where the branch can engage, and
  on clean_large's n x n x n products.

    python benchmarks/guard/gauss_tail.py OUT [n] [products] [faults] [deep]

Writes OUT/gauss-tail.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "/tmp/gauss-tail")
    n = int(argv[1]) if len(argv) > 1 else 3072
    products = int(argv[2]) if len(argv) > 2 else 2
    faults = int(argv[3]) if len(argv) > 3 else 25
    deep = int(argv[4]) if len(argv) > 4 else 400
    import clgemm
    from clgemm.guard import abft
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    rng = np.random.default_rng(2026)
    report: dict = {"device": rt.device.name, "n": n, "gauss_z": abft.AK.GAUSS_Z,
                    "kinds": {}, "t0": time.time()}
    out.mkdir(parents=True, exist_ok=True)
    for kind in campaign.KINDS:
        rows = []
        for _ in range(products):
            A, B = campaign.gen(rng, kind, (n, n)), campaign.gen(rng, kind, (n, n))
            C, info = clgemm.matmul(A, B, return_info=True)
            lane = info.extra.get("lane", "fp32")  # the exact lane's kernel where a table has one
            keep: list = []
            a = abft._as_view(rt, "A", A, False, keep)
            b = abft._as_view(rt, "B", B, False, keep)
            c_dev = abft.calibration_for(rt, lane, n)
            by_lane = lane != "fp32"  # judged as check=True judges it (centred rule)
            vc, s = abft.check_views(rt, a, b, abft._as_view(rt, "C", C, False, keep), 1.0,
                                     0.0, None, c_dev, locate_cells=False, centred=by_lane)
            fault = np.float32(1.01e-5 * float(np.abs(C).max()))
            seen = 0
            for _ in range(faults):
                i, j = int(rng.integers(n)), int(rng.integers(n))
                bad = C.copy()
                bad[i, j] += fault
                vf, _ = abft.check_views(rt, a, b, abft._as_view(rt, "C", bad, False, keep),
                                         1.0, 0.0, None, c_dev, locate_cells=False,
                                         centred=by_lane)
                seen += int(not vf.ok)
            rows.append({"lane": lane, "schedule": info.schedule, "clean_ok": vc.ok,
                         "threshold": vc.threshold,
                         "threshold_centred": vc.threshold_centred, "c_dev": c_dev,
                         "block": vc.block, "level_p75": abft.summary_level(s),
                         "clean_max_z": s["max_z"], "faults": faults, "detected": seen})
            print(kind, json.dumps(rows[-1]), flush=True)
        report["kinds"][kind] = {"products": rows,
                                 "detection": sum(r["detected"] for r in rows) / max(1, products * faults)}
        (out / "gauss-tail.json").write_text(json.dumps(report, indent=1))
    total = sum(r["detected"] for k in report["kinds"].values() for r in k["products"])
    report["detection_all"] = total / max(1, len(campaign.KINDS) * products * faults)
    report["clean_false_positives"] = sum(not r["clean_ok"] for k in report["kinds"].values()
                                          for r in k["products"])
    print("detection", report["detection_all"], flush=True)

    # false positives where the branch may engage: K from 512 up
    fps, ratios, t0 = [], [], time.perf_counter()
    for t in range(deep):
        A, B, C0, alpha, beta, ta, tb, kind = campaign.deep_case(rng, int(rng.integers(9, 13)))
        _, info = clgemm.matmul(A, B, C=C0, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb,
                                check=True, return_info=True)
        v = info.extra["abft"]
        ratios.append(v["max_ratio"])
        if v["detected"]:
            fps.append({"case": t, "kind": kind, "shape": v["shape"], "max_ratio": v["max_ratio"],
                        "threshold": v["threshold"],
                        "threshold_centred": v["threshold_centred"]})
    report["deep_clean"] = {"products": deep, "false_positives": len(fps), "cases": fps[:20],
                            "max_ratio": float(max(ratios)) if ratios else 0.0,
                            "seconds": time.perf_counter() - t0}
    print("deep clean", json.dumps(report["deep_clean"]), flush=True)
    report["clean_large"] = campaign.clean_large(n, count=12)
    print("clean large", report["clean_large"]["false_positives"],
          report["clean_large"]["max_ratio"], flush=True)
    (out / "gauss-tail.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
