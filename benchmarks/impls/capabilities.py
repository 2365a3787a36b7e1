"""What one OpenCL implementation offers clgemm, measured: device capabilities, the inline-PTX
and tensor-core probes, and each lane and guard tried on fresh random inputs against float64
(odd shapes, outputs poisoned with NaN). Writes one JSON file for the migration report.

    IMPL=intel; source benchmarks/impls/env.sh; python3 benchmarks/impls/capabilities.py -o caps.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import clgemm
from clgemm.device import get_device
from clgemm.errors import ClgemmError
from clgemm.runtime import get_runtime


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _try(name: str, call, m: int, n: int, k: int, rng, bound: float,
         served=lambda info: True) -> dict:
    """One product through `call(A, B, C)` against float64; C poisoned so an unwritten
    element shows. 'ok' needs every element written, the error within `bound` x numpy
    float32's on the same inputs, and `served(info)`: the lane or guard named really ran
    ('not served' otherwise: the call went elsewhere)."""
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    numpy_err = _rel((a @ b).astype(np.float64), ref)
    c = np.full((m, n), np.nan, np.float32)
    try:
        start = time.perf_counter()
        out, info = call(a, b, c)
        wall = time.perf_counter() - start
    except (ClgemmError, RuntimeError, ValueError) as exc:  # an absent lane says why
        return {"lane": name, "status": "error", "why": f"{type(exc).__name__}: {str(exc)[:300]}"}
    out = np.asarray(out)
    if not np.isfinite(out).all():
        return {"lane": name, "status": "wrong", "why": "non-finite or unwritten elements"}
    err = _rel(out.astype(np.float64), ref)
    ok = err <= bound * max(numpy_err, 1e-7)
    status = ("ok" if served(info) else "not served") if ok else "wrong"
    return {"lane": name, "status": status, "shape": [m, n, k],
            "rel_error": err, "numpy_rel_error": numpy_err, "wall_s": wall,
            "method": getattr(info, "method", None), "schedule": getattr(info, "schedule", None),
            "checked": getattr(info, "checked", None), "extra": _plain(getattr(info, "extra", {}))}


def _plain(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None)))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    info = get_device()
    rt = get_runtime(info)
    from clgemm.lanes.probe import tensorcore_support, wgmma_support
    from clgemm.select.table import load_table

    table = load_table(info)
    tc = tensorcore_support(rt)
    wg = wgmma_support(rt, 3)

    def mm(**kw):
        return lambda a, b, c: clgemm.matmul(a, b, C=c, return_info=True, **kw)

    lanes = [
        _try("float32 family (exact)", mm(), 301, 257, 263, rng, 2.0),
        _try("small-rows (gemv) lane", mm(), 3, 513, 701, rng, 2.0,
             lambda i: i.schedule.startswith("gemv")),
        _try("online selector", mm(selector="online"), 129, 131, 127, rng, 2.0),
        _try("ABFT guard (check=True)", mm(check=True), 257, 255, 253, rng, 2.0,
             lambda i: i.checked),
        _try("approximate (rel_tol=1e-2)", mm(rel_tol=1e-2), 512, 512, 512, rng, 1e6),
    ]
    caps = info.capabilities
    out = {
        "schema": "clgemm.impl-capabilities/1",
        "device": info.summary(),
        "table": {"source": table.source, "match": table.match,
                  "arms": [s.key() for s in table.candidates()]},
        "offers": {
            "fp64": caps.fp64, "subgroups": caps.subgroups, "fp16": caps.fp16,
            "local_mem_bytes": caps.local_mem_bytes,
            "inline_ptx": rt.probe_inline_ptx(),
            "tensor_cores": {"available": tc.available, "why": tc.reason},
            "wgmma_3xtf32": {"available": wg.available, "why": wg.reason},
            "abft_checksums": "float64" if caps.fp64 else "float32 (no cl_khr_fp64)",
        },
        "lanes": lanes,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    bad = [x["lane"] for x in lanes if x["status"] == "wrong"]
    print(f"{info.platform}: {info.name}: " + ", ".join(f"{x['lane']} {x['status']}" for x in lanes))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
