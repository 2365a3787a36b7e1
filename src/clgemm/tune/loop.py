"""`clgemm tune`: drive one of the engine's strategies over a device's schedule space.

Candidates are compiled in worker processes while the device measures, checked against a
float64 reference before their time counts, and written to the tuning database one by one.
Re-running the same command resumes: what the database holds is told to the strategy and
never measured again.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from dataclasses import dataclass, field, replace

from ..engine import Space, Strategy
from ..schedule import Schedule
from .db import TuningDB
from .measure import Bench, CompilePool, Measurement, Problem, tune_protocol
from .model import CostModel


@dataclass(frozen=True)
class TuneConfig:
    problem: Problem
    # "auto": the model strategy with the transfer prior when the database holds this device's
    # measurements of other shapes (records/nvidia-h100/2026-12-02-strategies), else "forest",
    # which learns only from what it measures (records/cpu-simulated/2026-12-06-public-spaces-2).
    strategy: str = "auto"
    budget_evals: int | None = 100  # total evaluations for this problem in the database
    budget_seconds: float | None = None  # wall seconds of this invocation
    seed: int = 0
    workers: int | None = None
    repeats: int = 5
    model_pool: int = 4000  # candidates the cost model scores each round (model strategy)
    # Successful measurements taken at random before the model is trusted: a regression fitted
    # on the prior's own first picks has no variance to learn from (on PoCL the roofline prior
    # sent every first pick to 32x32 work-groups, 0.1-4.6 GFLOPS, and the fit never left them).
    model_warmup: int = 8
    # Model strategy: pretrain the cost model on this device's measurements of OTHER shapes in
    # the database (matched by device name); with such a prior there is no random warm-up.
    # "auto" turns it on exactly when such measurements exist.
    transfer: bool = False
    # The device (by name, as the database records it) whose measurements are the transfer
    # prior; None: this device's own. A card with no measurements yet may borrow those of
    # another card of its architecture (the H200's tune found no H200 rows in the H100's
    # database and ran without a prior: records/nvidia-h200/2026-12-07-tune-vs-clblast-3);
    # the rank fit (tune/model.py) learns the order of schedules, not their times.
    prior_device: str | None = None
    options: dict = field(default_factory=dict)  # strategy options (engine keywords)
    # A candidate whose first run after its check is this many times the fastest such run
    # so far is timed no further (Bench.measure); None times every candidate fully.
    give_up: float | None = None


@dataclass
class TuneResult:
    run_id: str
    problem: Problem
    evaluations: int  # in this invocation
    resumed: int  # results already in the database, told to the strategy
    failures: int
    best: Schedule | None
    best_time_s: float | None
    wall_s: float
    space_size: int
    valid_count: int | None
    status: str
    strategy: str = ""  # the one that ran ("auto" resolved)
    transfer: bool = False

    @property
    def best_gflops(self) -> float | None:
        return self.problem.flops / self.best_time_s / 1e9 if self.best_time_s else None


def _score_pool(space: Space, model: CostModel, size: int, rng: random.Random) -> list:
    pool = space.sample_valid(size, rng)
    return list(zip(pool, model.predict(pool))) if pool else []


def _random_pool(space: Space, size: int, rng: random.Random) -> list:
    """Uniform random scores: the model strategy then picks uniformly (warm-up)."""
    return [(s, rng.random()) for s in space.sample_valid(size, rng)]


def prior_name(config: TuneConfig, device_name: str) -> str:
    """Whose measurements are the transfer prior: `config.prior_device`, else this device's."""
    return config.prior_device or device_name


def resolve_strategy(config: TuneConfig, db: TuningDB, device_name: str) -> TuneConfig:
    """Settle "auto": the transfer prior where the database has measurements of other shapes
    on the prior's device (this one unless `prior_device` names another), else the
    prior-free "forest"."""
    if config.strategy != "auto":
        return config
    prior = db.observations(prior_name(config, device_name), exclude=config.problem)
    if any(prior.values()):
        return replace(config, strategy="model", transfer=True)
    return replace(config, strategy="forest", transfer=False)


