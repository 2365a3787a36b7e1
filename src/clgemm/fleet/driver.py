"""The fleet driver: searches every (device kind, problem) at once over a pool of workers.

The driver alone writes the tuning database (one writer). Devices are found as their workers
join, at any time: a worker whose device has a new fingerprint starts that device's searches,
one more worker of a known fingerprint (an identical card) shares them. Each search is the
one-process tuner's (`tune.loop.Proposer`): it proposes a batch, every schedule of the batch is
compiled on a compile worker and measured on a device worker under a lease, and the batch's
results are told back in the order asked once all are in. Batches of one search are therefore
the same whatever the number of workers, their speed or their deaths, and a fleet run with a
seed and a batch size proposes what `clgemm tune --seed S --workers BATCH` proposes (where
the measured times are the same: a deterministic device, see fleet.tasks `sim:`).
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from ..errors import StateError, UsageError
from ..schedule import Schedule
from ..tune.db import TuningDB
from ..tune.loop import Proposer, TuneConfig, prior_name, resolve_strategy
from ..tune.measure import Measurement, Problem, tune_protocol
from .lease import ItemKey, Lease, LeaseBook, LeaseCounts
from .tasks import Answer, DeviceInfo, SimTiming


class Handle(Protocol):
    """A submitted task (a Dask future, or a test double)."""

    def done(self) -> bool: ...
    def result(self): ...
    def cancel(self) -> None: ...


class Pool(Protocol):
    """Where the work runs: device workers (one per device) and compile workers."""

    def device_workers(self) -> dict[str, str]:
        """Address -> name of the live workers that own a device."""

    def compile_workers(self) -> int: ...
    def describe(self, address: str) -> Handle: ...

    def submit(self, item: ItemKey, kind: str, addresses: list[str], compile: bool,
               repeats: int, seed: int, sim: SimTiming, space_path: str | None) -> Handle:
        """Compile `item` on a compile worker (when `compile`), then measure it on one of the
        device workers at `addresses`; the handle's result is a `tasks.Answer`."""

    def wait(self, handles: list[Handle], timeout: float) -> None:
        """Return when one of `handles` is done, or after `timeout` seconds."""


@dataclass(frozen=True)
class FleetConfig:
    problems: tuple[Problem, ...]
    strategy: str = "auto"  # resolved per device and problem when the device joins
    budget_evals: int | None = 100
    budget_seconds: float | None = None  # wall seconds of the whole run
    seed: int = 0
    batch: int = 4  # schedules proposed at once per search (`clgemm tune --workers`)
    repeats: int = 5
    lease_s: float = 300.0  # a measurement not answered by then is issued again
    # give up when no device worker is in the fleet for this long; a device whose workers
    # are all gone this long ends its searches ("device lost": its open work counts as lost)
    wait_devices_s: float = 120.0
    tick_s: float = 0.2
    options: dict = field(default_factory=dict)
    sim: SimTiming = SimTiming()
    transfer: bool = False


@dataclass
class SearchResult:
    device_fp: str
    device_name: str
    problem: Problem
    strategy: str
    run_id: str
    proposed: int  # schedules proposed in this run
    written: int  # results written to the database in this run (one per proposal)
    resumed: int
    failures: int
    best: str | None
    best_time_s: float | None
    status: str

    @property
    def best_gflops(self) -> float | None:
        return self.problem.flops / self.best_time_s / 1e9 if self.best_time_s else None


@dataclass
class FleetResult:
    searches: list[SearchResult]
    leases: LeaseCounts
    wall_s: float
    workers_seen: list[str]  # every device worker that joined (restarts included)
    workers_lost: list[str]  # device workers that left mid-run
    measured_by: dict[str, int]  # device worker -> results accepted from it
    compiled_by: dict[str, int]  # compile worker -> results built by it


@dataclass
class _Device:
    info: DeviceInfo
    space: object  # engine Space or RecordedSpace
    kind: str
    addresses: set[str] = field(default_factory=set)
    gone_since: float | None = None  # when its last worker left


