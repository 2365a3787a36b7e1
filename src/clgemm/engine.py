"""Typed, thin wrapper over the compiled search engine (`clgemm._engine`, Rust).

The engine knows nothing about `Schedule`: it receives the parameter domains, device limits
and constraint text from `SearchSpace.engine_spec()` and works on value vectors in that
order (`clgemm.schedule.DOMAINS` order). This module converts between value vectors and
`Schedule`s, so `clgemm.schedule` stays the one definition of what a schedule is.

* `Space`: enumeration, index <-> schedule, neighbourhoods.
* `Strategy`: random / greedy / genetic / annealing / sqa (simulated quantum annealing) /
  forest (an online surrogate fitted on its own measurements) / model (ranks by a cost
  model's scores: a prior), one ask/tell interface; `tell(candidate, None)` reports a failure.
* `RecordedSpace` + `simulate`: replay a strategy over measured spaces (clgemm.space/1 or
  Kernel Tuner cache files) for many seeds in parallel.
* `Telemetry`: background sampler of SM clock, temperature and power; timestamps are on
  CLOCK_MONOTONIC, the clock of `time.monotonic()`.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from .errors import EngineError
from .schedule import DOMAINS, Schedule, SearchSpace

try:
    from . import _engine
except ImportError as exc:  # pragma: no cover - depends on the build
    raise EngineError(
        f"clgemm's compiled engine is missing ({exc}); install clgemm with `pip install .` "
        "(needs a Rust toolchain) or install the wheel from scripts/build-gpu-wheel.sh"
    ) from exc

STRATEGIES: tuple[str, ...] = tuple(_engine.STRATEGIES)
# Strategies that learn only from what they measure: the ones to compare on any space.
PRIOR_FREE: tuple[str, ...] = tuple(_engine.PRIOR_FREE)
# The simulator's recorded-time reference (it reads the answer): never a strategy to rank.
ORACLE: str = _engine.ORACLE
SCHEMA = "clgemm.space/1"

Values = tuple[int, ...]
Candidate = Union[Schedule, Values]

_SCHEDULE_NAMES = list(DOMAINS)
assert _SCHEDULE_NAMES[-1] == "direct"


class Space:
    """A schedule space as the engine sees it: domains, device limits, constraints."""

    def __init__(self, raw: "_engine.Space") -> None:
        self._raw = raw
        self.names: list[str] = list(raw.names)
        # Value vectors convert to Schedules only when the parameters are exactly Schedule's,
        # or those of a space recorded before `direct` was added (it then takes its default).
        self.schedules: bool = self.names in (_SCHEDULE_NAMES, _SCHEDULE_NAMES[:-1])

    @classmethod
    def from_search_space(
        cls, search_space: SearchSpace, max_enumerate: int = _engine.DEFAULT_MAX_ENUMERATE
    ) -> "Space":
        return cls.from_spec(search_space.engine_spec(), max_enumerate)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], max_enumerate: int = _engine.DEFAULT_MAX_ENUMERATE) -> "Space":
        return cls(_engine.Space(spec["params"], spec["limits"], spec["constraints"], max_enumerate))

    @property
    def raw(self) -> "_engine.Space":
        return self._raw

    @property
    def domains(self) -> list[list[int]]:
        return self._raw.domains

    def size(self) -> int:
        """Points in the full product of the domains."""
        return self._raw.size()

    def valid_count(self) -> int | None:
        """Valid points, or None if the space was too large to enumerate (then sampled)."""
        return self._raw.valid_count()

    def values(self, candidate: Candidate | Sequence[int]) -> list[int]:
        if isinstance(candidate, Schedule):
            return [getattr(candidate, n) for n in self.names]
        return [int(v) for v in candidate]

    def candidate(self, values: Sequence[int]) -> Candidate:
        return Schedule(*values) if self.schedules else tuple(values)

    def index(self, candidate: Candidate | Sequence[int]) -> int:
        """Mixed-radix index in the full space (first parameter most significant)."""
        return self._raw.index(self.values(candidate))

    def schedule(self, index: int) -> Candidate:
        """The schedule (or value tuple, for non-clgemm spaces) at a full-space index."""
        return self.candidate(self._raw.values(index))

    def is_valid(self, candidate: Candidate | Sequence[int]) -> bool:
        return self._raw.is_valid(self.values(candidate))

    def neighbours(self, candidate: Candidate | Sequence[int], any: bool = False) -> list[Candidate]:
        """Valid candidates one parameter away (adjacent domain value, or any value)."""
        return [self.candidate(v) for v in self._raw.neighbours(self.values(candidate), any)]

    def valid(self, start: int = 0, count: int | None = None) -> list[Candidate]:
        """Valid candidates in index order (the order of `SearchSpace.iter_valid()`)."""
        return [self.candidate(v) for v in self._raw.valid_values(start, count)]

    def sample_valid(self, count: int, rng: "random.Random") -> list[Candidate]:
        """`count` distinct valid candidates drawn uniformly (all of them if fewer exist)."""
        total = self.valid_count() or 0
        return [self.valid(r, 1)[0] for r in rng.sample(range(total), min(count, total))]


class RecordedSpace:
    """Measured configurations, replayed by `simulate`; only recorded points are proposable."""

    def __init__(self, raw: "_engine.RecordedSpace") -> None:
        self._raw = raw
        self.space = Space(raw.space)

    @classmethod
    def load(cls, path: str | Path) -> "RecordedSpace":
        """Load clgemm.space/1 JSON or a Kernel Tuner cache file (detected from content)."""
        return cls(_engine.RecordedSpace.load(str(path)))

    @classmethod
    def loads(cls, text: str) -> "RecordedSpace":
        return cls(_engine.RecordedSpace.loads(text))

    @classmethod
    def from_rows(
        cls,
        params: Sequence[tuple[str, Sequence[int]]],
        rows: Iterable[tuple[Sequence[int], float | None, float]],
        device: str = "",
        shape: Sequence[int] = (),
    ) -> "RecordedSpace":
        """Build in memory from (values, time_s or None, cost_s) rows."""
        return cls(
            _engine.RecordedSpace.from_rows(
                [[n, list(v)] for n, v in params],
                [(list(v), t, float(c)) for v, t, c in rows],
                device,
                list(shape),
            )
        )

    @property
    def raw(self) -> "_engine.RecordedSpace":
        return self._raw

    names = property(lambda self: self.space.names)
    device = property(lambda self: self._raw.device)
    shape = property(lambda self: list(self._raw.shape))
    format = property(lambda self: self._raw.format)
    labels = property(lambda self: self._raw.labels)
    skipped = property(lambda self: self._raw.skipped)

    def __len__(self) -> int:
        return len(self._raw)

    def best(self) -> tuple[Candidate, float] | None:
        found = self._raw.best()
        return None if found is None else (self.space.candidate(found[0]), found[1])

    def lookup(self, candidate: Candidate | Sequence[int]) -> tuple[float | None, float] | None:
        """(time_s or None if it failed, cost_s) of a recorded candidate; None if unrecorded."""
        return self._raw.lookup(self.space.values(candidate))


def save_recorded_space(
    path: str | Path,
    params: Sequence[tuple[str, Sequence[int]]],
    records: Iterable[Mapping[str, Any]],
    device: Any = None,
    shape: Sequence[int] | None = None,
) -> None:
    """Write clgemm.space/1: records are {"schedule": {name: value}, "time_s", "compile_s",
    "error"} (a Schedule may stand for the "schedule" dict)."""
    out = []
    for r in records:
        sched = r["schedule"]
        if isinstance(sched, Schedule):
            sched = sched.as_dict()
        out.append(
            {
                "schedule": {k: int(v) for k, v in sched.items()},
                "time_s": r.get("time_s"),
                "compile_s": r.get("compile_s"),
                "error": r.get("error"),
            }
        )
    doc = {
        "schema": SCHEMA,
        "device": device,
        "shape": list(shape) if shape is not None else None,
        "params": [[n, list(v)] for n, v in params],
        "records": out,
    }
    from .atomic import write_text

    write_text(path, json.dumps(doc))


class Strategy:
    """One search: `ask(n)` candidates, `tell(candidate, seconds | None)`, `best()`.

    Names: random, greedy (local search, one parameter one step), genetic (evolutionary),
    annealing (sa), sqa (quantum: simulated quantum annealing), forest (surrogate: a random
    forest fitted on its own measurements), model (ranks by `set_scores` predictions,
    epsilon-greedy). Options are keyword numbers (e.g. `t0=0.5`, `tau=300`,
    `population=20`, `replicas=6`, `epsilon=0.1`); no strategy takes a budget, and an unknown
    option raises EngineError listing the known ones.
    """

    def __init__(self, name: str, space: Space | RecordedSpace, seed: int = 0, **options: float) -> None:
        self.space = space.space if isinstance(space, RecordedSpace) else space
        self.name = name
        self.seed = seed
        self._raw = _engine.Strategy(
            name, space.raw, seed, {k: float(v) for k, v in options.items()}
        )

    def ask(self, n: int = 1) -> list[Candidate]:
        """Up to n new valid candidates (fewer once the space is exhausted)."""
        return [self.space.candidate(v) for v in self._raw.ask(n)]

    def tell(self, candidate: Candidate | Sequence[int], time_s: float | None) -> None:
        """Report a measured time in seconds, or None for a failure (compile error, wrong result)."""
        self._raw.tell(self.space.values(candidate), None if time_s is None else float(time_s))

    def set_scores(self, scores: Iterable[tuple[Candidate | Sequence[int], float]]) -> None:
        """Predicted times from a cost model ('model' strategy)."""
        self._raw.set_scores([(self.space.values(c), float(t)) for c, t in scores])

    def best(self) -> tuple[Candidate, float] | None:
        found = self._raw.best()
        return None if found is None else (self.space.candidate(found[0]), found[1])

    @property
    def evaluations(self) -> int:
        return self._raw.evaluations

    @property
    def failures(self) -> int:
        return self._raw.failures


@dataclass
class RunResult:
    seed: int
    curve: list[float | None]  # best-so-far seconds after each evaluation (None: no success yet)
    evaluations: int
    failures: int
    seconds: float  # compile + run seconds spent
    best_time: float | None
    best_values: list[int] | None
    evals_to_95: int | None  # evaluations until best <= best_known / 0.95
    evals_to_99: int | None
    seconds_to_95: float | None
    seconds_to_99: float | None


@dataclass
class SimulationResult:
    strategy: str
    budget: int
    best_known: float
    runs: list[RunResult] = field(default_factory=list)
    options: dict[str, float] = field(default_factory=dict)

    def summary(self, space_size: int | None = None) -> dict[str, Any]:
        """Medians over runs (a run that never reached a goal counts as budget + 1 evals),
        with a bootstrap 95% interval of the median evaluations to 95%; given the space's
        size, the share of seeds reaching 95% within 1% of it (evaluations <= 1% of the
        points) and its one-sided 95% Clopper-Pearson bounds."""
        from .tune.confidence import cp_lower, cp_upper, median_ci

        def med(xs: list[float]) -> float | None:
            return statistics.median(xs) if xs else None

        n = len(self.runs)
        out: dict[str, Any] = {"runs": n, "best_known": self.best_known}
        for goal in ("95", "99"):
            evals = [getattr(r, f"evals_to_{goal}") for r in self.runs]
            secs = [getattr(r, f"seconds_to_{goal}") for r in self.runs]
            censored = [float(e) if e is not None else float(self.budget + 1) for e in evals]
            out[f"reached_{goal}"] = sum(e is not None for e in evals) / n if n else 0.0
            out[f"median_evals_to_{goal}"] = med(censored)
            out[f"median_seconds_to_{goal}"] = med([s for s in secs if s is not None])
            if goal == "95":
                out["median_evals_to_95_ci95"] = list(median_ci(censored))
        if space_size:
            limit = space_size // 100
            hits = sum(r.evals_to_95 is not None and r.evals_to_95 <= limit for r in self.runs)
            out["one_percent_of_space"] = limit
            out["share_95_within_1pct"] = hits / n if n else 0.0
            out["share_95_within_1pct_cp95"] = [cp_lower(hits, n), cp_upper(hits, n)]
        finals = [r.best_time for r in self.runs if r.best_time is not None]
        out["median_final_best"] = med(finals)
        return out

    def to_json(self, space_size: int | None = None, curve_points: int = 0) -> dict[str, Any]:
        """Summary and per-run figures; each run's best-so-far curve only when
        `curve_points` > 0, thinned to about that many evaluations (log-spaced, the last
        always kept)."""
        runs = []
        for r in self.runs:
            row = {k: v for k, v in asdict(r).items() if k != "curve"}
            if curve_points > 0 and r.curve:
                row["curve"] = thin_curve(r.curve, curve_points)
            runs.append(row)
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "options": self.options,
            "best_known": self.best_known,
            "summary": self.summary(space_size),
            "runs": runs,
        }


def thin_curve(curve: Sequence[float | None], points: int) -> list[tuple[int, float | None]]:
    """(evaluation, best so far) at about `points` log-spaced evaluations, 1-based, the
    first and last included: enough to draw a curve on a log axis at a fraction of the size."""
    n = len(curve)
    if n == 0 or points <= 0:
        return []
    picks = {1, n}
    for j in range(points):
        picks.add(max(1, min(n, round(n ** (j / max(points - 1, 1))))))
    return [(e, curve[e - 1]) for e in sorted(picks)]


def simulate(
    space: RecordedSpace,
    strategy: str,
    seeds: int | Sequence[int] = 30,
    budget: int = 200,
    threads: int = 0,
    options: Mapping[str, float] | None = None,
    scores: Sequence[float] | None = None,
    oracle_noise: float | None = None,
    batch: int = 1,
    stop_at: float | None = None,
    curves: bool = True,
) -> SimulationResult:
    """Replay `strategy` over a recorded space, one run per seed, `threads` cores (0 = all).

    `seeds` is a count (seeds 0..n-1) or explicit seeds. 'model' needs `scores` (a predicted
    time per record, in record order). `ORACLE` is the model ranked by the recorded time times
    exp(oracle_noise * N(0, 1)): it reads the answer, so it is a reference, never a strategy.
    `stop_at` (e.g. 0.95) ends each run once it reaches that fraction of the best speed;
    `curves=False` leaves the per-evaluation curves out (empty lists).
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    opts = {k: float(v) for k, v in (options or {}).items()}
    raw = _engine.simulate(
        space.raw, strategy, seed_list, int(budget), int(threads), opts,
        None if scores is None else [float(s) for s in scores], oracle_noise, int(batch),
        stop_at, bool(curves),
    )
    return SimulationResult(
        strategy=strategy,
        budget=int(budget),
        best_known=raw["best_known"],
        runs=[RunResult(**r) for r in raw["runs"]],
        options=opts,
    )


