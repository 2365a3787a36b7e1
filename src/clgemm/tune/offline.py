"""Offline replay of the tuner's model-guided loop over a recorded space (clgemm.space/1).

The engine's simulator replays strategies whose proposals need no Python; the model strategy as
`clgemm tune` runs it refits the cost model (`tune.model.CostModel`) on what was measured and
hands its predictions to the engine before each ask. This module drives that loop on recorded
data: the recorded time stands in for the device, compile + run seconds as recorded.

Transfer: `transfer_groups` reads a tuning database's measurements of OTHER shapes on the
recorded space's device (by name). The recorded space's own shape is always excluded: rows of
that shape would be the very measurements being replayed (leakage).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..schedule import Schedule
from .measure import Problem
from .model import CostModel, RankSettings


@dataclass
class Transfer:
    groups: list[tuple[list[Schedule], list[float]]]
    problems: list[Problem]
    sources: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(t) for _, t in self.groups)


def transfer_groups(db_paths: list[str | Path], device_name: str, exclude: Problem) -> Transfer:
    """Measurements of other shapes on `device_name` from tuning databases (a schedule measured
    in several databases counts once per shape, at its best time)."""
    from .db import TuningDB

    merged: dict[Problem, dict[str, float]] = {}
    for path in db_paths:
        with TuningDB(path) as db:
            for p, obs in db.observations(device_name, exclude=exclude).items():
                into = merged.setdefault(p, {})
                for key, t in obs.items():
                    into[key] = min(t, into.get(key, t))
    problems = sorted(merged, key=lambda p: (p.m, p.n, p.k, p.trans_a, p.trans_b))
    groups = [([Schedule.from_key(k) for k in merged[p]], list(merged[p].values()))
              for p in problems]
    return Transfer(groups, problems, [str(p) for p in db_paths])


@dataclass
class ModelRun:
    seed: int
    curve: list[float | None]  # best-so-far seconds after each evaluation
    seconds: list[float]  # compile + run seconds spent after each evaluation


def replay_model(space_path: str | Path, seeds: list[int], budget: int,
                 transfer: Transfer | None = None, warmup: int = 8, refit: int = 1,
                 target_weight: float = 1000.0, run_factor: int = 6,
                 stop_at: float = 0.99, warmup_with_transfer: bool = False,
                 objective: str = "rank", rank: RankSettings | None = None
                 ) -> tuple[list[ModelRun], float]:
    """Replays the tuner's model loop for each seed; returns the runs and the best recorded
    time. Without transfer the first `warmup` picks are uniform (TuneConfig.model_warmup);
    with transfer there is none (unless `warmup_with_transfer`). A run stops once it reaches `stop_at` of the best
    (the rest of its curve is flat). Seconds = compile_s + run_factor x kernel time.
    `objective`, `rank` and `target_weight` are the CostModel's (the transfer fit)."""
    from .. import engine

    data = json.loads(Path(space_path).read_text())
    records = data["records"]
    schedules = [Schedule.from_dict(r["schedule"]) for r in records]
    times = [r["time_s"] for r in records]
    cost = [(r.get("compile_s") or 0.0)
            + run_factor * (r["time_s"] or r.get("inaccurate_time_s") or 0.0) for r in records]
    rs = engine.RecordedSpace.load(str(space_path))
    best = min(t for t in times if t)
    local_mem = data["limits"]["local_mem_bytes"]
    cached = CostModel(local_mem).features(schedules)
    index = {s: i for i, s in enumerate(schedules)}
    runs = []
    for seed in seeds:
        strategy = engine.Strategy("model", rs, seed=seed)
        rng = np.random.default_rng(seed)
        model = CostModel(local_mem, target_weight=target_weight, objective=objective,
                          rank=rank or RankSettings())
        if transfer is not None:
            model.set_transfer(transfer.groups)
        warm = warmup if transfer is None or warmup_with_transfer else 0
        measured: dict[int, float | None] = {}
        run = ModelRun(seed, [], [])
        spent, best_so_far = 0.0, None
        while len(measured) < budget:
            ok = [i for i, t in measured.items() if t]
            if len(measured) % refit == 0 or len(ok) == warm:
                if len(ok) < warm:  # as the tuner does: random picks until the fit has data
                    strategy.set_scores(list(zip(schedules, rng.random(len(schedules)))))
                else:
                    sub = (cached[0][ok], cached[1][ok])
                    model.fit([schedules[i] for i in ok], [times[i] for i in ok], cached=sub)
                    strategy.set_scores(list(zip(schedules, model.predict(schedules, cached=cached))))
            asked = strategy.ask(1)
            if not asked:
                break
            i = index[asked[0]]
            measured[i] = times[i]
            strategy.tell(schedules[i], times[i])
            spent += cost[i]
            if times[i] and (best_so_far is None or times[i] < best_so_far):
                best_so_far = times[i]
            run.curve.append(best_so_far)
            run.seconds.append(spent)
            if best_so_far is not None and best_so_far <= best / stop_at:
                break
        runs.append(run)
    return runs, best
