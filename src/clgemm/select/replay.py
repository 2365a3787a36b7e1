"""Replay a workload trace through the static table, the online selector and an oracle.

A trace is JSON lines. A call: {"m": 1024, "n": 1024, "k": 1024, "trans_a": false,
"trans_b": false, "repeat": 20}; a phase marker: {"phase": "load_on"} / {"phase": "load_off"}
(a second process loads the device between them when replaying with load); blank lines and
lines starting with '#' are skipped. A line may carry "name" (ignored by the replay).

Protocol, per distinct shape: every arm is checked against a float64 reference on that exact
shape (rows sampled, C poisoned with NaN first) and arms that fail are never run for it; the
survivors are timed (median of `oracle_reps` event-profiled runs, quiet device): the oracle's
choice is the fastest. Then, for every call, the static choice, the online choice and the
oracle's choice are each run once, back to back on device buffers (one run shared when two
policies pick the same schedule), so all three see the same device conditions (load
included), and the online selector observes its own kernel time. Only kernel time is counted
(OpenCL event profiling); no host copy is timed.

Decision quality: share of calls whose schedule's quiet time on that shape is within
`quality_tol` (5%) of the oracle's.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..schedule import Schedule
from .online import OnlineSelector, shape_key

_U = 2.0**-24


@dataclass(frozen=True)
class Call:
    m: int
    n: int
    k: int
    trans_a: bool = False
    trans_b: bool = False
    repeat: int = 1
    name: str = field(default="", compare=False)  # "<class>.<product>", for reports
    batch: int = 1  # products of this shape in one batched call (attention heads)

    @property
    def shape(self) -> tuple[int, int, int, bool, bool]:
        return (self.m, self.n, self.k, self.trans_a, self.trans_b)

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.batch


@dataclass(frozen=True)
class Phase:
    name: str  # load_on | load_off


Event = Call | Phase


def parse_trace(lines: Iterable[str], source: str = "<trace>") -> list[Event]:
    events: list[Event] = []
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{i}: not JSON ({exc})") from exc
        if "phase" in obj:
            if obj["phase"] not in ("load_on", "load_off"):
                raise ValueError(f"{source}:{i}: unknown phase {obj['phase']!r}")
            events.append(Phase(obj["phase"]))
            continue
        try:
            call = Call(int(obj["m"]), int(obj["n"]), int(obj["k"]), bool(obj.get("trans_a", False)),
                        bool(obj.get("trans_b", False)), int(obj.get("repeat", 1)),
                        str(obj.get("name", "")), int(obj.get("batch", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}:{i}: a call needs integer m, n, k ({exc})") from exc
        if min(call.m, call.n, call.k) < 1 or call.repeat < 1 or call.batch < 1:
            raise ValueError(f"{source}:{i}: m, n, k, repeat and batch must be >= 1")
        events.append(call)
    return events


def read_trace(path: str | Path) -> list[Event]:
    path = Path(path)
    return parse_trace(path.read_text().splitlines(), str(path))


def read_candidates(path: str | Path) -> list[Schedule]:
    """Schedule keys, one a line ('#' comments), or a JSON list of keys or dicts."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        items = json.loads(text)
        return [Schedule.from_key(x) if isinstance(x, str) else Schedule.from_dict(x) for x in items]
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Schedule.from_key(line))
    return out


# ---- backends ----------------------------------------------------------------------------
class Backend(Protocol):
    def describe(self) -> dict: ...
    def validate(self, schedule: Schedule, call: Call) -> tuple[bool, str]: ...
    def run(self, schedule: Schedule, call: Call) -> float: ...
    def set_load(self, on: bool) -> None: ...
    def close(self) -> None: ...


