"""The migration report from pipeline records: figures read from the artifacts, the bars
judged on them (met and not met), the table-transfer matrix, and the GPU placeholder."""

from __future__ import annotations

import json

from clgemm.cli import main
from clgemm.report.migration import bars, pipeline_runs
from clgemm.report.records import load_records
from clgemm.schedule import Schedule
from clgemm.select.table import DEFAULT_CPU, Table, TableDevice

OWN = {"pocl": Schedule(wg_m=4, wg_n=8, out_m=6, out_n=16, direct=1),
       "rusticl": Schedule(wg_m=8, wg_n=8, out_m=4, out_n=4)}
OWN["intel"] = OWN["pocl"]  # two implementations may ship the same schedule
PLATFORM = {"pocl": "Portable Computing Language", "rusticl": "rusticl",
            "intel": "Intel(R) OpenCL"}


def entry(method, size, gflops, call=None, family="clgemm", ratio=0.8):
    return {"method": method, "family": family, "shape": [size] * 3, "status": "ok",
            "timing": {"gflops_median": gflops, "gflops_peak": gflops * 1.1},
            "call": {"gflops_median": call or gflops},
            "accuracy": {"ratio_to_numpy": ratio, "all_written": True},
            "build": {"cold_s": 1.5, "warm_s": 0.01}}


def write_record(root, impl, tuned, default, numpy, other_gflops, separate=False,
                 name="2026-12-06-pipeline", supersedes=(), status="current"):
    """A pipeline record; `separate`: the other table measured in transfer.json at 1024 only
    (beside a second measurement of the own table), not in the KPI run."""
    folder = root / f"cpu-{impl}" / name
    folder.mkdir(parents=True)
    other = "pocl" if impl == "rusticl" else "rusticl"
    results = []
    for size in (700, 1024, 1536):
        results += [entry("clgemm", size, tuned), entry(f"clgemm:{DEFAULT_CPU.key()}", size, default),
                    entry("numpy_cpu", size, numpy, family="numpy", ratio=1.0)]
        if not separate:
            results.append(entry(f"clgemm:{OWN[other].key()}", size, other_gflops))
    artifacts = ["kpi.json", "table.json"]
    if separate:
        transfer = {"schema_version": "clgemm.metrics/1", "kind": "bench",
                    "results": [entry("clgemm", 1024, tuned / 2),
                                entry(f"clgemm:{OWN[other].key()}", 1024, other_gflops)]}
        (folder / "transfer.json").write_text(json.dumps(transfer))
        artifacts.append("transfer.json")
    dev = {"platform": PLATFORM[impl], "name": f"{impl}-cpu", "type": "CPU",
           "driver_version": "1"}
    kpi = {"schema_version": "clgemm.metrics/1", "kind": "bench", "env": {"device": dev},
           "protocol": {}, "results": results}
    (folder / "kpi.json").write_text(json.dumps(kpi))
    table = Table(dev["name"], {}, OWN[impl], "x", device=TableDevice(dev["name"], PLATFORM[impl],
                                                                    "amd", "CPU"))
    (folder / "table.json").write_text(json.dumps(table.to_json()))
    record = {"what": f"{impl} pipeline", "claim": "synthetic figures for a test",
              "command": "a test", "commit": "unknown", "device": dev["name"],
              "date": "2026-12-06", "feature": "kpi", "artifacts": artifacts,
              "supersedes": list(supersedes), "status": status}
    (folder / "record.json").write_text(json.dumps(record))


def test_bars_and_report(tmp_path):
    root = tmp_path / "records"
    write_record(root, "pocl", tuned=60.0, default=20.0, numpy=70.0, other_gflops=5.0)
    write_record(root, "rusticl", tuned=3.0, default=2.0, numpy=70.0, other_gflops=1.0,
                 separate=True)
    write_record(root, "intel", tuned=30.0, default=3.0, numpy=70.0, other_gflops=4.0)
    runs = pipeline_runs(load_records(root))
    assert [r.platform for r in runs] == ["Intel(R) OpenCL", "Portable Computing Language",
                                          "rusticl"]
    verdicts = {what.split(":")[0]: (met, figs) for what, met, figs in bars(runs)}
    assert verdicts["Portable Computing Language"][0] is True  # 3.0x
    assert verdicts["rusticl"][0] is False and "1.50x" in verdicts["rusticl"][1]
    best = [v for k, v in verdicts.items() if k.startswith("best CPU")][0]
    assert best[0] is True and "0.86x" in best[1]  # 60 / 70 on every size
    out = tmp_path / "docs"
    assert main(["report", "--migration", "--records", str(root), "-o", str(out),
                 "--name", "migration"]) == 0
    md = (out / "migration.md").read_text()
    assert "NOT met" in md and "| met |" in md
    assert "5.0 (0.08x own)" in md  # rusticl's table on PoCL, against PoCL's own 60
    # PoCL's table on Intel is Intel's own schedule: no transfer to measure
    assert "30.0 (own: the same schedule)" in md
    # PoCL's table on Rusticl, from transfer.json: against the own table in that run (1.5)
    assert "1.0 (0.67x own)" in md
    assert "NVIDIA GPU (to be filled from a GPU run)" in md and "ROCm/AMD on paper" in md
    assert (out / "migration.html").read_text().startswith("<!DOCTYPE html>")


def test_without_pipeline_records_the_report_says_so(tmp_path):
    root = tmp_path / "records"
    root.mkdir()
    assert main(["report", "--migration", "--records", str(root), "-o", str(tmp_path)]) == 0
    assert "No pipeline record found" in (tmp_path / "report.md").read_text()


def test_a_same_day_rerun_supersedes_the_pipeline_record(tmp_path):
    """<date>-pipeline-2, superseding <date>-pipeline, is the implementation's run."""
    root = tmp_path / "records"
    write_record(root, "rusticl", tuned=3.0, default=2.0, numpy=70.0, other_gflops=1.0,
                 status="superseded")
    write_record(root, "rusticl", tuned=5.0, default=2.0, numpy=70.0, other_gflops=1.0,
                 name="2026-12-06-pipeline-2",
                 supersedes=["cpu-rusticl/2026-12-06-pipeline"])
    (run,) = pipeline_runs(load_records(root))
    assert run.record.id == "cpu-rusticl/2026-12-06-pipeline-2"
    ((what, met, figs), _) = bars([run])
    assert met is True and "2.50x" in figs
