"""A tuning campaign over a few hundred devices of a few dozen kinds, simulated on recorded
spaces (docs/fleet-scale.md).

Each Kernel Tuner cache file under --data (one kernel brute-forced on one GPU, with every
configuration's time, compile time and benchmark time) is a device kind. A fleet of N devices
spreads over the kinds by a Zipf law (a few kinds hold most devices, as in a real fleet);
devices of one kind share its searches (clgemm fleet: one search per fingerprint and shape).
Every evaluation is compiled on a compile worker of a device's host (CW per device), measured
on a device of its kind, and written by the driver (one SQLite transaction each, the cost
measured here on clgemm's TuningDB). Per N the script reports wall time, evaluations, the
driver's writes per second (mean and peak minute) and its utilisation, with and without
transfer of priors between kinds of the same kernel family.

Transfer of priors: for a target kind, configurations are ranked by their mean log time
relative to each other kind's best (leave-one-out over the family's other kinds); the search
takes the ranked list and random draws in turn (so a misleading prior costs at most twice
random's evaluations). Its evaluations to reach 95% of the target's best are set against
random search's (median over seeds).

    PYTHONPATH=src python3 benchmarks/fleet/simulate.py --data /work/data-spaces/raw \\
        --out records/cpu-simulated/2026-12-06-fleet-scale/simulate.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOAL = 0.95  # a search succeeds when it has measured a configuration of >= 95% of the best
SEEDS = 101
SPREADS = 5  # random spreads of the devices over the kinds per fleet size
SHAPES = 8  # searches per kind (shapes tuned): each replays the kind's space with its seed
COMPILE_WORKERS = 4  # per device host (binaries stay on their host: docs/fleet.md)
BUDGET = 240  # evaluations per search without a stopping rule (clgemm tune --budget)
FLEETS = (1, 2, 4, 8, 16, 32)  # devices per kind, on average (>= 1 device of every kind)
FAILED_PENALTY = math.log(10.0)  # a failed configuration ranks as 10x the best


@dataclass(frozen=True)
class Space:
    kind: str
    family: str
    device: str
    configs: tuple[str, ...]
    time: np.ndarray  # ms, inf for a failed configuration
    compile_s: np.ndarray
    measure_s: np.ndarray  # benchmark + verification + framework time

    @property
    def best(self) -> float:
        return float(np.min(self.time))

    def good(self) -> np.ndarray:
        return self.time <= self.best / GOAL


def load(path: Path) -> Space:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a cache Kernel Tuner was still appending to: close it
        data = json.loads(text.rstrip().rstrip(",") + "}}")
    cache = data["cache"]
    keys = list(cache)
    t, c, m = [], [], []
    for key in keys:
        e = cache[key]
        v = e.get("time")
        t.append(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.inf)
        c.append(float(e.get("compile_time") or 0.0) / 1e3)
        m.append(sum(float(e.get(f) or 0.0) for f in
                     ("benchmark_time", "verification_time", "framework_time")) / 1e3)
    return Space(path.stem, path.stem.split("_")[0], str(data.get("device_name", "")),
                 tuple(keys), np.array(t), np.array(c), np.array(m))


def with_costs(spaces: list[Space]) -> tuple[list[Space], list[str]]:
    """Spaces whose file recorded no compile or benchmark times take the median kind's
    (each configuration the median of the other kinds' medians); their names are returned."""
    have = [s for s in spaces if np.median(s.compile_s) > 0 and np.median(s.measure_s) > 0]
    c = float(np.median([np.median(s.compile_s) for s in have]))
    m = float(np.median([np.median(s.measure_s) for s in have]))
    out, filled = [], []
    for s in spaces:
        if s in have:
            out.append(s)
        else:
            filled.append(s.kind)
            out.append(Space(s.kind, s.family, s.device, s.configs, s.time,
                             np.full(len(s.configs), c), np.full(len(s.configs), m)))
    return out, filled


# ---- evaluations to the goal -----------------------------------------------------------
def evals_random(sp: Space, rng: np.random.Generator) -> int:
    order = rng.permutation(len(sp.configs))
    return int(np.argmax(sp.good()[order])) + 1


def prior_order(target: Space, others: list[Space]) -> list[int]:
    """The target's configurations by their mean log time over each other kind's best
    (configurations the others lack rank last, in the target's order)."""
    index = {c: i for i, c in enumerate(target.configs)}
    score = np.zeros(len(target.configs))
    seen = np.zeros(len(target.configs))
    for o in others:
        rel = np.where(np.isfinite(o.time), np.log(o.time / o.best), FAILED_PENALTY)
        for c, r in zip(o.configs, rel):
            i = index.get(c)
            if i is not None:
                score[i] += r
                seen[i] += 1
    mean = np.where(seen > 0, score / np.maximum(seen, 1), np.inf)
    return [int(i) for i in np.argsort(mean, kind="stable")]


def evals_mixed(sp: Space, prior: list[int], rng: np.random.Generator) -> int:
    """Prior and random draws in turn, no configuration twice: evaluations to the goal."""
    good = sp.good()
    rand = list(rng.permutation(len(sp.configs)))
    taken = np.zeros(len(sp.configs), bool)
    p = r = 0
    n = 0
    while True:
        src = prior if n % 2 == 0 and p < len(prior) else rand
        while True:
            i = src[p] if src is prior else rand[r]
            if src is prior:
                p += 1
            else:
                r += 1
            if not taken[i]:
                break
        taken[i] = True
        n += 1
        if good[i]:
            return n


def transfer(spaces: list[Space]) -> dict:
    out = {}
    families: dict[str, list[Space]] = {}
    for sp in spaces:
        families.setdefault(sp.family, []).append(sp)
    for sp in spaces:
        others = [o for o in families[sp.family] if o is not sp]
        rng = np.random.default_rng(7)
        rand = [evals_random(sp, rng) for _ in range(SEEDS)]
        row = {"family": sp.family, "device": sp.device, "configs": len(sp.configs),
               "good_configs": int(sp.good().sum()), "random_median": statistics.median(rand)}
        if others:
            prior = prior_order(sp, others)
            mixed = [evals_mixed(sp, prior, rng) for _ in range(SEEDS)]
            row.update({"other_kinds": len(others),
                        "prior_only": int(np.flatnonzero(sp.good()[prior])[0]) + 1,
                        "mixed_median": statistics.median(mixed),
                        "saved_median": statistics.median(rand) - statistics.median(mixed)})
        out[sp.kind] = row
    return out


# ---- the fleet ---------------------------------------------------------------------------
def spread(n_devices: int, kinds: list[str], rng: np.random.Generator) -> dict[str, int]:
    """Devices per kind: Zipf weights over a random order of the kinds, at least one each."""
    order = list(rng.permutation(len(kinds)))
    w = np.array([1.0 / (r + 1) for r in range(len(kinds))])
    w /= w.sum()
    n = np.maximum(1, np.floor(w * n_devices)).astype(int)
    while n.sum() < n_devices:
        n[int(np.argmax(w * n_devices - n))] += 1
    while n.sum() > n_devices:
        n[int(np.argmax(n))] -= 1
    return {kinds[i]: int(n[r]) for r, i in enumerate(order)}


def campaign(spaces: list[Space], n_devices: int, evals: dict[str, list[int]],
             rng: np.random.Generator) -> dict:
    """Event simulation: per kind its devices, CW compile workers per device host, SHAPES
    searches whose evaluations (counts in `evals`, per search) are compiled then measured;
    returns the wall time and every result's completion time (the driver's writes)."""
    per_kind = spread(n_devices, [s.kind for s in spaces], rng)
    done_times: list[float] = []
    walls = {}
    for sp in spaces:
        nd = per_kind[sp.kind]
        cw = nd * COMPILE_WORKERS
        counts = evals[sp.kind]
        picks = [rng.choice(len(sp.configs), size=c, replace=c > len(sp.configs))
                 for c in counts]
        jobs = [(s, i) for i in range(max(counts)) for s in range(len(counts)) if i < counts[s]]
        # compile in the interleaved order on cw workers, then measure on nd devices
        comp = [0.0] * cw
        heapq.heapify(comp)
        dev = [0.0] * nd
        heapq.heapify(dev)
        end = 0.0
        for s, i in jobs:
            j = picks[s][i]
            t0 = heapq.heappop(comp)
            ready = t0 + sp.compile_s[j]
            heapq.heappush(comp, ready)
            d0 = heapq.heappop(dev)
            fin = max(d0, ready) + sp.measure_s[j]
            heapq.heappush(dev, fin)
            done_times.append(fin)
            end = max(end, fin)
        walls[sp.kind] = end
    wall = max(walls.values())
    done = np.sort(np.array(done_times))
    minute = np.bincount((done // 60).astype(int))
    return {"devices": n_devices, "devices_per_kind": per_kind, "wall_h": wall / 3600,
            "evaluations": int(done.size), "writes_per_s_mean": done.size / wall,
            "writes_per_s_peak_minute": float(minute.max()) / 60,
            "slowest_kind": max(walls, key=walls.get)}


# ---- the driver's database ---------------------------------------------------------------
def db_costs(rows: int = 2000) -> dict:
    """Seconds per result written by clgemm's TuningDB (one transaction each, WAL,
    synchronous=NORMAL) and per result in transactions of 64, and bytes per row, measured."""
    from clgemm.schedule import Schedule
    from clgemm.tune.db import TuningDB
    from clgemm.tune.measure import Measurement, Problem

    protocol = {"repeats": 5, "warmup": 1, "statistic": "median",
                "timer": "OpenCL event profiling", "input_sets": 2,
                "check": "rel. Frobenius error <= 2 x numpy float32's vs float64",
                "fleet": {"measured_by": "ocl:0", "compiled_by": "compile-0",
                          "lease_attempt": 1}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.sqlite"
        db = TuningDB(path)
        base = Schedule()
        t0 = time.perf_counter()
        for i in range(rows):
            m = Measurement(base, 1e-3 * (1 + i % 7), 0.5, None, 1e-7)
            db.record(f"fp{i % 24:02d}", "sim", Problem(256 + i, 256, 256), m, protocol, "r")
        single = (time.perf_counter() - t0) / rows
        conn = db._conn  # group commit: the same rows, 64 to a transaction
        t0 = time.perf_counter()
        for g in range(0, rows, 64):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(f"fq{i % 24:02d}", "sim", "c", 256 + i, 256, 256, 0, 0, base.key(), "tune",
                  1e-3, 0.5, None, 1e-7, json.dumps(protocol), "r", time.time())
                 for i in range(g, min(g + 64, rows))])
            conn.execute("COMMIT")
        grouped = (time.perf_counter() - t0) / rows
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        size = path.stat().st_size
    return {"s_per_row_one_transaction": single, "s_per_row_in_64": grouped,
            "bytes_per_row": size / (2 * rows), "rows": 2 * rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    spaces = [load(p) for p in sorted(args.data.glob("*.json"))]
    if not spaces:
        print(f"no Kernel Tuner files under {args.data}", file=sys.stderr)
        return 2
    spaces, filled = with_costs(spaces)
    tr = transfer(spaces)
    db = db_costs()
    rng = np.random.default_rng(args.seed)
    # evaluations per search: a fixed budget; or to the goal, by random search or with priors
    budget = {sp.kind: [min(BUDGET, len(sp.configs))] * SHAPES for sp in spaces}
    to_goal_random = {sp.kind: [evals_random(sp, rng) for _ in range(SHAPES)] for sp in spaces}
    fam = {}
    for sp in spaces:
        fam.setdefault(sp.family, []).append(sp)
    to_goal_prior = {}
    for sp in spaces:
        others = [o for o in fam[sp.family] if o is not sp]
        if others:
            prior = prior_order(sp, others)
            to_goal_prior[sp.kind] = [evals_mixed(sp, prior, rng) for _ in range(SHAPES)]
        else:
            to_goal_prior[sp.kind] = to_goal_random[sp.kind]
    fleets = []
    for per in FLEETS:
        n = per * len(spaces)
        row = {"devices": n}
        for name, evals in (("budget", budget), ("to_goal_random", to_goal_random),
                            ("to_goal_prior", to_goal_prior)):
            runs = [campaign(spaces, n, evals, np.random.default_rng(args.seed + 1000 * t + n))
                    for t in range(SPREADS)]
            r = {"spreads": SPREADS,
                 "wall_h_median": statistics.median(x["wall_h"] for x in runs),
                 "wall_h_range": [min(x["wall_h"] for x in runs),
                                  max(x["wall_h"] for x in runs)],
                 "evaluations": runs[0]["evaluations"],
                 "writes_per_s_mean_median": statistics.median(x["writes_per_s_mean"]
                                                               for x in runs),
                 "writes_per_s_peak_minute_max": max(x["writes_per_s_peak_minute"]
                                                     for x in runs),
                 "slowest_kinds": sorted({x["slowest_kind"] for x in runs}),
                 "example_spread": runs[0]["devices_per_kind"]}
            r["driver_utilisation_one_transaction"] = (r["writes_per_s_peak_minute_max"]
                                                       * db["s_per_row_one_transaction"])
            row[name] = r
        fleets.append(row)
    rows_total = {name: sum(sum(v) for v in ev.values()) for name, ev in
                  (("budget", budget), ("to_goal_random", to_goal_random),
                   ("to_goal_prior", to_goal_prior))}
    out = {
        "schema": "clgemm.fleet-scale/1",
        "spaces": [{"kind": s.kind, "family": s.family, "device": s.device,
                    "configs": len(s.configs),
                    "compile_s_median": float(np.median(s.compile_s)),
                    "measure_s_median": float(np.median(s.measure_s))} for s in spaces],
        "costs_filled_from_median_kind": filled,
        "model": {"goal": GOAL, "seeds": SEEDS, "shapes_per_kind": SHAPES,
                  "compile_workers_per_device": COMPILE_WORKERS, "budget": BUDGET,
                  "spread": "Zipf over kinds, >= 1 device each",
                  "search": "one per (kind, shape), shared by the kind's devices"},
        "transfer": tr,
        "database": {**db, "rows_per_campaign": rows_total,
                     "bytes_per_campaign": {k: v * db["bytes_per_row"]
                                            for k, v in rows_total.items()},
                     "single_writer_limit_rows_per_s": 1.0 / db["s_per_row_one_transaction"],
                     "group_commit_limit_rows_per_s": 1.0 / db["s_per_row_in_64"]},
        "fleets": fleets,
        "seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for r in fleets:
        print(f"{r['devices']:4d} devices: wall {r['budget']['wall_h_median']:.2f} h (budget), "
              f"{r['to_goal_random']['wall_h_median']:.2f} h (to goal, random), "
              f"{r['to_goal_prior']['wall_h_median']:.2f} h (to goal, priors); peak writes "
              f"{r['budget']['writes_per_s_peak_minute_max']:.1f}/s, driver "
              f"{100 * r['budget']['driver_utilisation_one_transaction']:.1f}% busy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