class SimulatedBackend:
    """A synthetic device: `cost(schedule_key, call, loaded) -> seconds`, with lognormal noise.
    Deterministic for a seed; arms in `wrong` fail validation."""

    def __init__(self, cost: Callable[[str, Call, bool], float], noise: float = 0.02,
                 seed: int = 0, wrong: Iterable[str] = ()) -> None:
        self.cost, self.noise = cost, noise
        self.rng = np.random.default_rng(seed)
        self.wrong = set(wrong)
        self.loaded = False
        self.runs = 0

    def describe(self) -> dict:
        return {"name": "simulated", "type": "SIMULATED", "noise": self.noise}

    def validate(self, schedule: Schedule, call: Call) -> tuple[bool, str]:
        ok = schedule.key() not in self.wrong
        return ok, "ok" if ok else "wrong: simulated bad kernel"

    def run(self, schedule: Schedule, call: Call) -> float:
        self.runs += 1
        t = self.cost(schedule.key(), call, self.loaded)
        return float(t * math.exp(self.noise * self.rng.standard_normal()))

    def set_load(self, on: bool) -> None:
        self.loaded = on

    def close(self) -> None:
        pass


def _load_worker(device_spec: str, size: int, ready, on, stop) -> None:  # pragma: no cover
    """A second process that runs square GEMMs back to back while `on` is set."""
    os.environ["CLGEMM_DEVICE"] = device_spec
    import pyopencl as cl

    from ..lanes.fp32 import get_kernel, layout_for

    from ..operands import Operand
    from ..runtime import get_runtime
    from .table import load_table

    rt = get_runtime()
    schedule = load_table(rt.device).default
    mf = cl.mem_flags
    host = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=host), 0, size, False)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=host), 0, size, False)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE, size=host.nbytes), 0, size, False)
    kernel = get_kernel(rt, schedule, layout_for(schedule, a, b, c))
    kernel.enqueue(size, size, size, 1.0, 0.0, a, b, c).wait()
    ready.set()
    while not stop.is_set():
        if not on.wait(0.02):
            continue
        events = [kernel.enqueue(size, size, size, 1.0, 0.0, a, b, c) for _ in range(2)]
        events[-1].wait()


class LoadProcess:
    """The `--load` helper: a spawned process loading the device during load phases."""

    def __init__(self, device_spec: str, size: int, timeout_s: float = 300.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._on, self._stop = ctx.Event(), ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_load_worker, daemon=True,
                                args=(device_spec, size, self._ready, self._on, self._stop))
        self.proc.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise RuntimeError("the load process did not start (see its stderr)")

    def set(self, on: bool) -> None:
        (self._on.set if on else self._on.clear)()

    def close(self) -> None:
        self._stop.set()
        self._on.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


