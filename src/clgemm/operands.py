"""Where a product's operands live: host arrays staged to the device without repacking when
their strides allow, device arrays used in place, and C read back. Every station on the road
(the plain product, ABFT's checked product, the approximate methods) stages through here."""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import staging
from .errors import OutOfDeviceMemoryError, ShapeError
from .runtime import Runtime

_INT_MAX = 2**31 - 1


class Operand(NamedTuple):
    """A matrix in a device buffer, row-major storage with leading dimension `ld` (elements).

    `transposed` means the logical operand is the transpose of what is stored. (A named
    tuple: every call on device arrays makes three, and a frozen dataclass costs ~1 us each.)
    """

    buffer: "cl.Buffer"
    offset: int  # elements
    ld: int  # elements between consecutive stored rows
    transposed: bool
    # 0: row-major as above; w > 0: packed in panels of w columns (lanes/pack.py), `ld`
    # elements between panels
    panel: int = 0

    def flipped(self) -> "Operand":
        """The same storage read as the transpose."""
        return self._replace(transposed=not self.transposed)


def transposed_c(a: Operand, b: Operand, c: Operand, m: int,
                 n: int) -> tuple[Operand, Operand, Operand, int, int]:
    """A product into column-major C as one into row-major storage: C^T = op(B)^T op(A)^T.
    Returns (a, b, c, m, n) of that product; unchanged where C is row-major."""
    if not c.transposed:
        return a, b, c, m, n
    return b.flipped(), a.flipped(), c._replace(transposed=False), n, m


def check_index_range(m: int, n: int, k: int) -> None:
    """Every kernel family indexes M, N and K with 32-bit ints."""
    for name, value in (("M", m), ("N", n), ("K", k)):
        if value > _INT_MAX:
            raise ShapeError(f"{name}={value} exceeds 2**31-1, which clgemm kernels index")


def logical_shape(x, trans: bool) -> tuple[int, int]:
    if len(x.shape) != 2:
        raise ShapeError(f"operands must be matrices (2-D) or batches of matrices (3-D), got "
                         f"shape {tuple(x.shape)}; reshape to (batch, rows, columns)")
    r, c = x.shape
    return (c, r) if trans else (r, c)


