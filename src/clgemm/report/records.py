"""Records of evidence: `records/<device-slug>/<YYYY-MM-DD>-<what>/` folders, each holding its
artifacts and a `record.json` (data/record.schema.json) that says what was measured, by which
command, on which commit; and `records/INDEX.md`, generated from them.

    python -m clgemm.report.records [--root records] [--check]    # or: clgemm records index
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import RecordError

RECORD_FILE = "record.json"
INDEX_FILE = "INDEX.md"
# Files a record may hold beside its artifacts: the record itself and its notes.
_NOT_ARTIFACTS = {RECORD_FILE, "README.md"}
_FOLDER = re.compile(r"^(\d{4}-\d{2}-\d{2})-([a-z0-9][a-z0-9-]*)$")
_REQUIRED = ("what", "claim", "command", "commit", "device", "date", "artifacts", "supersedes",
             "status")


@dataclass(frozen=True)
class Record:
    """One record folder, as its record.json describes it. `id` is `<device-slug>/<folder>`."""

    id: str
    path: Path
    what: str
    claim: str
    command: str
    commit: str
    device: str
    date: str
    artifacts: tuple[str, ...]
    supersedes: tuple[str, ...]
    status: str
    feature: str = "other"
    negative: bool = False
    track: str | None = None
    reproduce: str | None = None
    commit_note: str | None = None
    moved_from: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def current(self) -> bool:
        return self.status == "current"

    def command_now(self) -> str:
        """The command to run today (script paths as they are now)."""
        return self.reproduce or self.command


def schema() -> dict:
    return json.loads((resources.files("clgemm") / "data" / "record.schema.json").read_text())


def _schema_errors(data: dict) -> list[str]:
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:  # the check that still means something without the validator
        return [f"missing {k}" for k in _REQUIRED if k not in data]
    sch = schema()
    validator = jsonschema.validators.validator_for(sch)(sch)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(data)]


def _record(path: Path, data: dict) -> Record:
    rid = f"{path.parent.name}/{path.name}"
    return Record(
        id=rid, path=path, what=data["what"], claim=data["claim"], command=data["command"],
        commit=data["commit"], device=data["device"], date=data["date"],
        artifacts=tuple(data["artifacts"]), supersedes=tuple(data["supersedes"]),
        status=data["status"], feature=data.get("feature", "other"),
        negative=data.get("negative", False), track=data.get("track"),
        reproduce=data.get("reproduce"), commit_note=data.get("commit_note"),
        moved_from=tuple(data.get("moved_from", ())))


def _folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"*/*/{RECORD_FILE}"))


def problems(root: str | Path = "records") -> list[str]:
    """Everything wrong with the records under root (empty when all is well)."""
    root = Path(root)
    out: list[str] = []
    ids = {}
    for folder in _folders(root):
        rid = f"{folder.parent.name}/{folder.name}"
        try:
            data = json.loads((folder / RECORD_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            out.append(f"{rid}: cannot read {RECORD_FILE}: {exc}")
            continue
        errors = _schema_errors(data)
        out += [f"{rid}: {e}" for e in errors]
        m = _FOLDER.match(folder.name)
        if not m:
            out.append(f"{rid}: the folder is not named <YYYY-MM-DD>-<what>")
        elif not errors and m.group(1) != data["date"]:
            out.append(f"{rid}: the folder's date {m.group(1)} is not the record's {data['date']}")
        if errors:
            continue
        ids[rid] = data
        listed = set(data["artifacts"])
        present = {p.name for p in folder.iterdir() if p.is_file()} - _NOT_ARTIFACTS
        for name in sorted(listed - present):
            out.append(f"{rid}: artifact {name} is listed but absent")
        for name in sorted(present - listed):
            out.append(f"{rid}: {name} lies in the folder but is not listed in artifacts")
        if any(p.is_dir() for p in folder.iterdir()):
            out.append(f"{rid}: a record holds files only (no sub-folders)")
    replaced_by = defaultdict(list)
    for rid, data in ids.items():
        for old in data["supersedes"]:
            if old not in ids:
                out.append(f"{rid}: supersedes {old}, which is not a record")
            replaced_by[old].append(rid)
    for rid, data in ids.items():
        if data["status"] == "superseded" and not replaced_by[rid]:
            out.append(f"{rid}: superseded, but no record names it in supersedes")
        if data["status"] == "current" and replaced_by[rid]:
            out.append(f"{rid}: current, but superseded by {', '.join(replaced_by[rid])}")
    return out


def load_records(root: str | Path = "records") -> list[Record]:
    """Every record under root, sorted by device and date; RecordError if any is malformed."""
    root = Path(root)
    bad = problems(root)
    if bad:
        raise RecordError(f"{len(bad)} problem(s) under {root}: " + "; ".join(bad[:5])
                          + " (fix the record.json files, then run `clgemm records index`)")
    return [_record(f, json.loads((f / RECORD_FILE).read_text())) for f in _folders(root)]


def replaced_by(records: list[Record]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for r in records:
        for old in r.supersedes:
            out[old].append(r.id)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_index(records: list[Record]) -> str:
    """records/INDEX.md: every record by device and by feature, and what replaced what."""
    lines = [
        "# Records of evidence", "",
        "<!-- Generated by `clgemm records index` (python -m clgemm.report.records) from the",
        "record.json files; do not edit: tests/test_records.py fails when it is stale. -->", "",
        "Each folder `<device>/<date>-<what>/` holds the artifacts as the harness wrote them and a",
        "`record.json`: the claim, the command that made it, the commit it ran on (`unknown` where",
        "it cannot be recovered; `-dirty`: that commit plus uncommitted changes), the device. Scripts",
        "live in `benchmarks/<feature>/`. Notes that span several records: `<device>/*-notes.md`.",
        "The technical report is generated from these records: `clgemm report --paper`.", "",
    ]
    by_device: dict[str, list[Record]] = defaultdict(list)
    by_feature: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_device[r.slug].append(r)
        by_feature[r.feature].append(r)
    n_cur = sum(r.current for r in records)
    lines += [f"{len(records)} records ({n_cur} current, {len(records) - n_cur} superseded) on "
              f"{len(by_device)} devices.", "", "## By device", ""]
    for slug in sorted(by_device):
        rs = by_device[slug]
        lines += [f"### {slug} ({rs[0].device})", "", "| record | feature | status | claim |",
                  "|---|---|---|---|"]
        for r in rs:
            status = r.status + (", negative" if r.negative else "")
            lines.append(f"| [{r.path.name}]({r.id}/) | {r.feature} | {status} | {_cell(r.claim)} |")
        lines.append("")
    lines += ["## By feature", ""]
    for feat in sorted(by_feature):
        rs = [r for r in by_feature[feat] if r.current]
        lines += [f"### {feat}", "", "| record | date | what |", "|---|---|---|"]
        lines += [f"| [{r.id}]({r.id}/) | {r.date} | {_cell(r.what)} |" for r in rs]
        old = len(by_feature[feat]) - len(rs)
        if old:
            lines.append(f"\n({old} superseded, listed below.)")
        lines.append("")
    lines += ["## Superseded: what replaced what", "", "| record | replaced by |", "|---|---|"]
    repl = replaced_by(records)
    for r in records:
        if not r.current:
            lines.append(f"| [{r.id}]({r.id}/) | "
                         + ", ".join(f"[{n}]({n}/)" for n in sorted(repl[r.id])) + " |")
    lines += ["", "## Where the artifacts lay before `records/`", "",
              "Code comments and older notes name these paths.", "", "| old path | record |",
              "|---|---|"]
    moved = sorted((old, r.id) for r in records for old in r.moved_from)
    lines += [f"| `{old}` | [{rid}]({rid}/) |" for old, rid in moved]
    return "\n".join(lines) + "\n"


def write_index(root: str | Path = "records") -> Path:
    root = Path(root)
    path = root / INDEX_FILE
    path.write_text(render_index(load_records(root)))
    return path


def index_is_current(root: str | Path = "records") -> bool:
    root = Path(root)
    path = root / INDEX_FILE
    return path.exists() and path.read_text() == render_index(load_records(root))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clgemm.report.records", description=__doc__)
    ap.add_argument("--root", default="records", help="the records folder")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when a record is malformed or INDEX.md is stale")
    args = ap.parse_args(argv)
    return run(args.root, check=args.check)


def run(root: str, check: bool) -> int:
    bad = problems(root)
    for line in bad:
        print(f"records: {line}", file=sys.stderr)
    if bad:
        return 1
    if check:
        if not index_is_current(root):
            print(f"records: {root}/{INDEX_FILE} is stale: run `clgemm records index`", file=sys.stderr)
            return 1
        print(f"records: {len(load_records(root))} records valid, {INDEX_FILE} current")
        return 0
    print(f"wrote {write_index(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
