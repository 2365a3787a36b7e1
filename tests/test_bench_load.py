"""Load sensitivity: a second process hammers the device while clgemm is measured."""

from clgemm.bench import runner
from clgemm.bench.metrics import load_artifact, validation_errors
from clgemm.bench.protocol import Protocol


def test_load_rows(tmp_path):
    out = tmp_path / "load.json"
    opts = runner.BenchOptions(suite=None, shapes="192", out=str(out),
                               protocol=Protocol(warmup=1, repeats=5, input_sets=2, host_repeats=1),
                               baselines=(), sustained_seconds=0, build_cost=False, load=True,
                               quiet=True)
    art, errors = runner.run_bench(opts, ["clgemm", "bench", "--load"])
    assert errors == [] and load_artifact(out)["complete"]
    (row,) = art["load"]["rows"]
    assert art["load"]["generator_ready"] is True
    assert row["gflops_loaded"] > 0 and row["gflops_unloaded"] > 0
    assert row["ratio"] == row["gflops_loaded"] / row["gflops_unloaded"]
    assert validation_errors(art) == []
