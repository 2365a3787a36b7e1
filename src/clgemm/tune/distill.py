"""Replay and distillation: confirm the tuner's best schedules in separate benchmark sessions,
then pick a small set of schedules that covers every tuned shape, as the device's table.

Run as a module (`python -m clgemm.tune.distill SESSION ...`) it is one replay session: a fresh
process that re-measures given schedules and writes them to the database under its session.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..schedule import Schedule
from ..select.table import Table, TableDevice, shape_class
from .db import TuningDB
from .measure import Bench, Problem

COVER_TOLERANCE = 0.05  # a schedule covers a shape when within 5% of the shape's best


@dataclass
class Confirmed:
    problem: Problem
    medians: dict[str, float]  # schedule key -> median time over replay sessions
    sessions: int

    def best(self) -> tuple[str, float]:
        key = min(self.medians, key=self.medians.get)
        return key, self.medians[key]


def replay(db: TuningDB, device_fp: str, problems: list[Problem], top_k: int, sessions: int,
           device_index: int, log=sys.stderr) -> list[Confirmed]:
    """Re-measure the union of every problem's top-k on every problem, in `sessions` separate
    processes: a schedule second-best at one size may be the one that covers all sizes."""
    union: dict[str, None] = {}
    for p in problems:
        for key, _ in db.best(device_fp, p, top=top_k):
            union.setdefault(key, None)
    plans = {p: list(union) for p in problems}
    for i in range(sessions):
        session = f"replay-{i}"
        for p, keys in plans.items():
            if not keys:
                continue
            cmd = [sys.executable, "-m", "clgemm.tune.distill", session, "--db", str(db.path),
                   "--device", str(device_index), "--problem",
                   f"{p.m},{p.n},{p.k},{int(p.trans_a)},{int(p.trans_b)}", "--schedules",
                   ",".join(keys)]
            print(f"distill: replay session {i + 1}/{sessions} at {p.m}x{p.n}x{p.k}", file=log)
            subprocess.run(cmd, check=True, env=os.environ.copy())
    confirmed = []
    for p, keys in plans.items():
        medians = {}
        replayed: dict[str, list[float]] = {}
        for r in db.rows(device_fp, p):  # one query per problem, not one per schedule
            if r.session.startswith("replay-") and r.time_s:
                replayed.setdefault(r.schedule, []).append(r.time_s)
        for key in keys:
            times = replayed.get(key, [])
            if len(times) == sessions:
                medians[key] = statistics.median(times)
        if medians:
            confirmed.append(Confirmed(p, medians, sessions))
    return confirmed


def cover(confirmed: list[Confirmed], tolerance: float = COVER_TOLERANCE) -> list[str]:
    """Greedy set cover: the fewest schedules such that every problem has one within
    `tolerance` of its confirmed best."""
    covers: dict[str, set[int]] = {}
    for i, c in enumerate(confirmed):
        _, best = c.best()
        for key, t in c.medians.items():
            if t <= best * (1 + tolerance):
                covers.setdefault(key, set()).add(i)
    chosen: list[str] = []
    left = set(range(len(confirmed)))

    def slowdown(key: str) -> float:
        """Summed time relative to each uncovered problem's best: among schedules covering
        as many problems, the faster one wins (a 4%-slower one used to win by its name)."""
        return sum(confirmed[i].medians.get(key, float("inf")) / confirmed[i].best()[1]
                   for i in left)

    while left:
        key = min(sorted(covers), key=lambda k: (-len(covers[k] & left), slowdown(k)))
        chosen.append(key)
        left -= covers[key]
    return chosen


def build_table(device: "str | TableDevice", confirmed: list[Confirmed], chosen: list[str],
                evidence: dict) -> Table:
    """Each tuned shape class gets the chosen schedule fastest on its problems (normalised
    to each problem's best); the default is the one covering most problems. The replayed
    schedules not chosen become the table's alternates, fastest first (the online selector's
    arms: a table of one schedule would leave it, and `clgemm replay`, a single arm)."""
    device = device if isinstance(device, TableDevice) else TableDevice(device)
    by_class: dict[str, list[Confirmed]] = {}
    for c in confirmed:
        by_class.setdefault(shape_class(c.problem.m, c.problem.n, c.problem.k), []).append(c)
    entries = {}
    for cls, items in by_class.items():
        def cost(key: str) -> float:
            return sum(c.medians.get(key, float("inf")) / c.best()[1] for c in items)
        entries[cls] = Schedule.from_key(min(chosen, key=cost))
    counts = {key: sum(1 for s in entries.values() if s.key() == key) for key in chosen}
    default = Schedule.from_key(max(chosen, key=lambda k: (counts[k], k)))

    def overall(key: str) -> float:
        return sum(c.medians.get(key, float("inf")) / c.best()[1] for c in confirmed)
    replayed = {key for c in confirmed for key in c.medians}
    alternates = tuple(Schedule.from_key(k) for k in sorted(replayed - set(chosen), key=overall)
                       if math.isfinite(overall(k)))
    return Table(device.name, entries, default, "distilled", evidence, alternates=alternates,
                 device=device)


def distill(db: TuningDB, device, top_k: int = 5, sessions: int = 3, log=sys.stderr) -> Table:
    from ..device import get_device

    info = get_device(device)
    problems = db.problems(info.fingerprint)
    if not problems:
        from ..errors import ClgemmError

        raise ClgemmError(f"the database {db.path} holds no tuning results for {info.name!r}; "
                          "run `clgemm tune` first")
    confirmed = replay(db, info.fingerprint, problems, top_k, sessions, info.index, log)
    chosen = cover(confirmed)
    evidence = {
        "database": str(db.path),
        "replay_sessions": sessions,
        "top_k": top_k,
        "cover_tolerance": COVER_TOLERANCE,
        "problems": [
            {"shape": [c.problem.m, c.problem.n, c.problem.k],
             "trans": [c.problem.trans_a, c.problem.trans_b],
             "tuned_best": db.best(info.fingerprint, c.problem, top=1)[0],
             "replay_median_s": c.medians,
             "confirmed_best": c.best()[0],
             "gflops": c.problem.flops / c.best()[1] / 1e9}
            for c in confirmed
        ],
        "chosen": chosen,
    }
    return build_table(TableDevice.of(info), confirmed, chosen, evidence)


def _session_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one replay session (a separate process)")
    ap.add_argument("session")
    ap.add_argument("--db", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--problem", required=True)
    ap.add_argument("--schedules", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    from ..runtime import get_runtime

    m, n, k, ta, tb = (int(x) for x in args.problem.split(","))
    problem = Problem(m, n, k, bool(ta), bool(tb))
    rt = get_runtime(args.device)
    bench = Bench(rt, problem, repeats=args.repeats)
    protocol = {"repeats": args.repeats, "warmup": bench.warmup, "statistic": "median",
                "timer": "OpenCL event profiling", "session": args.session}
    with TuningDB(args.db) as db:
        for key in args.schedules.split(","):
            result = bench.measure(Schedule.from_key(key))
            db.record(rt.device.fingerprint, rt.device.name, problem, result, protocol,
                      run_id=args.session, session=args.session)
    return 0


def write_table(table: Table, path: str | Path) -> None:
    from ..atomic import write_text

    # atomic: matmul in other processes reads the tables folder at any moment
    write_text(path, json.dumps(table.to_json(), indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(_session_main())