def host_pair(A, B, trans_a: bool, trans_b: bool) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Two host operands as contiguous float32 arrays, and (m, n, k) of op(A) op(B): the
    entry of the lanes' host-array helpers (tests and benchmarks; the public door checks
    more, validate.check_operands)."""
    A = np.ascontiguousarray(A, np.float32)
    B = np.ascontiguousarray(B, np.float32)
    m, k = logical_shape(A, trans_a)
    k2, n = logical_shape(B, trans_b)
    if k != k2:
        raise ShapeError(f"inner dimensions differ: op(A) is {m}x{k} and op(B) is {k2}x{n}")
    return A, B, m, n, k


@functools.lru_cache(maxsize=4096)
def storage(shape: tuple[int, int], strides: tuple[int, int], itemsize: int = 4):
    """(stored_transposed, ld) when rows or columns are unit-stride, else None (memoized:
    every call on device arrays asks)."""
    rows, cols = shape
    s0, s1 = strides
    if s0 < 0 or s1 < 0 or s0 % itemsize or s1 % itemsize:
        return None
    e0, e1 = s0 // itemsize, s1 // itemsize
    if e1 == 1 or cols <= 1:
        ld = e0 if rows > 1 else max(cols, 1)
        if ld >= max(cols, 1):
            return False, ld
    if e0 == 1 or rows <= 1:
        ld = e1 if cols > 1 else max(rows, 1)
        if ld >= max(rows, 1):
            return True, ld
    return None


def upload(rt: Runtime, name: str, x: np.ndarray, trans: bool) -> tuple[Operand, int]:
    """Copy a host matrix to the device without repacking when its layout allows."""
    if x.size == 0:
        return Operand(rt.pooled(4, name, rt.queue), 0, max(x.shape[1], 1), trans), 0
    layout = storage(x.shape, x.strides)
    if layout is None:
        x = np.ascontiguousarray(x)
        layout = storage(x.shape, x.strides)
    stored_t, ld = layout
    rows, cols = x.shape
    inner, outer = (rows, cols) if stored_t else (cols, rows)
    n_elems = (outer - 1) * ld + inner
    # The stored span from the first to the last element, leading-dimension gaps included.
    span = np.lib.stride_tricks.as_strided(x, shape=(n_elems,), strides=(4,))
    buf = rt.pooled(span.nbytes, name, rt.queue)
    staging.write(rt, rt.queue, buf, np.ascontiguousarray(span))
    return Operand(buf, 0, ld, stored_t != trans), span.nbytes


def device_operand(rt: Runtime | None, name: str, x: cla.Array, trans: bool) -> Operand:
    """`x` as an operand; `rt` None: the caller knows it lives in the right context (the
    hot path: it is bound to the runtime's user queue)."""
    if rt is not None and x.context != rt.context:
        raise ShapeError(
            f"{name} lives in another OpenCL context; create device arrays with "
            "clgemm.to_device(...) for the same device"
        )
    layout = storage(x.shape, x.strides)
    if layout is None or x.offset % 4:
        raise ShapeError(
            f"{name} has strides {x.strides}: clgemm needs unit stride along rows or columns; "
            "make it contiguous first"
        )
    stored_t, ld = layout
    return Operand(x.base_data, x.offset // 4, ld, stored_t != trans)


# compute(a, b, c, m, n): the product into row-major C storage of m x n.
Compute = Callable[[Operand, Operand, Operand, int, int], None]


def _byte_span(x: cla.Array) -> tuple[int, int]:
    last = sum((d - 1) * abs(st) for d, st in zip(x.shape, x.strides)) if x.size else -4
    return x.offset, x.offset + last + x.dtype.itemsize


def shares_memory(x: cla.Array, y: cla.Array) -> bool:
    """Whether two device arrays' element ranges overlap in one buffer."""
    if x.base_data is None or y.base_data is None or x.base_data != y.base_data:
        return False
    (a0, a1), (b0, b1) = _byte_span(x), _byte_span(y)
    return a0 < b1 and b0 < a1


def scale_empty_product(out: cla.Array, beta: float, queue) -> cla.Array:
    """C = beta * C (zeros where beta == 0, C unread): the product over K == 0, on `queue`."""
    view = out.with_queue(queue)
    if beta == 0.0:
        view.fill(np.float32(0))
    else:
        view *= np.float32(beta)
    return out


def refuse_overlap(C: cla.Array, A: cla.Array, B: cla.Array) -> None:
    """The kernels read A and B while they write C: an overlap would be read after it is
    overwritten, a wrong result with no error."""
    if shares_memory(C, A) or shares_memory(C, B):
        raise ShapeError("C shares device memory with A or B: the product would read "
                         "entries it has already overwritten; pass a separate C "
                         "(C = A.copy() first if in-place is what you need)")


def run_product(rt: Runtime, A, B, C, beta: float, trans_a: bool, trans_b: bool, info,
                compute: Compute):
    """Stage the operands, run `compute`, and return the result: a numpy array (read back,
    into C when given) for host operands, the device array itself for device operands."""
    m, n, _ = info.shape
    if isinstance(A, cla.Array):
        if C is not None:
            refuse_overlap(C, A, B)
        out = C if C is not None else rt.empty(m, n)
        if m == 0 or n == 0:
            return out
        if info.shape[2] == 0:
            return scale_empty_product(out, beta, rt.queue)
        a = device_operand(rt, "A", A, trans_a)
        b = device_operand(rt, "B", B, trans_b)
        c = device_operand(rt, "C", out, False)
        compute(*transposed_c(a, b, c, m, n))
        return out
    out = C if C is not None else np.empty((m, n), np.float32)
    if m == 0 or n == 0:
        return out
    need = 4 * (A.size + B.size + m * n)
    if need > rt.device.global_mem_bytes:
        raise OutOfDeviceMemoryError(
            f"the product needs {need / 2**30:.2f} GiB on the device but {rt.device.name!r} "
            f"has {rt.device.global_mem_bytes / 2**30:.2f} GiB; split it into blocks"
        )
    t0 = time.perf_counter()
    a, _ = upload(rt, "A", A, trans_a)
    b, _ = upload(rt, "B", B, trans_b)
    c_buf = output_buffer(rt, C, beta, m * n)
    info.h2d_s = time.perf_counter() - t0
    compute(a, b, Operand(c_buf, 0, n, False), m, n)
    t1 = time.perf_counter()
    read_back(rt, out, c_buf)
    info.d2h_s = time.perf_counter() - t1
    return out


def output_buffer(rt: Runtime, C, beta: float, count: int) -> "cl.Buffer":
    """A device buffer of `count` floats for a host call's result, holding C's old content
    where beta != 0 (C unread otherwise)."""
    buf = rt.pooled(4 * count, "C", rt.queue)
    if C is not None and beta != 0.0:
        staging.write(rt, rt.queue, buf, np.ascontiguousarray(C))
    return buf


def read_back(rt: Runtime, out: np.ndarray, buf: "cl.Buffer") -> None:
    """The result in `buf` (dense, row-major) into the host array `out`, whatever its
    strides."""
    if out.flags.c_contiguous:
        staging.read(rt, rt.queue, out, buf)
    else:
        tmp = np.empty(out.shape, np.float32)
        staging.read(rt, rt.queue, tmp, buf)
        out[...] = tmp
