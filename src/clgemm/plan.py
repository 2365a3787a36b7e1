"""From a product request to a launched kernel: storage mapping, kernel choice, launch.

`Operand` describes where a matrix lives on the device (buffer, offset, leading dimension,
whether it is stored transposed). `GemmKernel` is one built kernel (schedule + layout) that
can be enqueued for any M, N, K.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from .errors import ShapeError
from .kernels.gemm import KERNEL_NAME, Layout, render, source_lines
from .runtime import BuildInfo, Runtime
from .schedule import DeviceLimits, Schedule, SearchSpace

_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Operand:
    """A matrix in a device buffer, row-major storage with leading dimension `ld` (elements).

    `transposed` means the logical operand is the transpose of what is stored.
    """

    buffer: "cl.Buffer"
    offset: int  # elements
    ld: int  # elements between consecutive stored rows
    transposed: bool


def device_limits(rt: Runtime) -> DeviceLimits:
    d = rt.device
    return DeviceLimits(
        max_work_group_size=d.max_work_group_size,
        local_mem_bytes=d.local_mem_bytes,
        cpu_device=int(d.type == "CPU"),
    )


_spaces: dict[str, SearchSpace] = {}


def search_space(rt: Runtime) -> SearchSpace:
    """The device's valid schedules (built once per device: parsing the rules is not free)."""
    key = rt.device.fingerprint
    if key not in _spaces:
        _spaces[key] = SearchSpace(device_limits(rt))
    return _spaces[key]


class GemmKernel:
    """A compiled kernel for one schedule and layout on one device."""

    def __init__(self, rt: Runtime, schedule: Schedule, layout: Layout,
                 fault_injection: bool = False) -> None:
        search_space(rt).check(schedule)
        self.rt = rt
        self.schedule = schedule
        self.layout = layout
        self.source = render(schedule, layout, fault_injection=fault_injection)
        self.fault_injection = fault_injection
        built = rt.build(self.source, options="-cl-mad-enable")
        self.build_info: BuildInfo = built.info
        self._kernel = built.kernel(KERNEL_NAME)
        # Declared once so each launch packs plain Python numbers (set_args is per call).
        scalar = [np.int32, np.int32, np.int32, np.float32, np.float32,
                  None, np.int32, np.int32, None, np.int32, np.int32, None, np.int32, np.int32]
        if fault_injection:
            scalar.append(np.int32)
        self._kernel.set_scalar_arg_dtypes(scalar)
        self._lock = threading.Lock()  # kernel arguments are shared state

    @property
    def source_lines(self) -> int:
        return source_lines(self.source)

    def global_size(self, m: int, n: int) -> tuple[int, int]:
        s = self.schedule
        groups_n = -(-n // s.tile_n)
        groups_m = -(-m // s.tile_m)
        return (groups_n * s.wg_n, groups_m * s.wg_m)

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, queue=None, wait_for=None,
                fault_at: int = -1) -> "cl.Event":
        """Enqueue C = alpha * op(A) op(B) + beta * C; returns the kernel's event."""
        if a.transposed != self.layout.trans_a or b.transposed != self.layout.trans_b:
            raise ShapeError("operand layout does not match the kernel's; this is a clgemm bug")
        check_index_range(m, n, k)
        queue = queue or self.rt.queue
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset]
        if self.fault_injection:
            args.append(fault_at)
        s = self.schedule
        with self._lock:
            self._kernel.set_args(*args)
            return cl.enqueue_nd_range_kernel(
                queue, self._kernel, self.global_size(m, n), (s.wg_n, s.wg_m),
                wait_for=wait_for,
            )


def check_index_range(m: int, n: int, k: int) -> None:
    """Every kernel family indexes M, N and K with 32-bit ints."""
    for name, value in (("M", m), ("N", n), ("K", k)):
        if value > _INT_MAX:
            raise ShapeError(f"{name}={value} exceeds 2**31-1, which clgemm kernels index")


def layout_for(schedule: Schedule, a: Operand, b: Operand, c: Operand) -> Layout:
    """The kernel layout that fits these operands (vector casts only where aligned)."""

    def aligned(op: Operand, vec: int) -> bool:
        return vec > 1 and op.ld % vec == 0 and op.offset % vec == 0

    return Layout(
        trans_a=a.transposed,
        trans_b=b.transposed,
        aligned_a=aligned(a, schedule.vec_a),
        aligned_b=aligned(b, schedule.vec_b),
        aligned_c=aligned(c, schedule.vec_c),
    )


_kernels: dict[tuple, object] = {}
_kernels_lock = threading.Lock()


def cached_kernel(key: tuple, build):
    """The kernel under `key`, built by `build()` once per process (every kernel family's
    memo: the lock is not held while compiling, a racing duplicate build is discarded)."""
    with _kernels_lock:
        kernel = _kernels.get(key)
    if kernel is None:
        kernel = build()
        with _kernels_lock:
            kernel = _kernels.setdefault(key, kernel)
    return kernel


def get_kernel(rt: Runtime, schedule: Schedule, layout: Layout,
               fault_injection: bool = False) -> GemmKernel:
    """The kernel for (device, schedule, layout), built once per process."""
    return cached_kernel(("fp32", id(rt), schedule, layout, fault_injection),
                         lambda: GemmKernel(rt, schedule, layout, fault_injection))
