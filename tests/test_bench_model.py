"""The model-workload suite (`clgemm bench --suite model`) on the CPU device: the shipped tiny
trace through the public call, its artifact valid, every product checked against float64."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clgemm.bench.metrics import validation_errors
from clgemm.bench.model import trace_calls
from clgemm.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "traces" / "tiny" / "model_tiny.jsonl"


def test_model_suite_on_the_tiny_trace(tmp_path, capsys):
    out = tmp_path / "model.json"
    code = main(["bench", "--suite", "model", "--trace", str(TINY), "--peers", "numpy",
                 "--repeats", "1", "-o", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["kind"] == "model" and data["complete"]
    assert validation_errors(data) in ([], None)
    model = data["model"]
    calls = trace_calls(TINY)
    assert model["summary"]["calls"] == sum(c.repeat for c in calls)
    assert sum(c["count"] for c in model["classes"].values()) == model["summary"]["calls"]
    assert {c.split(".")[0] for c in (x.name for x in calls)} == set(model["classes"])
    for p in model["products"]:
        acc = p["accuracy"]
        assert acc["all_written"], p
        assert p["clgemm_s"] > 0 and p["numpy_s"] > 0 and p["ratio_to_numpy"] > 0
        assert acc["rel_error"] <= 2.0 * acc["numpy_f32_rel_error"], p
    assert "total (trace)" in capsys.readouterr().out
    assert main(["report", str(out), "-o", str(tmp_path / "rep"), "--name", "m"]) == 0
    text = (tmp_path / "rep" / "m.md").read_text()
    assert "Model workloads through the public call" in text and "total (trace)" in text


@pytest.mark.parametrize("argv,message", [
    (["--suite", "model"], "needs --trace"),
    (["--suite", "model", "--trace", str(TINY), "--peers", "cupy"], "unknown peer"),
])
def test_model_suite_refuses_bad_arguments(argv, message, capsys, tmp_path):
    assert main(["bench", *argv, "-o", str(tmp_path / "x.json")]) == 2
    assert message in capsys.readouterr().err


def test_each_product_takes_the_best_of_several_final_batches():
    """A product whose first batch already lasts min_shape_s is timed FINAL_BATCHES times
    (not once), and the best batch is its figure."""
    from clgemm.bench import model

    calls, slow = [], iter([0.03, 0.01, 0.02])

    def run_once():
        calls.append(1)
        if len(calls) > 1:  # the warm-up call costs nothing
            import time
            time.sleep(next(slow))

    best = model._loop_seconds(run_once, lambda: None, 0.005)
    assert len(calls) == 1 + model.FINAL_BATCHES == 4
    assert 0.01 <= best < 0.02
