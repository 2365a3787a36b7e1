"""Where the online selector keeps what it learned: one SQLite file per device.

`<state dir>/<device fingerprint>.sqlite3`, with the state dir `$CLGEMM_STATE_DIR/selector`
or `platformdirs.user_cache_dir("clgemm")/selector`. SQLite runs in WAL mode and every
sync is one `BEGIN IMMEDIATE` transaction, so several processes can share a device's state.

Merging is additive: each process remembers the values it loaded (`base`) and sends only its
own change (`current - base`) at a sync, which is added to whatever the file holds by then
(other processes' changes included); the sum is then loaded back. The statistics are sums
(counts, sums of rewards, Gram matrices), for which adding deltas is the exact merge.

The store may be used from any thread (a selector made in a worker thread is flushed by the
main thread at exit): its connection is shared across threads and every use of it is locked.

A file that cannot be read (not a database, wrong schema, undecodable rows) is never fatal:
it is moved aside as `*.corrupt-<time>`, a fresh one is made, and `StateStore.note` says so.
"""

from __future__ import annotations

import json
import os
import functools
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

SCHEMA = "clgemm.selector/1"


def state_dir() -> Path:
    env = os.environ.get("CLGEMM_STATE_DIR")
    if env:
        return Path(env) / "selector"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("clgemm")) / "selector"


class StateCorrupt(Exception):
    pass


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                  updated REAL NOT NULL, PRIMARY KEY (kind, key));
"""


class StateStore:
    """A key-value store of JSON vectors with additive merges, one file per device.

    Items are (kind, key) -> list of floats (or nested lists); `merge` adds deltas.
    """

    def __init__(self, fingerprint: str, directory: Path | str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.fingerprint = fingerprint
        self.directory = Path(directory) if directory is not None else state_dir()
        self.path = self.directory / f"{fingerprint}.sqlite3"
        self.timeout_s = timeout_s
        self.note: str | None = None  # set when the file was rebuilt
        self._lock = threading.RLock()
        self._open()

    # ---- opening, corruption ------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                               check_same_thread=False)  # shared; serialised by self._lock
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._connect()
            self._init_schema()
            self._probe()
        except (sqlite3.DatabaseError, StateCorrupt, ValueError, KeyError) as exc:
            self._rebuild(f"{type(exc).__name__}: {exc}")

    def _init_schema(self) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _DDL.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA,))
                c.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (self.fingerprint,))
                c.execute("INSERT INTO meta VALUES ('created', ?)", (str(time.time()),))
            elif row[0] != SCHEMA:
                raise StateCorrupt(f"schema {row[0]!r}, expected {SCHEMA!r}")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _probe(self) -> None:
        """Read everything once: a file whose rows do not decode is corrupt."""
        r = self._conn.execute("PRAGMA quick_check").fetchone()
        if r is None or r[0] != "ok":
            raise StateCorrupt(f"integrity check: {r}")
        for kind, key, value in self._conn.execute("SELECT kind, key, value FROM items"):
            json.loads(value)

    def _rebuild(self, why: str) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - it may never have opened
            pass
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time() * 1000)}")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                try:
                    os.replace(p, Path(str(aside) + suffix))
                except OSError:
                    p.unlink(missing_ok=True)
        self.note = (f"selector state {self.path} was unreadable ({why}); moved aside to "
                     f"{aside.name} and rebuilt empty: learning starts over")
        warnings.warn(self.note, RuntimeWarning, stacklevel=3)
        self._conn = self._connect()
        self._init_schema()

    # ---- reading and merging ------------------------------------------------------------
    @_locked
    def load(self) -> dict[tuple[str, str], Any]:
        try:
            rows = self._conn.execute("SELECT kind, key, value FROM items").fetchall()
            return {(k, key): json.loads(v) for k, key, v in rows}
        except (sqlite3.DatabaseError, ValueError) as exc:
            self._rebuild(f"{type(exc).__name__}: {exc}")
            return {}

    @_locked
    def merge(self, deltas: dict[tuple[str, str], Any],
              replace: dict[tuple[str, str], Any] | None = None) -> dict[tuple[str, str], Any] | None:
        """Add `deltas` to the stored values (and overwrite `replace`) in one transaction;
        returns everything stored afterwards, or None when the file stayed locked (the caller
        keeps its deltas and tries again later)."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None  # locked longer than the timeout: not fatal
        try:
            now = time.time()
            for (kind, key), delta in deltas.items():
                row = c.execute("SELECT value FROM items WHERE kind=? AND key=?",
                                (kind, key)).fetchone()
                value = _add(json.loads(row[0]), delta) if row else delta
                c.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
                          (kind, key, json.dumps(value), now))
            for (kind, key), value in (replace or {}).items():
                c.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
                          (kind, key, json.dumps(value), now))
            rows = c.execute("SELECT kind, key, value FROM items").fetchall()
            c.execute("COMMIT")
        except (sqlite3.DatabaseError, ValueError) as exc:
            try:
                c.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                return None
            if _transient(exc):  # a full disk: the file is sound, the caller keeps its deltas
                self.note = (f"selector state {self.path} not saved ({exc}); kept in memory "
                             "and tried again at the next sync: free disk space")
                return None
            self._rebuild(f"{type(exc).__name__}: {exc}")
            return None
        return {(k, key): json.loads(v) for k, key, v in rows}

    @_locked
    def prune(self, kind: str, keep: int) -> None:
        """Keep only the `keep` most recently updated items of a kind."""
        try:
            self._conn.execute(
                "DELETE FROM items WHERE kind=? AND key NOT IN (SELECT key FROM items WHERE "
                "kind=? ORDER BY updated DESC LIMIT ?)", (kind, kind, keep))
        except sqlite3.DatabaseError:
            pass

    @_locked
    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.DatabaseError:
            pass


def _transient(exc: Exception) -> bool:
    """A write that failed for lack of space (SQLITE_FULL, SQLITE_IOERR), not a bad file."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (10, 13)
    text = str(exc).lower()
    return "disk is full" in text or "disk i/o error" in text


def _add(a, b):
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_add(x, y) for x, y in zip(a, b)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    return b  # shape changed (another version wrote it): the newer value wins
