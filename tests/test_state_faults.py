"""State faults: the files clgemm keeps (tables, kernel cache, tuning database, selector state,
artifacts) under truncation, swapping, threads, kill -9 and a full disk. Each test here failed
before its fix (issue 19).

A full disk is simulated for real with RLIMIT_FSIZE around the write alone (SIGXFSZ ignored):
the write fails with EFBIG as it would with ENOSPC, in this process, after any compile."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import clgemm
from clgemm import runtime
from clgemm.cli import main
from clgemm.select import table as table_mod
from clgemm.select.replay import Call, SimulatedBackend, replay
from clgemm.select.table import DEFAULT_CPU, DEFAULT_GPU, Table, load_table
from clgemm.schedule import Schedule

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(clgemm.__file__).resolve().parent.parent


@contextlib.contextmanager
def disk_full(limit: int = 4096):
    """Writes past `limit` bytes of any file fail (EFBIG) while inside."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    prev = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, prev)


@pytest.fixture(scope="module")
def rt():
    from clgemm.runtime import get_runtime

    return get_runtime()


# ---- tables --------------------------------------------------------------------------------
@pytest.fixture
def tables_folder(tmp_path, monkeypatch):
    """A copy of the shipped tables folder that the table module reads instead."""
    folder = tmp_path / "data" / "tables"
    folder.mkdir(parents=True)
    real = Path(table_mod.__file__).resolve().parent.parent / "data" / "tables"
    for f in real.glob("*.json"):
        (folder / f.name).write_text(f.read_text())
    monkeypatch.setattr(table_mod, "resources", types.SimpleNamespace(files=lambda _: tmp_path))
    table_mod._shipped_table.cache_clear()
    yield folder
    table_mod._shipped_table.cache_clear()


@pytest.mark.parametrize("content", ['{"schema": "clgemm.table/1", "dev', "", "[1, 2]",
                                     "\x00\x01garbage"])
def test_a_bad_table_file_is_skipped_and_named(tables_folder, rt, rng, content):
    (tables_folder / "aaa-torn.json").write_text(content)
    with pytest.warns(RuntimeWarning, match="aaa-torn.json"):
        t = load_table(rt.device)
    shipped = [n for n in os.listdir(tables_folder) if n != "aaa-torn.json"]
    # a shipped table of this device, or of its implementation and type (a fallback names
    # its file first: a host whose CPU has no table of its own), or the built-in default
    assert t.source.split(" (fallback")[0] in shipped or t.source == "builtin default"
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    assert np.allclose(clgemm.matmul(a, b), a.astype(np.float64) @ b, atol=1e-5)


def test_a_damaged_table_of_this_device_gives_the_default(tables_folder, rt):
    name = f"{rt.device.slug}-damaged.json"
    for f in tables_folder.glob("*.json"):
        f.unlink()
    (tables_folder / name).write_text(json.dumps(
        {"schema": "clgemm.table/1", "device": {"name": rt.device.name}, "default": {"x": 1}}))
    with pytest.warns(RuntimeWarning, match=name):
        t = load_table(rt.device)
    assert t.source == "builtin default"


def test_distill_writes_its_table_atomically(tmp_path):
    from clgemm.tune.distill import write_table

    path = tmp_path / "dev.json"
    old = Table("dev", {}, DEFAULT_CPU, "old")
    write_table(old, path)
    before = path.read_text()
    big = Table("dev", {f"m{i}n{i}k{i}": DEFAULT_GPU for i in range(12)}, DEFAULT_CPU, "new")
    with pytest.raises(OSError), disk_full(len(before) + 64):
        write_table(big, path)
    assert path.read_text() == before  # not torn
    assert os.listdir(tmp_path) == ["dev.json"]  # no temporary left


# ---- kernel cache --------------------------------------------------------------------------
SRC_X = "__kernel void kx(__global float* x) { x[get_global_id(0)] = 1.0f; }"
SRC_Y = "__kernel void ky(__global float* x) { x[get_global_id(0)] = 2.0f; }"


