"""benchmarks/plan/tc_rows.py: the device table's rows rule from a campaign's tc_rows part,
judged with the gate's bars at the route's slice count."""

from __future__ import annotations

import json

from conftest import load_script

tr = load_script("benchmarks/plan/tc_rows.py", "tc_rows_distill")

FAST = "tc-3xtf32-b16x64x32-w1x4-s4-f3-a1-r1"
SLOW = "tc-3xtf32-b16x64x32-w1x2-s3-f3-a1-r1"


def _row(m, n, k, route_us, fast_us, slow_us, slices=2, err=0.7):
    def cand(us):
        # the route's count, and twice it (slower: the rule is judged at the route's)
        return {str(slices): {"s": us * 1e-6, "error_vs_numpy": err},
                str(2 * slices): {"s": us * 2e-6, "error_vs_numpy": err}}
    return {"m": m, "n": n, "k": k, "trans_b": True, "route_s": route_us * 1e-6,
            "candidates": {FAST: cand(fast_us), SLOW: cand(slow_us),
                           "tc-3xtf32-b16x128x32-w1x4-s3-f3-a1-r1": {"skipped": "no fit"}}}


ROWS = [_row(16, 4096, 4096, 52.9, 48.8, 50.3), _row(16, 11008, 4096, 134.0, 88.3, 93.2),
        _row(16, 2048, 2048, 26.2, 34.4, 34.9), _row(16, 256, 2048, 24.6, 47.5, 36.0),
        _row(16, 5632, 2048, 44.3, 35.1, 35.6), _row(32, 4096, 4096, 94.8, 57.5, 61.5),
        _row(8, 4096, 4096, 41.7, 40.0, 41.0), _row(1, 11008, 4096, 63.7, 82.0, 86.3)]


def test_the_rule_covers_the_products_that_pass_and_none_that_lose():
    rule = tr.distill(ROWS)
    assert rule.schedule == FAST
    assert (rule.min_rows, rule.max_rows) == (16, 32)  # 8 rows: 1.04x, under the gain
    assert rule.min_weights == 5632 * 2048  # 16 x 2048 x 2048 lost
    covered = {(m, n, k) for m, n, k, *_ in rule.products}
    assert covered == {(16, 4096, 4096), (16, 11008, 4096), (16, 5632, 2048), (32, 4096, 4096)}
    assert rule.worst >= tr.WORST and rule.geomean >= tr.GAIN


def test_no_rule_where_nothing_passes_and_errors_over_the_contract_do_not_count():
    losing = [_row(16, 4096, 4096, 40.0, 48.8, 50.3), _row(16, 11008, 4096, 80.0, 88.3, 93.2)]
    assert tr.distill(losing) is None
    wrong = [_row(16, 11008, 4096, 134.0, 88.3, 93.2, err=2.5)]
    assert tr.distill(wrong) is None


def test_write_puts_the_rule_into_the_tables_tensor_core_lane(tmp_path):
    campaign = tmp_path / "rows.json"
    campaign.write_text(json.dumps({"tc_rows": ROWS}))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"tensorcore": {"exact": "3xtf32", "modes": {}}}))
    assert tr.main([str(campaign), "--table", str(table), "--write",
                    "--evidence", "records/x/rows.json"]) == 0
    rows = json.loads(table.read_text())["tensorcore"]["rows"]
    assert rows["schedule"] == FAST and rows["min_rows"] == 16 and rows["max_rows"] == 32
    assert rows["evidence"]["artifact"] == "records/x/rows.json"
    assert len(rows["evidence"]["products"]) == 4
