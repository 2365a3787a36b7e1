"""Device-side helpers of the guard: matrix views, scratch memory, the statistics passes."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools

from ..plan import Operand
from ..runtime import Runtime
from . import kernels as K

S_SUM, S_ABS, S_SQ = 1, 2, 4


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
    """Per-runtime state: built kernels, a memory pool, cached ones-vectors."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queue = rt.queue
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self._kernels: dict = {}
        self._ones: cla.Array | None = None
        self._lock = threading.Lock()

    def empty(self, n: int) -> cla.Array:
        return cla.empty(self.queue, (max(int(n), 1),), np.float32, allocator=self.pool)

    def ones(self, n: int) -> cla.Array:
        with self._lock:
            if self._ones is None or self._ones.size < n:
                size = max(n, 1024)
                self._ones = cla.to_device(self.queue, np.ones(size, np.float32))
            return self._ones

    def kernel(self, name: str, row_stats: int = 0, col_stats: int = 0) -> "cl.Kernel":
        key = (name, row_stats, col_stats)
        with self._lock:
            kern = self._kernels.get(key)
        if kern is None:
            built = self.rt.build(K.stats_source(row_stats, col_stats), options="")
            kern = built.kernel(name)
            with self._lock:
                self._kernels[key] = kern
        return kern

    # ---- statistics of a stored matrix -------------------------------------------------
    def stored_stats(self, buf, off: int, ld: int, R: int, S: int, row_stats: int,
                     col_stats: int, vr=None, vra=None, vc=None, vca=None):
        """Stored row stats and column stats: lists [s, a, q] of device vectors (or None)."""
        ones_r = self.ones(max(R, S))
        vr = ones_r if vr is None else vr
        vra = ones_r if vra is None else vra
        vc = ones_r if vc is None else vc
        vca = ones_r if vca is None else vca
        nbx = -(-S // K.TX)
        nby = -(-R // K.TILE_ROWS)
        prow = self.empty(3 * nbx * R) if row_stats else self.empty(1)
        pcol = self.empty(3 * nby * S) if col_stats else self.empty(1)
        kern = self.kernel("guard_stats", row_stats, col_stats)
        with self._lock:
            kern.set_args(np.int32(R), np.int32(S), buf, np.int32(ld), np.int32(off),
                          vr.data, vra.data, vc.data, vca.data, prow.data, pcol.data)
            cl.enqueue_nd_range_kernel(self.queue, kern, (nbx * K.TX, nby * K.TY),
                                       (K.TX, K.TY))
        rows = self._finalize(prow, R, nbx, row_stats) if row_stats else None
        cols = self._finalize(pcol, S, nby, col_stats) if col_stats else None
        return rows, cols

    def _finalize(self, part: cla.Array, L: int, nb: int, mask: int) -> cla.Array:
        out = [self.empty(L) if (mask >> st) & 1 else None for st in range(3)]
        dummy = next(o for o in out if o is not None)
        kern = self.kernel("guard_finalize")
        local = 64
        with self._lock:
            kern.set_args(np.int32(L), np.int32(nb), np.int32(mask), part.data,
                          *[(o if o is not None else dummy).data for o in out])
            cl.enqueue_nd_range_kernel(self.queue, kern, (-(-L // local) * local, 3),
                                       (local, 1))
        return out

    def view_stats(self, v: View, row_stats: int = 0, col_stats: int = 0,
                   row_w=None, col_w=None):
        """Logical row stats ([s, a, q], each a device vector over rows, None where not asked: sum_j x_ij w_j, sum_j |x_ij| wa_j, sum_j x_ij^2) and
        column stats (3 x cols) of a view; row_w = (w, wa) over logical columns, col_w over
        logical rows (None: ones)."""
        if v.rows == 0 or v.cols == 0:
            return ([self._zeros(v.rows)] * 3 if row_stats else None,
                    [self._zeros(v.cols)] * 3 if col_stats else None)
        rw = row_w or (None, None)
        cw = col_w or (None, None)
        if not v.transposed:
            r, c = self.stored_stats(v.buffer, v.offset, v.ld, v.rows, v.cols, row_stats,
                                     col_stats, vr=cw[0], vra=cw[1], vc=rw[0], vca=rw[1])
            return r, c
        c, r = self.stored_stats(v.buffer, v.offset, v.ld, v.cols, v.rows, col_stats,
                                 row_stats, vr=rw[0], vra=rw[1], vc=cw[0], vca=cw[1])
        return r, c

    def _zeros(self, n: int) -> cla.Array:
        z = self.empty(n)
        z.fill(np.float32(0))
        return z

    def recompute(self, rows: np.ndarray, cols: np.ndarray, k: int, alpha: float,
                  beta: float, a: View, b: View, c: View, c_old: View | None) -> None:
        """C[i, j] = alpha * op(A)[i, :] . op(B)[:, j] + beta * C_old[i, j] for listed (i, j).
        `c` and `c_old` must not be transposed views."""
        n = len(rows)
        if n == 0:
            return
        assert not c.transposed and (c_old is None or not c_old.transposed)
        r_d = cla.to_device(self.queue, np.asarray(rows, np.int32), allocator=self.pool)
        c_d = cla.to_device(self.queue, np.asarray(cols, np.int32), allocator=self.pool)
        kern = self.kernel("guard_recompute")
        old = c_old if c_old is not None else c
        with self._lock:
            kern.set_args(np.int32(n), r_d.data, c_d.data, np.int32(k), np.float32(alpha),
                          np.float32(beta), a.buffer, np.int32(a.ld), np.int32(a.offset),
                          np.int32(a.transposed), b.buffer, np.int32(b.ld), np.int32(b.offset),
                          np.int32(b.transposed), c.buffer, np.int32(c.ld), np.int32(c.offset),
                          old.buffer, np.int32(old.ld), np.int32(old.offset))
            local = 64
            cl.enqueue_nd_range_kernel(self.queue, kern, (-(-n // local) * local,), (local,))
        self.queue.finish()


_devices: dict[int, GuardDevice] = {}
_devices_lock = threading.Lock()


def guard_device(rt: Runtime) -> GuardDevice:
    with _devices_lock:
        gd = _devices.get(id(rt))
        if gd is None:
            gd = _devices[id(rt)] = GuardDevice(rt)
        return gd
