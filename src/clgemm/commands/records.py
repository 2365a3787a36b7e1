"""`clgemm records`: check the records of evidence and regenerate records/INDEX.md."""

from __future__ import annotations

from . import args as a


def register(sub) -> None:
    p = sub.add_parser("records", help="check records/ and regenerate records/INDEX.md")
    p.add_argument("action", choices=["index", "check"],
                   help="index: validate and write INDEX.md; check: validate, INDEX.md must be current")
    p.add_argument("--root", default="records", type=a.existing_dir, help="the records folder")
    p.set_defaults(func=_records)


def _records(args) -> int:
    from ..report.records import run

    return run(args.root, check=args.action == "check")
