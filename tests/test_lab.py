"""Experiment cards: schema, the repository's own cards, listing, and the gate's write-back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from clgemm.cli import main
from clgemm.lab.cards import list_cards, load_card, validate_card, write_gate

ROOT = Path(__file__).resolve().parents[1] / "research" / "breakthrough_lab"

GOOD = """id = "t1-demo"
track = "T1"
title = "A demo card"
hypothesis = "bigger tiles give +10% at 2048"
method = "bench three tile sizes, three sessions"
metric = "peak GFLOPS at 2048"
stop_rule = "stop after two rounds without gain"
status = "running"
created = 2026-11-25

[results]
peak_gflops = 1234.5

[gate]
decision = "pending"
"""


def test_good_card_validates(tmp_path):
    p = tmp_path / "card.toml"
    p.write_text(GOOD)
    card, errors = load_card(p)
    assert errors == []
    assert card["created"] == "2026-11-25"  # TOML dates become ISO strings


@pytest.mark.parametrize("change", [
    lambda c: c.pop("hypothesis"),
    lambda c: c.update(track="T7"),
    lambda c: c.update(status="done"),
    lambda c: c.update(id="Has Spaces"),
    lambda c: c.update(gate={"decision": "maybe"}),
    lambda c: c.update(status="promoted"),  # promoted needs a promoted gate
])
def test_broken_cards_fail(change):
    card = tomllib.loads(GOOD)
    card["created"] = "2026-11-25"
    assert validate_card(card) == []
    change(card)
    assert validate_card(card) != []


def test_unparsable_card(tmp_path):
    p = tmp_path / "card.toml"
    p.write_text("id = \n")
    card, errors = load_card(p)
    assert card == {} and errors


def test_repository_cards_are_valid():
    rows = list_cards(ROOT)
    tracks = {r["track"] for r in rows}
    assert {"T1", "T3", "T4", "T5", "T6"} <= tracks
    bad = [(r["path"], r["errors"]) for r in rows if not r["valid"]]
    assert not bad


def test_write_gate_replaces_the_table(tmp_path):
    p = tmp_path / "card.toml"
    p.write_text(GOOD + "\n[gate.old]\nx = 1\n")
    decision = {"decision": "rejected", "candidate": "c.json", "baseline": "b.json", "metric": "peak",
                "criteria": [{"name": "speed", "pass": False, "summary": 'only +3% "quoted"'}]}
    write_gate(p, decision)
    card, errors = load_card(p)
    assert errors == []
    assert card["gate"]["decision"] == "rejected"
    assert card["gate"]["criteria"] == ['FAIL speed: only +3% "quoted"']
    assert "old" not in card["gate"]
    assert card["results"]["peak_gflops"] == 1234.5  # the rest of the card is kept


def test_lab_cli(tmp_path, capsys):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "card.toml").write_text(GOOD)
    assert main(["lab", "--root", str(tmp_path)]) == 0
    assert "t1-demo" in capsys.readouterr().out
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "card.toml").write_text(GOOD.replace('track = "T1"', 'track = "T9"'))
    assert main(["lab", "--root", str(tmp_path)]) == 1
    assert "INVALID" in capsys.readouterr().out
