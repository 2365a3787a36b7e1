"""Synthetic artifacts of the metrics schema (for the gate and report tests), and a check that
they are themselves valid."""

from __future__ import annotations

import copy

from clgemm.bench.metrics import SCHEMA_VERSION, validation_errors
from clgemm.bench.protocol import cv, summarize_times


def make_entry(shape, gflops, method="clgemm", session_cv=0.01, ratio=1.0, cold=1.0, warm=0.01,
               lines=200, sessions=3, written=True):
    m, n, k = shape
    t = 2.0 * m * n * k / (gflops * 1e9)
    peaks = [gflops * (1 + session_cv * d) for d in (-1.2247, 0.0, 1.2247)][:sessions]
    np_err = 1e-7
    return {
        "method": method, "family": "clgemm", "shape": list(shape), "tag": "kpi", "status": "ok",
        "reason": None, "schedule": "wm8-wn8-om4-on4-tk16-va4-vb4-vc1-sa1-sb1-uk4-db0-st0-lp0",
        "timing": summarize_times([t, t * 1.01, t * 1.02], m, n, k, "opencl-event"),
        "accuracy": {"max_abs_error": 1e-5 if written else None,
                     "rel_frobenius_error": ratio * np_err if written else None,
                     "numpy_f32_rel_error": np_err, "ratio_to_numpy": ratio if written else None,
                     "all_written": written},
        "build": {"cold_s": cold, "warm_s": warm, "source_lines": lines},
        "sessions": {"n": sessions, "gflops_peak": peaks, "gflops_median": peaks,
                     "cv_peak": cv(peaks), "cv_median": cv(peaks)},
    }


def make_artifact(entries, sustained=None, device="Test GPU"):
    return {
        "schema_version": SCHEMA_VERSION, "kind": "bench", "complete": True,
        "created_utc": "2026-01-01T00:00:00+00:00", "finished_utc": "2026-01-01T00:01:00+00:00",
        "command": ["clgemm", "bench"],
        "env": {"device": {"name": device, "fingerprint": "f" * 16, "driver_version": "1"},
                "code": {"commit": "0" * 40, "describe": "x", "dirty": False}, "python": "3.11",
                "hostname": "h", "date_utc": "2026-01-01T00:00:00+00:00"},
        "protocol": {"warmup": 1, "repeats": 3, "input_sets": 2, "sessions": 3, "window_s": 0.5},
        "suite": "kpi", "shapes": [e["shape"] for e in entries], "results": copy.deepcopy(entries),
        "baselines": {"numpy": {"status": "absent", "reason": "not asked"}},
        "sustained": sustained or [], "sessions": {"n": 3, "runs": []}, "ranking": None,
        "load": None, "selector": None, "notes": [],
    }


def make_sustained(shape, gflops, method="clgemm"):
    series = [{"t_s": 0.5 * i, "dt_s": 0.5, "gflops": gflops, "sm_mhz": None} for i in range(4)]
    return {"method": method, "shape": list(shape), "seconds": 2.0, "window_s": 0.5, "series": series,
            "gflops_mean": gflops, "gflops_min": gflops, "cv": 0.0, "clock_source": None,
            "clock_absent_reason": "test"}


def test_synthetic_artifacts_are_valid():
    art = make_artifact([make_entry((2048,) * 3, 1000.0)], [make_sustained((2048,) * 3, 900.0)])
    assert validation_errors(art) == []
