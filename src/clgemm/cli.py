"""The `clgemm` command: a thin dispatcher. Each subcommand lives in the module that owns it.

Every module listed in `_COMMAND_MODULES` exposes `register(subparsers)`, which adds its
subcommands and sets `func` (taking the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
import traceback

from .errors import ClgemmError, UsageError

_COMMAND_MODULES = (
    "clgemm.commands.core",      # devices, matmul
    "clgemm.commands.engine",    # strategies
    "clgemm.commands.bench",     # bench, roofline, report, gate, lab
    "clgemm.commands.tune",      # tune, distill
    "clgemm.commands.fleet",     # fleet (tune on many devices, Dask)
    "clgemm.commands.select",    # replay
    "clgemm.commands.guard",     # abft / approx campaigns
    "clgemm.commands.records",   # records index / check
    "clgemm.commands.soak",      # soak
)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (with where to read more), exit 2: not the usage block."""

    def _get_values(self, action, arg_strings):
        # `--alpha=--`: argparse drops the '--' and stores [] unchecked (no type= call)
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected a value, not '--'")
        return super()._get_values(action, arg_strings)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clgemm", description="Fast, validated, self-tuning float32 GEMM on OpenCL.",
        epilog="--debug (anywhere on the line): show the traceback of an error",
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
    """Run one subcommand. The error boundary: a bad argument is a usage error (exit 2), a
    `ClgemmError` or an OS error one line saying what to do (exit 1; a `UsageError` exits 2),
    anything else one line asking for a report; `--debug` shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage line
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = f"clgemm {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the boundary: one line, never a traceback
        if debug:
            traceback.print_exc()
        print(f"{command}: {describe(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


def describe(exc: BaseException) -> str:
    """One line for an exception that reached the boundary."""
    if isinstance(exc, ClgemmError):
        return f"error: {exc}"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return (f"error:{where}: {exc.strerror or exc}; check the path, its permissions and "
                "the free space")
    if isinstance(exc, sqlite3.Error):
        return (f"error: database: {exc}; give another --db or move the damaged file aside")
    return (f"internal error: {type(exc).__name__}: {exc}. This is a bug: rerun with --debug "
            "and report the traceback")


if __name__ == "__main__":
    sys.exit(main())