class OpenCLBackend:
    """A real device: fixed random inputs per shape in device buffers, event-profiled runs."""

    def __init__(self, rt, load_size: int | None = None, check_rows: int = 64,
                 seed: int = 7) -> None:
        self.rt = rt
        self.check_rows = check_rows
        self.seed = seed
        self._problems: dict[tuple, dict] = {}
        self._load: LoadProcess | None = None
        self.load_size = load_size

    def describe(self) -> dict:
        return self.rt.device.summary()

    def _problem(self, call: Call) -> dict:
        import pyopencl as cl

        from ..operands import Operand

        key = call.shape
        p = self._problems.get(key)
        if p is not None:
            return p
        rng = np.random.default_rng(self.seed + len(self._problems))
        m, n, k = call.m, call.n, call.k
        a_shape = (k, m) if call.trans_a else (m, k)
        b_shape = (n, k) if call.trans_b else (k, n)
        A = rng.standard_normal(a_shape).astype(np.float32)
        B = rng.standard_normal(b_shape).astype(np.float32)
        mf = cl.mem_flags
        ctx = self.rt.context
        a = Operand(cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, a_shape[1],
                    call.trans_a)
        b = Operand(cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, b_shape[1],
                    call.trans_b)
        c_buf = cl.Buffer(ctx, mf.READ_WRITE, size=4 * m * n)
        p = {"A": A, "B": B, "a": a, "b": b, "c": Operand(c_buf, 0, n, False), "c_buf": c_buf}
        self._problems[key] = p
        return p

    def _product(self, schedule: Schedule, p: dict, call: Call) -> list:
        """The product on this call's operands as the public call runs it (its events)."""
        from ..lanes.fp32 import enqueue_product

        return enqueue_product(self.rt, schedule, call.m, call.n, call.k, 1.0, 0.0, p["a"],
                               p["b"], p["c"])

    def validate(self, schedule: Schedule, call: Call) -> tuple[bool, str]:
        """Compare the kernel's result with float64 on sampled rows of C (C poisoned first)."""
        import pyopencl as cl

        from ..errors import ClgemmError

        p = self._problem(call)
        m, n, k = call.m, call.n, call.k
        try:
            poison = np.full((m, n), np.nan, np.float32)
            cl.enqueue_copy(self.rt.queue, p["c_buf"], poison, is_blocking=True)
            self._product(schedule, p, call)[-1].wait()
            out = np.empty((m, n), np.float32)
            cl.enqueue_copy(self.rt.queue, out, p["c_buf"], is_blocking=True)
        except (ClgemmError, cl.Error) as exc:
            return False, f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        if "ref" not in p:  # float64 reference of sampled rows, once per shape
            rng = np.random.default_rng(self.seed)
            rows = np.arange(m) if m <= self.check_rows else np.sort(
                rng.choice(m, self.check_rows, replace=False))
            A = p["A"].T if call.trans_a else p["A"]
            B = p["B"].T if call.trans_b else p["B"]
            a_rows = np.ascontiguousarray(A[rows])
            p["rows"], p["a_rows"], p["B_op"] = rows, a_rows, B
            p["ref"] = a_rows.astype(np.float64) @ B.astype(np.float64)
            p["np_f32"] = (a_rows @ B).astype(np.float64)
        rows, a_rows, B, ref = p["rows"], p["a_rows"], p["B_op"], p["ref"]
        got = out[rows].astype(np.float64)
        if not np.isfinite(got).all():
            return False, "wrong: unwritten or non-finite outputs"
        if got.size < 256:
            bound = (k + 2) * _U * (np.abs(a_rows.astype(np.float64)) @ np.abs(B.astype(np.float64)))
            excess = float((np.abs(got - ref) / (bound * 1.0001 + 1e-300)).max())
            return (excess <= 1.0), f"worst-case bound ratio {excess:.3f}"
        denom = np.linalg.norm(ref)
        err = float(np.linalg.norm(got - ref) / denom) if denom > 0 else 0.0
        np_err = float(np.linalg.norm(p["np_f32"] - ref) / denom) if denom else 0.0
        limit = max(2.0 * np_err, 1e-7)
        return err <= limit, f"rel error {err:.2e} (limit {limit:.2e})"

    def run(self, schedule: Schedule, call: Call) -> float:
        p = self._problem(call)
        return self.rt.timed(lambda: self._product(schedule, p, call))

    def set_load(self, on: bool) -> None:
        if self.load_size is None:
            return
        if self._load is None:
            self._load = LoadProcess(self.rt.device.fingerprint, self.load_size)
        self._load.set(on)

    def start_load_process(self) -> None:
        """Start the helper ahead of time (so its start-up is not inside a load phase)."""
        if self.load_size is not None and self._load is None:
            self._load = LoadProcess(self.rt.device.fingerprint, self.load_size)

    def close(self) -> None:
        if self._load is not None:
            self._load.close()
            self._load = None


# ---- the replay --------------------------------------------------------------------------
def _calls(events: Sequence[Event]) -> Iterator[Call]:
    for e in events:
        if isinstance(e, Call):
            yield e


