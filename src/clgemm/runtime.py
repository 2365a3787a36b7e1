"""One context and queue per device, buffers, and a build cache on disk.

The cache key is the source hash + build options + device + driver version, so a second
process loads a binary instead of compiling. Binaries are written atomically (temp + rename),
so a killed process never leaves a torn entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from .device import DeviceInfo, cl_device, get_device
from .errors import CompileError, OutOfDeviceMemoryError

import numpy as np
import pyopencl as cl


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
    """Everything clgemm holds for one device."""

    def __init__(self, info: DeviceInfo) -> None:
        self.device = info
        self.cl_device = cl_device(info)
        self.context = cl.Context([self.cl_device])
        self.queue = cl.CommandQueue(
            self.context, properties=cl.command_queue_properties.PROFILING_ENABLE
        )
        self._programs: dict[str, Built] = {}
        self._lock = threading.Lock()
        self._inline_ptx: bool | None = None
        self._profiling_ok: bool | None = None

    # ---- timing ---------------------------------------------------------------------
    @property
    def profiling_ok(self) -> bool:
        """Whether this device's profiling clock measures kernels: checked once, on a kernel
        that runs a few milliseconds, against the host's wall time around it. Rusticl on
        llvmpipe reports ~1 ns for any kernel: its figures would be absurd."""
        if self._profiling_ok is None:
            self._profiling_ok = _probe_profiling(self)
        return self._profiling_ok

    def timed(self, enqueue) -> float:
        """Seconds of the kernel that `enqueue()` launches (its event returned), waited for:
        its profiling interval, or where the device's profiling clock is implausible the
        host's wall time from enqueue to completion (launch latency included)."""
        t0 = time.perf_counter()
        ev = enqueue()
        ev.wait()
        wall = time.perf_counter() - t0
        if self.profiling_ok:
            return (ev.profile.end - ev.profile.start) * 1e-9
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
