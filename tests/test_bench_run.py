"""A small real PoCL run end to end through the CLI: sessions in separate processes, a short
sustained run, the artifact against the schema, the report and the roofline from it."""

from __future__ import annotations

import copy

import pytest

from clgemm.bench.metrics import load_artifact, validation_errors
from clgemm.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "shapes.json"
    rc = main(["bench", "--suite", "shapes", "--scale", "0.0625", "--shapes", "96x80x72",
               "--sessions", "2", "--repeats", "4", "--warmup", "1", "--input-sets", "2",
               "--host-repeats", "2", "--sustained-seconds", "1", "--window", "0.25",
               "--baselines", "numpy,clblast,cublas", "--rank-schedules", "3", "--quiet",
               "-o", str(out)])
    return rc, out


def test_run_writes_a_valid_complete_artifact(run):
    rc, out = run
    assert rc == 0
    art = load_artifact(out)
    assert validation_errors(art) == []
    assert art["complete"] is True
    assert art["env"]["device"]["name"] and art["env"]["code"]["commit"] is not None
    assert art["protocol"]["sessions"] == 2 and art["protocol"]["seed"] is not None
    assert [r["returncode"] for r in art["sessions"]["runs"]] == [0, 0]


def test_clgemm_figures(run):
    art = load_artifact(run[1])
    ours = [e for e in art["results"] if e["method"] == "clgemm"]
    assert len(ours) == len(art["shapes"]) >= 9
    for e in ours:
        assert e["status"] == "ok", e.get("reason")
        assert e["timing"]["gflops_peak"] >= e["timing"]["gflops_median"] > 0
        assert e["sessions"]["n"] == 2 and len(e["sessions"]["gflops_peak"]) == 2
        acc = e["accuracy"]
        assert acc["all_written"] and acc["host_path_all_written"]
        m, n, _ = e["shape"]
        if m * n >= 256:  # below that a Frobenius ratio is too noisy a statistic (see conftest)
            assert acc["ratio_to_numpy"] <= 4.0
        assert acc["max_abs_error"] is not None
        hp = e["host_path"]
        assert hp["total_s"] >= hp["kernel_s"] > 0
        assert e["build"]["source_lines"] > 0
        assert e["build"]["cold_s"] > 0 and e["build"]["warm_s"] >= 0
        assert e["build"]["cold_from_cache"] is False and e["build"]["warm_from_cache"] is True


def test_peers_present_or_absent_with_reason(run):
    art = load_artifact(run[1])
    assert any(e["method"] == "numpy_cpu" and e["status"] == "ok" for e in art["results"])
    for name, b in art["baselines"].items():
        if b["status"] != "present":
            assert b["reason"]
    for e in art["results"]:
        if e["status"] != "ok":
            assert e["reason"] and "timing" not in e


def test_sustained_and_ranking(run):
    art = load_artifact(run[1])
    (s,) = art["sustained"]
    assert s["seconds"] == 1 and len(s["series"]) >= 2
    assert all(p["gflops"] > 0 for p in s["series"])
    assert s["clock_source"] is None and s["clock_absent_reason"]
    r = art["ranking"]
    assert len(r["per_session"]) == 2 and len(r["per_session"][0]) == 3
    assert -1 <= r["reproducibility"]["score"] <= 1


def test_broken_artifacts_fail_validation(run):
    good = load_artifact(run[1])
    breakers = [
        lambda a: a.pop("schema_version"),
        lambda a: a.update(schema_version="clgemm.metrics/0"),
        lambda a: a["env"].pop("code"),
        lambda a: a["results"][0].pop("timing"),  # "ok" without figures
        lambda a: a["results"][0]["timing"].update(gflops_peak=-1.0),
        lambda a: a["results"][0].update(status="fine"),
        lambda a: a["results"].append({"method": "x", "family": "numpy", "shape": [1, 1, 1],
                                       "status": "absent"}),  # absent without a reason
        lambda a: a["results"][0].update(shape=[1, 2]),
        lambda a: a["sustained"][0]["series"][0].pop("gflops"),
    ]
    for breaker in breakers:
        bad = copy.deepcopy(good)
        breaker(bad)
        assert validation_errors(bad), breaker


def test_report_and_roofline_from_the_run(run, tmp_path):
    roof = tmp_path / "roofline.json"
    assert main(["roofline", "--quick", "-o", str(roof), "--from", str(run[1])]) == 0
    r = load_artifact(roof)
    assert validation_errors(r) == [] and r["complete"]
    assert r["roofline"]["peak_gflops"] > 0 and r["roofline"]["bandwidth_gbs"] > 0
    assert any(k["measured_gflops"] for k in r["roofline"]["kernels"])
    assert (tmp_path / "roofline.png").stat().st_size > 1000
    out = tmp_path / "rep"
    assert main(["report", str(run[1]), str(roof), "-o", str(out), "--embed"]) == 0
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for title in ("KPI-1", "KPI-2", "KPI-3", "KPI-4", "KPI-5", "Roofline"):
        assert title in md and title in page
    assert "shapes.json#results[0]" in md and "](../" in md  # claims link to the artifact
    assert page.count("data:image/png;base64,") >= 3
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


def test_a_stated_commit_names_the_code_where_git_cannot(monkeypatch):
    """The lent GPU machine's copy of the tree has a stale .git (its HEAD was an old commit
    in the 2026-12-07 call): CLGEMM_CODE_COMMIT, which scripts/gpu-call.sh sets from
    commit.txt, is the commit an artifact names; without it, git's answer."""
    from clgemm.bench.env import code_version

    monkeypatch.delenv("CLGEMM_CODE_COMMIT", raising=False)
    from_git = code_version()
    monkeypatch.setenv("CLGEMM_CODE_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    stated = code_version()
    assert stated["commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert stated["source"] == "stated" and stated["dirty"] is None
    assert from_git.get("source") != "stated"
