"""benchmarks/plan/lane_verdict.py: the gate's bars applied to the opt-in lanes, on made-up
campaign rows (the campaign itself needs the card)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "lane_verdict", Path(__file__).resolve().parents[1] / "benchmarks" / "plan" / "lane_verdict.py")
lv = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = lv  # its dataclasses look their module up
SPEC.loader.exec_module(lv)


def _trace(m, n, k, fp32, tc, split, tiles=48, err=1e-7):
    return {"m": m, "n": n, "k": k, "tc_tiles": tiles, "compute_units": 132,
            "fp32_s": fp32, "3xtf32_s": tc, "3xtf32-splitk_s": split,
            "fp32_rel_error": err, "3xtf32_rel_error": err, "3xtf32-splitk_rel_error": err}


def test_a_lane_that_wins_everywhere_is_promoted_one_that_loses_one_is_not():
    plan = {"trace_lanes": [_trace(1024, 768, 3072, 218e-6, 240e-6, 120e-6),
                            _trace(512, 2048, 5632, 407e-6, 477e-6, 230e-6, tiles=64),
                            _trace(4096, 4096, 512, 1e-3, 0.8e-3, 0.1e-3, tiles=1024)]}
    v = lv.tc_splitk(plan)
    assert v.decision == "promote" and len(v.shapes) == 2  # the 1024-tile product is not split
    assert abs(v.shapes[0][3] - 218 / 120) < 1e-9  # against the faster one-launch lane
    plan["trace_lanes"].append(_trace(1568, 512, 4608, 283e-6, 388e-6, 300e-6, tiles=52))
    v = lv.tc_splitk(plan)
    assert v.decision == "reject" and "0.943" in v.why  # 283 / 300 under the 0.95 floor


def test_the_3xtf32_split_is_judged_only_from_the_routes_k():
    """A product with K under route.TC_SPLITK_MIN_K is not the lane's (the H200 verdict's
    BERT 1024 x 768 x 768 at 0.75x): it does not sink a rule that never sends it there."""
    loser = _trace(1024, 768, 768, 52e-6, 60e-6, 70e-6)
    plan = {"trace_lanes": [_trace(1024, 768, 3072, 218e-6, 240e-6, 150e-6), loser]}
    v = lv.tc_splitk(plan)
    assert v.decision == "promote" and [s[0] for s in v.shapes] == ["1024x768x3072"]
    loser["k"] = lv.TC_SPLITK_MIN_K
    assert lv.tc_splitk(plan).decision == "reject"


def test_a_faster_lane_with_a_worse_error_is_rejected_and_no_data_says_so():
    plan = {"trace_lanes": [_trace(1024, 768, 3072, 218e-6, 240e-6, 100e-6)]}
    plan["trace_lanes"][0]["3xtf32-splitk_rel_error"] = 5e-7  # 5x the float32 family's
    assert lv.tc_splitk(plan).decision == "reject"
    assert lv.tc_batched({}).decision == "no data"
    batch = {"batch": 32, "m": 512, "n": 512, "k": 128, "route": "3xtf32-batched",
             "matmul_s": 61e-6, "fp32-batched_s": 97e-6, "3xtf32-batched_s": 60e-6,
             "matmul_error": 1.2e-7, "fp32-batched_error": 1e-7, "3xtf32-batched_error": 1.2e-7}
    small = dict(batch, route="gemv", m=16)
    narrow = dict(batch, n=64, k=512, **{"3xtf32-batched_s": 120e-6})  # under TC_BATCH_MIN_DIM
    v = lv.tc_batched({"batched_lanes": [batch, small, narrow]})
    assert v.decision == "promote" and len(v.shapes) == 1
    narrow["n"] = lv.TC_BATCH_MIN_DIM
    assert lv.tc_batched({"batched_lanes": [batch, narrow]}).decision == "reject"


def test_the_float32_split_judges_only_underfilled_splits():
    rows = [{"m": 32, "n": 1000, "k": 2048, "underfilled": True, "fp32_s": 40e-6,
             "fp32_rel_error": 1e-7, "splitk-model-s8_s": 15e-6,
             "splitk-model-s8_rel_error": 1e-7},
            {"m": 256, "n": 256, "k": 11008, "underfilled": False, "fp32_s": 80e-6,
             "fp32_rel_error": 1e-7, "splitk-model-s4_s": 200e-6,
             "splitk-model-s4_rel_error": 1e-7}]
    v = lv.fp32_splitk({"skinny": rows})
    assert v.decision == "promote" and [s[0] for s in v.shapes] == ["32x1000x2048"]


def test_the_3xtf32_batches_are_judged_against_the_float32_familys_kernel():
    """Once the route sends a batch to 3xTF32, its matmul time is the lane's own: the verdict
    compares the lane with the float32 family's batched kernel, not with itself."""
    row = {"batch": 32, "m": 512, "n": 512, "k": 128, "route": "3xtf32-batched",
           "matmul_s": 74e-6, "fp32-batched_s": 101e-6, "3xtf32-batched_s": 74e-6,
           "matmul_error": 1e-7, "fp32-batched_error": 1e-7, "3xtf32-batched_error": 1e-7}
    v = lv.tc_batched({"batched_lanes": [row]})
    assert v.decision == "promote" and abs(v.shapes[0][3] - 101 / 74) < 1e-9


