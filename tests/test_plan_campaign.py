"""benchmarks/plan/campaign.py's parts of this session's lanes, run small on the CPU device:
each times its lanes, checks every result against float64 and writes what the GPU campaign's
readers (the table distillations, lane_verdict) look for. The figures come from the card."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("plan_campaign",
                                              ROOT / "benchmarks" / "plan" / "campaign.py")
campaign = importlib.util.module_from_spec(SPEC)
sys.modules["plan_campaign"] = campaign
SPEC.loader.exec_module(campaign)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the parts read traces/models

    def parts(*names: str) -> dict:
        out = tmp_path / "plan.json"
        assert campaign.main(["--out", str(out), "--quick", "--parts", ",".join(names)]) == 0
        data = json.loads(out.read_text())
        for name in names:
            assert "error" not in data[name], data[name]
        return data
    return parts


def test_the_lane_sweeps_time_every_shape_and_check_it(run):
    data = run("gemv_axpy", "fp32_batch_classes", "stacked_rows")
    for row in data["gemv_axpy"]:
        timed = [v for v in row["variants"].values() if "s" in v]
        assert timed and all(v["max_rel_error"] < 1e-5 for v in timed)
        assert row["best"] in row["variants"] and row["matmul_error"] < 1e-5
    for row in data["fp32_batch_classes"]:
        assert row["table"] and row["best"] in row["schedules"]
    (row,) = data["stacked_rows"]
    assert row["stacked_error"] < 1e-5 and row["route_error"] < 1e-5


def test_the_batch_search_tells_the_strategy_and_keeps_the_best(run):
    (row,) = run("fp32_batch_search")["fp32_batch_search"]
    assert row["evaluations"] >= 3 and row["best"] in row["tried"]
    assert row["best_s"] == min(t for t in row["tried"].values() if t is not None)
    assert row["table_entry"] in row["tried"]
    if row["best"] != row["table_entry"]:  # both timed again in turns, product by product
        assert set(row["confirm"]) == {row["best"], row["table_entry"]}
        assert row["confirmed_speed_over_entry"] > 0


def test_the_check_part_times_the_deferred_and_the_waiting_check(run):
    rows = run("check")["check"]
    assert rows
    for row in rows:
        for key in ("checked_chained_s", "checked_blocking_s", "checked_chained_alloc_s",
                    "unchecked_chained_alloc_s"):
            assert row[key] > 0
        assert "verdicts_not_clean" not in row


def test_the_host_profile_names_the_public_call_among_its_functions(run):
    (row,) = run("host_profile")["host_profile"]
    names = [f["function"] for f in row["functions"]]
    assert any(name.startswith("api.py:") and name.endswith("(matmul)") for name in names)
    matmul = next(f for f in row["functions"] if f["function"].endswith("(matmul)"))
    assert matmul["calls_per_call"] == 1.0 and matmul["cum_s_per_call"] > 0


def test_the_confirmation_times_both_schedules_on_every_product(monkeypatch):
    """fp32_batch_search's confirmation: the entry and the search's best timed again in turns,
    a median per product for each."""
    import numpy as np

    from clgemm.runtime import get_runtime
    from clgemm.select import table as tables

    monkeypatch.chdir(ROOT)
    rt = get_runtime()
    products = [pr for *_, pr in campaign._fp32_batches(np.random.default_rng(0), True)][:2]
    schedules = tables.load_table(rt.device).candidates()[:2]
    got = campaign._confirm(rt, products, schedules, 2)
    assert set(got) == {s.key() for s in schedules}
    assert all(len(v) == len(products) and min(v) > 0 for v in got.values())


def test_trace_host_times_clgemm_with_and_without_replay_and_leaves_it_on(run):
    import importlib

    rows = [r for r in run("trace_host")["trace_host"] if "side" in r]
    assert {r["side"] for r in rows} >= {"clgemm", "clgemm-no-replay"}
    assert importlib.import_module("clgemm.plan").REPLAY is True


def test_the_rows_part_times_its_candidates_at_the_routes_slices(run, monkeypatch):
    """tc_rows on the CPU device (the PTX emulated): each shape's route, each candidate at
    tc_slices' count (and twice it where K holds that many), every result within the exact
    contract against float64."""
    monkeypatch.setenv("CLGEMM_TC_EMULATE", "1")
    rows = run("tc_rows")["tc_rows"]
    assert len(rows) == 2
    for row in rows:
        assert row["route_s"] > 0 and row["route_error_vs_numpy"] <= 2.0
        (cand,) = row["candidates"].values()
        timed = {int(sl): v for sl, v in cand.items()}
        assert timed and all(v["s"] > 0 and v["error_vs_numpy"] <= 2.0 for v in timed.values())


def test_the_chain_profile_puts_cs_sums_where_each_placement_asks(run):
    """check_chain_profile: a chain into one C, unchecked and checked with C's block sums on
    the user queue (the default for a C given) and on the side queue; clean verdicts."""
    rows = {r["case"]: r for r in run("check_chain_profile")["check_chain_profile"]}
    assert set(rows) == {"unchecked", "checked", "checked_side", "checked_fused"}
    assert all(r["verdicts_clean"] and r["wall_s"] > 0 for r in rows.values())

    def on_user_queue(case: str) -> int:
        # (a CPU device's rows form also takes the operand sums with a block-sums kernel,
        # on the side queue)
        return sum(i["user_queue"] for i in rows[case]["items"]
                   if i["name"].startswith("abft_cblock"))

    calls = rows["checked"]["calls"]
    assert on_user_queue("checked") == calls and on_user_queue("checked_side") == 0
    assert not any(i["name"].startswith("abft") for i in rows["unchecked"]["items"])
