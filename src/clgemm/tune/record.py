"""Record a sample of a device's schedule space at one shape (the offline benchmark's data).

Output is the engine's recorded-space format `clgemm.space/1`: every sampled schedule with
its measured kernel time, compile time, or the reason it failed.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from ..schedule import Schedule, SearchSpace
from .measure import Bench, CompilePool, Problem

SPACE_SCHEMA = "clgemm.space/1"


def sample_valid(space: SearchSpace, count: int, seed: int) -> list[Schedule]:
    """A uniform sample of distinct valid schedules, drawn by the engine from its valid set."""
    from ..engine import Space

    return Space.from_search_space(space).sample_valid(count, random.Random(seed))


def record_space(problem: Problem, schedules: list[Schedule], out: Path, *,
                 workers: int | None = None, repeats: int = 5, device=None,
                 deadline_s: float | None = None, log=sys.stderr) -> dict:
    from ..lanes.fp32 import search_space
    from ..runtime import get_runtime

    rt = get_runtime(device)
    bench = Bench(rt, problem, repeats=repeats)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    pool = CompilePool(workers, device_spec=str(rt.device.index))
    space = search_space(rt)
    data = {
        "schema": SPACE_SCHEMA,
        "device": rt.device.summary(),
        "shape": [problem.m, problem.n, problem.k],
        "params": [[n, list(v)] for n, v in space.domains.items()],
        "limits": space.limits.as_dict(),
        "numpy_error": bench.numpy_error,
        "protocol": {"repeats": repeats, "warmup": bench.warmup, "statistic": "median",
                     "timer": "OpenCL event profiling", "input_sets": len(bench.sets)},
        "complete": False,
        "records": [],
    }
    start = time.monotonic()
    try:
        for i, (schedule, compile_s, error) in enumerate(pool.compile(schedules, problem)):
            if deadline_s is not None and time.monotonic() - start > deadline_s:
                print(f"record: deadline reached after {i} schedules", file=log)
                break
            if error is not None:
                rec = {"schedule": schedule.as_dict(), "time_s": None, "compile_s": compile_s,
                       "error": error}
            else:
                m = bench.measure(schedule, compile_s)
                rec = {"schedule": schedule.as_dict(), "time_s": m.time_s,
                       "compile_s": compile_s, "error": m.error, "rel_error": m.rel_error,
                       "inaccurate_time_s": m.inaccurate_time_s}
            data["records"].append(rec)
            if (i + 1) % 100 == 0:
                ok = [r["time_s"] for r in data["records"] if r["time_s"]]
                best = problem.flops / min(ok) / 1e9 if ok else 0.0
                print(f"record: {i + 1}/{len(schedules)} done, best {best:.0f} GFLOPS, "
                      f"{time.monotonic() - start:.0f} s", file=log, flush=True)
        else:
            data["complete"] = True
    finally:
        pool.close()
        from ..atomic import write_text

        write_text(out, json.dumps(data))
    return data


def import_space(db, path: str | Path) -> int:
    """Add a recorded space's measurements to the tuning database (same device only), so
    distillation weighs them with the tuner's own; returns the rows added."""
    from ..errors import ClgemmError
    from .measure import Measurement

    data = json.loads(Path(path).read_text())
    if data.get("schema") != SPACE_SCHEMA:
        raise ClgemmError(f"{path} is not a clgemm recorded space ({data.get('schema')!r})")
    device = data["device"]
    problem = Problem(*data["shape"])
    protocol = {**data.get("protocol", {}), "imported_from": str(path)}
    known = db.measured(device["fingerprint"], problem)
    added = 0
    for rec in data["records"]:
        schedule = Schedule.from_dict(rec["schedule"])
        if schedule.key() in known:
            continue
        m = Measurement(schedule, rec["time_s"], rec.get("compile_s"), rec.get("error"),
                        rec.get("rel_error"))
        db.record(device["fingerprint"], device["name"], problem, m, protocol,
                  run_id=f"import:{Path(path).name}")
        added += 1
    return added
