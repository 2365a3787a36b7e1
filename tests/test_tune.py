"""The auto-scheduler (`clgemm.tune`): constraints, resume after a kill, failures recorded,
every strategy on a recorded space, and distillation -- on PoCL with tiny problems.

Device tests use 64x64x64 products, one compile worker and 2 timed repeats; the strategy
tests drive `tune()` against a synthetic landscape (no device work), so they are exact.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clgemm import engine
from clgemm.lanes import fp32
from clgemm.schedule import DeviceLimits, Schedule, SearchSpace
from clgemm.select.table import Table, load_table, shape_class
from clgemm.tune import loop
from clgemm.tune.db import TuningDB
from clgemm.tune.distill import COVER_TOLERANCE, Confirmed, build_table, cover, distill, write_table
from clgemm.tune.loop import TuneConfig, tune
from clgemm.tune.measure import Measurement, Problem, _compile_one
from clgemm.tune.model import CostModel, prior_time
from clgemm.tune.record import sample_valid

import clgemm
from conftest import require_valid

SRC = Path(clgemm.__file__).resolve().parent.parent  # subprocesses import the clgemm tested
TINY = Problem(64, 64, 64)


TIGHT_LIMITS = dict(max_work_group_size=64, local_mem_bytes=4096, max_accumulators=24)
TIGHT_CLI = (
    "import sys\n"
    "from clgemm.lanes import fp32\n"
    "from clgemm.schedule import DeviceLimits, SearchSpace\n"
    f"tight = SearchSpace(DeviceLimits(**{TIGHT_LIMITS!r}))\n"
    "fp32.search_space = lambda rt: tight\n"
    "from clgemm.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture(autouse=True, scope="module")
def _one_engine_space_per_spec():
    """The engine enumerates a space in ~2 s (PoCL's, or the tight one); every tune() and
    sample_valid() here built it again, ~15 times. Its spaces are immutable (a frozen
    pyclass), so these tests share one per spec; test_engine builds them fresh."""
    built: dict[tuple[str, int], engine.Space] = {}
    original = engine.Space.from_search_space.__func__

    def from_search_space(cls, search_space, max_enumerate=engine._engine.DEFAULT_MAX_ENUMERATE):
        key = (json.dumps(search_space.engine_spec(), sort_keys=True), max_enumerate)
        if key not in built:
            built[key] = original(cls, search_space, max_enumerate)
        return built[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine.Space, "from_search_space", classmethod(from_search_space))
        yield


@pytest.fixture(scope="module")
def rt():
    from clgemm.runtime import get_runtime

    return get_runtime()


@pytest.fixture(scope="module")
def device_space(rt):
    return fp32.search_space(rt)


@pytest.fixture
def tight_space(monkeypatch):
    """PoCL's space narrowed to small kernels (work-groups <= 64, few accumulators), so that
    compiles are quick; the narrowed space is a subset of the real one."""
    tight = SearchSpace(DeviceLimits(**TIGHT_LIMITS))
    monkeypatch.setattr(fp32, "search_space", lambda _rt: tight)
    return tight


def db_rows(path, problem=TINY):
    con = sqlite3.connect(path)
    try:
        return con.execute(
            "SELECT schedule, session, time_s, error, run_id, created FROM measurements "
            "WHERE m=? AND n=? AND k=? ORDER BY created", (problem.m, problem.n, problem.k)
        ).fetchall()
    finally:
        con.close()


def runs(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT run_id, status, started, finished FROM runs ORDER BY started"
                           ).fetchall()
    finally:
        con.close()


def subprocess_env() -> dict:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# ---- test doubles -------------------------------------------------------------------
class InlinePool:
    """CompilePool's interface, compiling in this process (so monkeypatches apply)."""

    received: list[Schedule] = []

    def __init__(self, workers, device_spec):
        self.workers = max(1, workers)

    def compile(self, schedules, problem):
        for s in schedules:
            type(self).received.append(s)
            key, seconds, error = _compile_one(s.key(), problem)
            yield Schedule.from_key(key), seconds, error

    def close(self):
        pass


def landscape(s: Schedule) -> float | None:
    """A deterministic synthetic time: the roofline prior shaped by a few parameters the cost
    model has features for; a tenth of the points fail (as compile errors would)."""
    if (s.wg_m * 7 + s.out_n * 3 + s.tile_k) % 10 == 0:
        return None
    t = prior_time(s) * 1e-3
    t *= 1.0 + 0.4 * abs(math.log2(s.threads) - 6)  # 64 threads is the sweet spot
    t *= 1.0 + 0.02 * abs(s.accumulators() - 32)
    t *= 0.8 if s.vec_c == 4 else 1.0
    t *= 1.3 if s.double_buffer else 1.0
    return t


class SyntheticBench:
    """Bench's interface, returning `landscape` times without touching the device."""

    calls: list[Schedule] = []

    def __init__(self, rt, problem, repeats=5, warmup=1, input_sets=2, seed=None):
        self.problem, self.repeats, self.warmup, self.sets = problem, repeats, warmup, [0, 1]

    def measure(self, schedule, compile_s=None, max_error_ratio=2.0, give_up=None):
        type(self).calls.append(schedule)
        t = landscape(schedule)
        if t is None:
            return Measurement(schedule, None, compile_s, "compile: synthetic failure")
        return Measurement(schedule, t, compile_s, None, 1e-7, [t, t])


class NoCompilePool(InlinePool):
    def compile(self, schedules, problem):
        for s in schedules:
            type(self).received.append(s)
            yield s, 0.0, None


# ---- constraints ------------------------------------------------------------------
def test_tuner_only_compiles_valid_schedules(rt, device_space, tmp_path, monkeypatch):
    # Tighter limits than PoCL's (4096 work-items, 512 KiB local), so that most of the domain
    # product is invalid here: the tuner must honour the device's space, not the domains.
    tight = SearchSpace(DeviceLimits(**TIGHT_LIMITS))
    assert sum(1 for _ in sample_valid(tight, 50, 1)) > 0
    device_space_valid = engine.Space.from_search_space(device_space).valid_count()
    monkeypatch.setattr(fp32, "search_space", lambda _rt: tight)
    monkeypatch.setattr(loop, "CompilePool", type("Rec", (InlinePool,), {"received": []}))
    rows = []
    for strategy in ("annealing", "model"):  # the budget counts the database's rows: one each
        with TuningDB(tmp_path / f"{strategy}.sqlite") as db:
            r = tune(TuneConfig(TINY, strategy, budget_evals=3, workers=1, repeats=2, seed=3,
                                model_pool=200), db)
            rows += db.rows(rt.device.fingerprint, TINY)
        assert r.status == "budget" and r.evaluations == 3
        assert r.valid_count < device_space_valid  # the tight space is the one searched
    received = loop.CompilePool.received
    assert len(received) == 6
    for s in received:
        assert tight.is_valid(s), (s.key(), tight.violations(s))
    assert len(rows) == 6
    for row in rows:
        assert tight.is_valid(Schedule.from_key(row.schedule)) and device_space.is_valid(
            Schedule.from_key(row.schedule))


def test_invalid_schedule_is_refused_before_compiling(device_space):
    bad = Schedule(wg_m=32, wg_n=32, out_m=16, out_n=16)  # 512 accumulators: breaks registers
    assert not device_space.is_valid(bad)
    _, _, error = _compile_one(bad.key(), TINY)
    assert error is not None and "registers" in error


# ---- resume after a kill -------------------------------------------------------------
def test_resume_after_sigkill(tmp_path):
    path = tmp_path / "resume.sqlite"
    budget = 7
    # `clgemm tune`'s own main, with the space narrowed to small kernels (fast compiles) and
    # each measurement held 0.2 s, so that with a warm kernel cache (compiles of ~0 s) the
    # run is still going when the test kills it
    slow = TIGHT_CLI.replace(
        "from clgemm.cli import main\n",
        "import time\nfrom clgemm.tune import measure\n_measure = measure.Bench.measure\n"
        "measure.Bench.measure = lambda *a, **k: (time.sleep(0.2), _measure(*a, **k))[1]\n"
        "from clgemm.cli import main\n")
    assert slow != TIGHT_CLI
    cmd = [sys.executable, "-c", slow, "tune", "--size", "64", "--strategy", "random",
           "--budget", str(budget), "--workers", "1", "--repeats", "2", "--db", str(path)]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    if len(db_rows(path)) >= 3:
                        break
                except sqlite3.OperationalError:
                    pass  # schema not there yet
            if proc.poll() is not None:
                pytest.fail(f"tune exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("no 3 rows within 120 s")
        os.killpg(proc.pid, signal.SIGKILL)  # the tuner and its compile worker, at once
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = db_rows(path)
    assert 3 <= len(before) < budget
    (killed,) = runs(path)
    assert killed[1] == "running" and killed[3] is None

    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} results already in" in done.stderr
    after = db_rows(path)
    assert len(after) == budget
    assert len({r[0] for r in after}) == budget  # no schedule twice
    # The first run's rows are untouched (INSERT OR REPLACE would renew run id and created).
    by_key = {r[0]: r for r in after}
    for row in before:
        assert by_key[row[0]] == row
    new_run = {r[4] for r in after} - {r[4] for r in before}
    assert len(new_run) == 1 and sum(r[4] in new_run for r in after) == budget - len(before)
    old, new = runs(path)
    # the resumed run found the killed one's process gone and marked it
    assert old[0] == killed[0] and old[1] == "interrupted" and old[3] is None
    assert new[0] in new_run and new[1] == "budget" and new[3] is not None
    # A third run with the budget reached measures nothing.
    again = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 evaluated now" in again.stdout
    assert db_rows(path) == after


# ---- failures are results -------------------------------------------------------------
def test_compile_errors_and_wrong_results_are_recorded(rt, tmp_path, monkeypatch, tight_space):
    sabotage: dict[Schedule, str] = {}
    original = fp32.render

    def render(s, layout, **options):
        src = original(s, layout, **options)
        if sabotage.get(s) == "compile":
            return src + "\n#error injected by test_tune\n"
        if sabotage.get(s) == "wrong":  # the inner product's B operand scaled by 1.01
            lines = src.split("\n")
            hits = [i for i, line in enumerate(lines) if "acc[r][c] =" in line and "b[c]" in line]
            assert len(hits) == 1, "the generator's inner product changed: update this test"
            lines[hits[0]] = lines[hits[0]].replace("b[c]", "(b[c] * 1.01f)")
            return "\n".join(lines)
        return src

    class Saboteur(InlinePool):
        received = []

        def compile(self, schedules, problem):
            for s in schedules:
                if len(sabotage) < 2:
                    sabotage[s] = "compile" if not sabotage else "wrong"
            yield from super().compile(schedules, problem)

    monkeypatch.setattr(fp32, "render", render)
    monkeypatch.setattr(rt, "_memo", {})  # no kernel built before the sabotage
    monkeypatch.setattr(loop, "CompilePool", Saboteur)
    with TuningDB(tmp_path / "f.sqlite") as db:
        r = tune(TuneConfig(TINY, "random", budget_evals=4, workers=1, repeats=2, seed=11), db)
        rows = {row.schedule: row for row in db.rows(rt.device.fingerprint, TINY)}
    assert r.status == "budget" and r.evaluations == 4 and r.failures == 2
    (broken,) = [s for s, how in sabotage.items() if how == "compile"]
    (wrong,) = [s for s, how in sabotage.items() if how == "wrong"]
    assert rows[broken.key()].time_s is None
    assert rows[broken.key()].error.startswith("compile:")
    assert "CompileError" in rows[broken.key()].error
    assert rows[wrong.key()].time_s is None and rows[wrong.key()].error.startswith("wrong:")
    healthy = [row for key, row in rows.items() if key not in (broken.key(), wrong.key())]
    assert len(healthy) == 2 and all(row.time_s > 0 and row.error is None for row in healthy)
    assert r.best is not None and r.best.key() in {row.schedule for row in healthy}


def test_give_up_times_a_slow_candidate_once(rt, tight_space):
    """A candidate whose first run after its check is more than `give_up` times the fastest
    such run so far keeps that one run as its time; the others are timed in full, and only
    they lower the bar."""
    from clgemm.tune.measure import Bench

    bench = Bench(rt, TINY, repeats=3, seed=3)
    fast, slow = sample_valid(tight_space, 2, seed=4)
    first = bench.measure(fast, give_up=3.0)  # nothing to compare with yet: timed in full
    assert first.ok and first.error is None and len(first.times_s) == 3
    assert bench.fastest_first_s == bench.first_s > 0
    bench.fastest_first_s = bench.first_s * 1e-6  # any real run is now far slower
    bar = bench.fastest_first_s
    gave_up = bench.measure(slow, give_up=3.0)
    assert gave_up.ok and gave_up.times_s == [gave_up.time_s] == [bench.first_s]
    assert gave_up.error.startswith("abandoned after one run") and gave_up.rel_error < 1e-5
    assert bench.fastest_first_s == bar  # an abandoned run never sets the bar
    full = bench.measure(slow)  # without give_up every candidate is timed in full
    assert full.error is None and len(full.times_s) == 3


# ---- strategies on a recorded space --------------------------------------------------
@pytest.fixture(scope="module")
def recorded(device_space, tmp_path_factory):
    """400 valid PoCL schedules with synthetic times (a tenth failing), saved as
    clgemm.space/1 and loaded back."""
    schedules = sample_valid(device_space, 400, seed=5)
    records = [{"schedule": s, "time_s": landscape(s), "compile_s": 0.5,
                "error": None if landscape(s) else "compile: synthetic"} for s in schedules]
    params = device_space.engine_spec()["params"]
    path = tmp_path_factory.mktemp("space") / "space.json"
    engine.save_recorded_space(path, params, records, device="synthetic", shape=[64, 64, 64])
    rec = engine.RecordedSpace.load(path)
    same = engine.RecordedSpace.from_rows(
        params, [(list(s.as_dict().values()), landscape(s), 0.5 + (landscape(s) or 0.0))
                 for s in schedules])
    return schedules, rec, same


def test_recorded_space_round_trip(recorded):
    schedules, rec, same = recorded
    assert len(rec) == len(same) == 400
    ok = [(landscape(s), s) for s in schedules if landscape(s)]
    best_t, best_s = min(ok)
    assert rec.best() == (best_s, pytest.approx(best_t)) == same.best()
    for s in schedules[:50]:
        (t, cost), (t2, cost2) = rec.lookup(s), same.lookup(s)
        assert cost == pytest.approx(cost2) == pytest.approx(0.5 + (landscape(s) or 0.0))
        assert t == (pytest.approx(landscape(s)) if landscape(s) else None) == t2


@pytest.mark.parametrize("strategy", engine.STRATEGIES)
def test_each_strategy_simulated_on_recorded_space(recorded, strategy, device_space):
    schedules, rec, _ = recorded
    budget = 80
    times = sorted(landscape(s) for s in schedules if landscape(s))
    kw = {}
    if strategy == "model":  # scores from the cost model's prior, in record order
        kw["scores"] = list(CostModel(device_space.limits.local_mem_bytes).predict(schedules))
    res = engine.simulate(rec, strategy, seeds=8, budget=budget, threads=1, **kw)
    assert res.best_known == pytest.approx(times[0])
    finals = []
    for run in res.runs:
        assert run.evaluations == budget == len(run.curve)
        assert 0 < run.failures < budget
        curve = [c for c in run.curve if c is not None]
        assert curve == sorted(curve, reverse=True)
        assert run.best_time == curve[-1] and run.best_time in times
        finals.append(run.best_time)
    # 80 of 400 points: the median run finds a point in the best tenth of the space.
    assert sorted(finals)[len(finals) // 2] <= times[len(times) // 10]
    if strategy == "model":  # the oracle (noise 0, no exploration): the best point first
        exact = engine.simulate(rec, engine.ORACLE, seeds=[0], budget=3, threads=1,
                                options={"epsilon": 0}, oracle_noise=0.0)
        assert exact.runs[0].curve[0] == pytest.approx(times[0])


@pytest.mark.parametrize("strategy", engine.STRATEGIES)
def test_tune_loop_drives_each_strategy(strategy, device_space, tmp_path, monkeypatch, rt):
    """The loop itself (ask, compile, measure, record, tell; the cost model refit each round
    for 'model') against the synthetic landscape over PoCL's whole space."""
    monkeypatch.setattr(loop, "Bench", type("B", (SyntheticBench,), {"calls": []}))
    monkeypatch.setattr(loop, "CompilePool", type("P", (NoCompilePool,), {"received": []}))
    budget = 30
    with TuningDB(tmp_path / "s.sqlite") as db:
        r = tune(TuneConfig(TINY, strategy, budget_evals=budget, workers=2, seed=1,
                            model_pool=150), db)
        rows = db.rows(rt.device.fingerprint, TINY)
    calls = loop.Bench.calls
    assert r.status == "budget" and r.evaluations == budget == len(rows)
    assert len(loop.CompilePool.received) == budget == len(set(loop.CompilePool.received))
    assert all(device_space.is_valid(Schedule.from_key(row.schedule)) for row in rows)
    assert calls == loop.CompilePool.received  # every compiled candidate measured, in order
    assert r.failures == sum(row.time_s is None for row in rows) == sum(
        landscape(s) is None for s in calls)
    ok = [landscape(s) for s in calls if landscape(s)]
    assert r.best_time_s == pytest.approx(min(ok))
    # Better than a typical valid point of the space (a uniform sample's median).
    sample = [landscape(s) for s in sample_valid(device_space, 300, seed=2) if landscape(s)]
    assert r.best_time_s < sorted(sample)[len(sample) // 2]


def test_model_strategy_learns_in_the_loop(device_space, tmp_path, monkeypatch):
    """Refitting the cost model each round must beat both the prior alone and random at an
    equal budget on a landscape the features explain (deterministic: seeded everywhere)."""
    monkeypatch.setattr(loop, "Bench", SyntheticBench)
    monkeypatch.setattr(loop, "CompilePool", NoCompilePool)
    best = {}
    for name in ("model", "random"):
        with TuningDB(tmp_path / f"{name}.sqlite") as db:
            best[name] = tune(TuneConfig(TINY, name, budget_evals=24, workers=1, seed=4,
                                         model_pool=200), db).best_time_s
    pool = sample_valid(device_space, 400, seed=4)
    prior_pick = min(pool, key=prior_time)  # what the model asks first, unfitted
    assert best["model"] < best["random"]
    assert best["model"] < (landscape(prior_pick) or math.inf)


def test_transfer_in_the_tuner_loop_uses_other_shapes(device_space, tmp_path, monkeypatch):
    """`clgemm tune --transfer` end to end (synthetic landscape, the same for every shape):
    after 40 random evaluations of another shape, the model strategy with transfer (the rank
    fit, no warm-up) beats it without transfer at a budget of 6 evaluations."""
    monkeypatch.setattr(loop, "Bench", SyntheticBench)
    monkeypatch.setattr(loop, "CompilePool", NoCompilePool)
    log = io.StringIO()
    best = {}
    for transfer in (False, True):
        with TuningDB(tmp_path / f"t{int(transfer)}.sqlite") as db:
            tune(TuneConfig(Problem(96, 96, 96), "random", budget_evals=40, workers=1, seed=1),
                 db)
            best[transfer] = tune(TuneConfig(TINY, "model", budget_evals=6, workers=1, seed=4,
                                             model_pool=300, transfer=transfer), db,
                                  log=log).best_time_s
    assert "transfer prior: " in log.getvalue() and "96x96x96" in log.getvalue()
    assert best[True] < best[False]


def test_auto_takes_the_transfer_prior_only_where_the_device_has_one(tmp_path, monkeypatch):
    """The default strategy: forest (prior-free) on a device the database knows nothing of,
    the model with the transfer prior once it holds this device's measurements of another
    shape."""
    monkeypatch.setattr(loop, "Bench", SyntheticBench)
    monkeypatch.setattr(loop, "CompilePool", NoCompilePool)
    assert TuneConfig(TINY).strategy == "auto"
    log = io.StringIO()
    with TuningDB(tmp_path / "auto.sqlite") as db:
        r = tune(TuneConfig(TINY, budget_evals=4, workers=1, seed=2), db, log=log)
        assert (r.strategy, r.transfer, r.evaluations) == ("forest", False, 4)
        tune(TuneConfig(Problem(96, 96, 96), "random", budget_evals=12, workers=1, seed=1), db)
        r = tune(TuneConfig(TINY, budget_evals=8, workers=1, seed=2, model_pool=200), db, log=log)
        assert (r.strategy, r.transfer, r.evaluations, r.resumed) == ("model", True, 4, 4)
    assert "transfer prior: " in log.getvalue()


def test_a_card_the_database_does_not_know_borrows_another_cards_prior(tmp_path, monkeypatch):
    """prior_device: auto on a device with no measurements of its own takes the transfer prior
    from the named device's measurements (another card of the architecture); unnamed, it runs
    the prior-free forest."""
    monkeypatch.setattr(loop, "Bench", SyntheticBench)
    monkeypatch.setattr(loop, "CompilePool", NoCompilePool)
    log = io.StringIO()
    with TuningDB(tmp_path / "borrow.sqlite") as db:
        tune(TuneConfig(Problem(96, 96, 96), "random", budget_evals=12, workers=1, seed=1), db)
        here = db.devices()[0][1]
        # the rows now belong to "another card": renamed, this device has none of its own
        db._conn.execute("UPDATE measurements SET device_name = 'sibling card'")
        r = tune(TuneConfig(TINY, budget_evals=4, workers=1, seed=2), db, log=log)
        assert (r.strategy, r.transfer) == ("forest", False)
        r = tune(TuneConfig(TINY, budget_evals=8, workers=1, seed=2, model_pool=200,
                            prior_device="sibling card"), db, log=log)
        assert (r.strategy, r.transfer) == ("model", True)
    assert here != "sibling card" and "transfer prior: " in log.getvalue()
    assert loop.prior_name(TuneConfig(TINY), "this") == "this"


# ---- distillation --------------------------------------------------------------------
A, B, C, D = (Schedule(wg_m=8, wg_n=8, out_m=m, out_n=n).key()
              for m, n in ((4, 4), (4, 8), (8, 4), (2, 2)))
P_SMALL, P_MID, P_BIG = Problem(64, 64, 64), Problem(256, 256, 256), Problem(1024, 1024, 1024)


def test_cover_picks_fewest_schedules_within_tolerance():
    confirmed = [
        Confirmed(P_SMALL, {A: 1.00, B: 1.04, C: 2.0}, 3),  # A best, B within 5%
        Confirmed(P_MID, {A: 1.20, B: 1.00, C: 1.5}, 3),    # only B
        Confirmed(P_BIG, {A: 3.00, B: 2.00, C: 1.9}, 3),    # C best, B within 5.3%: no
    ]
    chosen = cover(confirmed)
    assert chosen == [B, C]  # B covers two problems, then C the last
    assert cover(confirmed, tolerance=0.06) == [B]  # 2.0 <= 1.9 * 1.06
    assert sorted(cover(confirmed, tolerance=0.0)) == sorted([A, B, C])
    assert cover([]) == []
    # Between equally covering schedules the faster wins, whatever its key; exact ties go
    # to the smallest key (reproducible).
    near = [Confirmed(P_SMALL, {min(A, B): 1.03, max(A, B): 1.0}, 1)]
    assert cover(near) == [max(A, B)]
    tie = [Confirmed(P_SMALL, {A: 1.0, B: 1.0}, 1)]
    assert cover(tie) == [min(A, B)]
    assert COVER_TOLERANCE == 0.05


def test_build_table_classes_and_default():
    confirmed = [
        Confirmed(P_SMALL, {A: 1.00, B: 1.04, C: 2.0}, 3),
        Confirmed(P_MID, {A: 1.20, B: 1.00, C: 1.5}, 3),
        Confirmed(Problem(200, 200, 200), {A: 1.0, B: 1.01, C: 1.5}, 3),  # same class as MID
        Confirmed(P_BIG, {A: 3.00, B: 2.00, C: 1.9}, 3),
    ]
    chosen = cover(confirmed)
    table = build_table("toy device", confirmed, chosen, {"k": 1})
    assert isinstance(table, Table) and table.source == "distilled"
    assert set(table.entries) == {shape_class(64, 64, 64), shape_class(256, 256, 256),
                                  shape_class(1024, 1024, 1024)}
    assert table.entries[shape_class(64, 64, 64)].key() == B  # only chosen schedules
    assert table.entries[shape_class(256, 256, 256)].key() == B  # summed normalised cost
    assert table.entries[shape_class(1024, 1024, 1024)].key() == C
    assert table.default.key() == B  # covers the most classes
    assert table.lookup(1024, 1024, 1024).key() == C
    # A, replayed on every problem but not chosen, stays an arm (an alternate, not a choice).
    assert [s.key() for s in table.alternates] == [A]
    assert set(s.key() for s in table.candidates()) == {A, B, C}
    # A schedule missing from a problem's replay never wins that problem's class.
    partial = [Confirmed(P_BIG, {C: 5.0}, 3), Confirmed(P_SMALL, {B: 1.0, C: 1.0}, 3)]
    t2 = build_table("toy", partial, [B, C], {})
    assert t2.entries[shape_class(1024, 1024, 1024)].key() == C
    assert t2.alternates == ()


def test_table_json_round_trip(tmp_path, rt):
    from clgemm.select.table import TableDevice

    confirmed = [Confirmed(P_SMALL, {A: 1.0, B: 1.5}, 1)]
    table = build_table(TableDevice.of(rt.device), confirmed, [A], {"note": "x"})
    path = tmp_path / "t.json"
    write_table(table, path)
    back = load_table(rt.device, path)
    assert back.default.key() == A and back.entries == table.entries
    assert [s.key() for s in back.alternates] == [B]
    assert back.device == TableDevice.of(rt.device) and back.device.type == rt.device.type
    assert back.evidence == {"note": "x"}
    assert json.loads(path.read_text())["schema"] == "clgemm.table/1"


def test_distill_end_to_end_on_pocl(rt, device_space, tmp_path, monkeypatch, tight_space):
    """Tune a little at 64^3, then one replay session (a separate process) and the cover."""
    path = tmp_path / "d.sqlite"
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    with TuningDB(path) as db:
        tune(TuneConfig(TINY, "random", budget_evals=3, workers=1, repeats=2, seed=0), db)
        tuned = db.best(rt.device.fingerprint, TINY, top=2)
        assert len(tuned) == 2
        table = distill(db, None, top_k=2, sessions=1)
        replayed = [r for r in db.rows(rt.device.fingerprint, TINY) if r.session == "replay-0"]
    assert sorted(r.schedule for r in replayed) == sorted(k for k, _ in tuned)
    assert all(r.time_s and r.error is None for r in replayed)
    assert table.device_name == rt.device.name
    assert set(table.entries) == {shape_class(64, 64, 64)}
    chosen = table.evidence["chosen"]
    assert len(chosen) == 1 and chosen[0] in {k for k, _ in tuned}
    assert table.default.key() == chosen[0] == table.entries[shape_class(64, 64, 64)].key()
    assert device_space.is_valid(table.default)
    ev = table.evidence
    assert ev["replay_sessions"] == 1 and ev["top_k"] == 2
    (prob,) = ev["problems"]
    assert prob["shape"] == [64, 64, 64] and set(prob["replay_median_s"]) == {k for k, _ in tuned}
    best_replayed = min(replayed, key=lambda r: r.time_s)
    assert prob["confirmed_best"] == best_replayed.schedule == chosen[0]


@pytest.mark.parametrize("objective", ["rank", "ridge"])
def test_cost_model_transfer_pretrains_ranking_and_ignores_shape_speed(objective):
    """Transfer: other shapes' measurements rank schedules before any target measurement; a
    shape's absolute speed (its intercept) does not carry over."""
    import random as _random

    rng = _random.Random(3)
    pool = [Schedule(wg_m=rng.choice([4, 8, 16]), wg_n=rng.choice([4, 8, 16]),
                     out_m=rng.choice([1, 2, 4]), out_n=rng.choice([1, 2, 4]),
                     unroll_k=rng.choice([1, 2, 4, 8])) for _ in range(60)]

    def truth(s, scale):  # unroll helps; each shape has its own speed
        return scale * (1.0 + 1.0 / s.unroll_k)

    groups = [(pool[:30], [truth(s, 1.0) for s in pool[:30]]),
              (pool[30:], [truth(s, 50.0) for s in pool[30:]])]
    m = CostModel(49152, ridge=0.1, objective=objective).set_transfer(groups)
    assert m.transfer_samples == 60 and m.samples == 0
    fast, slow = Schedule(unroll_k=8), Schedule(unroll_k=1)
    p_fast, p_slow = m.predict([fast, slow])
    assert p_fast < p_slow
    # Two target measurements: the ranking stays; the ridge fit also sets the target's
    # intercept (the rank fit's scores order schedules, their scale is not a time).
    m.fit([fast, slow], [truth(fast, 7.0), truth(slow, 7.0)])
    p = m.predict([fast, slow])
    assert p[0] < p[1]
    if objective == "ridge":
        assert 0.5 < p[0] / truth(fast, 7.0) < 2.0


def test_rank_transfer_yields_to_the_targets_own_order():
    """The rank fit: other shapes say unroll helps; the target's measurements say it hurts.
    Before target data the prior's order stands; with the target's pairs (their weight, the
    cap on pairs) the order flips. Bad objectives are refused."""
    import random as _random

    from clgemm.tune.model import RankSettings

    rng = _random.Random(5)
    pool = [Schedule(wg_m=rng.choice([4, 8, 16]), wg_n=rng.choice([4, 8, 16]),
                     out_m=rng.choice([1, 2, 4]), out_n=rng.choice([1, 2, 4]),
                     unroll_k=rng.choice([1, 2, 4, 8])) for _ in range(80)]
    helps = [1.0 + 1.0 / s.unroll_k for s in pool[:40]]
    m = CostModel(49152, rank=RankSettings(target_pairs=300)).set_transfer([(pool[:40], helps)])
    fast, slow = Schedule(unroll_k=8), Schedule(unroll_k=1)
    assert m.predict([fast, slow])[0] < m.predict([fast, slow])[1]
    target = pool[40:]
    hurts = [1.0 + s.unroll_k / 8.0 for s in target]  # 780 pairs, capped to 300
    m.fit(target, hurts)
    for _ in range(5):  # a few refits, as the tuner's loop makes (2 Newton steps each)
        m.fit(target, hurts)
    assert m.samples == 40 and m.predict([fast, slow])[0] > m.predict([fast, slow])[1]
    with pytest.raises(ValueError, match="objective"):
        CostModel(49152, objective="lasso")


def test_db_observations_exclude_the_target_problem(tmp_path):
    db = TuningDB(tmp_path / "t.sqlite")
    s = Schedule()
    for size, t in ((512, 1e-3), (1024, 8e-3)):
        db.record("fp-old", "dev", Problem(size, size, size), Measurement(s, t, 1.0, None),
                  {}, "r")
    db.record("fp-new", "dev", Problem(256, 256, 256), Measurement(s, None, 1.0, "x"), {}, "r")
    obs = db.observations("dev", exclude=Problem(1024, 1024, 1024))
    assert obs == {Problem(512, 512, 512): {s.key(): 1e-3}}  # failures left out
    assert db.observations("other") == {}


def test_transfer_prior_reads_no_replay_session(tmp_path):
    """distill's replay sessions measure every shape's top-k at every other shape (on the H100
    that put the 2048 space's best schedule into 1400 and 3072 rows): a transfer prior that read
    them would leak the target's answer, so only the tuner's own session counts."""
    from clgemm.tune.offline import transfer_groups

    db = TuningDB(tmp_path / "t.sqlite")
    tuned, leaked = Schedule(), Schedule(wg_m=8)
    db.record("fp", "dev", Problem(512, 512, 512), Measurement(tuned, 2e-3, 1.0, None), {}, "r")
    db.record("fp", "dev", Problem(512, 512, 512), Measurement(leaked, 1e-3, 1.0, None), {},
              "replay-0", session="replay-0")
    assert db.observations("dev") == {Problem(512, 512, 512): {tuned.key(): 2e-3}}
    db.close()
    prior = transfer_groups([tmp_path / "t.sqlite"], "dev", exclude=Problem(64, 64, 64))
    assert prior.groups == [([tuned], [2e-3])] and prior.samples == 1


def test_a_direct_schedule_is_timed_as_the_call_runs_it(rt, monkeypatch):
    """A direct (CPU-shaped) schedule runs in the public call through its lane (lanes/fp32:
    B's panels, K over K_CHUNK in slices, a transposed B with fewer rows than columns
    swapped): the tuner checks and times those launches, their intervals summed, not one bare
    launch the call never makes."""
    from clgemm.tune.measure import Bench

    direct = Schedule.from_key("wm4-wn8-om6-on16-tk16-va1-vb1-vc1-sa0-sb0-uk1-db0-st0-lp0-"
                               "ac128-dr1")
    require_valid(direct)
    monkeypatch.setattr(fp32, "K_CHUNK", 64)
    bench = Bench(rt, Problem(37, 45, 150, trans_b=True), repeats=2, seed=5)
    kernel = fp32.get_kernel(rt, direct, bench.problem.layout(direct))
    a, b = bench.operands[0]
    events = bench.launches(kernel, a, b)
    # swapped (37 < 45): 150 in three slices of at most 64, op(A)^T's panels in each
    assert len(events) == 3 * 2
    m = bench.measure(direct)
    assert m.ok and m.error is None and m.rel_error < 2 * bench.numpy_error
    assert rt.timed(lambda: bench.launches(kernel, a, b)) > 0
