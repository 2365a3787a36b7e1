"""Experiment cards: TOML files (`research/breakthrough_lab/<track>/card.toml`) checked against
`data/card.schema.json`; the gate writes its decision into a card's [gate] table."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
import tomllib
from importlib import resources
from pathlib import Path

_REQUIRED = ("id", "track", "title", "hypothesis", "method", "metric", "stop_rule", "status")


def schema() -> dict:
    return json.loads((resources.files("clgemm") / "data" / "card.schema.json").read_text())


def _plain(value):
    """TOML dates and times become ISO strings (the schema speaks JSON)."""
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def validate_card(card: dict) -> list[str]:
    """Schema violations of a parsed card (empty when valid)."""
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:
        missing = [k for k in _REQUIRED if k not in card]
        return [f"missing {k}" for k in missing]
    sch = schema()
    validator = jsonschema.validators.validator_for(sch)(sch)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(card), key=lambda e: list(e.absolute_path))]


def load_card(path: str | Path) -> tuple[dict, list[str]]:
    """(card, errors): a card that does not parse has errors and an empty dict."""
    try:
        card = _plain(tomllib.loads(Path(path).read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"cannot parse: {exc}"]
    return card, validate_card(card)


def list_cards(root: str | Path) -> list[dict]:
    rows = []
    for path in sorted(Path(root).glob("**/card.toml")):
        card, errors = load_card(path)
        rows.append({"path": str(path), "id": card.get("id"), "track": card.get("track"),
                     "title": card.get("title"), "status": card.get("status"),
                     "gate": card.get("gate"), "valid": not errors, "errors": errors})
    return rows


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def render_gate(gate: dict) -> str:
    lines = ["[gate]"]
    for key, value in gate.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")


def write_gate(path: str | Path, decision: dict) -> dict:
    """Replace the card's [gate] table (and its sub-tables) with the gate's decision; the
    card must still validate afterwards. Returns the new [gate]."""
    path = Path(path)
    text = path.read_text()
    gate = {
        "decision": decision["decision"],
        "candidate": decision.get("candidate"),
        "baseline": decision.get("baseline"),
        "date": _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
        "metric": decision.get("metric"),
        "criteria": [f"{'PASS' if c['pass'] else 'FAIL'} {c['name']}: {c['summary']}"
                     for c in decision.get("criteria", [])],
    }
    kept, skipping = [], False
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            name = m.group(1)
            skipping = name == "gate" or name.startswith("gate.")
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).rstrip() + "\n\n" + render_gate(gate)
    card = _plain(tomllib.loads(body))
    errors = validate_card(card)
    if errors:
        raise ValueError(f"{path}: the card would not validate after the gate: {errors}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.replace(tmp, path)
    return gate
