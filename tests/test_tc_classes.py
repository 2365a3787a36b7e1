"""benchmarks/plan/tc_classes.py: per-class 3xTF32 schedules from the plan campaign's
`tc_classes` rows, judged in the form the route would give each product (made-up rows: the
campaign itself needs the card)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "tc_classes", Path(__file__).resolve().parents[1] / "benchmarks" / "plan" / "tc_classes.py")
tcc = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = tcc  # its dataclasses look their module up
SPEC.loader.exec_module(tcc)

WIDE = "tc-3xtf32-b128x128x16-w2x2-s2-f3-a1-r1"
NARROW = "tc-3xtf32-b96x128x16-w2x2-s2-f3-a1-r4"
HALF = "tc-3xtf32-b128x64x16-w2x2-s3-f3-a1-r4"


def _row(m, n, k, route_lane, route_s, cands, ta=False, tb=True, err=1e-7):
    out = {}
    for key, c in cands.items():
        s = tcc.TcSchedule.from_key(key)
        c = dict(c)
        c.setdefault("tiles", -(-m // s.block_m) * -(-n // s.block_n))
        if "s" in c:
            c.setdefault("rel_error", err)
        if "split_s" in c:
            c.setdefault("split_rel_error", err)
        out[key] = c
    return {"m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb, "compute_units": 132,
            "route_lane": route_lane, "route_s": route_s, "route_rel_error": err,
            "candidates": out}


def test_a_class_adopts_the_schedule_that_wins_in_the_routes_form():
    rows = [_row(1024, 2304, 768, "3xtf32-mma", 132e-6, {WIDE: {"s": 132e-6},
                                                         NARROW: {"s": 104e-6}})]
    (c,) = tcc.choose(rows, 3e9)
    assert (c.shape_class, c.decision, c.schedule) == ("m3n4k3", "adopt", NARROW)
    assert abs(c.geomean - 132 / 104) < 1e-9


def test_a_loser_in_the_class_or_a_worse_error_keeps_the_tables_schedule():
    win = _row(1024, 3072, 768, "3xtf32-mma", 136e-6, {WIDE: {"s": 136e-6},
                                                        NARROW: {"s": 109e-6}})
    loss = _row(1024, 3072, 700, "3xtf32-mma", 130e-6, {WIDE: {"s": 130e-6},
                                                         NARROW: {"s": 150e-6}})
    (c,) = tcc.choose([win, loss], 3e9)
    assert c.decision == "keep"  # 150 us where 130 served: under the 0.95 floor
    win["candidates"][NARROW]["rel_error"] = 5e-7  # 5x the route's error
    (c,) = tcc.choose([win], 3e9)
    assert c.schedule != NARROW


def test_the_route_form_decides_what_a_candidate_is_timed_as():
    # 64-wide outputs: the 128-wide tile is half padding (the fill rule keeps the float32
    # family, the route's own time), the 128 x 64 tile fills and runs one launch
    stem = _row(401408, 64, 147, "fp32", 309e-6, {WIDE: {"s": 427e-6}, HALF: {"s": 251e-6}},
                tb=False)
    (c,) = tcc.choose([stem], 3e9)
    assert (c.decision, c.schedule) == ("adopt", HALF)
    assert tcc.routed_seconds(stem, WIDE, stem["candidates"][WIDE], 3e9)[0] == 309e-6
    # under the table's floor the float32 family serves whatever the tiles
    small = _row(1024, 768, 768, "fp32", 60e-6, {HALF: {"s": 54e-6}})
    assert tcc.routed_seconds(small, HALF, small["candidates"][HALF], 3e9)[0] == 60e-6
    # few tiles and a long K: the split form's time, not the one launch's
    skinny = _row(512, 2048, 5632, "3xtf32-splitk", 294e-6,
                  {WIDE: {"s": 480e-6, "split_s": 292e-6}})
    assert tcc.routed_seconds(skinny, WIDE, skinny["candidates"][WIDE], 3e9)[0] == 292e-6
    # a layout the candidate does not fit runs the default schedule
    tn = _row(768, 3072, 1024, "3xtf32-mma", 165e-6,
              {WIDE: {"s": 164e-6}, NARROW: {"skipped": "does not fit this layout"}}, ta=True,
              tb=False)
    assert tcc.routed_seconds(tn, NARROW, tn["candidates"][NARROW], 3e9)[0] == 164e-6


def test_writing_keeps_measured_classes_explicit_and_names_the_evidence(tmp_path):
    table = {"tensorcore": {"min_flops": 3e9, "evidence": {}, "modes": {"3xtf32": {
        "default": WIDE, "entries": {"m4n4k4": [{"schedule": WIDE, "groups_per_cu": 2}]}}}}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    adopt = tcc.ClassChoice("m3n4k3", schedule=NARROW, decision="adopt")
    keep = tcc.ClassChoice("m3n3k3", schedule=HALF, decision="keep")
    tcc.write_table(path, [adopt, keep], "records/x")
    lane = json.loads(path.read_text())["tensorcore"]
    entries = lane["modes"]["3xtf32"]["entries"]
    assert entries["m3n4k3"][0]["schedule"] == NARROW
    assert entries["m3n3k3"][0]["schedule"] == WIDE  # kept: the table's default, explicit
    assert entries["m4n4k4"][0]["schedule"] == WIDE and lane["evidence"]["classes"] == "records/x"


def test_a_table_without_a_tensor_core_lane_has_no_class_to_judge(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"tc_classes": [{"skipped": "no tensor-core lane"}]}))
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"default": {}}))
    assert tcc.main([str(plan), "--table", str(table)]) == 0
    assert "no tensor-core lane" in capsys.readouterr().out
