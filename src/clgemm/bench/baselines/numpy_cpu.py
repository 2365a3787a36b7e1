"""numpy float32 matmul on the host CPU (whatever BLAS numpy links)."""

from __future__ import annotations

import time

import numpy as np

from ..protocol import summarize_times


def presence() -> tuple[str, str | None]:
    return "present", None


def blas_name() -> str | None:
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.26
        return cfg.get("Build Dependencies", {}).get("blas", {}).get("name")
    except Exception:  # noqa: BLE001
        return None


def measure(case, inputs, protocol) -> list[dict]:
    m, n, k = case.shape
    sets = inputs.sets
    for i in range(protocol.warmup):
        a, b = sets[i % len(sets)]
        np.matmul(a, b)
    times, start = [], time.perf_counter()
    out = np.empty((m, n), np.float32)
    for r in range(protocol.repeats):
        a, b = sets[r % len(sets)]
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > protocol.max_measure_s:
            break
    c = np.full((m, n), np.nan, np.float32)
    np.matmul(sets[0][0], sets[0][1], out=c)
    return [{
        "method": "numpy_cpu", "family": "numpy", "shape": list(case.shape), "tag": case.tag,
        "status": "ok", "reason": None, "schedule": None,
        "timing": summarize_times(times, m, n, k, "wall"),
        "accuracy": inputs.accuracy(c),
        "note": f"host CPU, BLAS {blas_name()}; wall time of np.matmul into a preallocated output",
    }]
