"""The tuning database: SQLite, one row per (device, problem, schedule, session).

Every measurement is written in its own transaction the moment it is known, so a run killed at
any point loses at most the candidate in flight, and a resumed run skips what is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from ..select.table import shape_class
from .measure import Measurement, Problem

TUNE_SESSION = "tune"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    device_fp   TEXT NOT NULL,
    device_name TEXT NOT NULL,
    shape_class TEXT NOT NULL,
    m INTEGER NOT NULL, n INTEGER NOT NULL, k INTEGER NOT NULL,
    trans_a INTEGER NOT NULL, trans_b INTEGER NOT NULL,
    schedule    TEXT NOT NULL,
    session     TEXT NOT NULL,
    time_s      REAL,
    compile_s   REAL,
    error       TEXT,
    rel_error   REAL,
    protocol    TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (device_fp, m, n, k, trans_a, trans_b, schedule, session)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id    TEXT PRIMARY KEY,
    device_fp TEXT NOT NULL,
    problem   TEXT NOT NULL,
    strategy  TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    args      TEXT NOT NULL,
    started   REAL NOT NULL,
    finished  REAL,
    status    TEXT NOT NULL
);
"""


def default_db_path() -> Path:
    env = os.environ.get("CLGEMM_TUNE_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("clgemm")) / "tuning.sqlite"


@dataclass(frozen=True)
class Row:
    schedule: str
    session: str
    time_s: float | None
    compile_s: float | None
    error: str | None
    problem: Problem


def _proc_start(pid: int) -> str | None:
    """The start time of a process (Linux /proc), None where it cannot be read: with the pid
    it names one process, so a reused pid is not mistaken for the tuner that had it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    """Whether the process that started a run is still running (on this host)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False  # a run from before owners were recorded: no process to wait for
    if owner.get("host") != socket.gethostname():
        return True  # another machine's run: it cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    started = owner.get("started")
    return started is None or _proc_start(pid) in (None, started)


class TuningDB:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        with self._errors("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            check = self._conn.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")

    @contextlib.contextmanager
    def _errors(self, doing: str):
        """SQLite's and the OS's errors (a damaged file, a full disk) as one StateError."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            text = str(exc)
            hint = ("free disk space" if "full" in text.lower() or getattr(exc, "errno", 0) == 28
                    else "give another --db or move the damaged file aside")
            raise StateError(f"tuning database {self.path}: cannot {doing} ({text}); "
                             f"{hint}") from exc

    def close(self) -> None:
        if hasattr(self, "_conn"):
            self._conn.close()

    def __enter__(self) -> "TuningDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- runs ---------------------------------------------------------------------
    def start_run(self, run_id: str, device_fp: str, problem: Problem, strategy: str,
                  seed: int, args: dict) -> None:
        pid = os.getpid()  # the owner, so that a later run can tell a killed one
        owner = {"pid": pid, "host": socket.gethostname(), "started": _proc_start(pid)}
        with self._errors("record a run"), self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, device_fp, json.dumps(problem.__dict__), strategy, seed,
                 json.dumps({**args, "owner": owner}), time.time(), None, "running"),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self._errors("record a run"), self._conn:
            self._conn.execute("UPDATE runs SET finished=?, status=? WHERE run_id=?",
                               (time.time(), status, run_id))

    def mark_interrupted(self, device_fp: str) -> list[str]:
        """Runs of a device still marked 'running' whose process is gone (killed: no finally
        ran) become 'interrupted'; returns their ids. A live concurrent run is left alone."""
        with self._errors("read the runs"):
            rows = self._conn.execute(
                "SELECT run_id, args FROM runs WHERE device_fp=? AND status='running'",
                (device_fp,)).fetchall()
        gone = []
        for run_id, args in rows:
            try:
                owner = json.loads(args).get("owner") or {}
            except (ValueError, AttributeError):
                owner = {}
            if not _alive(owner):
                gone.append(run_id)
        with self._errors("record a run"), self._conn:
            for run_id in gone:
                self._conn.execute("UPDATE runs SET status='interrupted' WHERE run_id=? AND "
                                   "status='running'", (run_id,))
        return gone

    # ---- measurements -------------------------------------------------------------
    def record(self, device_fp: str, device_name: str, problem: Problem, m: Measurement,
               protocol: dict, run_id: str, session: str = TUNE_SESSION) -> None:
        p = problem
        # one transaction per measurement: a kill never tears a row
        with self._errors("record a measurement"), self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (device_fp, device_name, shape_class(p.m, p.n, p.k), p.m, p.n, p.k,
                 int(p.trans_a), int(p.trans_b), m.schedule.key(), session, m.time_s,
                 m.compile_s, m.error, m.rel_error, json.dumps(protocol), run_id, time.time()),
            )

    def measured(self, device_fp: str, problem: Problem,
                 session: str = TUNE_SESSION) -> dict[str, float | None]:
        """schedule key -> time (None for failures) already in the database."""
        p = problem
        rows = self._conn.execute(
            "SELECT schedule, time_s FROM measurements WHERE device_fp=? AND m=? AND n=? AND "
            "k=? AND trans_a=? AND trans_b=? AND session=?",
            (device_fp, p.m, p.n, p.k, int(p.trans_a), int(p.trans_b), session),
        ).fetchall()
        return {key: t for key, t in rows}

    def problems(self, device_fp: str) -> list[Problem]:
        rows = self._conn.execute(
            "SELECT DISTINCT m, n, k, trans_a, trans_b FROM measurements WHERE device_fp=? "
            "ORDER BY m, n, k, trans_a, trans_b", (device_fp,)).fetchall()
        return [Problem(m, n, k, bool(ta), bool(tb)) for m, n, k, ta, tb in rows]

    def rows(self, device_fp: str, problem: Problem | None = None) -> list[Row]:
        sql = ("SELECT schedule, session, time_s, compile_s, error, m, n, k, trans_a, trans_b "
               "FROM measurements WHERE device_fp=?")
        args: list = [device_fp]
        if problem is not None:
            sql += " AND m=? AND n=? AND k=? AND trans_a=? AND trans_b=?"
            args += [problem.m, problem.n, problem.k, int(problem.trans_a), int(problem.trans_b)]
        return [Row(s, sess, t, c, e, Problem(m, n, k, bool(ta), bool(tb)))
                for s, sess, t, c, e, m, n, k, ta, tb in self._conn.execute(sql, args)]

    def observations(self, device_name: str, exclude: Problem | None = None,
                     session: str = TUNE_SESSION) -> dict[Problem, dict[str, float]]:
        """Successful tune measurements of a device, by problem: the transfer prior of the
        model strategy. Matched by device NAME, not fingerprint (a fingerprint changes with
        the driver or, on PoCL, used to follow free memory); `exclude` leaves out the problem
        being tuned (its own rows are the target's, and offline they would be leakage)."""
        out: dict[Problem, dict[str, float]] = {}
        for key, t, m, n, k, ta, tb in self._conn.execute(
                "SELECT schedule, MIN(time_s), m, n, k, trans_a, trans_b FROM measurements "
                "WHERE device_name=? AND session=? AND time_s IS NOT NULL "
                "GROUP BY schedule, m, n, k, trans_a, trans_b", (device_name, session)):
            p = Problem(m, n, k, bool(ta), bool(tb))
            if exclude is not None and p == exclude:
                continue
            out.setdefault(p, {})[key] = t
        return out

    def best(self, device_fp: str, problem: Problem, top: int = 5,
             session: str = TUNE_SESSION) -> list[tuple[str, float]]:
        p = problem
        return self._conn.execute(
            "SELECT schedule, time_s FROM measurements WHERE device_fp=? AND m=? AND n=? AND "
            "k=? AND trans_a=? AND trans_b=? AND session=? AND time_s IS NOT NULL "
            "ORDER BY time_s LIMIT ?",
            (device_fp, p.m, p.n, p.k, int(p.trans_a), int(p.trans_b), session, top),
        ).fetchall()

    def run_rows(self, run_id: str) -> int:
        """Rows a run wrote (a fleet run counts them against its proposals)."""
        return self._conn.execute("SELECT COUNT(*) FROM measurements WHERE run_id=?",
                                  (run_id,)).fetchone()[0]

    def devices(self) -> list[tuple[str, str]]:
        return self._conn.execute(
            "SELECT DISTINCT device_fp, device_name FROM measurements").fetchall()
