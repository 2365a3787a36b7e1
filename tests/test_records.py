"""records/: every record validates, INDEX.md is current, benchmarks/ holds scripts only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clgemm.errors import RecordError
from clgemm.report.records import (index_is_current, load_records, problems, render_index,
                                   write_index)

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "records"


def test_every_record_validates():
    assert problems(RECORDS) == []
    records = load_records(RECORDS)
    assert len(records) >= 50
    assert {r.slug for r in records} >= {"nvidia-h100", "nvidia-h200", "cpu-pocl-amd-epyc"}


def test_index_is_current():
    assert index_is_current(RECORDS), "records/INDEX.md is stale: run `clgemm records index`"


def test_every_record_is_in_the_index():
    text = (RECORDS / "INDEX.md").read_text()
    for r in load_records(RECORDS):
        assert f"({r.id}/)" in text


def _copy_one(tmp_path: Path, rid: str) -> Path:
    dst = tmp_path / "records" / rid
    shutil.copytree(RECORDS / rid, dst)
    return dst


def test_a_broken_record_is_caught(tmp_path):
    folder = _copy_one(tmp_path, "nvidia-h100/2026-12-06-gemv-lane")
    root = tmp_path / "records"
    assert problems(root) == []
    write_index(root)
    assert index_is_current(root)

    data = json.loads((folder / "record.json").read_text())
    (folder / "stray.json").write_text("{}")
    assert any("stray.json" in p for p in problems(root))
    (folder / "stray.json").unlink()

    data["supersedes"] = ["nvidia-h100/2026-11-25-no-such-record"]
    (folder / "record.json").write_text(json.dumps(data))
    assert any("not a record" in p for p in problems(root))

    del data["claim"]
    data["supersedes"] = []
    (folder / "record.json").write_text(json.dumps(data))
    assert any("claim" in p for p in problems(root))
    with pytest.raises(RecordError, match="records index"):
        load_records(root)


def test_a_stale_index_is_caught(tmp_path):
    folder = _copy_one(tmp_path, "nvidia-h100/2026-12-06-gemv-lane")
    root = tmp_path / "records"
    write_index(root)
    data = json.loads((folder / "record.json").read_text())
    data["claim"] += " Edited."
    (folder / "record.json").write_text(json.dumps(data))
    assert not index_is_current(root)
    assert "Edited." in render_index(load_records(root))


def test_superseded_records_name_their_successor(tmp_path):
    for rid in ("nvidia-h200/2026-12-02-guard-run1", "nvidia-h200/2026-12-02-guard-run2"):
        _copy_one(tmp_path, rid)
    root = tmp_path / "records"
    assert problems(root) == [], "guard-run1 is superseded by guard-run2"
    shutil.rmtree(root / "nvidia-h200/2026-12-02-guard-run2")
    assert any("no record names it" in p for p in problems(root))


def test_benchmarks_holds_scripts_only():
    files = subprocess.run(["git", "ls-files", "benchmarks"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    kinds = {Path(f).suffix for f in files}
    assert kinds <= {".py", ".sh", ".md", ".txt"}, kinds
    # the .txt is a list of candidate schedules the select script reads, not an artifact
    assert [f for f in files if f.endswith(".txt")] == ["benchmarks/select/h100_candidates.txt"]


# A figure: digits not glued to a name (3xTF32, fp32, H100, sm_90a are names, not figures).
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:,\d{3})*(?:\.\d+)?(?=x(?![A-Za-z0-9])|[^A-Za-z0-9_]|$)")
_LINK = re.compile(r"\]\((records/[^)]+)\)")


def figures(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def _status_items(readme: str) -> list[str]:
    section = readme.split("## Where it stands", 1)[1].split("\n## ", 1)[0]
    items, current = [], []
    for line in section.splitlines():
        if line.startswith("- ") and current:
            items.append(" ".join(current))
            current = []
        if line.startswith("- ") or (current and line.startswith("  ")):
            current.append(line.strip())
    return items + ([" ".join(current)] if current else [])


def test_figures_finds_figures_not_names():
    assert figures("3xTF32 41.6 / 56.0 on the H100, 1.15-1.27x fp32, 2,324 at 2048^3, 1e-5, +7.7%") \
        == {"41.6", "56.0", "1.15", "1.27", "2,324", "2048", "3", "5", "7.7"}


def test_every_readme_figure_has_a_record():
    """Each bullet of the README's status section links its record(s); every figure it quotes
    is in the claim of a record it links."""
    items = _status_items((ROOT / "README.md").read_text())
    assert len(items) >= 5
    for item in items:
        links = _LINK.findall(item)
        assert links, f"README status line without a record link: {item[:80]}"
        claims = ""
        for target in links:
            folder = ROOT / target
            assert (folder / "record.json").exists(), f"{target} is not a record"
            claims += " " + json.loads((folder / "record.json").read_text())["claim"]
        quoted = figures(_LINK.sub("]", item))
        missing = quoted - figures(claims)
        assert not missing, f"figures {sorted(missing)} quoted without a record: {item[:80]}"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_cards_keep_results_short_and_link_records_that_exist():
    """Long text lives in a README beside the card; links into records/ resolve."""
    import tomllib

    cards = sorted((ROOT / "research/breakthrough_lab").glob("**/card.toml"))
    assert cards
    for path in cards:
        card = tomllib.loads(path.read_text())
        for text in _strings(card.get("results", {})):
            assert len(text) <= 300, f"{path}: a [results] string of {len(text)} characters"
            if "README.md#" in text:
                anchor = text.rsplit("README.md#", 1)[1].rstrip(")")
                assert f"## {anchor}\n" in (path.parent / "README.md").read_text()
        for link in card.get("links", []):
            if link.startswith(("records/", "benchmarks/")):
                assert (ROOT / link).exists(), f"{path}: {link}"
