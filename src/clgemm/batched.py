"""Batched products: C[i] = alpha op(A[i]) op(B[i]) + beta C[i] for i < batch, broadcast as
np.matmul and torch.matmul broadcast a single leading dimension (a 2-D operand, or a batch of
one, serves every product), in one launch.

Each operand is one Operand (the first matrix: its layout, leading dimension and offset)
and a batch stride in elements (0: broadcast). Host operands are staged as they are stored
where the matrices' own strides allow (operands.storage) and the batch stride is whole
elements; otherwise as a dense copy.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import pyopencl.array as cla

from . import staging
from .errors import ShapeError
from .operands import Operand, storage
from .runtime import Runtime


class BatchedOperand(NamedTuple):
    """The first matrix of a batch and the distance to the next, in elements."""

    first: Operand
    stride: int


class BatchShape(NamedTuple):
    batch: int
    m: int
    n: int
    k: int


def is_batched(A, B, C=None) -> bool:
    """Whether a call is batched: an operand with a leading batch dimension (anything
    without a shape is left to the checks of a plain call, which name it)."""
    # spelled out, not any() over a generator: every call of matmul asks (0.1 us, not 0.5)
    return (len(getattr(A, "shape", ())) == 3 or len(getattr(B, "shape", ())) == 3
            or (C is not None and len(getattr(C, "shape", ())) == 3))


def batch_shape(A, B, C, trans_a: bool, trans_b: bool) -> BatchShape:
    """(batch, m, n, k) of a batched call, its operands' shapes checked."""
    return _batch_shape(tuple(A.shape), tuple(B.shape),
                        None if C is None else tuple(C.shape), trans_a, trans_b)


@functools.lru_cache(maxsize=4096)
def _batch_shape(A: tuple, B: tuple, C: "tuple | None", trans_a: bool,
                 trans_b: bool) -> BatchShape:
    """batch_shape on the operands' shapes (memoized: every batched call asks)."""
    for name, x in (("A", A), ("B", B), ("C", C)):
        if x is not None and len(x) not in (2, 3):
            raise ShapeError(
                f"{name} has {len(x)} dimensions: clgemm takes matrices (2-D) and "
                f"batches of matrices (3-D); reshape {name} to (batch, rows, columns)")
    if len(A) == 2 and len(B) == 2:
        raise ShapeError("C is 3-D but A and B are matrices: pass C of shape (m, n) or "
                         "batched operands")

    def parts(x, trans):
        rows, cols = x[-2:]
        return (x[0] if len(x) == 3 else None), ((cols, rows) if trans else (rows, cols))

    ba, (m, k) = parts(A, trans_a)
    bb, (k2, n) = parts(B, trans_b)
    if k != k2:
        raise ShapeError(f"inner dimensions differ: op(A) is {m}x{k} and op(B) is {k2}x{n} "
                         "in each product; check trans_a/trans_b or the operands' orientation")
    sizes = {b for b in (ba, bb) if b is not None and b != 1}
    if len(sizes) > 1:
        raise ShapeError(f"batch sizes differ: A has {ba} matrices and B {bb}; they must be "
                         "equal, or one of them 1 (or a 2-D operand), which serves every product")
    batch = sizes.pop() if sizes else 1
    if C is not None and C != (batch, m, n):
        raise ShapeError(f"C has shape {C} but the batched product is "
                         f"({batch}, {m}, {n})")
    return BatchShape(batch, m, n, k)


def _batch_stride(shape: tuple, strides: tuple, name: str) -> int:
    """Elements between a 3-D operand's consecutive matrices (0 for a 2-D one or a batch of
    one: broadcast)."""
    if len(shape) == 2 or shape[0] == 1:
        return 0
    stride = strides[0]
    if stride < 0 or stride % 4:
        raise ShapeError(f"{name} has batch stride {stride} bytes: clgemm needs a non-negative "
                         "whole number of float32 elements; make it contiguous first")
    return stride // 4


@functools.lru_cache(maxsize=4096)
def _device_layout(name: str, shape: tuple, strides: tuple, trans: bool) -> tuple[int, bool, int]:
    """(ld, transposed, batch stride) of a device operand of this shape and strides (every
    batched call on device arrays asks three times: memoized, as operands.storage is)."""
    layout = storage(shape[-2:], strides[-2:])
    if layout is None:
        raise ShapeError(f"{name} has strides {strides}: clgemm needs unit stride along the "
                         "rows or columns of each matrix; make it contiguous first")
    stored_t, ld = layout
    return ld, stored_t != trans, _batch_stride(shape, strides, name)


def device_operand(name: str, x: cla.Array, trans: bool) -> BatchedOperand:
    """A device array (2-D or 3-D) as the batch's operand, used in place."""
    if x.offset % 4:
        raise ShapeError(f"{name} starts {x.offset} bytes into its buffer: clgemm needs a "
                         "whole number of float32 elements; make it contiguous first")
    ld, transposed, stride = _device_layout(name, x.shape, x.strides, trans)
    return BatchedOperand(Operand(x.base_data, x.offset // 4, ld, transposed), stride)


def upload(rt: Runtime, name: str, x: np.ndarray, trans: bool) -> BatchedOperand:
    """A host operand staged once for the whole batch (a dense copy where its strides do
    not fit the kernels)."""
    if x.size == 0:
        return BatchedOperand(Operand(rt.pooled(4, name, rt.queue), 0, max(x.shape[-1], 1), trans), 0)
    if len(x.shape) == 3 and x.shape[0] == 1:
        x = x[0]
    dense = x if x.flags.c_contiguous else np.ascontiguousarray(x)
    buf = rt.pooled(dense.nbytes, name, rt.queue)
    staging.write(rt, rt.queue, buf, dense)
    rows, cols = dense.shape[-2:]
    stride = rows * cols if len(dense.shape) == 3 else 0
    return BatchedOperand(Operand(buf, 0, max(cols, 1), trans), stride)


def flipped_c(a: BatchedOperand, b: BatchedOperand, c: BatchedOperand, m: int, n: int):
    """A batch into column-major C matrices as one into row-major storage (per matrix,
    C^T = op(B)^T op(A)^T); unchanged where C is row-major."""
    if not c.first.transposed:
        return a, b, c, m, n
    return (BatchedOperand(b.first.flipped(), b.stride), BatchedOperand(a.first.flipped(), a.stride),
            BatchedOperand(c.first._replace(transposed=False), c.stride), n, m)