def measure_oracle(backend: Backend, shapes: Iterable[Call], arms: Sequence[Schedule],
                   reps: int = 3, log: Callable[[str], None] | None = None) -> dict:
    """Per shape: validation of every arm, then the median quiet time of those that pass.
    A shape no arm computes correctly gets no times and a `skipped` reason (the replay leaves
    its calls out and says so) instead of ending the whole replay."""
    table: dict[tuple, dict] = {}
    for call in shapes:
        entry = {"times": {}, "rejected": {}}
        for arm in arms:
            ok, detail = backend.validate(arm, call)
            if not ok:
                entry["rejected"][arm.key()] = detail
                continue
            backend.run(arm, call)  # warm-up
            entry["times"][arm.key()] = statistics.median(backend.run(arm, call)
                                                          for _ in range(reps))
        table[call.shape] = entry
        if not entry["times"]:
            why = "; ".join(f"{k}: {v}" for k, v in entry["rejected"].items())
            entry["skipped"] = f"no arm passed the accuracy check ({why})"
            if log:
                log(f"  skipped {shape_key(*call.shape)}: {entry['skipped']}")
            continue
        entry["oracle"] = min(entry["times"], key=entry["times"].get)
        if log:
            best = entry["times"][entry["oracle"]]
            log(f"  oracle {shape_key(*call.shape)}: {entry['oracle']} "
                f"{call.flops / best / 1e9:.1f} GFLOPS, {len(entry['times'])} arm(s) valid")
    return table


def replay(events: Sequence[Event], backend: Backend, selector: OnlineSelector,
           arms: Sequence[Schedule], oracle: dict | None = None, oracle_reps: int = 3,
           quality_tol: float = 0.05, name: str = "trace",
           log: Callable[[str], None] | None = None) -> dict:
    """Replay `events`; returns the report (see the module docstring)."""
    wall0 = time.perf_counter()
    by_key = {a.key(): a for a in arms}
    distinct = list(dict.fromkeys(Call(*c.shape) for c in _calls(events)))
    if oracle is None:
        oracle = {}
    todo = [c for c in distinct if c.shape not in oracle]
    oracle.update(measure_oracle(backend, todo, arms, oracle_reps, log))

    policies = ("static", "online", "oracle")
    totals = {p: 0.0 for p in policies}
    phase_totals = {ph: {p: 0.0 for p in policies} for ph in ("quiet", "load")}
    good = {p: 0 for p in ("static", "online")}
    exact = {p: 0 for p in ("static", "online")}
    calls = 0
    phase_calls = {"quiet": 0, "load": 0}
    loaded = False
    reasons: dict[str, int] = {}
    per_shape: dict[str, dict] = {}
    rotate = 0
    selector.begin_epoch()  # the exploration bound holds per trace (and so over the suite)
    explore_before = selector.explored
    calls_before = selector.calls
    try:
        for ev in events:
            if isinstance(ev, Phase):
                loaded = ev.name == "load_on"
                backend.set_load(loaded)
                continue
            entry = oracle[ev.shape]
            if "skipped" in entry:
                continue
            allowed = [by_key[a] for a in entry["times"]]
            best_key = entry["oracle"]
            best_q = entry["times"][best_key]
            phase = "load" if loaded else "quiet"
            for _ in range(ev.repeat):
                dec = selector.choose(ev.m, ev.n, ev.k, ev.trans_a, ev.trans_b, allowed=allowed)
                picks = {"static": dec.static, "online": dec.schedule, "oracle": by_key[best_key]}
                order = list(dict.fromkeys(picks.values()))
                rotate = (rotate + 1) % len(order)
                order = order[rotate:] + order[:rotate]
                t = {s: backend.run(s, ev) for s in order}
                selector.observe(dec, t[dec.schedule])
                calls += 1
                phase_calls[phase] += 1
                reasons[dec.reason] = reasons.get(dec.reason, 0) + 1
                row = per_shape.setdefault(shape_key(*ev.shape), {
                    "calls": 0, "static": 0.0, "online": 0.0, "oracle": 0.0, "online_picks": {}})
                row["calls"] += 1
                for p in policies:
                    totals[p] += t[picks[p]]
                    phase_totals[phase][p] += t[picks[p]]
                    row[p] += t[picks[p]]
                ok = row["online_picks"]
                ok[dec.schedule.key()] = ok.get(dec.schedule.key(), 0) + 1
                for p in ("static", "online"):
                    q = entry["times"][picks[p].key()]
                    good[p] += q <= (1.0 + quality_tol) * best_q
                    exact[p] += picks[p].key() == best_key
    finally:
        backend.set_load(False)

    def regret(p: str) -> dict:
        r = totals[p] - totals["oracle"]
        return {"seconds": r, "relative": r / totals["oracle"] if totals["oracle"] else 0.0}

    explored = selector.explored - explore_before
    sel_calls = selector.calls - calls_before
    report = {
        "trace": name,
        "calls": calls,
        "distinct_shapes": len(distinct),
        "total_s": totals,
        "regret": {p: regret(p) for p in policies},
        "online_vs_static": (totals["online"] / totals["static"] - 1.0) if totals["static"] else 0.0,
        "decision_quality": {p: good[p] / calls if calls else 0.0 for p in good},
        "picked_oracle_exactly": {p: exact[p] / calls if calls else 0.0 for p in exact},
        "quality_tol": quality_tol,
        "phases": {ph: {"calls": phase_calls[ph], "total_s": phase_totals[ph]}
                   for ph in phase_totals if phase_calls[ph]},
        "online": {
            "reasons": reasons,
            "explore_share": explored / sel_calls if sel_calls else 0.0,
            "explore_bound": selector.explore_share,
            "selector": selector.summary(),
        },
        "shapes": {shape_key(*c.shape): {
            "quiet_s": oracle[c.shape]["times"], "oracle": oracle[c.shape].get("oracle"),
            "rejected": oracle[c.shape]["rejected"], **per_shape.get(shape_key(*c.shape), {}),
        } for c in distinct if "skipped" not in oracle[c.shape]},
        "skipped": {shape_key(*c.shape): oracle[c.shape]["skipped"] for c in distinct
                    if "skipped" in oracle[c.shape]},
        "wall_s": time.perf_counter() - wall0,
    }
    return report


