"""argparse `type=` functions shared by the subcommands: each argument is checked (type, range,
file, schema, writable output) while the command line is parsed, before any work starts, and
a bad one is a usage error (exit 2) whose message says what to give instead."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

Bad = argparse.ArgumentTypeError


def require(parse: Callable[[str], object], text: str, option: str):
    """`parse(text)` outside argparse (a default worked out later): a usage error if bad."""
    from ..errors import UsageError

    try:
        return parse(text)
    except Bad as exc:
        raise UsageError(f"{option}: {exc}") from None


# ---- numbers -----------------------------------------------------------------------------
def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise Bad(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise Bad(f"{text!r} is not finite: give {what}")
    return value


def integer(low: int | None = None) -> Callable[[str], int]:
    """An int >= low (1: a count, 0: a count that may be switched off)."""
    what = {None: "an integer", 0: "an integer >= 0 (0 = none)", 1: "an integer >= 1"}.get(
        low, f"an integer >= {low}")

    def parse(text: str) -> int:
        value = _number(text, int, what)
        if low is not None and value < low:
            raise Bad(f"{value} is out of range: give {what}")
        return value
    parse.__name__ = what  # argparse names the type in its message
    return parse


positive_int = integer(1)
count = integer(0)


def real(low: float | None = None, high: float | None = None, open_low: bool = False,
         open_high: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (an end left open where asked)."""
    lo = "" if low is None else f"{'>' if open_low else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if open_high else '<='} {high:g}"
    what = "a number " + " and ".join(x for x in (lo, hi) if x) if lo or hi else "a number"

    def parse(text: str) -> float:
        value = _number(text, float, what)
        if low is not None and (value < low or (open_low and value == low)):
            raise Bad(f"{value:g} is out of range: give {what}")
        if high is not None and (value > high or (open_high and value == high)):
            raise Bad(f"{value:g} is out of range: give {what}")
        return value
    parse.__name__ = what
    return parse


finite = real()
positive = real(0.0, open_low=True)
nonnegative = real(0.0)
fraction = real(0.0, 1.0, open_low=True, open_high=True)  # e.g. an error budget
share = real(0.0, 1.0)


# ---- lists and shapes --------------------------------------------------------------------
def shape(text: str) -> tuple[int, int, int]:
    """N (square) or MxNxK, every dimension >= 1."""
    from ..bench.suites import parse_shape

    try:
        return parse_shape(text)
    except ValueError as exc:
        raise Bad(str(exc)) from None


def shape_text(text: str) -> str:
    """One shape, kept as text."""
    shape(text)
    return text


