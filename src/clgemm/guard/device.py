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


def pinned_host(rt: Runtime, shape, dtype) -> tuple[np.ndarray, "cl.Buffer"]:
    """A host array in page-locked memory (a mapped ALLOC_HOST_PTR buffer, mapped for good)
    and its buffer, which the caller keeps as long as the array: NVIDIA's OpenCL stages a
    read into pageable memory through an extra copy, ~100 us per small read."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.ALLOC_HOST_PTR,
                    size=max(count, 1) * dtype.itemsize)
    host, _ = cl.enqueue_map_buffer(rt.queue, buf, cl.map_flags.READ | cl.map_flags.WRITE, 0,
                                    (max(count, 1),), dtype, is_blocking=True)
    return host[:count].reshape(shape), buf


@dataclass(frozen=True)
class Vec:
    """A device vector of `real` (the guard's accumulation type) at an element offset of a
    buffer; buffer None: all zeros."""

    buffer: object
    offset: int
    n: int


class Sink:
    """One device buffer that collects every checksum vector of a check, read back once."""

    def __init__(self, gd: "GuardDevice", cap: int) -> None:
        self.gd = gd
        self.cap = max(int(cap), 1)
        self.buf = gd.raw(self.cap * gd.rsize)
        self.used = 0
        self.host: np.ndarray | None = None

    def alloc(self, n: int) -> Vec:
        off = self.used
        self.used += max(int(n), 1)
        if self.used > self.cap:
            raise RuntimeError("guard sink overflow (clgemm bug)")
        return Vec(self.buf, off, int(n))

    def read(self) -> None:
        host = np.empty(max(self.used, 1), self.gd.rdtype)
        cl.enqueue_copy(self.gd.queue, host, self.buf, is_blocking=True)
        self.host = host

    def get(self, v: Vec | None, n: int) -> np.ndarray:
        if v is None or v.buffer is None or n == 0:
            return np.zeros(n)
        if self.host is None:
            self.read()
        return self.host[v.offset:v.offset + n].astype(np.float64)


class GuardDevice:
    """Per-runtime state: built kernels, a memory pool, cached ones-vectors."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queue = rt.queue
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self._kernels: dict = {}
        self._ones = None
        self._ones_n = 0
        self._lock = threading.Lock()
        self.fp64 = "cl_khr_fp64" in (getattr(rt.device, "extensions", ()) or ())
        self.rdtype = np.float64 if self.fp64 else np.float32
        self.rsize = 8 if self.fp64 else 4

    def raw(self, nbytes: int):
        return self.pool.allocate(max(int(nbytes), 4))

    def empty(self, n: int) -> cla.Array:
        return cla.empty(self.queue, (max(int(n), 1),), np.float32, allocator=self.pool)

    def ones(self, n: int) -> Vec:
        with self._lock:
            if self._ones is None or self._ones_n < n:
                size = max(n, 1024)
                host = np.ones(size, self.rdtype)
                self._ones = cl.Buffer(self.rt.context,
                                       cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                                       hostbuf=host)
                self._ones_n = size
            return Vec(self._ones, 0, n)

    def kernel(self, name: str, row_stats: int = 0, col_stats: int = 0) -> "cl.Kernel":
        key = (name, row_stats, col_stats)
        with self._lock:
            kern = self._kernels.get(key)
        if kern is None:
            built = self.rt.build(K.stats_source(row_stats, col_stats, self.fp64), options="")
            kern = built.kernel(name)
            with self._lock:
                self._kernels[key] = kern
        return kern

    # ---- statistics of a stored matrix -------------------------------------------------
    def stored_stats(self, sink: Sink, buf, off: int, ld: int, R: int, S: int,
                     row_stats: int, col_stats: int, vr=None, vra=None, vc=None, vca=None):
        """Stored row stats and column stats: lists [s, a, q] of Vecs in `sink` (or None)."""
        ones = self.ones(max(R, S))
        vr, vra, vc, vca = (ones if v is None else v for v in (vr, vra, vc, vca))
        nbx = -(-S // K.TX)
        nby = -(-R // K.TILE_ROWS)
        prow = self.raw(3 * nbx * R * self.rsize) if row_stats else self.raw(self.rsize)
        pcol = self.raw(3 * nby * S * self.rsize) if col_stats else self.raw(self.rsize)
        kern = self.kernel("guard_stats", row_stats, col_stats)
        i32 = np.int32
        with self._lock:
            kern.set_args(i32(R), i32(S), buf, i32(ld), i32(off),
                          vr.buffer, i32(vr.offset), vra.buffer, i32(vra.offset),
                          vc.buffer, i32(vc.offset), vca.buffer, i32(vca.offset), prow, pcol)
            cl.enqueue_nd_range_kernel(self.queue, kern, (nbx * K.TX, nby * K.TY),
                                       (K.TX, K.TY))
        rows = self._finalize(sink, prow, R, nbx, row_stats) if row_stats else None
        cols = self._finalize(sink, pcol, S, nby, col_stats) if col_stats else None
        return rows, cols

    def _finalize(self, sink: Sink, part, L: int, nb: int, mask: int) -> list:
        out = [sink.alloc(L) if (mask >> st) & 1 else None for st in range(3)]
        offs = [o.offset if o is not None else 0 for o in out]
        kern = self.kernel("guard_finalize")
        local = 64
        with self._lock:
            kern.set_args(np.int32(L), np.int32(nb), np.int32(mask), part, sink.buf,
                          *[np.int32(o) for o in offs])
            cl.enqueue_nd_range_kernel(self.queue, kern, (-(-L // local) * local, 3),
                                       (local, 1))
        return out

    def view_stats(self, sink: Sink, v: View, row_stats: int = 0, col_stats: int = 0,
                   row_w=None, col_w=None):
        """Logical row stats ([s, a, q] Vecs over rows, None where not asked: sum_j x_ij w_j,
        sum_j |x_ij| wa_j, sum_j x_ij^2) and column stats of a view; row_w = (w, wa) over
        logical columns, col_w over logical rows (None: ones)."""
        if v.rows == 0 or v.cols == 0:
            z = Vec(None, 0, 0)
            return ([z] * 3 if row_stats else None, [z] * 3 if col_stats else None)
        rw = row_w or (None, None)
        cw = col_w or (None, None)
        if not v.transposed:
            r, c = self.stored_stats(sink, v.buffer, v.offset, v.ld, v.rows, v.cols, row_stats,
                                     col_stats, vr=cw[0], vra=cw[1], vc=rw[0], vca=rw[1])
            return r, c
        c, r = self.stored_stats(sink, v.buffer, v.offset, v.ld, v.cols, v.rows, col_stats,
                                 row_stats, vr=rw[0], vra=rw[1], vc=cw[0], vca=cw[1])
        return r, c

    # ---- small helpers of the low-rank path --------------------------------------------
    def randn(self, out: cla.Array, seed: int) -> None:
        n = out.size
        kern = self.kernel("guard_randn")
        local = 128
        with self._lock:
            kern.set_args(np.int32(n), np.uint32(seed & 0xFFFFFFFF),
                          np.uint32((seed >> 32) & 0xFFFFFFFF), out.base_data,
                          np.int32(out.offset // 4))
            cl.enqueue_nd_range_kernel(self.queue, kern, (-(-((n + 1) // 2) // local) * local,),
                                       (local,))

    def sum_slabs(self, part, L: int, nb: int, stride: int, out_buf, out_off: int) -> None:
        kern = self.kernel("guard_sum_slabs")
        local = 128
        with self._lock:
            kern.set_args(np.int32(L), np.int32(nb), np.int32(stride), part, out_buf,
                          np.int32(out_off))
            cl.enqueue_nd_range_kernel(self.queue, kern, (-(-L // local) * local,), (local,))

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
