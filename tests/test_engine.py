"""The Rust search engine through its Python wrapper (clgemm.engine).

Brute force is `SearchSpace.iter_valid()`: the Python definition of validity is the oracle.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest

from clgemm import engine
from clgemm.errors import EngineError, ScheduleError
from clgemm.schedule import DOMAINS, DeviceLimits, Schedule, SearchSpace

DATA = Path(__file__).parent / "data"

def _filled(domains):
    """Parameters added to Schedule later keep their default value (meant to be valid)."""
    default = Schedule()
    return {n: domains.get(n, (getattr(default, n),)) for n in DOMAINS}


# Two values per parameter: 2^14 = 16384 points, brute-forceable in Python in about a second.
SMALL = _filled({
    "wg_m": (4, 16), "wg_n": (8, 32), "out_m": (1, 4), "out_n": (2, 8), "tile_k": (4, 16),
    "vec_a": (1, 4), "vec_b": (1, 2), "vec_c": (1, 2), "stage_a": (0, 1), "stage_b": (0, 1),
    "unroll_k": (1, 8), "double_buffer": (0, 1), "strided": (0, 1), "local_pad": (0, 4),
})
LIMITS = [
    DeviceLimits(max_work_group_size=256, local_mem_bytes=16384, max_accumulators=40, min_work_group_size=32),
    DeviceLimits(max_work_group_size=1024, local_mem_bytes=49152),
]
# Three values on a few parameters: a bigger landscape (for the strategies).
MEDIUM = {**SMALL, "wg_m": (4, 8, 16), "out_m": (1, 2, 4), "out_n": (2, 4, 8), "tile_k": (4, 8, 16)}
N_SMALL = math.prod(len(v) for v in SMALL.values())


@pytest.fixture(scope="module")
def medium():
    ss = SearchSpace(LIMITS[1], domains=MEDIUM)
    return ss, engine.Space.from_search_space(ss)


@pytest.mark.parametrize("limits", LIMITS)
def test_enumeration_matches_python_brute_force(limits):
    ss = SearchSpace(limits, domains=SMALL)
    space = engine.Space.from_search_space(ss)
    expected = list(ss.iter_valid())
    assert 0 < len(expected) < ss.size()  # the constraints bite but leave something
    assert space.size() == ss.size() == N_SMALL
    assert space.valid_count() == len(expected)
    assert space.valid() == expected  # same set, same (itertools.product) order


def test_validity_and_indices_agree_on_the_full_space():
    ss = SearchSpace(LIMITS[1])
    space = engine.Space.from_search_space(ss)
    assert space.size() == math.prod(len(v) for v in DOMAINS.values())
    r = random.Random(4)
    names = list(DOMAINS)
    n_valid = 0
    for _ in range(3000):
        s = Schedule(**{n: r.choice(DOMAINS[n]) for n in names})
        ok = ss.is_valid(s)
        n_valid += ok
        assert space.is_valid(s) == ok, s
        i = space.index(s)
        assert 0 <= i < space.size() and space.schedule(i) == s
    assert 0 < n_valid < 3000
    assert space.schedule(0) == Schedule(**{n: DOMAINS[n][0] for n in names})


def test_constraint_language_matches_python():
    # Every construct of the language, on two small parameters' worth of domain.
    rules = (
        ("chain", "1 <= wg_m // 4 < wg_n // 4 + 1"),
        ("neg", "-out_m * 2 + out_n >= -6"),
        ("mod", "(wg_m * out_m) % 8 == 0 or not stage_a"),
        ("bool", "(vec_a == 1) + (vec_b == 1) != 0 and tile_k > 4 or unroll_k == 8"),
        ("limits", "wg_m * wg_n <= max_work_group_size // 2 - -1"),
        ("floor", "(out_n - 5) // 2 != -2 and (out_n - 5) % 3 != 1"),
    )
    ss = SearchSpace(LIMITS[0], domains=SMALL, constraints=rules)
    space = engine.Space.from_search_space(ss)
    assert space.valid() == list(ss.iter_valid())


def test_neighbours_are_valid_and_one_step_away(medium):
    ss, space = medium
    r = random.Random(1)
    pts = space.valid()
    for s in r.sample(pts, 40):
        adj = space.neighbours(s)
        anyn = space.neighbours(s, any=True)
        assert set(adj) <= set(anyn)
        for q in anyn:
            assert ss.is_valid(q)
            diff = [n for n in DOMAINS if getattr(q, n) != getattr(s, n)]
            assert len(diff) == 1
        for q in adj:
            (n,) = [n for n in DOMAINS if getattr(q, n) != getattr(s, n)]
            d = MEDIUM[n]
            assert abs(d.index(getattr(q, n)) - d.index(getattr(s, n))) == 1
        # completeness: every valid one-step change is listed
        expected = {
            Schedule(**{**s.as_dict(), n: v})
            for n in DOMAINS for v in MEDIUM[n] if v != getattr(s, n)
        }
        assert set(anyn) == {q for q in expected if ss.is_valid(q)}


def landscape(space_points, seed=0):
    """Smooth bowl + noise over schedules with a unique optimum; ~1/11 of points fail."""
    r = random.Random(seed)
    target = r.choice(space_points)
    table = {}
    for s in space_points:
        dist = sum(
            (MEDIUM[n].index(getattr(s, n)) - MEDIUM[n].index(getattr(target, n))) ** 2
            for n in DOMAINS
        )
        if s != target and r.random() < 1 / 11:
            table[s] = None
        else:
            table[s] = 1e-3 * (1 + 0.2 * dist + (0 if s == target else 0.02 + 0.05 * r.random()))
    return target, table


def drive(strategy, table, budget, batch=1):
    order = []
    while len(order) < budget:
        asked = strategy.ask(batch)
        if not asked:
            break
        for s in asked:
            order.append(s)
            strategy.tell(s, table[s])
    return order


@pytest.mark.parametrize("name", engine.STRATEGIES)
def test_every_proposal_is_valid_new_and_deterministic(medium, name):
    ss, space = medium
    _, table = landscape(space.valid(), seed=3)
    runs = []
    for seed in (5, 5, 6):
        st = engine.Strategy(name, space, seed=seed)
        if name == "model":
            st.set_scores((s, t if t is not None else 1.0) for s, t in table.items())
        runs.append(drive(st, table, 150, batch=3))
    a, b, c = runs
    assert a == b, "same seed, different proposals"
    assert a != c, "the seed is ignored"
    assert len(set(a)) == len(a) == 150, "a candidate was proposed twice"
    assert all(ss.is_valid(s) for s in a)


@pytest.mark.parametrize("name", ["annealing", "genetic", "sqa", "greedy", "forest", "model", "random"])
def test_each_strategy_reaches_the_known_optimum(medium, name):
    _, space = medium
    pts = space.valid()
    budget = len(pts) if name == "random" else len(pts) // 6
    hits = 0
    for seed in range(4):
        target, table = landscape(pts, seed=seed)
        st = engine.Strategy(name, space, seed=seed)
        if name == "model":
            # A noisy model: right in shape, wrong in detail.
            noise = random.Random(seed)
            st.set_scores(
                (s, (t if t is not None else 5e-3) * math.exp(0.3 * noise.gauss(0, 1)))
                for s, t in table.items()
            )
        drive(st, table, budget)
        best = st.best()
        assert best is not None and table[best[0]] == best[1]
        hits += best[0] == target
    assert hits >= 3, f"{name} found the optimum in {hits}/4 landscapes"


def test_failures_are_handled():
    ss = SearchSpace(LIMITS[1], domains=SMALL)
    space = engine.Space.from_search_space(ss)
    for name in engine.STRATEGIES:
        st = engine.Strategy(name, space, seed=2)
        failed = set()
        for k in range(40):
            for s in st.ask(2):
                assert s not in failed
                if k % 3 == 0:
                    failed.add(s)
                    st.tell(s, None)  # compile error / wrong result
                else:
                    st.tell(s, 1e-3 + space.index(s) * 1e-9)
        assert st.failures == len(failed) > 0
        assert st.best()[0] not in failed


def test_errors_are_clgemm_exceptions_that_say_what_to_do(medium):
    _, space = medium
    with pytest.raises(EngineError, match="random"):
        engine.Strategy("tabu", space)
    with pytest.raises(EngineError, match="t0"):
        engine.Strategy("annealing", space, temprature=1.0)
    with pytest.raises(ScheduleError, match="domain"):
        space.index([3] * len(DOMAINS))
    with pytest.raises(ScheduleError, match="known names"):
        engine.Space.from_spec({"params": [["a", [1, 2]]], "limits": {}, "constraints": ["b > 1"]})
    with pytest.raises(ScheduleError, match="//"):
        engine.Space.from_spec({"params": [["a", [1, 2]]], "limits": {}, "constraints": ["a / 2 > 1"]})
    with pytest.raises(EngineError, match="only the 'model'"):
        engine.Strategy("random", space).set_scores([])


def test_huge_space_samples_instead_of_enumerating():
    ss = SearchSpace(LIMITS[1])
    space = engine.Space.from_search_space(ss, max_enumerate=1000)
    assert space.valid_count() is None
    st = engine.Strategy("random", space, seed=1)
    got = st.ask(50)
    assert len(set(got)) == 50 and all(ss.is_valid(s) for s in got)


# ------------------------------------------------------------------ simulator

def four_point_space():
    # a in {0,1,2,3}: 4 s, failure, 2 s, 1.9 s; costs 10, 11, 12, 13 s.
    rows = [([0], 4.0, 10.0), ([1], None, 11.0), ([2], 2.0, 12.0), ([3], 1.9, 13.0)]
    return engine.RecordedSpace.from_rows([("a", [0, 1, 2, 3])], rows)


def test_simulator_against_a_hand_computed_run():
    rec = four_point_space()
    # epsilon 0 + scores ranking rows 0,1,2,3 fixes the order of evaluation.
    res = engine.simulate(rec, "model", seeds=[7], budget=10, options={"epsilon": 0},
                          scores=[1.0, 2.0, 3.0, 4.0])
    assert res.best_known == 1.9
    (r,) = res.runs
    assert r.evaluations == 4 and r.failures == 1  # exhausted before the budget
    assert r.curve == [4.0, 4.0, 2.0, 1.9]
    assert r.evals_to_95 == 3  # 2.0 <= 1.9 / 0.95
    assert r.evals_to_99 == 4
    assert r.seconds_to_95 == pytest.approx(33.0)
    assert r.seconds_to_99 == pytest.approx(46.0)
    assert r.best_values == [3]
    # A reversed ranking reaches the best at once.
    res = engine.simulate(rec, "model", seeds=[7], budget=2, options={"epsilon": 0},
                          scores=[4.0, 3.0, 2.0, 1.0])
    assert res.runs[0].curve == [1.9, 1.9] and res.runs[0].evals_to_99 == 1
    assert res.runs[0].seconds_to_99 == pytest.approx(13.0)


def test_simulator_first_failures_leave_the_curve_empty():
    rows = [([0], None, 1.0), ([1], None, 1.0), ([2], 3.0, 1.0)]
    rec = engine.RecordedSpace.from_rows([("a", [0, 1, 2])], rows)
    res = engine.simulate(rec, "model", seeds=[0], budget=3, options={"epsilon": 0}, scores=[0, 1, 2])
    assert res.runs[0].curve == [None, None, 3.0]
    assert res.runs[0].failures == 2


def test_simulator_round_trip_file_parallel_and_deterministic(medium, tmp_path):
    ss, space = medium
    _, table = landscape(space.valid(), seed=9)
    records = [
        {"schedule": s, "time_s": t, "compile_s": 0.2, "error": None if t else "CL_BUILD_PROGRAM_FAILURE"}
        for s, t in table.items()
    ]
    path = tmp_path / "space.json"
    engine.save_recorded_space(path, ss.engine_spec()["params"], records, device="toy", shape=[64, 64, 64])
    rec = engine.RecordedSpace.load(path)
    assert len(rec) == len(table) and rec.format == "clgemm.space/1" and rec.shape == [64, 64, 64]
    s0 = next(iter(table))
    assert rec.lookup(s0) == (table[s0], pytest.approx(0.2 + (table[s0] or 0.0)))
    best = min((t, s) for s, t in table.items() if t is not None)
    assert rec.best() == (best[1], best[0])
    for name in (*engine.PRIOR_FREE, engine.ORACLE):
        kw = {"oracle_noise": 0.3} if name == engine.ORACLE else {}
        par = engine.simulate(rec, name, seeds=6, budget=60, threads=2, **kw)
        ser = engine.simulate(rec, name, seeds=6, budget=60, threads=1, **kw)
        assert par.runs == ser.runs
        for r in par.runs:
            assert r.evaluations == 60 == len(r.curve)
            finite = [c for c in r.curve if c is not None]
            assert finite == sorted(finite, reverse=True)  # best-so-far never worsens
            if r.evals_to_95 is not None:
                assert r.curve[r.evals_to_95 - 1] <= par.best_known / 0.95
                assert r.evals_to_95 == 1 or r.curve[r.evals_to_95 - 2] is None \
                    or r.curve[r.evals_to_95 - 2] > par.best_known / 0.95
        assert par.summary()["runs"] == 6


def test_kernel_tuner_cache_loads_and_replays():
    rec = engine.RecordedSpace.load(DATA / "kt_cache_tiny.json")
    assert rec.format == "kernel_tuner" and len(rec) == 20
    assert rec.names == ["block_size_x", "block_size_y", "vector"]
    assert rec.labels[2] == ["float", "float2"]  # strings become positions 0, 1
    assert rec.device == "Tiny Test GPU" and rec.shape == [512, 512]
    best_values, best_t = rec.best()
    assert list(best_values) == [32, 4, 1] and best_t == pytest.approx(0.5e-3)
    assert rec.lookup([64, 8, 1])[0] is None  # InvalidConfig: a failure
    assert rec.lookup([16, 1, 1]) == (None, pytest.approx(0.040))  # CompilationFailed: compile cost only
    assert rec.lookup([16, 8, 0]) is None  # not recorded: not proposable
    t, cost = rec.lookup([32, 4, 1])
    assert t == pytest.approx(0.5e-3) and cost == pytest.approx((50 + 8 + 1.5) / 1000)
    res = engine.simulate(rec, "random", seeds=10, budget=20)
    assert all(r.evaluations == 20 and r.evals_to_99 is not None for r in res.runs)
    assert all(r.failures == 4 for r in res.runs)
    st = engine.Strategy("genetic", rec, seed=1, population=4)
    seen = drive(st, {tuple(v): rec.lookup(v)[0] for v in rec.space.raw.valid_values()}, 20)
    assert len(set(seen)) == 20


def test_cli_strategies_writes_json(tmp_path, capsys):
    from clgemm.cli import main

    out = tmp_path / "r.json"
    rc = main(["strategies", "--space", str(DATA / "kt_cache_tiny.json"), "--strategy", "annealing",
               "--seeds", "5", "--budget", "8", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    runs = doc["results"]["annealing"]["runs"]
    # Summaries by default: per-run figures, no curves.
    assert len(runs) == 5 and all("curve" not in r and r["evaluations"] == 8 for r in runs)
    summary = doc["results"]["annealing"]["summary"]
    assert 0.0 <= summary["share_95_within_1pct_cp95"][0] <= summary["share_95_within_1pct"]
    assert "annealing" in capsys.readouterr().out
    # 'all' is the prior-free set; the oracle runs only when named, kept apart.
    rc = main(["strategies", "--space", str(DATA / "kt_cache_tiny.json"), "--strategy", "all,oracle",
               "--seeds", "3", "--budget", "12", "--curves", "4", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert list(doc["results"]) == list(engine.PRIOR_FREE)
    assert list(doc["references"]) == [engine.ORACLE]
    curve = doc["results"]["forest"]["runs"][0]["curve"]
    assert curve[0][0] == 1 and curve[-1][0] == 12 and len(curve) <= 5
    rc = main(["strategies", "--space", str(DATA / "kt_cache_tiny.json"), "--strategy", "nope"])
    assert rc == 2  # a usage error, refused while the arguments are parsed


# ------------------------------------------------------------------ telemetry

def test_telemetry_absent_is_reported_not_zeros():
    t = engine.Telemetry(source="auto")
    if t.source is not None:
        pytest.skip(f"this machine has a real sensor ({t.source})")
    assert t.status.startswith("absent")
    assert t.start() is False and not t.running
    assert len(t.samples()) == 0
    with pytest.raises(EngineError, match="unavailable"):
        engine.Telemetry(source="nvml")
    with pytest.raises(EngineError):
        engine.Telemetry(source="thermometer")


def test_telemetry_thread_samples_on_the_monotonic_clock():
    t = engine.Telemetry(source="synthetic", rate_hz=1000, capacity=100_000)
    assert t.source == "synthetic"
    assert abs(engine.monotonic() - time.monotonic()) < 0.01
    t0 = time.monotonic()
    with t:
        assert t.running
        time.sleep(0.15)
        mid = t.samples()
        assert len(mid) > 0  # readable while running
    t1 = time.monotonic()
    s = t.samples(clear=True)
    assert 30 <= len(s) <= 200, len(s)
    assert t0 <= s.t[0] and s.t[-1] <= t1
    assert (s.t[1:] > s.t[:-1]).all()
    assert s.sm_mhz[0] == 1001.0 and (s.power_w == 100.0).all()
    assert len(t.samples()) == 0
    small = engine.Telemetry(source="synthetic", rate_hz=2000, capacity=10)
    with small:
        time.sleep(0.05)
    assert len(small.samples()) == 10 and small.dropped > 0


# ------------------------------------------------- prior-free search on public-like spaces

def kernel_tuner_like_cache(seed: int = 0) -> dict:
    """A synthetic Kernel Tuner cache with the structure of the public evaluation set's
    convolution spaces (records/cpu-simulated/2026-12-06-public-spaces-2/manifest.json; their
    data is not shipped): block and tile sizes, a string-valued parameter, configurations
    the restriction removes absent, some that fail to compile recorded as failures, one best
    configuration."""
    rng = random.Random(seed)
    params = {"block_size_x": [16, 32, 64, 128, 256], "block_size_y": [1, 2, 4, 8],
              "tile_size_x": [1, 2, 4, 8], "tile_size_y": [1, 2, 4], "use_shmem": [0, 1],
              "dtype": ["float", "half"]}
    cache = {}
    for bx in params["block_size_x"]:
        for by in params["block_size_y"]:
            if bx * by > 1024 or bx * by < 32:
                continue  # the restriction: never recorded
            for tx in params["tile_size_x"]:
                for ty in params["tile_size_y"]:
                    for sh in params["use_shmem"]:
                        for dt in params["dtype"]:
                            key = f"{bx},{by},{tx},{ty},{sh},{dt}"
                            if sh and tx * ty * bx * by > 8192:
                                cache[key] = {"time": "CompilationFailedConfig", "compile_time": 900.0}
                                continue
                            work = (math.log2(bx * by) - 7.5) ** 2 + (math.log2(tx * ty) - 3) ** 2
                            ms = (1.0 + 0.08 * work) * (0.8 if sh else 1.0) * (0.9 if dt == "half" else 1.0)
                            ms *= 1.0 + 0.03 * rng.random()
                            cache[key] = {"time": ms, "compile_time": 800.0, "benchmark_time": 7 * ms}
    return {"device_name": "synthetic", "kernel_name": "conv", "problem_size": [4096, 4096],
            "tune_params_keys": list(params), "tune_params": params, "cache": cache}


PUBLIC_SPACES = Path(__file__).resolve().parent.parent / "records/cpu-simulated/2026-12-06-public-spaces-2"
SMALLEST_PUBLIC = "convolution15_MI50"  # 864 records, the evaluation set's smallest


def public_space_file(name: str) -> Path | None:
    """A space of the public evaluation set where benchmarks/spaces/fetch.py put it
    ($CLGEMM_SPACES, else data-spaces/ in the checkout) and its sha256 matches the
    manifest; None when it was never fetched (the data are third-party, not shipped)."""
    import hashlib
    import os

    folder = Path(os.environ.get("CLGEMM_SPACES", PUBLIC_SPACES.parent.parent.parent / "data-spaces"))
    path = folder / f"{name}.json"
    if not path.exists():
        return None
    manifest = json.loads((PUBLIC_SPACES / "manifest.json").read_text())
    (entry,) = [e for e in manifest["spaces"] if e["name"] == name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{path} is not the manifest's file"
    return path


@pytest.fixture(scope="module", params=["synthetic", SMALLEST_PUBLIC])
def public_like(request, tmp_path_factory):
    """The synthetic cache, and the smallest public space where it was fetched."""
    if request.param == "synthetic":
        path = tmp_path_factory.mktemp("spaces") / "kt_like.json"
        path.write_text(json.dumps(kernel_tuner_like_cache()))
    else:
        path = public_space_file(request.param)
        if path is None:
            pytest.skip(f"{request.param} not fetched (benchmarks/spaces/fetch.py; CLGEMM_SPACES)")
    return engine.RecordedSpace.load(path)


@pytest.mark.parametrize("name", engine.PRIOR_FREE)
def test_every_prior_free_strategy_on_a_public_like_space(public_like, name):
    rec = public_like
    n = len(rec)
    assert 300 < n <= 864 and rec.format == "kernel_tuner"
    res = engine.simulate(rec, name, seeds=20, budget=n, stop_at=0.95, curves=False)
    s = res.summary(n)
    assert s["reached_95"] == 1.0, f"{name} never reached 95% in some runs"
    assert all(r.evaluations == r.evals_to_95 for r in res.runs)  # stop_at ends each run there
    if name in ("forest", "greedy", "genetic"):
        random_median = engine.simulate(rec, "random", seeds=20, budget=n, stop_at=0.95,
                                        curves=False).summary()["median_evals_to_95"]
        assert s["median_evals_to_95"] < random_median, s


@pytest.mark.parametrize("name", engine.PRIOR_FREE)
def test_the_first_evaluations_do_not_depend_on_the_budget(public_like, name):
    short = engine.simulate(public_like, name, seeds=4, budget=40)
    long = engine.simulate(public_like, name, seeds=4, budget=300)
    for a, b in zip(short.runs, long.runs):
        assert a.curve == b.curve[:40]
    with pytest.raises(EngineError, match="budget"):
        engine.Strategy(name, public_like, budget=300)


def poisoned(rec: engine.RecordedSpace, keep: set[tuple[int, ...]]) -> engine.RecordedSpace:
    """`rec` with every record outside `keep` made 1000x faster."""
    rows = []
    for values in rec.space.raw.valid_values():
        t, cost = rec.lookup(values)
        if tuple(values) not in keep and t is not None:
            t = t / 1000
        rows.append((values, t, cost))
    return engine.RecordedSpace.from_rows(list(zip(rec.names, rec.space.domains)), rows)


@pytest.mark.parametrize("name", engine.PRIOR_FREE)
def test_no_strategy_reads_a_time_it_was_not_charged_for(public_like, name):
    """Make every record a run did not measure 1000x faster and replay it in the simulator:
    a strategy that sees only the times it was charged for takes the same course, so its
    curve is unchanged. (The engine's test of the same name also shows the oracle caught.)"""
    budget = 30
    for seed in range(3):
        run = engine.Strategy(name, public_like, seed=seed)
        measured = set()
        for _ in range(budget):
            (c,) = run.ask(1)
            measured.add(tuple(c))
            run.tell(c, public_like.lookup(c)[0])
        first = engine.simulate(public_like, name, seeds=[seed], budget=budget).runs[0]
        again = engine.simulate(poisoned(public_like, measured), name, seeds=[seed],
                                budget=budget).runs[0]
        assert first.curve == again.curve, f"{name} changed course on times it never measured"
        assert min(t for t in again.curve if t) > public_like.best()[1] / 100  # nothing poisoned


def test_strategies_help_prints_plain_percent(capsys):
    from clgemm.cli import main

    try:  # the CLI's error boundary returns argparse's exit code
        assert main(["strategies", "--help"]) == 0
    except SystemExit as exc:
        assert exc.code == 0
    text = capsys.readouterr().out
    assert "95%" in text and "95%%" not in text and "ridge" not in text
