"""Time the guard's skinny-product plans (schedule x K slices) on the device, for the shapes
of the low-rank path at n; report the model's choice next to the measured best, and write a
pin file (guard/data/skinny-<device>.json format) with the measured best per class.

    python benchmarks/guard/skinny_sweep.py OUT [n]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv):
    out = Path(argv[0] if argv else ".")
    n = int(argv[1]) if len(argv) > 1 else 3072
    out.mkdir(parents=True, exist_ok=True)
    import pyopencl.array as cla

    from clgemm.lanes import splitk
    from clgemm.approx.lowrank import Products
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    P = Products.of(rt)
    rng = np.random.default_rng(0)
    # (m, n, k, ta, tb): sketches A(BΩ), projections Q^T Y / Grams, Q^T A, W = (Q^T A) B
    shapes = [(n, 16, n, 0, 0), (n, 32, n, 0, 0), (n, 64, n, 0, 0), (n, 96, n, 0, 0),
              (96, 32, n, 0, 0), (32, 32, n, 1, 0), (96, n, n, 0, 0)]
    rows, pins = [], {}
    for (m, nn, k, ta, tb) in shapes:
        A = cla.to_device(rt.queue, rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32))
        B = cla.to_device(rt.queue, rng.standard_normal((k, nn)).astype(np.float32))
        ref = (A.get().T if ta else A.get()).astype(np.float64) @ B.get().astype(np.float64)
        model = splitk.plan(rt, m, nn, k, P._schedule(m, nn, k))
        res = []
        for s, _tf in splitk.candidates(rt, P._schedule(m, nn, k)):
            for sl in (1, 2, 4, 8, 16, 32):
                if sl > max(1, k // splitk.MIN_SLICE):
                    continue
                P._plans[(m, nn, k, True)] = splitk.Plan(s, sl)
                try:
                    C = P.mm(A, B, ta=bool(ta))
                    rt.queue.finish()
                    err = float(np.abs(C.get() - ref).max() / np.abs(ref).max())
                    ts = []
                    for _ in range(7):
                        t = time.perf_counter()
                        P.mm(A, B, ta=bool(ta), C=C)
                        rt.queue.finish()
                        ts.append(time.perf_counter() - t)
                    res.append((float(np.median(ts)), s.key(), sl, err))
                except Exception as exc:  # noqa: BLE001
                    res.append((float("inf"), s.key(), sl, repr(exc)[:80]))
        P._plans.pop((m, nn, k, True), None)
        res.sort(key=lambda r: r[0])
        best = res[0]
        mt = [r for r in res if r[1] == model.schedule.key() and r[2] == model.slices]
        flops = 2.0 * m * nn * k
        row = {"shape": [m, nn, k, ta, tb], "class": splitk.skinny_class(m, nn, k),
               "best": {"s": best[0], "tflops": flops / best[0] / 1e12, "schedule": best[1],
                        "slices": best[2], "err": best[3]},
               "model": {"schedule": model.schedule.key(), "slices": model.slices,
                         "s": mt[0][0] if mt else None},
               "all": res[:40]}
        rows.append(row)
        ok = all(isinstance(r[3], float) and r[3] < 1e-4 for r in res if r[0] < float("inf"))
        if best[0] < float("inf") and isinstance(best[3], float) and best[3] < 1e-4:
            pins[row["class"]] = {"schedule": best[1], "slices": best[2]}
        print(f"[skinny] {m}x{nn}x{k} ta={ta}: best {best[0]*1e6:.0f} us "
              f"({flops / best[0] / 1e12:.1f} TF) {best[1]} s{best[2]}; model "
              f"{model.schedule.key()} s{model.slices} "
              f"{(mt[0][0]*1e6 if mt else float('nan')):.0f} us; all-correct={ok}", flush=True)
    data = {"schema": "clgemm.guard-skinny/1", "device": rt.device.name, "n": n, "rows": rows}
    (out / "skinny.json").write_text(json.dumps(data, indent=1))
    pin = {"schema": "clgemm.guard-skinny-pins/1", "device": rt.device.name,
           "source": "benchmarks/guard/skinny_sweep.py (median of 7, wall incl. launch)",
           "entries": pins}
    (out / "skinny-pins.json").write_text(json.dumps(pin, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