class Proposer:
    """What to measure next for one (device, problem): the engine's strategy, fed the cost
    model's scores each round when it is the model strategy. Given the same config (seed),
    space and results told in the same order, it proposes the same schedules: `clgemm tune`
    and the fleet driver (`clgemm.fleet`) both search through it, so a fleet run and a
    one-process run with one seed and one batch size propose alike."""

    def __init__(self, config: TuneConfig, space, local_mem_bytes: int,
                 done: dict[str, float | None] | None = None,
                 prior: dict | None = None) -> None:
        """`space`: an engine Space, or a RecordedSpace (only its points are proposed);
        `done`: results already in the database, told first (resume); `prior`: this
        device's measurements of other shapes (`TuningDB.observations`), for transfer."""
        self.config = config
        self.space = getattr(space, "space", space)
        self.strategy = Strategy(config.strategy, space, seed=config.seed, **config.options)
        self.done: dict[str, float | None] = {}
        for key, t in (done or {}).items():
            self.tell(Schedule.from_key(key), t)
        self.resumed = len(self.done)
        self.model = CostModel(local_mem_bytes) if config.strategy == "model" else None
        if self.model is not None and config.transfer and prior:
            self.model.set_transfer([([Schedule.from_key(k) for k in obs], list(obs.values()))
                                     for obs in prior.values()])
        self.warmup = (0 if self.model is not None and self.model.transfer_samples
                       else config.model_warmup)
        self.rng = random.Random(config.seed)

    def budget_left(self) -> int | None:
        if self.config.budget_evals is None:
            return None
        return max(0, self.config.budget_evals - len(self.done))

    def propose(self, want: int) -> list[Schedule]:
        """The next batch: up to `want` schedules not yet measured (fewer at the end of the
        evaluation budget; none once the space is exhausted)."""
        if self.model is not None:
            measured = [(Schedule.from_key(k), t) for k, t in self.done.items() if t]
            if len(measured) < self.warmup:
                self.strategy.set_scores(_random_pool(self.space, self.config.model_pool,
                                                      self.rng))
            else:
                self.model.fit([s for s, _ in measured], [t for _, t in measured])
                self.strategy.set_scores(_score_pool(self.space, self.model,
                                                     self.config.model_pool, self.rng))
        left = self.budget_left()
        if left is not None:
            want = min(want, left)
        return [s for s in self.strategy.ask(max(want, 1)) if s.key() not in self.done]

    def tell(self, schedule: Schedule, time_s: float | None) -> None:
        self.strategy.tell(schedule, time_s)
        self.done[schedule.key()] = time_s


def tune(config: TuneConfig, db: TuningDB, device=None, log=sys.stderr) -> TuneResult:
    from ..lanes.fp32 import search_space
    from ..runtime import get_runtime

    start = time.monotonic()
    rt = get_runtime(device)
    fp = rt.device.fingerprint
    space = Space.from_search_space(search_space(rt))
    config = resolve_strategy(config, db, rt.device.name)
    run_id = uuid.uuid4().hex[:12]
    gone = db.mark_interrupted(fp)
    if gone:
        print(f"tune: {len(gone)} earlier run(s) of this device were killed; marked "
              f"interrupted ({', '.join(gone)})", file=log)
    db.start_run(run_id, fp, config.problem, config.strategy, config.seed,
                 {"budget_evals": config.budget_evals, "budget_seconds": config.budget_seconds,
                  "repeats": config.repeats, "options": dict(config.options),
                  "give_up": config.give_up})
    prior = (db.observations(prior_name(config, rt.device.name), exclude=config.problem)
             if config.strategy == "model" and config.transfer else None)
    search = Proposer(config, space, rt.device.local_mem_bytes,
                      done=db.measured(fp, config.problem), prior=prior)
    done, strategy, model = search.done, search.strategy, search.model
    resumed = search.resumed
    print(f"tune: {rt.device.name}: space {space.size():,} points, "
          f"{space.valid_count() or 0:,} valid; {resumed} results already in {db.path}",
          file=log)

    bench = Bench(rt, config.problem, repeats=config.repeats, seed=config.seed)
    protocol = tune_protocol(config.repeats, bench.warmup, len(bench.sets))
    pool = CompilePool(config.workers or 1, device_spec=str(rt.device.index))
    if model is not None and model.transfer_samples:
        shapes = ", ".join(f"{p.m}x{p.n}x{p.k}" for p in prior or {}) or "none"
        print(f"tune: transfer prior: {model.transfer_samples} measurements of other shapes "
              f"({shapes})", file=log)
    evals = failures = 0
    status = "budget"

    def out_of_budget() -> bool:
        if search.budget_left() == 0:
            return True
        return config.budget_seconds is not None and time.monotonic() - start >= config.budget_seconds

    try:
        while not out_of_budget():
            batch = search.propose(pool.workers)
            if not batch:
                status = "space exhausted"
                break
            for schedule, compile_s, error in pool.compile(batch, config.problem):
                if error is not None:
                    m = Measurement(schedule, None, compile_s, error)
                else:
                    m = bench.measure(schedule, compile_s, give_up=config.give_up)
                db.record(fp, rt.device.name, config.problem, m, protocol, run_id)
                search.tell(schedule, m.time_s)
                evals += 1
                failures += m.time_s is None
                best = strategy.best()
                best_txt = (f"{config.problem.flops / best[1] / 1e9:,.1f} GFLOPS"
                            if best else "none yet")
                print(f"tune: {len(done)} evaluated ({evals} now, {failures} failed), "
                      f"best {best_txt}", file=log, flush=True)
                if out_of_budget():
                    break
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        pool.close()
        db.finish_run(run_id, status)
    best_rows = db.best(fp, config.problem, top=1)
    best_s = Schedule.from_key(best_rows[0][0]) if best_rows else None
    return TuneResult(run_id, config.problem, evals, resumed, failures, best_s,
                      best_rows[0][1] if best_rows else None, time.monotonic() - start,
                      space.size(), space.valid_count(), status, config.strategy,
                      config.transfer)