def format_report(r: dict) -> str:
    t, reg, q = r["total_s"], r["regret"], r["decision_quality"]
    lines = [
        f"{r['trace']}: {r['calls']} calls, {r['distinct_shapes']} shapes",
        f"  total   static {t['static'] * 1e3:10.2f} ms   online {t['online'] * 1e3:10.2f} ms   "
        f"oracle {t['oracle'] * 1e3:10.2f} ms",
        f"  regret  static {reg['static']['relative'] * 100:+7.2f} %     online "
        f"{reg['online']['relative'] * 100:+7.2f} %   (online vs static "
        f"{r['online_vs_static'] * 100:+.2f} %)",
        f"  quality static {q['static'] * 100:6.1f} %      online {q['online'] * 100:6.1f} %   "
        f"(picked within {r['quality_tol'] * 100:.0f}% of the oracle)",
        f"  online  explore share {r['online']['explore_share'] * 100:.1f} % "
        f"(bound {r['online']['explore_bound'] * 100:.0f} %), reasons {r['online']['reasons']}, "
        f"trips {r['online']['selector']['safety_trips']}, "
        f"drift alarms {r['online']['selector']['drift_alarms']}",
    ]
    for shape, why in r.get("skipped", {}).items():
        lines.append(f"  skipped {shape}: {why}")
    for ph, v in r.get("phases", {}).items():
        pt = v["total_s"]
        lines.append(f"  phase {ph:5s}: {v['calls']} calls, static {pt['static'] * 1e3:.2f} ms, "
                     f"online {pt['online'] * 1e3:.2f} ms, oracle {pt['oracle'] * 1e3:.2f} ms")
    return "\n".join(lines)
