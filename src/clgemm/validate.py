"""Checks of what a caller passes, before any work: each failure is a ClgemmError whose
message says what to do."""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from .errors import ContractError, DTypeError, NonFiniteError, ShapeError
from .operands import logical_shape


def is_device_array(x) -> bool:
    return isinstance(x, cla.Array)


def check_dtype(name: str, x) -> None:
    dtype = np.dtype(x.dtype)
    if dtype != np.float32:
        hint = (
            f"cast it with {name}.astype(np.float32) if float32 precision is acceptable"
            if dtype.kind in "fiub" else "pass a float32 array"
        )
        raise DTypeError(f"{name} has dtype {dtype}, clgemm computes float32 only; {hint}")


def check_scalar(name: str, value) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be a real number, got {value!r}") from exc
    if not math.isfinite(f):
        raise NonFiniteError(f"{name}={value!r} is not finite; pass a finite scaling factor")
    return f


def validate_contract(rel_tol, check, nonfinite) -> None:
    if rel_tol is not None:
        try:
            tol = float(rel_tol)
        except (TypeError, ValueError) as exc:
            raise ContractError(f"rel_tol must be None or a number, got {rel_tol!r}") from exc
        if not (0.0 < tol < 1.0):
            raise ContractError(
                f"rel_tol={rel_tol!r} is outside (0, 1): it is a relative Frobenius error "
                "budget, e.g. 1e-3; use None for the exact float32 contract"
            )
    if not isinstance(check, bool):
        raise ContractError(f"check must be True or False, got {check!r}")
    if nonfinite not in ("propagate", "raise"):
        raise ContractError(f"nonfinite must be 'propagate' or 'raise', got {nonfinite!r}")


def reject_nonfinite(name: str, x) -> None:
    host = x.get() if is_device_array(x) else x
    if host.size and not np.isfinite(host).all():
        raise NonFiniteError(
            f"{name} contains NaN or Inf and nonfinite='raise' was asked; clean the input or "
            "pass nonfinite='propagate' for IEEE propagation as in BLAS"
        )


_F32 = np.dtype(np.float32)
_ARRAY = cla.Array


def check_operands(A, B, C, beta: float, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """(m, n, k) of the product, after checking that the operands go together: all numpy
    or all device arrays, float32, inner dimensions equal, C of the product's shape (and
    given where beta != 0)."""
    if (type(A) is _ARRAY and type(B) is _ARRAY and A.dtype is _F32 and B.dtype is _F32
            and len(A.shape) == 2 and len(B.shape) == 2
            and (C is None or (type(C) is _ARRAY and C.dtype is _F32))):
        # device arrays that go together: the hot path's few comparisons
        m, k = (A.shape[1], A.shape[0]) if trans_a else A.shape
        k2, n = (B.shape[1], B.shape[0]) if trans_b else B.shape
        if k == k2 and (C.shape == (m, n) if C is not None else beta == 0.0):
            return m, n, k
    on_device = is_device_array(A)
    for name, x in (("A", A), ("B", B), ("C", C)):
        if x is None:
            continue
        if on_device != is_device_array(x):
            raise ShapeError("pass all operands as numpy arrays or all as clgemm device arrays")
        if not on_device and not isinstance(x, np.ndarray):
            raise ShapeError(f"{name} must be a numpy array, got {type(x).__name__}")
        check_dtype(name, x)
    m, k = logical_shape(A, trans_a)
    k2, n = logical_shape(B, trans_b)
    if k != k2:
        raise ShapeError(
            f"inner dimensions differ: op(A) is {m}x{k} and op(B) is {k2}x{n}; "
            "check trans_a/trans_b or the operands' orientation"
        )
    if C is not None and tuple(C.shape) != (m, n):
        raise ShapeError(f"C has shape {tuple(C.shape)} but the product is {m}x{n}")
    if C is None and beta != 0.0:
        raise ShapeError("beta != 0 needs an input C; pass C=... or beta=0")
    return m, n, k
