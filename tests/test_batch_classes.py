"""benchmarks/plan/batch_classes.py: float32 schedules for the traces' batched classes from a
plan campaign's fp32_batch_search / fp32_batch_classes parts, judged with the gate's bars."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "plan"))
bc = load_script("benchmarks/plan/batch_classes.py", "batch_classes")

ENTRY = "wm8-wn16-om4-on4-tk32-va4-vb4-vc2-sa1-sb1-uk2-db1-st0-lp4-ac64"
FAST = "wm8-wn32-om8-on4-tk16-va4-vb4-vc4-sa1-sb1-uk8-db1-st0-lp0-ac256"
MIXED = "wm16-wn16-om8-on4-tk16-va1-vb4-vc4-sa1-sb1-uk4-db1-st0-lp4-ac256"


def _search(cls: str, per_product: dict) -> dict:
    return {"class": cls, "table_entry": ENTRY,
            "products": [{"name": "attn.scores"}, {"name": "prefill-attn.scores"}],
            "per_product": per_product}


def test_a_class_adopts_the_schedule_that_passes_the_bars():
    plan = {"fp32_batch_search": [
        _search("m3n3k1", {ENTRY: [46e-6, 63e-6], FAST: [35e-6, 46e-6]}),
        _search("m3n1k3", {ENTRY: [37e-6, 47e-6], MIXED: [28e-6, 50e-6]})]}
    choices = {c.shape_class: c for c in bc.choose(bc.candidates(plan), members=lambda c: [])}
    fast = choices["m3n3k1"]
    assert fast.decision == "adopt" and fast.schedule == FAST and fast.geomean > 1.3
    mixed = choices["m3n1k3"]  # 1.32x on one batch, 0.94x on the other: worse than 0.95x
    assert mixed.decision == "keep" and "under the bars" in mixed.why


def test_a_class_with_unbatched_products_keeps_its_entry():
    plan = {"fp32_batch_search": [_search("m3n3k1", {ENTRY: [46e-6, 63e-6],
                                                      FAST: [35e-6, 46e-6]})]}
    (c,) = bc.choose(bc.candidates(plan), members=lambda cls: ["bert:proj.x"])
    assert c.decision == "keep" and "unbatched" in c.why


def test_the_per_product_part_is_read_when_the_search_did_not_run_and_the_table_written(
        tmp_path):
    row = {"m": 512, "n": 512, "k": 64, "name": "attn.scores", "table": ENTRY,
           "schedules": {ENTRY: {"s": 46e-6, "max_rel_error": 2e-7},
                         FAST: {"s": 35e-6, "max_rel_error": 2e-7},
                         MIXED: {"s": 30e-6, "max_rel_error": 1e-3}}}  # wrong: not a candidate
    plan = {"fp32_batch_classes": [row]}
    (c,) = bc.choose(bc.candidates(plan), members=lambda cls: [])
    assert c.decision == "adopt" and c.schedule == FAST
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"entries": {"m3n3k1": {}}, "evidence": {}}))
    bc.write_table(table, [c], "records/x")
    data = json.loads(table.read_text())
    assert data["entries"]["m3n3k1"]["wg_n"] == 32
    assert data["evidence"]["batch_classes"] == "records/x"


def test_the_search_confirmation_rules_over_its_single_samples():
    """The search's best and the entry timed again in turns (`confirm`): a lead the search's
    one sample showed and the turns do not bear out is kept out."""
    row = _search("m0n3k1", {ENTRY: [21.7e-6, 22.0e-6], FAST: [14.1e-6, 14.3e-6]})
    row["confirm"] = {ENTRY: [14.5e-6, 14.6e-6], FAST: [18.2e-6, 18.0e-6]}
    (c,) = bc.choose(bc.candidates({"fp32_batch_search": [row]}), members=lambda cls: [])
    assert c.decision == "keep"
    row["confirm"] = {ENTRY: [21.5e-6, 22.1e-6], FAST: [14.2e-6, 14.4e-6]}
    (c,) = bc.choose(bc.candidates({"fp32_batch_search": [row]}), members=lambda cls: [])
    assert c.decision == "adopt" and c.schedule == FAST
