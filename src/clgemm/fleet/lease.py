"""Leases: who is measuring what, until when, and which result counts.

Every unit of work (one schedule of one problem on one kind of device) is handed out under a
lease with a deadline. A worker that dies mid-measurement just never answers: its lease
expires and the work is issued again. A result is accepted once per key, from whichever lease
answers first (a late answer of an expired lease is as good as any); every later answer for
the key is counted and dropped, so the database never holds a key twice and never misses one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..tune.measure import Problem


@dataclass(frozen=True)
class ItemKey:
    """One unit of work: a schedule of a problem on a kind of device (its fingerprint)."""

    device_fp: str
    problem: Problem
    schedule: str


@dataclass(frozen=True)
class Lease:
    id: int
    key: ItemKey
    attempt: int  # 1 for the first issue, +1 for each re-issue
    deadline: float  # on the book's clock


@dataclass
class LeaseCounts:
    issued: int = 0  # leases handed out, re-issues included
    reissued: int = 0  # of those, for work whose earlier lease expired or failed
    expired: int = 0  # leases whose deadline passed without an answer
    failed: int = 0  # leases whose task raised (its worker lost, a crash): work re-issued
    accepted: int = 0  # results kept: one per key
    duplicates: int = 0  # answers for a key already accepted: dropped
    late: int = 0  # accepted answers that came from an already expired lease

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class LeaseBook:
    """The driver's ledger of open leases; `clock` is injectable for tests."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    counts: LeaseCounts = field(default_factory=LeaseCounts)

    def __post_init__(self) -> None:
        self._open: dict[int, Lease] = {}
        self._stale: set[int] = set()  # expired: its answer may still come, and counts
        self._attempts: dict[ItemKey, int] = {}
        self._accepted: set[ItemKey] = set()
        self._next = 1

    def issue(self, key: ItemKey) -> Lease:
        if key in self._accepted:
            raise ValueError(f"{key} already has its result; it is never issued again")
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        lease = Lease(self._next, key, attempt, self.clock() + self.seconds)
        self._next += 1
        self._open[lease.id] = lease
        self.counts.issued += 1
        self.counts.reissued += attempt > 1
        return lease

    def expired(self) -> list[Lease]:
        """Open leases past their deadline, closed now (the caller issues the work again)."""
        now = self.clock()
        gone = [lease for lease in self._open.values() if lease.deadline <= now]
        for lease in gone:
            del self._open[lease.id]
            self._stale.add(lease.id)
            self.counts.expired += 1
        return gone

    def fail(self, lease: Lease) -> bool:
        """The lease's task will not answer (it raised, its worker is gone): closed; True when
        its work must be issued again (no answer for the key, no other lease open)."""
        if self._open.pop(lease.id, None) is not None:
            self.counts.failed += 1
        self._stale.discard(lease.id)
        return lease.key not in self._accepted and not self.is_open(lease.key)

    def settle(self, lease: Lease) -> bool:
        """An answer under `lease`: True when it is the key's result (the first answer),
        False when the key already has one (a duplicate, dropped)."""
        self._open.pop(lease.id, None)
        if lease.key in self._accepted:
            self.counts.duplicates += 1
            return False
        self.counts.late += lease.id in self._stale
        self._stale.discard(lease.id)
        self._accepted.add(lease.key)
        self.counts.accepted += 1
        return True

    def is_open(self, key: ItemKey) -> bool:
        return any(lease.key == key for lease in self._open.values())

    def accepted(self, key: ItemKey) -> bool:
        return key in self._accepted

    def open_leases(self) -> list[Lease]:
        return list(self._open.values())

    def close(self, lease: Lease) -> None:
        """Forget a lease whose work is answered under another (its task cancelled)."""
        self._open.pop(lease.id, None)
        self._stale.discard(lease.id)
