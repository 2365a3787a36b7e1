"""What fleet workers run: describe the device a worker owns, compile a schedule, measure it.

A device worker's name says which device it owns: `ocl:SPEC[@TAG]` is an OpenCL device as
`clgemm.device.get_device` resolves SPEC (an index, a fingerprint, a name substring) on the
worker's host; `sim:PATH[@TAG]` is a recorded space (clgemm.space/1) standing in for a device:
its "measurement" is the recorded time, so a search over it is deterministic (tests, and the
check that a fleet finds what one process finds). TAG tells apart several workers on one device.
Compile workers carry the `compile` resource and no device; they build for the device named by
fingerprint, which fills the host's on-disk build cache that the device worker then loads from.

These functions run in Dask worker processes. The OpenCL work itself (building, measuring) runs
in one child process per worker: a driver's compiler holds the GIL for seconds (PoCL: up to
28 s seen on 2 busy cores), which froze the worker's event loop until the scheduler dropped the
worker as gone. The child keeps the runtime and the benchmark buffers, so a worker measures many
schedules without rebuilding its inputs; it dies with its worker (kill -9 included), and a child
that crashes fails only its task (issued again by the driver's lease).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..schedule import Schedule
from ..tune.measure import Bench, Measurement, Problem

MEASURE = "measure"  # Dask resource of a device worker (1: one measurement at a time)
COMPILE = "compile"  # Dask resource of a compile worker
KINDS = ("ocl", "sim")


@dataclass(frozen=True)
class DeviceName:
    """A device worker's name, parsed."""

    kind: str  # "ocl" or "sim"
    spec: str  # the device spec (ocl) or the recorded space's path (sim)
    tag: str = ""

    @classmethod
    def parse(cls, name: str) -> "DeviceName":
        kind, sep, rest = str(name).partition(":")
        if not sep or kind not in KINDS or not rest:
            raise UsageError(f"{name!r} is not a fleet device (give ocl:SPEC or sim:SPACE.json, "
                             "optionally @TAG, e.g. ocl:0@a)")
        spec, _, tag = rest.partition("@")
        if not spec:
            raise UsageError(f"{name!r} names no device: give ocl:SPEC or sim:SPACE.json")
        return cls(kind, spec, tag)

    def __str__(self) -> str:
        return f"{self.kind}:{self.spec}" + (f"@{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class DeviceInfo:
    """What the driver needs to search a device's space (returned by `describe`)."""

    fingerprint: str
    name: str
    local_mem_bytes: int
    space_spec: dict | None  # the engine's spec of the OpenCL search space (ocl)
    space_path: str | None  # the recorded space (sim)
    summary: dict


@dataclass(frozen=True)
class Compiled:
    key: str
    seconds: float | None
    error: str | None  # "compile: ..." (a result: not measured) or None
    worker: str
    skipped: str | None = None  # why this host did not build it (the device worker will)


@dataclass(frozen=True)
class SimTiming:
    """Seconds a simulated device spends per compile and per measurement (0: none), plus
    `recorded` x what the recorded space says the schedule took: its compile_s to compile,
    its kernel time x (warm-up + repeats + the check) to measure. Sleeping takes no CPU, so
    a fleet's scheduling can be timed with a real device's costs on a small host."""

    compile_s: float = 0.0
    measure_s: float = 0.0
    recorded: float = 0.0


@dataclass(frozen=True)
class Answer:
    measurement: Measurement
    worker: str  # the device worker that measured
    compiled_by: str | None


def _worker_name(name: str | None) -> str:
    if name is not None:
        return name
    from distributed import get_worker

    return str(get_worker().name)


# ---- recorded spaces (sim) -------------------------------------------------------------
@lru_cache(maxsize=8)
def _recorded(path: str) -> tuple[str, dict, dict[str, tuple[float | None, float | None, str | None]]]:
    """(fingerprint, the file's header, schedule key -> (time_s, compile_s, error))."""
    raw = Path(path).read_bytes()
    data = json.loads(raw)
    table = {}
    for r in data["records"]:
        key = Schedule.from_dict(r["schedule"]).key()
        table[key] = (r.get("time_s"), r.get("compile_s"), r.get("error"))
    head = {k: v for k, v in data.items() if k != "records"}
    return "sim-" + hashlib.sha256(raw).hexdigest()[:12], head, table


# ---- the tasks --------------------------------------------------------------------------
def describe(name: str | None = None) -> DeviceInfo:
    """The device this worker owns: fingerprint, name and search space."""
    dev = DeviceName.parse(_worker_name(name))
    if dev.kind == "sim":
        fp, head, _ = _recorded(dev.spec)
        device = head.get("device") or {}
        label = device.get("name", "?") if isinstance(device, dict) else str(device)
        limits = head.get("limits") or {}
        return DeviceInfo(fp, f"simulated {label}", int(limits.get("local_mem_bytes", 65536)),
                          None, str(Path(dev.spec).resolve()), {"recorded_space": dev.spec})
    return _in_child(_describe_here, dev.spec)


def _describe_here(spec: str) -> DeviceInfo:
    from ..lanes.fp32 import search_space
    from ..runtime import get_runtime

    rt = get_runtime(spec)
    return DeviceInfo(rt.device.fingerprint, rt.device.name, rt.device.local_mem_bytes,
                      search_space(rt).engine_spec(), None, rt.device.summary())


def compile_item(kind: str, device_fp: str, problem: Problem, key: str,
                 sim: SimTiming = SimTiming(), space_path: str | None = None,
                 name: str | None = None) -> Compiled:
    """Build a schedule's kernel for the device `device_fp` (on this host's OpenCL device of
    that fingerprint), filling the on-disk build cache. A failure to build is a result.
    A recorded device (kind "sim", its space at `space_path`) only takes its time."""
    worker = _worker_name(name)
    if kind == "sim":
        start = time.perf_counter()
        recorded = _recorded(space_path)[2][key][1] if sim.recorded and space_path else 0.0
        time.sleep(sim.compile_s + sim.recorded * (recorded or 0.0))
        return Compiled(key, time.perf_counter() - start, None, worker)
    seconds, error, skipped = _in_child(_compile_here, device_fp, problem, key, worker)
    return Compiled(key, seconds, error, worker, skipped)


def _compile_here(device_fp: str, problem: Problem, key: str, worker: str
                  ) -> tuple[float | None, str | None, str | None]:
    from ..device import devices
    from ..lanes.fp32 import GemmKernel
    from ..runtime import get_runtime

    start = time.perf_counter()
    twins = [d for d in devices() if d.fingerprint == device_fp]
    if not twins:  # another host's device: the device worker builds it
        return None, None, f"no device of fingerprint {device_fp} on this host"
    # identical cards: the compile workers' contexts spread over them, not all on the first
    info = twins[int(hashlib.sha256(worker.encode()).hexdigest(), 16) % len(twins)]
    schedule = Schedule.from_key(key)
    try:
        GemmKernel(get_runtime(info), schedule, problem.layout(schedule))
    except Exception as exc:  # any failure to build is the candidate's result, never fatal
        return (time.perf_counter() - start,
                f"compile: {type(exc).__name__}: {str(exc)[:300]}", None)
    return time.perf_counter() - start, None, None


@lru_cache(maxsize=4)
def _bench(spec: str, problem: Problem, repeats: int, seed: int) -> Bench:
    from ..runtime import get_runtime

    return Bench(get_runtime(spec), problem, repeats=repeats, seed=seed)


def measure_item(problem: Problem, key: str, repeats: int, seed: int,
                 compiled: Compiled | None, sim: SimTiming = SimTiming(),
                 name: str | None = None) -> Answer:
    """Check and time one schedule on this worker's device (a compile error recorded by a
    compile worker is the result as it is: nothing to measure)."""
    worker = _worker_name(name)
    dev = DeviceName.parse(worker)
    schedule = Schedule.from_key(key)
    by = compiled.worker if compiled is not None and compiled.skipped is None else None
    compile_s = compiled.seconds if by else None
    if compiled is not None and compiled.error is not None:
        return Answer(Measurement(schedule, None, compile_s, compiled.error), worker, by)
    if dev.kind == "sim":
        _, _, table = _recorded(dev.spec)
        t, c, error = table[key]
        runs = 1 + repeats + 1  # warm-up, repeats, the check (Bench's protocol)
        build = sim.compile_s + sim.recorded * (c or 0.0) if by is None else 0.0  # built here
        time.sleep(build + sim.measure_s + sim.recorded * runs * (t or 0.0))
        return Answer(Measurement(schedule, t, c, error), worker, by)
    return Answer(_in_child(_measure_here, dev.spec, problem, key, repeats, seed, compile_s),
                  worker, by)


def _measure_here(spec: str, problem: Problem, key: str, repeats: int, seed: int,
                  compile_s: float | None) -> Measurement:
    return _bench(spec, problem, repeats, seed).measure(Schedule.from_key(key), compile_s)


# ---- the child process that does a worker's OpenCL work -----------------------------------
_child: cf.ProcessPoolExecutor | None = None
_child_lock = threading.Lock()


def _in_child(fn, *args):
    """`fn(*args)` in this worker's child process (started on first use; in this process
    where it cannot have one: a daemonic process, as `dask worker` makes without
    DASK_DISTRIBUTED__WORKER__DAEMON=False). A child that dies fails this call only."""
    global _child
    if multiprocessing.current_process().daemon:
        return fn(*args)
    from ..tune.measure import _worker_init

    with _child_lock:
        if _child is None:
            _child = cf.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                initargs=(None, os.getpid()))
        pool = _child
    try:
        return pool.submit(fn, *args).result()
    except cf.process.BrokenProcessPool:
        with _child_lock:
            if _child is pool:
                _child = None  # the next call starts a fresh one
        raise
