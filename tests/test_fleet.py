"""Fleet tuning (`clgemm.fleet`): leases, workers killed at random points, a device joining
late, and the fleet's search equal to one process's on a deterministic (recorded) device.

Most tests drive the real FleetDriver over a pool double on a virtual clock (fast, and the
kills land where the seed says); one runs a real Dask cluster and kill -9s a worker process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from clgemm import engine
from clgemm.fleet import tasks
from clgemm.fleet.driver import FleetDriver, fleet_config
from clgemm.fleet.lease import ItemKey, LeaseBook
from clgemm.fleet.tasks import SimTiming
from clgemm.schedule import Schedule
from clgemm.tune.db import TuningDB
from clgemm.tune.loop import Proposer, TuneConfig
from clgemm.tune.measure import Problem

SPACE = Path(__file__).parent.parent / "records/nvidia-h100/2026-11-25-space-2048/space-2048.json"
P = Problem(2048, 2048, 2048)


# ---- the lease book --------------------------------------------------------------------
def test_lease_expiry_reissue_and_one_result_per_key():
    now = [0.0]
    book = LeaseBook(10.0, clock=lambda: now[0])
    key = ItemKey("fp", P, "s1")
    first = book.issue(key)
    assert first.attempt == 1 and first.deadline == 10.0 and book.is_open(key)
    now[0] = 9.9
    assert book.expired() == []
    now[0] = 10.0
    assert book.expired() == [first] and not book.is_open(key)
    second = book.issue(key)
    assert second.attempt == 2 and book.counts.reissued == 1
    # the expired lease answers after all, first: its result counts (late), the re-issue's not
    assert book.settle(first) is True and book.counts.late == 1
    assert book.settle(second) is False and book.counts.duplicates == 1
    assert book.counts.accepted == 1 and book.accepted(key)
    with pytest.raises(ValueError):
        book.issue(key)  # an answered key is never handed out again
    # a failed task: its work is issued again unless another lease is open for it
    other = ItemKey("fp", P, "s2")
    a = book.issue(other)
    b = book.issue(other)
    assert book.fail(a) is False  # b is still open
    assert book.fail(b) is True and book.counts.failed == 2


# ---- a pool double on a virtual clock ----------------------------------------------------
class FakeHandle:
    def __init__(self, run, address, finish_at):
        self.run, self.address, self.finish_at = run, address, finish_at
        self._done, self._result, self._exc, self.cancelled = False, None, None, False

    def done(self):
        return self._done

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._result

    def cancel(self):
        self.cancelled = True


class FakePool:
    """Device workers named like Dask's (sim:PATH@TAG) on a virtual clock. `events`:
    (time, "kill", name or None: any live one): the worker dies; its tasks either raise (as Dask's KilledWorker) or
    never answer; it comes back under a new address `restart_s` later. (time, "join", name):
    a worker joins. A share of tasks is slow, past the lease, to make leases expire."""

    def __init__(self, devices, events=(), seed=0, restart_s=1.0, slow=0.1, lease_s=2.0):
        self.now = 0.0
        self.rng = random.Random(seed)
        self.workers: dict[str, str] = {}
        self.events = sorted(events)
        self.restart_s, self.slow, self.lease_s = restart_s, slow, lease_s
        self.inflight: list[FakeHandle] = []
        self.started = 0
        self.kills_mid_task = 0
        self.kills = 0
        for name in devices:
            self._start(name)

    def _start(self, name):
        self.started += 1
        self.workers[f"fake://{self.started}"] = name

    def clock(self):
        return self.now

    def device_workers(self):
        return dict(self.workers)

    def compile_workers(self):
        return 2

    def describe(self, address):
        h = FakeHandle(None, address, self.now)
        h._result, h._done = tasks.describe(self.workers[address]), True
        return h

    def submit(self, item, kind, addresses, compile, repeats, seed, sim, space_path):
        address = self.rng.choice(addresses)
        name = self.workers[address]

        def run():
            built = tasks.compile_item(kind, item.device_fp, item.problem, item.schedule, sim,
                                       space_path, name="compile-0") if compile else None
            return tasks.measure_item(item.problem, item.schedule, repeats, seed, built, sim,
                                      name=name)
        slow = self.rng.random() < self.slow
        duration = self.rng.uniform(1.2, 2.0) * self.lease_s if slow else self.rng.uniform(0.05, 0.6)
        h = FakeHandle(run, address, self.now + duration)
        self.inflight.append(h)
        return h

    def wait(self, handles, timeout):
        self.now += timeout
        while self.events and self.events[0][0] <= self.now:
            _, what, name = self.events.pop(0)
            if what == "join":
                self._start(name)
                continue
            live = [a for a, n in self.workers.items() if name in (None, n)]
            if not live:
                continue
            address = self.rng.choice(live)
            name = self.workers.pop(address)
            self.kills += 1
            for h in self.inflight:
                if h.address == address and not h._done:
                    self.kills_mid_task += 1
                    if self.rng.random() < 0.5:
                        h._exc, h._done = RuntimeError("worker lost (KilledWorker)"), True
                    else:
                        h.finish_at = float("inf")  # never answers
            self.events.append((self.now + self.restart_s, "join", name))
            self.events.sort()
        for h in self.inflight:
            if not h._done and not h.cancelled and h.finish_at <= self.now:
                h._result, h._done = h.run(), True
        self.inflight = [h for h in self.inflight if not h._done]


def rows(db_path):
    con = sqlite3.connect(db_path)
    try:
        return con.execute("SELECT device_fp, schedule, session, run_id FROM measurements"
                           ).fetchall()
    finally:
        con.close()


def one_process_keys(space_path, strategy, seed, budget, batch):
    """The one-process search on a recorded device: the tuner's Proposer, each batch told in
    order (as `clgemm tune --workers BATCH` does); returns the keys measured and the best."""
    rs = engine.RecordedSpace.load(space_path)
    config = TuneConfig(P, strategy, budget_evals=budget, seed=seed, workers=batch)
    search = Proposer(config, rs, 49152)
    while search.budget_left():
        batch_ = search.propose(batch)
        if not batch_:
            break
        for s in batch_:
            search.tell(s, rs.lookup(s)[0])
    best = min((t, k) for k, t in search.done.items() if t)
    return set(search.done), best


def recorded_subset(tmp_path, every=3, scale=1.7) -> Path:
    """Another recorded 'device' (a different fingerprint): a subset of the H100 space with
    its times scaled."""
    data = json.loads(SPACE.read_text())
    data["records"] = [dict(r, time_s=r["time_s"] * scale if r["time_s"] else None)
                       for r in data["records"][::every]]
    data["device"] = dict(data["device"], name="Other Card")
    path = tmp_path / "other.space.json"
    path.write_text(json.dumps(data))
    return path


# ---- workers killed at random points ---------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_killed_workers_lose_nothing_and_repeat_nothing(seed, tmp_path):
    rng = random.Random(100 + seed)
    names = [f"sim:{SPACE}@a", f"sim:{SPACE}@b"]
    kills = [(rng.uniform(0.3, 3.0), "kill", None) for _ in range(3)]
    budget, batch = 36, 4
    pool = FakePool(names, kills, seed=seed)
    config = fleet_config([P], strategy="forest", budget_evals=budget, seed=seed, batch=batch,
                          lease_s=pool.lease_s, tick_s=0.1)
    db_path = tmp_path / "fleet.sqlite"
    with TuningDB(db_path) as db:
        result = FleetDriver(config, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()
    (search,) = result.searches
    got = rows(db_path)
    keys = [k for _, k, _, _ in got]
    # nothing lost: every proposal has its row; nothing repeated: one row and one write each
    assert search.proposed == budget == search.written == len(got) == len(set(keys))
    assert result.leases.accepted == budget
    assert pool.kills_mid_task > 0, "the seed killed no worker mid-task: pick other kill times"
    assert result.leases.issued > budget  # the killed and the expired work was issued again
    assert result.leases.failed + result.leases.expired > 0
    assert len(result.workers_lost) == pool.kills >= 2
    assert len(result.workers_seen) == 2 + pool.kills  # the restarted workers rejoined
    # the fleet searched exactly as one process does: same schedules, same best
    expect_keys, (best_t, best_key) = one_process_keys(SPACE, "forest", seed, budget, batch)
    assert set(keys) == expect_keys
    assert search.best == best_key and search.best_time_s == pytest.approx(best_t)
    sim = engine.simulate(engine.RecordedSpace.load(SPACE), "forest", seeds=[seed],
                          budget=budget, batch=batch, threads=1)
    assert Schedule(*sim.runs[0].best_values).key() == best_key


def test_a_device_joining_late_gets_work(tmp_path):
    other = recorded_subset(tmp_path)
    late = f"sim:{other}@late"
    pool = FakePool([f"sim:{SPACE}@a"], [(2.0, "join", late)], seed=7, slow=0.0)
    budget = 24
    config = fleet_config([P, Problem(1024, 1024, 1024)], strategy="random", budget_evals=budget,
                          seed=2, batch=3, tick_s=0.1)
    with TuningDB(tmp_path / "f.sqlite") as db:
        result = FleetDriver(config, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()
    by_device: dict[str, int] = {}
    for fp, _, _, _ in rows(tmp_path / "f.sqlite"):
        by_device[fp] = by_device.get(fp, 0) + 1
    assert len(result.searches) == 4 and all(s.written == budget for s in result.searches)
    assert sorted(by_device.values()) == [2 * budget, 2 * budget]
    late_fp = tasks.describe(late).fingerprint
    assert result.measured_by[late] == by_device[late_fp]  # its own device's work, all of it
    assert {s.device_name for s in result.searches} == {
        "simulated NVIDIA H100 80GB HBM3", "simulated Other Card"}


def test_a_device_that_never_comes_back_ends_its_searches(tmp_path):
    """Its worker killed and never restarted: after wait_devices_s its searches end as
    'device lost' with the unanswered work counted (proposed > written), the other
    device's run completes, and the fleet does not wait forever."""
    other = recorded_subset(tmp_path)
    names = [f"sim:{SPACE}@a", f"sim:{other}@b"]
    pool = FakePool(names, [(1.0, "kill", names[1])], seed=3, slow=0.0, restart_s=1e9)
    config = fleet_config([P], strategy="random", budget_evals=30, seed=1, batch=4,
                          tick_s=0.1, wait_devices_s=5.0)
    with TuningDB(tmp_path / "g.sqlite") as db:
        result = FleetDriver(config, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()
    by_name = {s.device_name: s for s in result.searches}
    lost, kept = by_name["simulated Other Card"], by_name["simulated NVIDIA H100 80GB HBM3"]
    assert lost.status == "device lost" and lost.written < lost.proposed
    assert kept.status == "budget" and kept.written == kept.proposed == 30
    assert pool.now < 30  # virtual seconds: ended soon after the 5 s grace


def test_a_fleet_that_never_gets_a_device_says_what_to_start(tmp_path):
    from clgemm.errors import StateError

    pool = FakePool([])
    config = fleet_config([P], strategy="random", budget_evals=4, wait_devices_s=1.0, tick_s=0.5)
    with TuningDB(tmp_path / "f.sqlite") as db, pytest.raises(StateError, match="measure"):
        FleetDriver(config, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()


def test_a_rerun_resumes_from_the_database(tmp_path):
    """A fleet run stopped early (its time budget), then run again: the second run tells
    the strategy what the first measured and measures only the rest, to the same best."""
    names = [f"sim:{SPACE}@a"]
    db_path = tmp_path / "r.sqlite"
    budget, batch = 30, 5
    first = fleet_config([P], strategy="genetic", budget_evals=budget, seed=4, batch=batch,
                         budget_seconds=1.0, tick_s=0.1)
    with TuningDB(db_path) as db:
        pool = FakePool(names, seed=1, slow=0.0)
        r1 = FleetDriver(first, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()
        done = len(rows(db_path))
        assert 0 < done < budget and r1.searches[0].status == "budget"
        pool = FakePool(names, seed=2, slow=0.0)
        again = fleet_config([P], strategy="genetic", budget_evals=budget, seed=4, batch=batch,
                             tick_s=0.1)
        r2 = FleetDriver(again, db, pool, clock=pool.clock, log=open(os.devnull, "w")).run()
    assert r2.searches[0].resumed == done and r2.searches[0].written == budget - done
    keys = [k for _, k, _, _ in rows(db_path)]
    assert len(keys) == len(set(keys)) == budget


# ---- a real Dask cluster, a worker process kill -9'd -------------------------------------
def test_real_dask_cluster_worker_kill9(tmp_path):
    """Two devices (two recorded spaces, two fingerprints), one worker each, and a compile
    worker; the second device's worker is kill -9'd mid-run: its work was pinned to it, so it
    comes back only through the driver (worker lost: lease failed, issued again to the worker
    the nanny restarted)."""
    pytest.importorskip("distributed", reason="the fleet extra (pip install 'clgemm[fleet]') "
                                              "is not installed: Dask distributed is missing")
    from clgemm.fleet.cluster import DaskPool, local_cluster

    names = [f"sim:{SPACE}@a", f"sim:{recorded_subset(tmp_path)}@b"]
    victim_fp = tasks.describe(names[1]).fingerprint
    budget, batch, seed = 24, 4, 11
    db_path = tmp_path / "dask.sqlite"
    config = fleet_config([P], strategy="forest", budget_evals=budget, seed=seed, batch=batch,
                          sim=SimTiming(0.02, 0.1), lease_s=60.0, wait_devices_s=30.0,
                          budget_seconds=90.0)  # bounded: a failure, never a hang
    killed = {}

    def count(fp):
        try:
            return sum(1 for f, _, _, _ in rows(db_path) if f == fp)
        except sqlite3.OperationalError:  # not created yet
            return 0

    with local_cluster(names, compile_workers=1) as (client, _):
        pids = client.run(os.getpid)
        victim = [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
                  if w["name"] == names[1]][0]

        def kill_mid_run():
            while count(victim_fp) < 6:
                time.sleep(0.01)
            os.kill(pids[victim], signal.SIGKILL)
            killed["at"] = count(victim_fp)

        killer = threading.Thread(target=kill_mid_run, daemon=True)
        killer.start()
        with TuningDB(db_path) as db:
            result = FleetDriver(config, db, DaskPool(client),
                                 log=open(os.environ.get("FLEET_TEST_LOG", os.devnull), "w")).run()
        killer.join(timeout=5)
    assert 6 <= killed["at"] < budget, "the kill did not land mid-run"
    got = rows(db_path)
    keys = [(f, k) for f, k, _, _ in got]
    assert [s.written for s in result.searches] == [budget, budget]
    assert len(keys) == len(set(keys)) == 2 * budget  # nothing lost, nothing twice
    assert result.workers_lost == [names[1]]
    assert result.workers_seen.count(names[1]) == 2  # the nanny restarted it, it rejoined
    assert result.leases.reissued >= 1 and result.leases.accepted == 2 * budget
    for search, path in zip(sorted(result.searches, key=lambda s: s.device_fp != victim_fp),
                            [names[1].split(":", 1)[1].rsplit("@", 1)[0], SPACE]):
        expect_keys, (_, best_key) = one_process_keys(path, "forest", seed, budget, batch)
        assert {k for f, k in keys if f == search.device_fp} == expect_keys
        assert search.best == best_key


def test_cli_fleet_with_a_kill_drill_writes_its_counts(tmp_path, capsys):
    """`clgemm fleet` end to end on a local cluster: two recorded devices, a compile worker
    kill -9'd by --kill after 6 results; the summary counts nothing lost or duplicated and
    the best of each device is the one-process best."""
    pytest.importorskip("distributed", reason="the fleet extra (pip install 'clgemm[fleet]') "
                                              "is not installed: Dask distributed is missing")
    from clgemm.cli import main

    other = recorded_subset(tmp_path)
    out = tmp_path / "fleet.json"
    code = main(["fleet", "--size", "2048", "--local-devices", f"sim:{SPACE},sim:{other}",
                 "--compile-workers", "2", "--strategy", "genetic", "--budget", "20",
                 "--seed", "5", "--batch", "4", "--db", str(tmp_path / "f.sqlite"),
                 "--time-limit", "90", "--wait-devices", "30",
                 "--kill", "compile-1@6", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(out.read_text())
    assert summary["counts"] == {"proposed": 40, "written": 40, "rows": 40, "lost": 0,
                                 "duplicated": 0}
    assert [k["worker"] for k in summary["kills"]] == ["compile-1"]
    assert summary["kills"][0]["after_results"] >= 6
    for s in summary["searches"]:
        path = SPACE if "H100" in s["device"] else other
        _, (_, best_key) = one_process_keys(path, "genetic", 5, 20, 4)
        assert s["best"] == best_key


# ---- the OpenCL tasks, in their child process (PoCL) ----------------------------------------
def test_opencl_tasks_build_and_measure_in_a_child_process():
    """describe / compile / measure on the CPU OpenCL device, each in the worker's child
    process, at an odd shape checked against float64; a compile error recorded by a compile
    worker is the result as it is; a child killed -9 fails one call, the next gets a new one."""
    from concurrent.futures.process import BrokenProcessPool

    from clgemm.device import get_device
    from clgemm.schedule import DeviceLimits, SearchSpace

    dev = get_device()
    name = f"ocl:{dev.index}"
    try:
        info = tasks.describe(name)
        assert info.fingerprint == dev.fingerprint and info.space_path is None
        assert engine.Space.from_spec(info.space_spec).valid_count()
        tight = SearchSpace(DeviceLimits(max_work_group_size=64, local_mem_bytes=4096,
                                         max_accumulators=24))
        schedule = next(iter(tight.iter_valid()))
        problem = Problem(67, 45, 39)
        built = tasks.compile_item("ocl", dev.fingerprint, problem, schedule.key(),
                                   name="compile-t")
        assert built.error is None and built.skipped is None and built.seconds > 0
        answer = tasks.measure_item(problem, schedule.key(), 2, 0, built, name=name)
        m = answer.measurement
        assert m.ok and m.time_s > 0 and m.error is None and m.compile_s == built.seconds
        assert answer.worker == name and answer.compiled_by == "compile-t"
        assert m.rel_error < 1e-5  # float32 against the float64 reference, K = 39
        # another host's device: nothing built, the device worker will build it
        away = tasks.compile_item("ocl", "0" * 16, problem, schedule.key(), name="compile-t")
        assert away.skipped and away.seconds is None and away.error is None
        failed = tasks.Compiled(schedule.key(), 0.5, "compile: CompileError: synthetic", "c")
        m = tasks.measure_item(problem, schedule.key(), 2, 0, failed, name=name).measurement
        assert m.time_s is None and m.error == "compile: CompileError: synthetic"
        # a child that dies fails one call; the next starts a fresh child
        first = tasks._in_child(os.getpid)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            for _ in range(50):  # the pool sees its child gone within a call or two
                tasks._in_child(os.getpid)
                time.sleep(0.05)
        assert tasks._in_child(os.getpid) not in (first, os.getpid())
    finally:
        if tasks._child is not None:
            tasks._child.shutdown()
            tasks._child = None
