"""The report shows the selector's replay results beside the KPI tables."""

from __future__ import annotations

import json
from pathlib import Path

from clgemm.report.render import write_report

ROOT = Path(__file__).resolve().parent.parent


def test_replay_artifacts_get_a_selector_section(tmp_path):
    kpi = ROOT / "records/nvidia-h100/2026-11-25-kpi/kpi.json"
    replay = ROOT / "records/nvidia-h100/2026-11-25-select-replay/select_suite.json"
    written = write_report([str(kpi), str(replay)], tmp_path, embed=True)
    md = written[0].read_text()
    assert "## Selector: static table vs online bandit vs oracle" in md
    first = json.loads(replay.read_text())["traces"][0]
    row = next(line for line in md.splitlines() if line.startswith(f"| {first['trace']} |"))
    assert f"{first['regret']['online']['relative']:.2%}" in row
    assert f"{first['decision_quality']['online']:.0%}" in row