def shape_list(text: str) -> str:
    """Comma-separated shapes (kept as text: the harness parses them again)."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise Bad(f"{text!r} names no shape: write e.g. 1024x512x256,2000")
    for item in items:
        shape(item)
    return text


def number_list(parse: Callable[[str], float]) -> Callable[[str], tuple]:
    def parse_list(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise Bad(f"{text!r} is empty: give a comma-separated list")
        return tuple(parse(t) for t in items)
    parse_list.__name__ = f"comma-separated list of {parse.__name__}"
    return parse_list


def choices(allowed: Iterable[str], extra: Iterable[str] = (), what: str = "item"
            ) -> Callable[[str], tuple]:
    """A comma list whose items are all in `allowed` (`extra`: words that stand alone)."""
    allowed, extra = tuple(allowed), tuple(extra)

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        if len(items) == 1 and items[0] in extra:
            return items
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise Bad(f"unknown {what} {', '.join(bad) or '(empty list)'}; choose from "
                      f"{', '.join(allowed + extra)}")
        return items
    parse.__name__ = "comma list of choices"
    parse.allowed = allowed + extra  # type: ignore[attr-defined]
    return parse


# ---- files -------------------------------------------------------------------------------
def existing_file(text: str) -> str:
    p = Path(text)
    if not p.exists():
        raise Bad(f"{text}: no such file")
    if not p.is_file():
        raise Bad(f"{text}: not a file")
    if not os.access(p, os.R_OK):
        raise Bad(f"{text}: not readable")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise Bad(f"{text}: no such folder")
    return text


def existing_path(text: str) -> str:
    """A file or a folder (of files)."""
    if not Path(text).exists():
        raise Bad(f"{text}: no such file or folder")
    return text


def _writable_parent(p: Path) -> None:
    """The nearest existing ancestor must be a writable folder (missing folders are made)."""
    parent = p.parent if str(p.parent) else Path(".")
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Bad(f"{p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Bad(f"{p}: the folder {parent} is not writable")


def output_file(text: str) -> str:
    """A file to write: not a folder, in a folder that can be written (or made)."""
    if not text.strip():
        raise Bad("an empty output path")
    p = Path(text)
    if p.is_dir() or text.endswith(os.sep):
        raise Bad(f"{text} is a folder: give a file path inside it")
    if p.exists() and not os.access(p, os.W_OK):
        raise Bad(f"{text} exists and is not writable")
    _writable_parent(p)
    return text


def output_dir(text: str) -> str:
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise Bad(f"{text} is a file: give a folder")
    if p.exists() and not os.access(p, os.W_OK | os.X_OK):
        raise Bad(f"{text}: the folder is not writable")
    _writable_parent(p / "x")
    return text


def file_stem(text: str) -> str:
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise Bad(f"{text!r}: give a file name stem, without folders")
    return text


def npy_file(text: str):
    """A .npy file holding a numpy array (no pickled objects)."""
    import numpy as np

    existing_file(text)
    with open(text, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise Bad(f"{text}: not a .npy file (no NUMPY header); write it with numpy.save")
    try:
        return np.load(text, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise Bad(f"{text}: not a readable .npy array ({str(exc)[:160]}); write it with "
                  "numpy.save") from None


def read_json(text: str):
    existing_file(text)
    try:
        return json.loads(Path(text).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Bad(f"{text}: not valid JSON ({str(exc)[:120]})") from None
    except OSError as exc:
        raise Bad(f"{text}: cannot be read ({exc.strerror or exc})") from None


def json_file(what: str, check: Callable[[dict], str | None] | None = None
              ) -> Callable[[str], str]:
    """A JSON object file; `check(data)` returns why it is not a `what`, or None."""

    def parse(text: str) -> str:
        data = read_json(text)
        if not isinstance(data, dict):
            raise Bad(f"{text}: holds a JSON {type(data).__name__}, not {what}")
        why = check(data) if check else None
        if why:
            raise Bad(f"{text}: not {what} ({why})")
        return text
    parse.__name__ = what
    return parse


def _schema_is(key: str, *values: str) -> Callable[[dict], str | None]:
    def check(data: dict) -> str | None:
        got = data.get(key)
        ok = any(got == v or (v.endswith("/") and str(got).startswith(v)) for v in values)
        return None if ok else f"{key} {got!r}, expected {' or '.join(values)}"
    return check


def bench_artifact() -> Callable[[str], str]:
    from ..bench.metrics import SCHEMA_VERSION

    return json_file("a clgemm bench or roofline artifact", _schema_is("schema_version",
                                                                       SCHEMA_VERSION))


def report_input(text: str) -> str:
    """A bench/roofline artifact, a replay report or a soak artifact."""
    from ..bench.metrics import SCHEMA_VERSION

    data = read_json(text)
    if not isinstance(data, dict):
        raise Bad(f"{text}: holds a JSON {type(data).__name__}, not an artifact")
    if data.get("schema_version") != SCHEMA_VERSION and not str(
            data.get("schema", "")).startswith(("clgemm.replay/", "clgemm.soak/")):
        raise Bad(f"{text}: not a bench, roofline, replay or soak artifact (no schema_version "
                  f"{SCHEMA_VERSION!r} or schema 'clgemm.replay/...' or 'clgemm.soak/...')")
    return text


def space_file(text: str) -> str:
    from ..tune.record import SPACE_SCHEMA

    return json_file("a recorded space", _schema_is("schema", SPACE_SCHEMA))(text)


def table_file(text: str) -> str:
    from ..errors import ClgemmError
    from ..select.table import Table

    data = read_json(text)
    try:
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}")
        Table.from_json(data, text)
    except (ClgemmError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Bad(f"{text}: not a clgemm table ({str(exc)[:160]})") from None
    return text


def trace_file(text: str) -> str:
    from ..select.replay import read_trace

    existing_file(text)
    try:
        if not read_trace(text):
            raise ValueError("no calls in it")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Bad(f"not a workload trace: {str(exc)[:200]}") from None
    return text


def candidates_file(text: str) -> str:
    from ..errors import ClgemmError
    from ..select.replay import read_candidates

    existing_file(text)
    try:
        read_candidates(text)
    except (ClgemmError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Bad(f"{text}: not a list of schedule keys ({str(exc)[:160]})") from None
    return text


_SQLITE_MAGIC = b"SQLite format 3\x00"


def database(must_exist: bool = False) -> Callable[[str], str]:
    """A SQLite file (or, unless `must_exist`, a path where one can be made)."""

    def parse(text: str) -> str:
        p = Path(text)
        if not p.exists():
            if must_exist:
                raise Bad(f"{text}: no such database")
            return output_file(text)
        if not p.is_file():
            raise Bad(f"{text} is not a file (a folder?): give a database file path")
        with open(p, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise Bad(f"{text} is not a SQLite database: give another path or move it aside")
        if must_exist and not head:
            raise Bad(f"{text} is empty: nothing has been tuned into it")
        return text
    parse.__name__ = "existing database" if must_exist else "database"
    return parse


def option_pair(text: str) -> tuple[str, float]:
    """NAME=NUMBER (a strategy option)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise Bad(f"{text!r}: expected NAME=NUMBER, e.g. t0=0.5")
    return name.strip(), finite(value)


