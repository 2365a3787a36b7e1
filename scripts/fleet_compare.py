"""Compare the arms of a fleet campaign (records/.../run.sh, scripts/fleet-gpu.sh): per arm the
wall time, the evaluations and the best per (device, shape), lost and duplicated results counted
in its database against its proposals; whether each arm measured the same schedules and found
the same best as the one-process `tune` arm; the speed-up of parallel compilation.

    python3 scripts/fleet_compare.py OUTDIR > OUTDIR/summary.json
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path


def walls(folder: Path) -> dict[str, float]:
    out = {}
    for line in (folder / "walls.txt").read_text().splitlines():
        name, *fields = line.split()
        value = fields[-1].split("=")[-1]
        out[name] = float(value)
    return out


def arm(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT m, n, k, schedule, time_s, error FROM measurements "
                           "WHERE session='tune'").fetchall()
    finally:
        con.close()
    shapes: dict[str, dict] = {}
    for m, n, k, key, t, error in rows:
        s = shapes.setdefault(f"{m}x{n}x{k}", {"schedules": [], "best": None, "best_time_s": None,
                                               "failed": 0})
        s["schedules"].append(key)
        s["failed"] += t is None
        if t is not None and (s["best_time_s"] is None or t < s["best_time_s"]):
            s["best"], s["best_time_s"] = key, t
    for s in shapes.values():
        s["evaluations"] = len(s["schedules"])
        s["distinct"] = len(set(s["schedules"]))
    return shapes


def main(folder: str) -> int:
    root = Path(folder)
    wall = walls(root)
    arms = {name: arm(root / f"{name}.sqlite") for name in wall if (root / f"{name}.sqlite").exists()}
    ref = arms.get("tune")
    out: dict = {"wall_s": wall, "arms": {}}
    for name, shapes in arms.items():
        summary = {}
        fleet = root / f"{name}.json"
        doc = json.loads(fleet.read_text()) if fleet.exists() else None
        if isinstance(doc, dict):  # a fleet summary
            summary["counts"] = doc["counts"]
            summary["leases"] = doc["leases"]
            summary["kills"] = doc["kills"]
            summary["workers_seen"] = doc["workers_seen"]
            summary["measured_by"] = doc["measured_by"]
            summary["compiled_by"] = doc["compiled_by"]
            summary["tuning_s"] = doc["wall_s"]
        per = {}
        for shape, s in shapes.items():
            row = {k: s[k] for k in ("evaluations", "distinct", "failed", "best", "best_time_s")}
            if ref is not None and shape in ref:
                row["same_schedules_as_tune"] = set(s["schedules"]) == set(ref[shape]["schedules"])
                row["same_best_as_tune"] = s["best"] == ref[shape]["best"]
                if not row["same_best_as_tune"] and s["best"] in ref[shape]["schedules"]:
                    row["note"] = ("the tune arm measured this schedule too: the same schedules, "
                                   "a different best by the measured times")
            per[shape] = row
        summary["shapes"] = per
        evals = sum(s["evaluations"] for s in shapes.values())
        summary["evaluations"] = evals  # arms cut by a time limit: compare the rates
        summary["evals_per_s"] = round(evals / wall[name], 3) if wall.get(name) else None
        out["arms"][name] = summary
    if "serial" in wall:
        out["speedup_vs_serial"] = {n: round(wall["serial"] / w, 3) for n, w in wall.items()
                                    if n != "serial"}
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
