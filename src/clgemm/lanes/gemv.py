"""The small-rows lane: products with m or n at most MAX_ROWS (a decode step: a few tokens
against a weight matrix). The large operand streams once, coalesced; the few rows ride along
in registers (kernels/gemv.py). A product with n small is run as its transpose, C^T = op(B)^T
op(A)^T, so the kernels only meet a small number of rows R.
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from ..kernels.gemv import MAX_ROWS, GemvSchedule, render
from ..operands import Operand
from ..runtime import BuildInfo, Runtime

_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32,
          None, np.int64, np.int64, np.int64, None, np.int64, np.int64,
          None, np.int64, np.int64, np.int64]


def _strides(x: Operand) -> tuple[int, int]:
    """(row stride, column stride) in elements of the logical operand."""
    return (1, x.ld) if x.transposed else (x.ld, 1)


def fits(rt: Runtime, s: GemvSchedule) -> bool:
    """Whether the device launches the lane's work-groups and holds its local memory."""
    d = rt.device
    items = max(s.dot_group, s.axpy_cols * s.axpy_slices)
    return items <= d.max_work_group_size and 4 * MAX_ROWS * items <= d.local_mem_bytes


class GemvLane:
    """The exact contract for products with at most MAX_ROWS rows or columns."""

    name = "gemv"

    def __init__(self, rt: Runtime, schedule: GemvSchedule = GemvSchedule()) -> None:
        self.rt = rt
        self.schedule = schedule
        self._kernels: dict[tuple[str, bool], cl.Kernel] = {}
        self._lock = threading.Lock()
        self.build_info: BuildInfo | None = None  # the last program built (or loaded)
        self._kernel("gemv_axpy", False)  # a compile error shows when the lane is made

    def _kernel(self, name: str, aligned: bool) -> "cl.Kernel":
        """The kernel `name` of the program for `aligned` B columns (built once each)."""
        key = (name, aligned)
        kern = self._kernels.get(key)
        if kern is None:
            built = self.rt.build(render(self.schedule, aligned), options="-cl-mad-enable")
            self.build_info = built.info
            kern = built.kernel(name)
            kern.set_scalar_arg_dtypes(_TYPES)
            kern = self._kernels.setdefault(key, kern)
        return kern

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue", info=None) -> "cl.Event":
        (a_rs, a_ks), (b_ks, b_ns), (c_rs, c_ns) = _strides(a), _strides(b), _strides(c)
        rows, cols = m, n
        A, B = (a, a_rs, a_ks), (b, b_ks, b_ns)
        if m > MAX_ROWS:  # n is the small one: C^T = op(B)^T op(A)^T
            rows, cols = n, m
            A, B = (b, b_ns, b_ks), (a, a_ks, a_rs)
            c_rs, c_ns = c_ns, c_rs
        if rows > MAX_ROWS:
            raise ValueError(f"the gemv lane takes at most {MAX_ROWS} rows or columns, "
                             f"not {m}x{n}; this is a clgemm bug")
        (x, x_rs, x_ks), (y, y_ks, y_ns) = A, B
        s = self.schedule
        if y_ks == 1:
            aligned = s.dot_vec > 1 and y.offset % s.dot_vec == 0 and y_ns % s.dot_vec == 0
            kern = self._kernel("gemv_dot", aligned)
            groups = -(-cols // s.dot_cols)
            gsize, lsize, y_stride = (groups * s.dot_items, s.dot_cols), (s.dot_items, s.dot_cols), y_ns
        else:
            kern = self._kernel("gemv_axpy", False)
            lsize = (s.axpy_cols, s.axpy_slices)
            gsize, y_stride = (-(-cols // s.axpy_cols) * s.axpy_cols, s.axpy_slices), y_ks
        with self._lock:
            kern.set_args(rows, cols, k, alpha, beta, x.buffer, x.offset, x_rs, x_ks,
                          y.buffer, y.offset, y_stride, c.buffer, c.offset, c_rs, c_ns)
            return cl.enqueue_nd_range_kernel(queue, kern, gsize, lsize)
