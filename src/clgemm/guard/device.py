"""Device-side helpers of the guard: matrix views, scratch memory, page-locked host arrays,
the low-rank path's small kernels."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools

from ..lanes.fp32 import BoundArgs
from ..lanes.recording import Fresh, launch
from ..operands import Operand
from ..runtime import Runtime
from . import kernels as K

_RANDN_TYPES = [np.int32, np.uint32, np.uint32, None, np.int32]


@dataclass(frozen=True)
class View:
    """A logical rows x cols matrix in a device buffer (row-major storage, or its transpose)."""

    buffer: "cl.Buffer"
    offset: int
    ld: int
    transposed: bool  # the logical matrix is the transpose of the stored one
    rows: int
    cols: int

    @classmethod
    def of(cls, op: Operand, rows: int, cols: int) -> "View":
        return cls(op.buffer, op.offset, op.ld, op.transposed, rows, cols)

    @property
    def stored_shape(self) -> tuple[int, int]:
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    def operand(self) -> Operand:
        return Operand(self.buffer, self.offset, self.ld, self.transposed)

    def span_elems(self) -> int:
        r, s = self.stored_shape
        return 0 if r == 0 or s == 0 else (r - 1) * self.ld + s


class GuardDevice:
    """Per-runtime state: built kernels, a memory pool, the accumulation type."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queue = rt.queue
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self._kernels: dict = {}
        self._randn: BoundArgs | None = None  # guard_randn, its arguments as last bound
        self._lock = threading.Lock()
        self.fp64 = "cl_khr_fp64" in (getattr(rt.device, "extensions", ()) or ())
        self.rdtype = np.float64 if self.fp64 else np.float32
        self.rsize = 8 if self.fp64 else 4
        # The check's block sums and expected sums in the rows form (abft_kernels: a
        # work-item walks rows with vector loads) on a CPU device with double sums; a GPU, and
        # a device with float sums (whose calibration and tails were measured with the
        # work-group kernels: Rusticl), keep the work-group form, and a GPU's program does not
        # hold the rows form's kernels. $CLGEMM_ABFT_FORM = rows or groups forces one (A/B
        # campaigns).
        forced = os.environ.get("CLGEMM_ABFT_FORM", "")
        on_cpu = getattr(rt.device, "type", "") == "CPU"
        self.rows_built = self.fp64 and (on_cpu or forced == "rows")
        self.rows_form = self.rows_built and forced != "groups"
        self._side: "cl.CommandQueue | None" = None

    @property
    def side_queue(self) -> "cl.CommandQueue":
        """A second in-order queue for work that depends on the operands only (the check's
        expected sums): the device may run it beside the product, whose float32 or tensor
        pipes it does not use (the expected sums run in double)."""
        with self._lock:
            if self._side is None:
                self._side = cl.CommandQueue(
                    self.rt.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
            return self._side

    def raw(self, nbytes: int):
        return self.pool.allocate(max(int(nbytes), 4))

    def kernel(self, name: str) -> "cl.Kernel":
        with self._lock:
            kern = self._kernels.get(name)
        if kern is None:
            kern = self.rt.build(K.SOURCE, options="").kernel(name)
            with self._lock:
                self._kernels[name] = kern
        return kern

    # ---- small helpers of the low-rank path --------------------------------------------
    def randn(self, out: cla.Array, seed: int) -> None:
        self.randn_into(out.base_data, out.offset // 4, out.size, seed)

    def randn_into(self, buffer: "cl.Buffer", offset: int, n: int, seed: int,
                   queue: "cl.CommandQueue | None" = None,
                   reseed: "Callable[[], int] | None" = None) -> "cl.Event":
        """n standard normal variates into `buffer` from element `offset`, on `queue` (the
        guard's by default). `reseed`: where this launch is recorded (lanes/recording.py), the
        recording's launches draw their seed from it (fresh variates every call)."""
        queue = queue or self.queue
        kern = self.kernel("guard_randn") if self._randn is None else None  # takes the lock
        with self._lock:
            if self._randn is None:
                self._randn = BoundArgs(kern, _RANDN_TYPES)
        local = 128
        fresh = None if reseed is None else Fresh((1, 2), lambda: _seed_words(reseed()))
        # only the seed changes in a chain of one shape (the judge's probes): the other
        # arguments stay bound on the hot path (the user queue)
        return launch(self._randn, self._lock, queue, (n, *_seed_words(seed), buffer, offset),
                      (-(-((n + 1) // 2) // local) * local,), (local,),
                      keep=queue is self.rt.user_queue, fresh=fresh)


def _seed_words(seed: int) -> tuple[int, int]:
    """A 64-bit seed as the kernel's two 32-bit words (low, high)."""
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF


def guard_device(rt: Runtime) -> GuardDevice:
    return rt.cached("guard device", lambda: GuardDevice(rt))
