"""`clgemm replay` and the online selector on the real PoCL device (small sizes).

The PoCL arms differ in speed by 2-5x (see traces/tiny/pocl_candidates.txt), so the
assertions hold on a busy 2-core machine too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from clgemm.cli import main
from clgemm.select.online import OnlineSelector
from clgemm.select.replay import Call, OpenCLBackend, read_candidates, read_trace, replay
from clgemm.select.table import DEFAULT_CPU

# Its arms and traces are PoCL's (the CPU device): on another device they are other kernels.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CLGEMM_DEVICE", "").startswith("Portable Computing Language"),
    reason="PoCL's replay traces and candidate arms")

ROOT = Path(__file__).parent.parent
TINY = ROOT / "traces" / "tiny"
CANDIDATES = TINY / "pocl_candidates.txt"


@pytest.fixture(scope="module")
def rt():
    from clgemm.runtime import get_runtime

    return get_runtime()


def test_replay_cli_mixed_tiny(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["replay", str(TINY / "mixed_tiny.jsonl"), "--candidates", str(CANDIDATES),
                 "--json", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "regret" in text and "quality" in text
    data = json.loads(out.read_text())
    r = data["traces"][0]
    # the arms: the shipped table's schedules (its entries and alternates), then the file's
    from clgemm.device import get_device
    from clgemm.select.table import load_table

    arms = dict.fromkeys([*load_table(get_device()).candidates(), *read_candidates(CANDIDATES)])
    assert data["device"]["type"] == "CPU" and data["arms"] == [s.key() for s in arms]
    assert r["calls"] == sum(c.repeat for c in read_trace(TINY / "mixed_tiny.jsonl")
                             if isinstance(c, Call))
    assert r["online"]["explore_share"] <= 0.10
    t = r["total_s"]
    # Which policy is faster is a benchmark's question (benchmarks/select), not a unit test's:
    # here only that every policy ran and was timed.
    assert t["oracle"] > 0 and t["static"] > 0 and t["online"] > 0
    assert set(r["decision_quality"]) == {"static", "online"}
    for row in r["shapes"].values():
        assert not row["rejected"]  # every candidate passed the float64 check


def test_online_leaves_the_slow_arm_on_the_device(rt):
    slow, fast = read_candidates(CANDIDATES)[1], read_candidates(CANDIDATES)[0]
    arms = [slow, fast, DEFAULT_CPU]
    sel = OnlineSelector(rt.device.fingerprint, arms, lambda m, n, k: slow, persist=False)
    events = [Call(128, 128, 128, repeat=40), Call(64, 192, 96, repeat=40)]
    backend = OpenCLBackend(rt)
    report = replay(events, backend, sel, arms)
    call, picks = Call(128, 128, 128), []
    for _ in range(5):
        d = sel.choose(128, 128, 128)
        sel.observe(d, backend.run(d.schedule, call))
        picks.append(d.schedule)
    # Away from the static choice's slow arm, as measured here and now. Which of the others
    # is fastest is not decided here: on shared cores their order moves with the load (CI,
    # under a soak, saw the selector keep DEFAULT_CPU while a re-measure a minute later put
    # the candidates file's 'fast' ahead), and on another host DEFAULT_CPU ran as fast.
    times = {a: float(np.median([backend.run(a, call) for _ in range(7)])) for a in arms}
    gap = times[slow] / min(times.values())
    if gap < 1.5:
        pytest.skip(f"the slow arm measured only {gap:.2f}x the fastest here: nothing to learn")
    assert sum(p != slow for p in picks) >= 4, ([p.key() for p in picks], times)
    assert report["total_s"]["online"] < 0.8 * report["total_s"]["static"]
    assert report["online"]["explore_share"] <= 0.10


def test_replay_with_load_phases(tmp_path):
    out = tmp_path / "d.json"
    code = main(["replay", str(TINY / "drift_tiny.jsonl"), "--candidates", str(CANDIDATES),
                 "--load", "--load-size", "128", "--json", str(out), "--quiet"])
    assert code == 0
    r = json.loads(out.read_text())["traces"][0]
    assert r["phases"]["load"]["calls"] > 0 and r["phases"]["quiet"]["calls"] > 0
    assert r["online"]["explore_share"] <= 0.10


def test_get_selector_drives_real_calls(rt, tmp_path, monkeypatch):
    """What the proposed api.py hook does: choose, run through matmul, observe."""
    import numpy as np

    from clgemm.api import matmul
    from clgemm.select import online

    monkeypatch.setenv("CLGEMM_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(online, "_selectors", {})
    sel = online.get_selector(rt)
    assert online.get_selector(rt) is sel and sel.arms  # one per device, table candidates
    A = np.ones((64, 48), np.float32)
    B = np.ones((48, 80), np.float32)
    for _ in range(3):
        d = sel.choose(64, 80, 48)
        C, info = matmul(A, B, schedule=d.schedule, return_info=True)
        sel.observe(d, info.kernel_s)
        assert np.allclose(C, 48.0) and info.schedule == d.schedule.key()
    sel.close()
    assert (tmp_path / "selector" / f"{rt.device.fingerprint}.sqlite3").exists()