def test_swapped_cache_files_are_rebuilt_not_loaded_as_each_other(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("CLGEMM_CACHE_DIR", str(tmp_path))
    kx, ky = rt.cache_key(SRC_X, ""), rt.cache_key(SRC_Y, "")
    for key in (kx, ky):
        rt._programs.pop(key, None)
    rt.build(SRC_X)
    rt.build(SRC_Y)
    fx, fy = tmp_path / f"{kx}.bin", tmp_path / f"{ky}.bin"
    data_x, data_y = fx.read_bytes(), fy.read_bytes()
    fx.write_bytes(data_y)
    fy.write_bytes(data_x)
    for key in (kx, ky):
        rt._programs.pop(key, None)  # as a new process would
    bx = rt.build(SRC_X)
    assert not bx.info.from_cache
    bx.kernel("kx")  # the program of its own source
    assert not rt.build(SRC_Y).info.from_cache
    assert runtime._unseal(runtime._seal(b"abc", kx), ky) is None
    assert runtime._unseal(runtime._seal(b"abc", kx), kx) == b"abc"


class _Binary:
    """A program as `_store` sees it (its binary read outside the limit: the driver's own
    files are not under test)."""

    def __init__(self, program) -> None:
        import pyopencl as cl

        self.binaries = program.get_info(cl.program_info.BINARIES)

    def get_info(self, what):
        return self.binaries


def test_a_failed_cache_write_leaves_no_temporary(rt, tmp_path):
    program = _Binary(rt.build(SRC_X, "-DNOCACHE_PROBE=1", use_disk_cache=False).program)
    size = len(program.binaries[0])  # 824 bytes on Rusticl, several KiB elsewhere
    assert size > 64
    path = tmp_path / "k.bin"
    with disk_full(size // 2):  # the write fails halfway
        rt._store(path, program)  # fails quietly: a cache that cannot be written costs a compile
    assert os.listdir(tmp_path) == []


# ---- tuning database ----------------------------------------------------------------------
def _measurement(i: int):
    from clgemm.tune.measure import Measurement

    s = Schedule(wg_m=8, wg_n=8, out_m=4, out_n=4, tile_k=8 * (1 + i % 4), unroll_k=1 + i % 2)
    return Measurement(s, 1e-3 * (1 + i), 0.1, error=f"row {i}")


def test_a_full_disk_during_a_tuning_write_is_a_state_error(tmp_path):
    from clgemm.tune.db import TuningDB
    from clgemm.tune.measure import Problem

    path = tmp_path / "t.sqlite"
    with TuningDB(path) as db:
        db.record("fp", "dev", Problem(8, 8, 8), _measurement(0), {"p": 1}, "r0")
        protocol = {"pad": "x" * 20000}
        with pytest.raises(clgemm.StateError, match="tuning database"), disk_full(
                os.path.getsize(path) + 8192):
            for i in range(1, 200):
                db.record("fp", "dev", Problem(8, 8, 8 + i), _measurement(i), protocol, "r0")
    with TuningDB(path) as db:  # still a sound database with its first row
        assert db.measured("fp", Problem(8, 8, 8))


def test_a_truncated_tuning_database_is_a_state_error(tmp_path):
    from clgemm.tune.db import TuningDB
    from clgemm.tune.measure import Problem

    path = tmp_path / "t.sqlite"
    with TuningDB(path) as db:
        for i in range(60):
            db.record("fp", "dev", Problem(8, 8, 8 + i), _measurement(i), {"pad": "x" * 500}, "r")
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    path.write_bytes(path.read_bytes()[:9000])
    with pytest.raises(clgemm.StateError, match="move the damaged file aside"):
        with TuningDB(path) as db:
            db.measured("fp", Problem(8, 8, 8))


def _kill_tuner_module():
    spec = importlib.util.spec_from_file_location(
        "kill_tuner", ROOT / "benchmarks" / "errors" / "kill_tuner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [2])  # kills while the worker is still starting
def test_kill_9_of_the_tuner_leaves_no_orphan_and_marks_the_run(tmp_path, seed):
    """SIGKILL to the tuner alone: its compile worker and resource tracker go too, the resumed
    run finishes the budget with nothing lost or repeated, the killed run is 'interrupted'.
    (benchmarks/errors/kill_tuner.py runs the 20-run campaign.)"""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    r = _kill_tuner_module().kill_once(tmp_path / "k.sqlite", seed, budget=5, env=env)
    assert r["killed"] and r["orphans"] == 0, r
    assert r["ok"], r


# ---- selector state ------------------------------------------------------------------------
THREAD_SCRIPT = """
import sys, threading
from clgemm.select.online import OnlineSelector
from clgemm.select.table import DEFAULT_CPU, DEFAULT_GPU
holder = {}
def work():
    sel = OnlineSelector("threadfp", [DEFAULT_CPU, DEFAULT_GPU], lambda m, n, k: DEFAULT_CPU,
                         state_dir=sys.argv[1])
    for i in range(6):
        d = sel.choose(64, 64, 64)
        sel.observe(d, 1e-3 * (1 + i % 2))
    holder["sel"] = sel
t = threading.Thread(target=work); t.start(); t.join()
d = holder["sel"].choose(96, 64, 64)   # used again from the main thread,
holder["sel"].observe(d, 2e-3)         # and flushed by the exit hook there
"""


def test_the_selector_used_from_a_thread_keeps_its_state(tmp_path):
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, "-c", THREAD_SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    con = sqlite3.connect(tmp_path / "threadfp.sqlite3")
    try:
        keys = [k for (k,) in con.execute("SELECT key FROM items WHERE kind='shape'")]
    finally:
        con.close()
    assert any(k.startswith("96x64x64") for k in keys) and any(k.startswith("64x64x64")
                                                               for k in keys), keys


def test_a_full_disk_during_a_selector_sync_keeps_the_state(tmp_path):
    from clgemm.select.state import StateStore

    store = StateStore("fp", tmp_path)
    assert store.merge({("shape", "a"): [1.0, 2.0, 3.0]}) is not None
    big = {("lin", f"arm{i}"): [float(i)] * 400 for i in range(200)}
    with disk_full(os.path.getsize(store.path) + 4096):
        assert store.merge(big) is None  # not saved, not fatal
    assert "free disk space" in (store.note or "")
    assert not list(tmp_path.glob("*.corrupt-*"))  # the learned state was not thrown away
    merged = store.merge(big)  # space again: the deltas go in
    assert merged is not None and merged[("shape", "a")] == [1.0, 2.0, 3.0]
    store.close()


# ---- artifacts written by the CLI ----------------------------------------------------------
def test_a_full_disk_during_matmul_output_keeps_the_old_file(tmp_path, rng, capsys):
    a, b = (rng.standard_normal((48, 40)).astype(np.float32),
            rng.standard_normal((40, 48)).astype(np.float32))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "c.npy"
    argv = ["matmul", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-o", str(out)]
    assert main(argv) == 0  # builds the kernel (the compiler writes files) outside the limit
    before = out.read_bytes()
    capsys.readouterr()
    with disk_full(4096):
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.npy", "c.npy"]


def test_the_atomic_writer_under_a_full_disk(tmp_path):
    from clgemm.atomic import write_text

    target = tmp_path / "artifact.json"
    target.write_text("old")
    with pytest.raises(OSError), disk_full(1024):
        write_text(target, "x" * 10000)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["artifact.json"]


# ---- replay --------------------------------------------------------------------------------
def test_replay_names_a_shape_no_arm_computes_and_goes_on():
    from clgemm.select.online import OnlineSelector

    arms = [DEFAULT_CPU, DEFAULT_GPU]

    class OneRowWrong(SimulatedBackend):
        def validate(self, schedule, call):
            if call.m == 1:
                return False, "wrong: simulated"
            return super().validate(schedule, call)

    backend = OneRowWrong(lambda key, call, loaded: call.flops / 1e10, noise=0.0)
    sel = OnlineSelector("sim", arms, lambda m, n, k: DEFAULT_CPU, persist=False)
    events = [Call(1, 64, 64), Call(32, 32, 32, repeat=3)]
    r = replay(events, backend, sel, arms, oracle_reps=1)
    assert r["calls"] == 3 and "1x64x64NN" in r["skipped"]
    assert "no arm passed" in r["skipped"]["1x64x64NN"]
    from clgemm.select.replay import format_report

    assert "skipped 1x64x64NN" in format_report(r)


def test_replay_with_a_single_arm_says_so(tmp_path, capsys):
    table = tmp_path / "one.json"
    table.write_text(json.dumps(Table("elsewhere", {}, DEFAULT_CPU, "x").to_json()))
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"m": 8, "n": 8, "k": 8}\n')
    code = main(["replay", str(trace), "--table", str(table), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--candidates" in err and len(err.strip().splitlines()) == 1, err


def test_replay_on_a_device_without_a_table_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table_mod, "_shipped_tables", lambda: [])
    table_mod._shipped_table.cache_clear()
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"m": 8, "n": 8, "k": 8}\n')
    try:
        code = main(["replay", str(trace), "--quiet"])
    finally:
        table_mod._shipped_table.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and "no shipped table matches" in err, err