def budget(text: str) -> tuple[int | None, float | None]:
    """Evaluations (e.g. 200) or wall seconds (e.g. 300s), > 0 either way."""
    t = text.strip().lower()
    if t.endswith("s"):
        return None, positive(t[:-1])
    try:
        evals = int(t)
    except ValueError:
        raise Bad(f"{text!r}: give evaluations (e.g. 200) or seconds (e.g. 300s)") from None
    if evals < 1:
        raise Bad(f"{evals}: the budget must be >= 1 evaluation")
    return evals, None


# ---- fleet ---------------------------------------------------------------------------------
def fleet_devices(text: str) -> tuple[str, ...]:
    """`gpus` (one worker per GPU of this host), `gpus:N` (the first N GPUs), or a comma list
    of device worker names: ocl:SPEC[@TAG] (an OpenCL device) or sim:SPACE.json[@TAG] (a
    recorded space)."""
    from ..errors import UsageError
    from ..fleet.tasks import DeviceName

    t = text.strip()
    if t == "gpus" or t.startswith("gpus:"):
        if t != "gpus":
            integer(1)(t[5:])
        return (t,)
    names = [x.strip() for x in text.split(",")]
    if not text.strip() or not all(names):
        raise Bad(f"{text!r}: give `gpus`, `gpus:N` or device workers, e.g. ocl:0 or "
                  "ocl:0@a,ocl:0@b")
    for name in names:
        try:
            dev = DeviceName.parse(name)
        except UsageError as exc:
            raise Bad(str(exc)) from None
        if dev.kind == "sim":
            space_file(dev.spec)
    if len(set(names)) != len(names):
        raise Bad(f"{text!r} names a worker twice: tell workers of one device apart with @TAG "
                  "(ocl:0@a,ocl:0@b)")
    return tuple(names)


def dask_address(text: str) -> str:
    """A Dask scheduler address: tcp://HOST:PORT (or HOST:PORT)."""
    rest = text.split("://", 1)[1] if "://" in text else text
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Bad(f"{text!r} is not a scheduler address: give tcp://HOST:PORT "
                  "(what `dask scheduler` prints)")
    return text


def kill_spec(text: str) -> tuple[str, int]:
    """WORKER@N: kill -9 the local worker named WORKER once N results are in (fault drill)."""
    name, sep, n = text.rpartition("@")
    if not sep or not name:
        raise Bad(f"{text!r}: give WORKER@N, e.g. compile-0@10 or ocl:0@20")
    return name, integer(1)(n)
