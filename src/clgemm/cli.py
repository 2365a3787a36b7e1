"""The `clgemm` command: a thin dispatcher. Each subcommand lives in the module that owns it.

Every module listed in `_COMMAND_MODULES` exposes `register(subparsers)`, which adds its
subcommands and sets `func` (taking the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ClgemmError

_COMMAND_MODULES = (
    "clgemm.commands.core",      # devices, matmul
    "clgemm.commands.engine",    # strategies
    "clgemm.commands.bench",     # bench, roofline, report, gate, lab
    "clgemm.commands.tune",      # tune, distill
    "clgemm.commands.select",    # replay
    "clgemm.commands.guard",     # abft / approx campaigns
    "clgemm.commands.records",   # records index / check
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clgemm", description="Fast, validated, self-tuning float32 GEMM on OpenCL."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet: its commands are simply absent
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ClgemmError as exc:
        print(f"clgemm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clgemm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