@dataclass
class TelemetrySamples:
    t: np.ndarray  # CLOCK_MONOTONIC seconds (time.monotonic())
    sm_mhz: np.ndarray
    temp_c: np.ndarray
    power_w: np.ndarray  # NaN where a reading failed

    def __len__(self) -> int:
        return len(self.t)


class Telemetry:
    """Samples SM clock, temperature and power on a background thread into a ring buffer.

    `source`: "auto" (NVML, else AMD hwmon, else absent), "nvml", "hwmon", "none", or
    "synthetic" (deterministic values, for tests). With no sensor, `source` is None,
    `status` starts with "absent: ..." and `start()` returns False: absent is never zeros.
    An explicit source that is unavailable raises EngineError.
    """

    def __init__(self, source: str = "auto", rate_hz: float = 1000.0, capacity: int = 600_000, device: int = 0) -> None:
        self._raw = _engine.Telemetry(source, float(rate_hz), int(capacity), int(device))

    @property
    def source(self) -> str | None:
        return self._raw.source

    @property
    def status(self) -> str:
        return self._raw.status

    @property
    def running(self) -> bool:
        return self._raw.running

    @property
    def dropped(self) -> int:
        """Samples overwritten before they were read (raise `capacity` or read more often)."""
        return self._raw.dropped

    def start(self) -> bool:
        return self._raw.start()

    def stop(self) -> None:
        self._raw.stop()

    def samples(self, clear: bool = False) -> TelemetrySamples:
        cols = self._raw.samples(clear)
        return TelemetrySamples(*(np.asarray(c, dtype=np.float64) for c in cols))

    def __enter__(self) -> "Telemetry":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def monotonic() -> float:
    """The telemetry clock (CLOCK_MONOTONIC), for checking alignment with time.monotonic()."""
    return _engine.monotonic()


__all__ = [
    "STRATEGIES", "PRIOR_FREE", "ORACLE", "SCHEMA", "Space", "RecordedSpace", "Strategy", "RunResult",
    "SimulationResult", "simulate", "thin_curve", "save_recorded_space", "Telemetry", "TelemetrySamples",
    "monotonic",
]
