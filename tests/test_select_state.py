"""Persistence of the online selector: per device, shared between instances and processes,
corrupt files rebuilt (never fatal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clgemm.select.online import OnlineSelector
from clgemm.select.state import StateStore
from test_select_online import ARMS, FAST, SPEEDS, make_cost, static_fn, trace

from clgemm.select.replay import SimulatedBackend, replay


def learn(state_dir, fingerprint="dev-a", events=None):
    sel = OnlineSelector(fingerprint, ARMS, static_fn, state_dir=state_dir)
    replay(events or trace(30), SimulatedBackend(make_cost(SPEEDS), 0.03, 1), sel, ARMS)
    sel.close()
    return sel


def test_a_second_instance_picks_up_what_was_learned(tmp_path):
    learn(tmp_path)
    assert (tmp_path / "dev-a.sqlite3").exists()
    fresh = OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path)
    d = fresh.choose(1024, 1024, 1024)
    assert d.schedule == FAST and d.reason == "exploit"
    # Another device (fingerprint) starts unlearned.
    other = OnlineSelector("dev-b", ARMS, static_fn, state_dir=tmp_path)
    assert other.choose(1024, 1024, 1024).reason == "baseline"


def test_a_second_process_picks_up_what_was_learned(tmp_path):
    learn(tmp_path)
    here = Path(__file__).parent
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_select_online import ARMS, static_fn\n"
        "from clgemm.select.online import OnlineSelector\n"
        "s = OnlineSelector('dev-a', ARMS, static_fn, state_dir=%r)\n"
        "d = s.choose(1024, 1024, 1024)\n"
        "print(d.schedule.key(), d.reason)\n" % (str(here), str(tmp_path))
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here.parent / "src"), str(here)]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [FAST.key(), "exploit"]


def test_instances_sharing_a_file_merge_their_counts(tmp_path):
    a = OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path, sync_every=10**9)
    b = OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path, sync_every=10**9)
    for sel, n in ((a, 7), (b, 5)):
        for _ in range(n):
            d = sel.choose(256, 256, 256)
            sel.observe(d, 1e-3)
    assert a.flush() and b.flush()
    c = OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path)
    assert c.summary()["persisted_totals"]["observations"] == 12


@pytest.mark.parametrize("garbage", [b"this is not a database" * 100, b""])
def test_a_corrupt_state_file_is_rebuilt_and_said_so(tmp_path, garbage):
    learn(tmp_path)
    path = tmp_path / "dev-a.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if garbage:
        path.write_bytes(garbage)
    else:  # a database whose rows do not decode
        store = StateStore("dev-a", tmp_path)
        store._conn.execute("UPDATE items SET value = '{not json'")
        store.close()
    with pytest.warns(RuntimeWarning, match="rebuilt"):
        sel = OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path)
    assert sel.note and "moved aside" in sel.note
    assert list(tmp_path.glob("dev-a.sqlite3.corrupt-*"))
    # It works, and learns again from scratch.
    assert sel.choose(1024, 1024, 1024).reason == "baseline"
    learn(tmp_path)
    assert OnlineSelector("dev-a", ARMS, static_fn, state_dir=tmp_path).note is None


def test_state_dir_follows_the_environment(tmp_path, monkeypatch):
    from clgemm.select.state import state_dir

    monkeypatch.setenv("CLGEMM_STATE_DIR", str(tmp_path))
    assert state_dir() == tmp_path / "selector"
    sel = OnlineSelector("dev-z", ARMS, static_fn)
    assert Path(sel.summary()["state_file"]).parent == tmp_path / "selector"
    json.dumps(sel.summary())
