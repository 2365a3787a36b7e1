"""An interrupted run leaves a valid artifact marked incomplete, with what it had measured."""

from __future__ import annotations

import pytest

from clgemm.bench import harness, runner
from clgemm.bench.metrics import load_artifact, validation_errors
from clgemm.bench.protocol import Protocol


def test_ctrl_c_leaves_a_valid_partial_artifact(tmp_path, monkeypatch):
    real = harness.measure_clgemm
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "measure_clgemm", flaky)
    out = tmp_path / "partial.json"
    opts = runner.BenchOptions(suite=None, shapes="64,48x40x32", out=str(out),
                               protocol=Protocol(warmup=1, repeats=3, input_sets=2, host_repeats=1),
                               baselines=("numpy",), sustained_seconds=0, build_cost=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        runner.run_bench(opts, ["clgemm", "bench"])
    art = load_artifact(out)
    assert art["complete"] is False
    assert validation_errors(art) == []
    assert [e["method"] for e in art["results"]] == ["clgemm", "numpy_cpu"]