def test_sixteen_row_batches_are_judged_on_the_float32_familys_kernel():
    """batch_rows: the float32 family's batched kernel against the small-rows lane on batches
    of route.BATCH_ROWS_FP32 rows whose large operand is stored along K; single rows, and B
    stored K x N (the axpy kernel's layout), are not the rule's."""
    def row(m, gemv, fp32, trans_b=True):
        return {"batch": 32, "m": m, "n": 128, "k": 1024, "trans_a": False, "trans_b": trans_b,
                "route": "gemv", "gemv_s": gemv, "fp32-batched_s": fp32, "gemv_error": 1e-7,
                "fp32-batched_error": 1e-7}
    plan = {"batched_lanes": [row(16, 58e-6, 40e-6), row(1, 23e-6, 41e-6),
                              row(16, 20e-6, 40e-6, trans_b=False)]}
    v = lv.batch_rows(plan)
    assert v.decision == "promote" and [s[0] for s in v.shapes] == ["32x16x128x1024"]
    plan["batched_lanes"].append(row(lv.BATCH_ROWS_FP32, 30e-6, 40e-6))
    assert lv.batch_rows(plan).decision == "reject"


def test_the_one_launch_3xtf32_is_judged_on_what_the_tile_and_k_rules_admit():
    """tc_one_launch: products with tiles for half the units, full tiles and K from
    route.TC_MIN_K are judged (3xTF32 against the float32 family); a short K, a half-empty
    tile or too few tiles are not the lane's and do not sink it."""
    admitted = [_trace(6272, 1024, 256, 119.6e-6, 81.3e-6, None, tiles=392),
                _trace(25088, 512, 128, 127.7e-6, 107.4e-6, None, tiles=784)]
    short_k = _trace(100352, 256, 64, 148.3e-6, 165.0e-6, None, tiles=1568)
    narrow = _trace(100352, 64, 576, 230.7e-6, 266.4e-6, None, tiles=784)
    few = _trace(1024, 768, 768, 59.8e-6, 79.2e-6, None, tiles=48)
    plan = {"trace_lanes": admitted + [short_k, narrow, few]}
    v = lv.tc_one_launch(plan)
    assert v.decision == "promote" and [s[0] for s in v.shapes] == ["6272x1024x256",
                                                                    "25088x512x128"]
    short_k["k"] = lv.TC_MIN_K  # now the rule would send it there: 148.3 / 165.0 = 0.899x
    v = lv.tc_one_launch(plan)
    assert v.decision == "reject" and "0.899" in v.why
    # a floor judges what lies over it only: the 6.6 GFLOP loser alone from 4 GFLOP up
    assert [s[0] for s in lv.tc_one_launch(plan, min_flops=4e9).shapes] == ["100352x256x128"]