@dataclass
class _Search:
    device: _Device
    config: TuneConfig
    proposer: Proposer
    run_id: str
    batch: list[Schedule] = field(default_factory=list)
    results: dict[str, Measurement] = field(default_factory=dict)
    proposed: int = 0
    written: int = 0
    failures: int = 0
    status: str = "running"


@dataclass
class _Open:
    lease: Lease
    handle: Handle
    addresses: tuple[str, ...]


class FleetDriver:
    def __init__(self, config: FleetConfig, db: TuningDB, pool: Pool,
                 clock: Callable[[], float] = time.monotonic, log=sys.stderr) -> None:
        if not config.problems:
            raise UsageError("the fleet has nothing to tune: give at least one --size")
        self.config, self.db, self.pool, self.clock, self.log = config, db, pool, clock, log
        self.book = LeaseBook(config.lease_s, clock)
        self.devices: dict[str, _Device] = {}  # fingerprint -> device
        self.searches: dict[tuple[str, Problem], _Search] = {}
        self.open: dict[int, _Open] = {}  # lease id -> task
        self.parked: list[ItemKey] = []  # work waiting for a worker of its device
        self.describing: dict[str, Handle] = {}  # address -> describe task
        self.known: dict[str, str] = {}  # address -> name, of every device worker seen
        self.worker_fp: dict[str, str] = {}  # address -> fingerprint
        self.lost: list[str] = []
        self.measured_by: dict[str, int] = {}
        self.compiled_by: dict[str, int] = {}

    # ---- workers and devices -----------------------------------------------------
    def _refresh_workers(self) -> None:
        live = self.pool.device_workers()
        for address, name in live.items():
            if address not in self.known:
                self.known[address] = name
                self.describing[address] = self.pool.describe(address)
                print(f"fleet: device worker {name} joined ({address})", file=self.log)
        for address in [a for a in self.worker_fp if a not in live]:
            fp = self.worker_fp.pop(address)
            self.devices[fp].addresses.discard(address)
            if not self.devices[fp].addresses:
                self.devices[fp].gone_since = self.clock()
            self.lost.append(self.known[address])
            print(f"fleet: device worker {self.known[address]} left ({address})", file=self.log)
            for entry in list(self.open.values()):  # its work goes to the device's other workers
                if (entry.lease.key.device_fp == fp
                        and not set(entry.addresses) & self.devices[fp].addresses):
                    self._fail(entry)
        for address in [a for a in self.describing if a not in live]:
            self.describing.pop(address).cancel()  # died describing: rejoins under a new address

    def _described(self, address: str, handle: Handle) -> None:
        del self.describing[address]
        try:
            info: DeviceInfo = handle.result()
        except Exception as exc:  # a worker whose device does not open: named, then skipped
            print(f"fleet: device worker {self.known[address]} cannot serve: "
                  f"{type(exc).__name__}: {str(exc)[:300]}", file=self.log)
            return
        self.worker_fp[address] = info.fingerprint
        device = self.devices.get(info.fingerprint)
        if device is None:
            device = self._add_device(info, self.known[address])
        device.addresses.add(address)
        device.gone_since = None

    def _drop_lost_devices(self) -> None:
        """A device without a worker for `wait_devices_s` ends its searches: the run does not
        wait forever for a card that will not come back (its unanswered work is lost, and
        counted so)."""
        now = self.clock()
        for fp, device in self.devices.items():
            if device.gone_since is None or now - device.gone_since <= self.config.wait_devices_s:
                continue
            for (sfp, _), search in self.searches.items():
                if sfp == fp and search.status == "running":
                    search.status = "device lost"
                    print(f"fleet: {device.info.name}: no worker for "
                          f"{self.config.wait_devices_s:g} s; its searches end", file=self.log)
            self.parked = [k for k in self.parked if k.device_fp != fp]

    def _add_device(self, info: DeviceInfo, worker: str) -> _Device:
        from ..engine import RecordedSpace, Space

        kind = "sim" if info.space_path else "ocl"
        space = (RecordedSpace.load(info.space_path) if info.space_path
                 else Space.from_spec(info.space_spec))
        device = _Device(info, space, kind)
        self.devices[info.fingerprint] = device
        gone = self.db.mark_interrupted(info.fingerprint)
        if gone:
            print(f"fleet: {len(gone)} earlier run(s) of {info.name} were killed; marked "
                  f"interrupted ({', '.join(gone)})", file=self.log)
        c = self.config
        for problem in c.problems:
            config = TuneConfig(problem, c.strategy, c.budget_evals, c.budget_seconds, c.seed,
                                c.batch, c.repeats, transfer=c.transfer, options=dict(c.options))
            config = resolve_strategy(config, self.db, info.name)
            if kind == "sim" and config.strategy == "model":
                raise UsageError("a recorded space (sim:) stands in for a device without a cost "
                                 "model: give --strategy other than model/auto")
            run_id = uuid.uuid4().hex[:12]
            self.db.start_run(run_id, info.fingerprint, problem, config.strategy, c.seed,
                              {"budget_evals": c.budget_evals, "budget_seconds": c.budget_seconds,
                               "repeats": c.repeats, "options": dict(c.options),
                               "fleet": {"batch": c.batch, "lease_s": c.lease_s}})
            prior = (self.db.observations(prior_name(config, info.name), exclude=problem)
                     if config.strategy == "model" and config.transfer else None)
            proposer = Proposer(config, space, info.local_mem_bytes,
                                done=self.db.measured(info.fingerprint, problem), prior=prior)
            self.searches[(info.fingerprint, problem)] = _Search(device, config, proposer, run_id)
            print(f"fleet: {info.name} ({worker}): {problem.m}x{problem.n}x{problem.k} with "
                  f"{config.strategy}, {proposer.resumed} results already in {self.db.path}",
                  file=self.log)
        return device

    # ---- work -------------------------------------------------------------------
    def _out_of_time(self, start: float) -> bool:
        s = self.config.budget_seconds
        return s is not None and self.clock() - start >= s

    def _propose(self, start: float) -> None:
        for (fp, problem), search in self.searches.items():
            if search.status != "running" or search.batch:
                continue
            if search.proposer.budget_left() == 0 or self._out_of_time(start):
                search.status = "budget"
                continue
            batch = search.proposer.propose(self.config.batch)
            if not batch:
                search.status = "space exhausted"
                continue
            search.batch = batch
            search.proposed += len(batch)
            self.parked += [ItemKey(fp, problem, s.key()) for s in batch]

    def _submit_parked(self) -> None:
        waiting = []
        compile = self.pool.compile_workers() > 0
        for item in self.parked:
            device = self.devices[item.device_fp]
            if not device.addresses:
                waiting.append(item)
                continue
            lease = self.book.issue(item)
            addresses = sorted(device.addresses)
            handle = self.pool.submit(item, device.kind, addresses, compile, self.config.repeats,
                                      self.config.seed, self.config.sim, device.info.space_path)
            self.open[lease.id] = _Open(lease, handle, tuple(addresses))
        self.parked = waiting

    def _park(self, key: ItemKey) -> None:
        """Queue `key`'s work for a new lease, unless it is answered, leased or queued."""
        if not self.book.accepted(key) and not self.book.is_open(key) and key not in self.parked:
            self.parked.append(key)

    def _fail(self, entry: _Open) -> None:
        """A task that will not answer (its worker gone, or it raised): issue its work again."""
        self.open.pop(entry.lease.id, None)
        entry.handle.cancel()
        self.book.fail(entry.lease)
        self._park(entry.lease.key)

    def _answered(self, entry: _Open) -> None:
        del self.open[entry.lease.id]
        try:
            answer: Answer = entry.handle.result()
        except Exception as exc:  # the worker died under it (Dask gave up), or a crash
            print(f"fleet: {entry.lease.key.schedule} failed on its worker "
                  f"({type(exc).__name__}: {str(exc)[:200]}); issued again", file=self.log)
            self._fail(entry)
            return
        key = entry.lease.key
        if not self.book.settle(entry.lease):
            return  # a duplicate: the key's result is in already
        for other in [o for o in self.open.values() if o.lease.key == key]:
            self.book.close(other.lease)  # the same work issued again: no longer needed
            self.open.pop(other.lease.id)
            other.handle.cancel()
        if key in self.parked:
            self.parked.remove(key)
        search = self.searches[(key.device_fp, key.problem)]
        m = answer.measurement
        protocol = {**tune_protocol(self.config.repeats),
                    "fleet": {"measured_by": answer.worker, "compiled_by": answer.compiled_by,
                              "lease_attempt": entry.lease.attempt}}
        self.db.record(key.device_fp, search.device.info.name, key.problem, m, protocol,
                       search.run_id)
        search.results[key.schedule] = m
        search.written += 1
        search.failures += m.time_s is None
        self.measured_by[answer.worker] = self.measured_by.get(answer.worker, 0) + 1
        if answer.compiled_by:
            self.compiled_by[answer.compiled_by] = self.compiled_by.get(answer.compiled_by, 0) + 1
        if len(search.results) == len(search.batch):  # the batch is in: told in order asked
            for schedule in search.batch:
                search.proposer.tell(schedule, search.results[schedule.key()].time_s)
            search.batch, search.results = [], {}
            best = search.proposer.strategy.best()
            best_txt = f"{key.problem.flops / best[1] / 1e9:,.1f} GFLOPS" if best else "none"
            print(f"fleet: {search.device.info.name} {key.problem.m}x{key.problem.n}x"
                  f"{key.problem.k}: {len(search.proposer.done)} evaluated, best {best_txt}",
                  file=self.log, flush=True)

    # ---- the run ----------------------------------------------------------------
    def run(self) -> FleetResult:
        start = self.clock()
        status = "interrupted"
        seen = start  # when a device worker was last live
        try:
            while True:
                self._refresh_workers()
                for address, handle in list(self.describing.items()):
                    if handle.done():
                        self._described(address, handle)
                if self.describing or any(d.addresses for d in self.devices.values()):
                    seen = self.clock()
                elif self.clock() - seen > self.config.wait_devices_s:
                    raise StateError(
                        f"no device worker in the fleet for {self.config.wait_devices_s:g} s: "
                        "start workers named ocl:SPEC with the 'measure' resource (see "
                        "`clgemm fleet --help`), or give --local-devices")
                self._drop_lost_devices()
                self._propose(start)
                self._submit_parked()
                if self.devices and all(s.status != "running" for s in self.searches.values()):
                    status = "done"
                    break
                handles = [o.handle for o in self.open.values()] + list(self.describing.values())
                self.pool.wait(handles, self.config.tick_s)
                for entry in [o for o in list(self.open.values()) if o.handle.done()]:
                    if entry.lease.id in self.open:  # not closed by an earlier answer
                        self._answered(entry)
                for lease in self.book.expired():
                    # its task stays watched: a late answer still counts if it comes first
                    print(f"fleet: lease {lease.id} ({lease.key.schedule}) expired; issued "
                          "again", file=self.log)
                    self._park(lease.key)
        finally:
            for search in self.searches.values():
                if search.status == "running":
                    search.status = status
                self.db.finish_run(search.run_id, search.status)
        return self._result(self.clock() - start)

    def _result(self, wall_s: float) -> FleetResult:
        out = []
        for (fp, problem), s in self.searches.items():
            best = self.db.best(fp, problem, top=1)
            out.append(SearchResult(fp, s.device.info.name, problem, s.config.strategy, s.run_id,
                                    s.proposed, s.written, s.proposer.resumed, s.failures,
                                    best[0][0] if best else None, best[0][1] if best else None,
                                    s.status))
        return FleetResult(out, self.book.counts, wall_s, [str(n) for n in self.known.values()],
                           self.lost, dict(self.measured_by), dict(self.compiled_by))


def fleet_config(problems, **kw) -> FleetConfig:
    """A FleetConfig with problems given as shapes or Problems."""
    ps = tuple(p if isinstance(p, Problem) else Problem(*p) for p in problems)
    return replace(FleetConfig(ps), **kw)
