"""The fleet's scheduling timed with a real GPU's costs on this small host: a recorded space
(H100 at 2048, 3000 schedules) stands in for the device, each compile sleeps the schedule's
recorded compile time and each measurement its recorded kernel time x 7 runs + 50 ms of
checking (sleeping takes no CPU, so 2 shared cores do not limit it). Same seed and batch in
every arm; the best must be the same in all.

    PYTHONPATH=src python3 records/cpu-pocl-amd-epyc/2026-12-06-fleet/sim_speedup.py OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from clgemm.fleet.cluster import DaskPool, local_cluster
from clgemm.fleet.driver import FleetDriver, fleet_config
from clgemm.fleet.tasks import SimTiming
from clgemm.tune.db import TuningDB
from clgemm.tune.measure import Problem

SPACE = "records/nvidia-h100/2026-11-25-space-2048/space-2048.json"
# three searches (as the three KPI sizes), all over the one recorded space
PROBLEMS = [Problem(2048, 2048, 2048), Problem(2048, 2048, 2047), Problem(2047, 2048, 2048)]
ARMS = [  # name, device workers, compile workers
    ("serial", 1, 0),
    ("compile4", 1, 4),
    ("compile8", 1, 8),
    ("2dev-compile8", 2, 8),
]


def main(out: str) -> int:
    budget, batch, seed = 30, 8, 0
    results = {}
    for name, devices, compile_workers in ARMS:
        db_path = Path(f"/tmp/fleet-sim-{name}-{os.getpid()}.sqlite")
        names = [f"sim:{SPACE}@{i}" for i in range(devices)]
        config = fleet_config(PROBLEMS, strategy="forest", budget_evals=budget, seed=seed,
                              batch=batch, sim=SimTiming(measure_s=0.05, recorded=1.0))
        with local_cluster(names, compile_workers) as (client, _):
            with TuningDB(db_path) as db:
                t0 = time.monotonic()
                r = FleetDriver(config, db, DaskPool(client), log=open(os.devnull, "w")).run()
                wall = time.monotonic() - t0
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        results[name] = {"device_workers": devices, "compile_workers": compile_workers,
                         "tuning_s": round(wall, 2),
                         "evaluations": sum(s.written for s in r.searches),
                         "best": sorted({s.best for s in r.searches}),
                         "leases": r.leases.as_dict()}
        print(name, results[name]["tuning_s"], file=sys.stderr)
    base = results["serial"]["tuning_s"]
    for v in results.values():
        v["speedup_vs_serial"] = round(base / v["tuning_s"], 2)
    doc = {"space": SPACE, "budget_per_search": budget, "batch": batch, "seed": seed,
           "searches": len(PROBLEMS), "strategy": "forest",
           "timing": "sleep(recorded compile_s); sleep(0.05 + 7 x recorded time_s)",
           "same_best_in_every_arm": len({tuple(v["best"]) for v in results.values()}) == 1,
           "arms": results}
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
