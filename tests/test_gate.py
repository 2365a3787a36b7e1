"""The promotion gate: each criterion decides on its own, from synthetic artifacts."""

from __future__ import annotations

import json

import pytest

from clgemm.bench.metrics import write_json
from clgemm.cli import main
from clgemm.lab.gate import GateConfig, decide
from test_bench_synth import make_artifact, make_entry, make_sustained

SIZES = [(1400,) * 3, (2048,) * 3, (3072,) * 3]


def base():
    return make_artifact([make_entry(s, 1000.0) for s in SIZES],
                         [make_sustained((2048,) * 3, 900.0)])


def cand(**kw):
    speed = kw.pop("speed", 1150.0)
    sus = kw.pop("sustained", 1000.0)
    return make_artifact([make_entry(s, speed, **kw) for s in SIZES],
                         [make_sustained((2048,) * 3, sus)])


def verdict(c, b=None, **cfg):
    d = decide(c, b or base(), GateConfig(**cfg))
    return d["decision"], {x["name"]: x["pass"] for x in d["criteria"]}, d


def test_good_candidate_is_promoted():
    decision, crit, d = verdict(cand())
    assert decision == "promoted", d["criteria"]
    assert all(crit.values())
    assert d["target_sizes"] == ["1400", "2048", "3072"]
    speed = next(x for x in d["criteria"] if x["name"] == "speed")
    assert speed["figure"] == pytest.approx(0.15, rel=1e-6)
    assert "median over 3 sessions" in speed["summary"]


@pytest.mark.parametrize("kwargs, failing", [
    ({"speed": 1050.0}, "speed"),  # +5% only
    ({"ratio": 3.0}, "error"),  # 3x numpy float32's error
    ({"written": False}, "error"),  # outputs left unwritten
    ({"session_cv": 0.2}, "stability"),  # 20% across sessions
    ({"sessions": 1}, "stability"),  # no session data
    ({"cold": 100.0}, "build"),
    ({"warm": 5.0}, "build"),
    ({"lines": 5000}, "code"),
])
def test_each_criterion_fails_on_its_own(kwargs, failing):
    decision, crit, d = verdict(cand(**kwargs))
    assert decision == "rejected"
    assert [k for k, ok in crit.items() if not ok] == [failing], d["criteria"]


def test_speed_rule_any_and_sustained_metric():
    entries = [make_entry(SIZES[0], 1200.0), make_entry(SIZES[1], 1000.0), make_entry(SIZES[2], 1000.0)]
    c = make_artifact(entries, [make_sustained((2048,) * 3, 1000.0)])
    assert verdict(c)[1]["speed"] is False
    assert verdict(c, speed_rule="any")[1]["speed"] is True
    # sustained: +11% at 2048 (1000 vs 900) passes where figures exist ...
    assert verdict(c, metric="sustained", sizes="2048")[1]["speed"] is True
    # ... and fails under the "all" rule when other target sizes have no sustained run
    decision, crit, d = verdict(c, metric="sustained")
    assert crit["speed"] is False and "missing" in d["criteria"][0]["summary"]
    assert verdict(cand(sustained=950.0), metric="sustained", sizes="2048")[1]["speed"] is False


def test_relative_budget_contract_and_single_session():
    c = cand(ratio=3.0)
    assert verdict(c, rel_budget=1e-6)[1]["error"] is True  # 3e-7 within 1e-6
    c1 = cand(sessions=1)
    assert verdict(c1, allow_single_session=True)[1]["stability"] is True


def test_missing_method_is_an_error():
    with pytest.raises(ValueError):
        decide(cand(), base(), GateConfig(candidate_method="nope"))


def test_cli_exit_codes_json_and_card(tmp_path, capsys):
    good, bad, b = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "base.json"
    write_json(good, cand())
    write_json(bad, cand(speed=900.0))
    write_json(b, base())
    card = tmp_path / "card.toml"
    card.write_text('id = "t9-x"\ntrack = "T1"\ntitle = "A test card"\n'
                    'hypothesis = "tiles that fit do better"\nmethod = "measure them all, twice"\n'
                    'metric = "peak GFLOPS"\nstop_rule = "stop when nothing beats +10%"\n'
                    'status = "running"\n\n[gate]\ndecision = "pending"\n')
    assert main(["gate", str(good), "--baseline", str(b), "--card", str(card)]) == 0
    out = capsys.readouterr().out
    assert "PASS  speed" in out and "decision: PROMOTED" in out
    assert 'decision = "promoted"' in card.read_text()
    assert card.read_text().count("[gate]") == 1
    assert main(["gate", str(bad), "--baseline", str(b), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["decision"] == "rejected"
    assert not next(x for x in d["criteria"] if x["name"] == "speed")["pass"]
