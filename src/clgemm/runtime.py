"""One context and queue per device, buffers, and a build cache on disk.

The cache key is the source hash + build options + device + driver version, so a second
process loads a binary instead of compiling. Binaries are written atomically (temp + rename),
so a killed process never leaves a torn entry.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterator, TypeVar

from .device import DeviceInfo, cl_device, devices, get_device
from .errors import CompileError, OutOfDeviceMemoryError, ShapeError

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools

T = TypeVar("T")
_MISSING = object()
PLAN_CACHE_SIZE = 4096
# The fields of a pyopencl Array (2026.1) that Runtime.empty copies from a template.
_ARRAY_FIELDS = {"_flags", "allocator", "base_data", "context", "dtype", "events", "nbytes",
                 "offset", "queue", "shape", "size", "strides"}


def cache_dir() -> Path:
    env = os.environ.get("CLGEMM_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("clgemm")) / "kernels"


@dataclass(frozen=True)
class BuildInfo:
    seconds: float  # wall time of this build (compile, or load from the cache)
    from_cache: bool  # True when the binary came from the on-disk cache
    key: str


@dataclass
class Built:
    program: "cl.Program"
    info: BuildInfo

    def kernel(self, name: str) -> "cl.Kernel":
        return cl.Kernel(self.program, name)


class LruMemo:
    """A bounded memo (plans, schedules per shape: a long-running process meets shapes
    without end). A lookup is one dict read, without a lock; when full, the oldest quarter
    of the entries goes, those stored first (a product still in use is decided again)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        return self._items.get(key)

    def put(self, key, value):
        """Store `value` (or keep the one a racing thread stored first); returns the kept one."""
        with self._lock:
            if key not in self._items and len(self._items) >= self.size:
                for old in list(self._items)[: max(1, self.size // 4)]:
                    del self._items[old]
            return self._items.setdefault(key, value)

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list:
        return list(self._items.values())


_SEAL = b"clgemm-bin/2\n"


def _seal(binary: bytes, key: str) -> bytes:
    # The digest covers the cache key too: a file renamed or copied to another key's name
    # (another kernel's binary) does not unseal, it is rebuilt.
    return _SEAL + hashlib.sha256(key.encode() + b"\0" + binary).digest() + binary


def _unseal(data: bytes, key: str) -> bytes | None:
    """The binary of a sealed cache file stored under `key`, None when the file is not one,
    was damaged, or belongs to another key."""
    head = len(_SEAL) + 32
    if len(data) <= head or not data.startswith(_SEAL):
        return None
    binary = data[head:]
    if hashlib.sha256(key.encode() + b"\0" + binary).digest() != data[len(_SEAL):head]:
        return None
    return binary


_SPIN = """
__kernel void clgemm_spin(__global float* x, const int n) {
  float a = x[get_global_id(0)];
  for (int i = 0; i < n; i++) a = a * 0.999999f + 1e-7f;
  x[get_global_id(0)] = a;
}
"""


def _probe_profiling(rt: "Runtime") -> bool:
    """A dependent chain of multiply-adds long enough to take >= 2 ms of wall time; the
    clock is plausible when its interval is at least a quarter of that wall time."""
    import numpy as np

    kern = rt.build(_SPIN).kernel("clgemm_spin")
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 4 * 1024)
    cl.enqueue_fill_buffer(rt.queue, buf, np.float32(1.0), 0, 4 * 1024)
    n = 1 << 14
    for _ in range(8):
        kern.set_args(buf, np.int32(n))
        rt.queue.finish()
        t0 = time.perf_counter()
        ev = cl.enqueue_nd_range_kernel(rt.queue, kern, (1024,), None)
        ev.wait()
        wall = time.perf_counter() - t0
        if wall >= 2e-3:
            return (ev.profile.end - ev.profile.start) * 1e-9 >= 0.25 * wall
        n *= 4
    return True  # a device too fast to time this way: its clock is the better judge


class Runtime:
    """Everything clgemm holds for one device: its context and queues, built programs, a
    memory pool for outputs, and the memos of every layer above (`cached`), so that state
    lives and dies with the device object, not in module dicts.

    Two in-order queues. `user_queue` has no profiling: user-visible arrays live on it and
    the plain product's hot path launches on it (an enqueue on a profiling queue costs about
    twice the host time on NVIDIA's OpenCL). `queue` has profiling on: the stations that time
    or wait (the guard, approximate methods, tuner, harness, probes) work there, entering and
    leaving through `station()` where they touch user arrays."""

    def __init__(self, info: DeviceInfo) -> None:
        self.device = info
        self.cl_device = cl_device(info)
        self.context = cl.Context([self.cl_device])
        self.queue = cl.CommandQueue(
            self.context, properties=cl.command_queue_properties.PROFILING_ENABLE
        )
        self.user_queue = cl.CommandQueue(self.context)
        # Outputs of calls made without C: a freed array's buffer returns here, so a chain
        # of calls allocates nothing after its first round (cl.Buffer is allocated lazily, on
        # first use, which cost 75-430 us a call on the H100). Deferred, not immediate: the
        # immediate allocator writes to each new buffer on the queue, and on NVIDIA's OpenCL
        # that write waited for the queue's earlier kernels (a call without C then waited
        # for the device: tests/test_plan.py's hot-path test caught it on the H100).
        # One pool per queue: a block dropped while the kernels that use it are still queued
        # goes back to its pool at once, which is safe only if the next user of the block
        # enqueues behind them, on the same in-order queue. The hot path drops its scratch
        # unwaited on the user queue; a station (`queue`) called from another thread in
        # between could otherwise be handed that block and write it beside those kernels.
        with warnings.catch_warnings():  # pyopencl warns that a deferred allocator's
            warnings.simplefilter("ignore", UserWarning)  # out-of-memory shows at first use
            self.pool = cltools.MemoryPool(cltools.DeferredAllocator(self.context))
            self.station_pool = cltools.MemoryPool(cltools.DeferredAllocator(self.context))
        self._pool_lock = threading.Lock()  # allocations from several threads, one at a time
        # The plans of this device's products (clgemm.route decides them, matmul looks
        # them up): a workload rarely has more distinct products than this.
        self.plans = LruMemo(PLAN_CACHE_SIZE)
        # check=True calls whose verdicts are still to be read (guard/deferred.py: made on the
        # first such call; every call looks here first, so it is an attribute, not a memo)
        self.checks_open = None
        self._programs: dict[str, Built] = {}
        self._lock = threading.Lock()
        self._memo: dict = {}
        self._templates = LruMemo(256)  # empty()'s array fields per output shape
        self._memo_lock = threading.Lock()
        self._inline_ptx: bool | None = None
        self._profiling_ok: bool | None = None

    # ---- memos ----------------------------------------------------------------------
    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value under `key` for this device, made by `build()` once (kernels, probes,
        schedules, scratch). The lock is not held while building: a racing duplicate is
        discarded, the first one stored wins."""
        with self._memo_lock:
            value = self._memo.get(key, _MISSING)
        if value is _MISSING:
            value = build()
            with self._memo_lock:
                value = self._memo.setdefault(key, value)
        return value

    def forget(self, key: Hashable) -> None:
        """Drop a memo: it is made anew on its next use (a campaign that wants no memory of
        earlier calls)."""
        with self._memo_lock:
            self._memo.pop(key, None)

    def empty(self, *shape: int) -> cla.Array:
        """A new float32 array of `shape` (m x n, or batch x m x n) on the user queue, its
        memory from the pool. Made as a copy of a template array's fields with a fresh
        buffer: pyopencl's Array() spends ~50 us in numpy checks of the shape (measured on
        this project's CI host), the copy a few. Where a pyopencl release stores other fields
        than the template expects, the ordinary constructor serves."""
        templates = self._templates
        fields = templates.get(shape)
        if fields is None:
            with self._pool_lock:
                made = cla.empty(self.user_queue, shape, np.float32, allocator=self.pool)
            fields = dict(vars(made))
            if set(fields) != _ARRAY_FIELDS:
                fields = False
            else:  # the template keeps no buffer or events of the array it came from
                fields["base_data"], fields["events"] = None, None
            templates.put(shape, fields)
            return made
        if fields is False:
            with self._pool_lock:
                return cla.empty(self.user_queue, shape, np.float32, allocator=self.pool)
        out = cla.Array.__new__(cla.Array)
        out.__dict__.update(fields)
        size = math.prod(shape)
        if size:
            with self._pool_lock:
                out.base_data = self.pool.allocate(4 * size)
        else:
            out.base_data = None
        out.events = []
        return out

    def to_device(self, host: np.ndarray) -> cla.Array:
        """A device copy of a (contiguous float32) host array on the user queue, its memory
        from the pool."""
        with self._pool_lock:
            return cla.to_device(self.user_queue, host, allocator=self.pool)

    def finish(self) -> None:
        """Wait for everything enqueued on this device: a public call's product may sit on
        the user queue (the hot path) or the profiling queue (a station), so a benchmark that
        times calls waits on both (`queue.finish()` alone returns before a hot-path product
        has run)."""
        self.user_queue.finish()
        self.queue.finish()

    @contextmanager
    def station(self) -> Iterator[None]:
        """Work on `queue` that reads or writes user arrays: what the user queue holds is
        finished first, and everything enqueued here before leaving."""
        self.user_queue.finish()
        try:
            yield
        finally:
            self.queue.finish()

    # ---- timing ---------------------------------------------------------------------
    @property
    def profiling_ok(self) -> bool:
        """Whether this device's profiling clock measures kernels: checked once, on a kernel
        that runs a few milliseconds, against the host's wall time around it. Rusticl on
        llvmpipe reports ~1 ns for any kernel: its figures would be absurd."""
        if self._profiling_ok is None:
            self._profiling_ok = _probe_profiling(self)
        return self._profiling_ok

    @staticmethod
    def seconds(event: "cl.Event") -> float:
        """The profiling interval of an event of `queue` (the profiling queue), in seconds."""
        return (event.profile.end - event.profile.start) * 1e-9

    def timed(self, enqueue) -> float:
        """Seconds of the kernel that `enqueue()` launches (its event returned, or a list of
        the events of several on this in-order queue, the last last), waited for: its
        profiling interval (their sum), or where the device's profiling clock is implausible
        the host's wall time from enqueue to completion (launch latency included)."""
        t0 = time.perf_counter()
        got = enqueue()
        events = got if isinstance(got, list) else [got]
        events[-1].wait()
        wall = time.perf_counter() - t0
        if self.profiling_ok:
            return sum((ev.profile.end - ev.profile.start) * 1e-9 for ev in events)
        return wall

    # ---- building -------------------------------------------------------------------
    # Cached binaries carry a digest: a torn or corrupt file is rebuilt, never handed to the
    # driver (Rusticl aborts the whole process on a garbage binary).
    def cache_key(self, source: str, options: str) -> str:
        d = self.device
        text = "\x1f".join([source, options, d.platform, d.platform_version, d.name,
                            d.driver_version, d.version])
        return hashlib.sha256(text.encode()).hexdigest()

    def build(self, source: str, options: str = "", use_disk_cache: bool = True) -> Built:
        """Compile `source` (or load it from the memory or disk cache)."""
        return self._cached_build(self.cache_key(source, options), options,
                                  lambda: self._compile(source, options), use_disk_cache)

    def build_patched(self, source: str, options: str, patch, tag: str,
                      use_disk_cache: bool = True) -> Built:
        """`source` compiled, its program binary (PTX on NVIDIA) rewritten by `patch`
        (bytes -> bytes), and that binary built into the program returned; cached like
        `build` under the source, the options and `tag` (the patch's name and version).
        A patch that raises, or a driver that refuses the binary, raises CompileError."""

        def make() -> "cl.Program":
            base = self.build(source, options, use_disk_cache=use_disk_cache).program
            try:
                binary = patch(bytes(base.get_info(cl.program_info.BINARIES)[0]).rstrip(b"\x00"))
                program = cl.Program(self.context, [self.cl_device], [binary + b"\x00"])
                program.build()
            except (ValueError, cl.Error) as exc:
                raise CompileError(f"the patched program ({tag}) did not build on "
                                   f"{self.device.name!r}: {str(exc)[:600]}") from exc
            return program

        # the patched binary is built without the source's options, from disk as from `make`
        return self._cached_build(self.cache_key(source + "\x1e" + tag, options), "", make,
                                  use_disk_cache)

    def _cached_build(self, key: str, binary_options: str, make, use_disk_cache: bool) -> Built:
        """The program under `key`: from memory, else from its sealed disk entry (built with
        `binary_options`), else `make()` (then stored on disk)."""
        with self._lock:
            if key in self._programs:
                return self._programs[key]
        start = time.perf_counter()
        path = cache_dir() / f"{key}.bin"
        program = None
        from_cache = False
        if use_disk_cache and path.exists():
            try:
                binary = _unseal(path.read_bytes(), key)
                if binary is not None:
                    program = cl.Program(self.context, [self.cl_device], [binary])
                    program.build(options=binary_options)
                    from_cache = True
            except (cl.Error, OSError):
                program = None  # stale entry: rebuild below
        if program is None:
            program = make()
            if use_disk_cache:
                self._store(path, program)
        built = Built(program, BuildInfo(time.perf_counter() - start, from_cache, key))
        with self._lock:
            self._programs[key] = built
        return built

    def _compile(self, source: str, options: str) -> "cl.Program":
        # pyopencl's own cache is bypassed on purpose: ours is keyed on the driver too,
        # and cold build times must be measurable.
        raw = cl._cl._Program(self.context, source)
        try:
            with warnings.catch_warnings():  # compiler chatter is not the user's business
                warnings.simplefilter("ignore", cl.CompilerWarning)
                raw.build(options.encode(), [self.cl_device])
        except cl.Error as exc:
            try:
                log = raw.get_build_info(self.cl_device, cl.program_build_info.LOG)
            except cl.Error:
                log = ""
            text = f"{exc} {log}"
            if "unknown target CPU" in text:
                # PoCL's LLVM does not know this host CPU (seen: PoCL 3.0-rc2 with LLVM 14
                # on an AMD family-26 EPYC): no kernel of anyone's compiles on this device.
                raise CompileError(
                    f"{self.device.name!r} cannot compile any OpenCL kernel: its compiler's "
                    "LLVM does not know this host CPU ('unknown target CPU'). Use another "
                    "OpenCL device: e.g. Rusticl on llvmpipe (Debian: `apt install "
                    "mesa-opencl-icd`, then RUSTICL_ENABLE=llvmpipe CLGEMM_DEVICE=rusticl), "
                    "or a PoCL built with a newer LLVM.", log=log) from exc
            raise CompileError(
                f"the OpenCL compiler of {self.device.name!r} rejected a generated kernel: "
                f"{exc}. Try another schedule, or report the log (CompileError.log) "
                "with `clgemm devices` output.",
                log=log,
            ) from exc
        return cl.Program(raw)

    def _store(self, path: Path, program: "cl.Program") -> None:
        try:
            binary = program.get_info(cl.program_info.BINARIES)[0]
            if not binary:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(_seal(bytes(binary), path.stem))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)  # a full disk leaves no .tmp per run
                raise
        except (OSError, cl.Error):
            pass  # a cache that cannot be written only costs a compile next time

    # ---- memory ---------------------------------------------------------------------
    def check_alloc(self, nbytes: int, what: str) -> None:
        d = self.device
        if nbytes > d.max_alloc_bytes:
            raise OutOfDeviceMemoryError(
                f"{what} needs {nbytes / 2**20:.1f} MiB in one buffer but "
                f"{d.name!r} allows at most {d.max_alloc_bytes / 2**20:.1f} MiB per buffer; "
                "split the product into blocks or use a device with more memory"
            )

    def pool_of(self, queue: "cl.CommandQueue") -> "cltools.MemoryPool":
        """The pool whose blocks serve work on `queue`: the user queue's (outputs, the hot
        path's scratch) or the stations' (every other queue of the runtime's: staging of
        numpy operands, reported calls), so that a block still in use by queued kernels is
        only ever handed to work queued behind them."""
        return self.pool if queue is self.user_queue else self.station_pool

    def pooled(self, nbytes: int, what: str, queue: "cl.CommandQueue"
               ) -> "cltools.PooledBuffer":
        """Device memory for work on `queue`, from that queue's pool (returned to it when
        dropped): staging of numpy operands, call after call, allocates nothing new."""
        self.check_alloc(max(nbytes, 4), what)
        pool = self.pool_of(queue)
        try:
            with self._pool_lock:
                return pool.allocate(max(nbytes, 4))
        except cl.MemoryError as exc:
            raise OutOfDeviceMemoryError(
                f"could not allocate {nbytes / 2**20:.1f} MiB for {what} on "
                f"{self.device.name!r} ({exc}); free device memory or use smaller blocks"
            ) from exc

    def buffer(self, nbytes: int, what: str = "buffer", hostbuf=None) -> "cl.Buffer":
        self.check_alloc(max(nbytes, 4), what)
        flags = cl.mem_flags.READ_WRITE
        if hostbuf is not None:
            flags |= cl.mem_flags.COPY_HOST_PTR
        try:
            return cl.Buffer(self.context, flags, size=max(nbytes, 4), hostbuf=hostbuf)
        except cl.MemoryError as exc:
            raise OutOfDeviceMemoryError(
                f"could not allocate {nbytes / 2**20:.1f} MiB for {what} on "
                f"{self.device.name!r} ({exc}); free device memory or use smaller blocks"
            ) from exc

    # ---- capabilities ---------------------------------------------------------------
    def probe_inline_ptx(self) -> bool:
        """Whether this device runs inline PTX from OpenCL C (NVIDIA only); cached."""
        if self._inline_ptx is None:
            self._inline_ptx = False
            if self.device.is_nvidia:
                src = (
                    "__kernel void probe(__global float* x) {"
                    " float v = x[0]; float r;"
                    ' asm volatile("add.f32 %0, %1, %1;" : "=f"(r) : "f"(v));'
                    " x[0] = r; }"
                )
                try:
                    built = self.build(src)
                    buf = self.buffer(4, hostbuf=np.array([1.5], np.float32))
                    built.kernel("probe")(self.queue, (1,), (1,), buf)
                    out = np.empty(1, np.float32)
                    cl.enqueue_copy(self.queue, out, buf)
                    self._inline_ptx = bool(out[0] == 3.0)
                except (CompileError, cl.Error):
                    self._inline_ptx = False
        return self._inline_ptx


_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()


def get_runtime(device: "DeviceInfo | int | str | None" = None) -> Runtime:
    """The one Runtime of a device (created on first use)."""
    info = get_device(device)
    key = f"{info.index}:{info.fingerprint}"
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime(info)
        return _runtimes[key]


_by_context: dict[int, Runtime] = {}


def runtime_of(x, device=None) -> Runtime:
    """The Runtime whose context holds device array `x` (or the one `device` names)."""
    if device is not None:
        return get_runtime(device)
    rt = _by_context.get(x.context.int_ptr)
    if rt is not None:
        return rt
    for d in devices():
        rt = get_runtime(d)
        if rt.context == x.context:
            _by_context[x.context.int_ptr] = rt
            return rt
    raise ShapeError("device arrays must come from clgemm.to_device (unknown OpenCL context)")
