"""Input validation of the public API: every check that runs before any work.

Pure functions (no device work, no allocation) that `api.matmul` and `api.to_device` call
first, so that bad input is refused with a `ClgemmError` saying what to do, never with
numpy's or pyopencl's exception from deep inside, and never after a large host copy.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import pyopencl.array as cla

from .batched import batch_shape
from .errors import (ArgumentError, ContractError, DTypeError, NonFiniteError,
                     OutOfDeviceMemoryError, OutOfHostMemoryError, ScheduleError, ShapeError)
from .kernels.tensorcore import TcSchedule
from .kernels.wgmma import WgSchedule
from .operands import logical_shape, storage
from .schedule import Schedule


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


def check_array(name: str, x, on_device: bool) -> None:
    """An operand: a numpy array (not masked) for host calls, a pyopencl array for device
    calls, float32 either way."""
    if on_device != is_device_array(x):
        raise ShapeError("pass all operands as numpy arrays or all as clgemm device arrays")
    if not on_device and not isinstance(x, np.ndarray):
        raise ArgumentError(
            f"{name} must be a numpy array, got {type(x).__name__}; convert it with "
            f"np.asarray({name}, dtype=np.float32)")
    if isinstance(x, np.ma.MaskedArray):
        # The kernels read every stored value: the mask would be dropped silently.
        raise ArgumentError(
            f"{name} is a masked array: clgemm would ignore its mask; pass "
            f"{name}.filled(0.0) (or the fill value your product needs)")
    check_dtype(name, x)


def check_scalar(name: str, value) -> float:
    """alpha or beta: a real, finite number. Strings and booleans are refused (float("2")
    would pass, and True as 1.0 is almost always a misplaced flag)."""
    kind = type(value)
    if kind is not float and kind is not int and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        # (a plain float or int skips the isinstance tests: every call asks, twice)
        raise ArgumentError(f"{name} must be a real number (int or float), got "
                            f"{type(value).__name__} {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise NonFiniteError(f"{name}={value!r} is not finite; pass a finite scaling factor")
    return f


def check_flag(name: str, value) -> bool:
    """trans_a, trans_b, return_info: only True or False ("no" is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False, got {type(value).__name__} "
                            f"{value!r}")
    return bool(value)


def validate_contract(rel_tol, check, nonfinite, selector: str = "static") -> None:
    if rel_tol is not None:
        if isinstance(rel_tol, (bool, np.bool_)) or not isinstance(rel_tol, numbers.Real):
            raise ContractError(f"rel_tol must be None or a number, got {rel_tol!r}")
        tol = float(rel_tol)
        if not (0.0 < tol < 1.0):
            raise ContractError(
                f"rel_tol={rel_tol!r} is outside (0, 1): it is a relative Frobenius error "
                "budget, e.g. 1e-3; use None for the exact float32 contract"
            )
    if not isinstance(check, bool):
        raise ContractError(f"check must be True or False, got {check!r}")
    if not isinstance(nonfinite, str) or nonfinite not in ("propagate", "raise"):
        raise ContractError(f"nonfinite must be 'propagate' or 'raise', got {nonfinite!r}")
    if not isinstance(selector, str) or selector not in ("static", "online"):
        raise ContractError(f"selector must be 'static' or 'online', got {selector!r}")


def check_schedule(schedule) -> None:
    """None (the table chooses) or a schedule object; a key string is refused with the way
    to turn it into one."""
    if schedule is None or isinstance(schedule, (Schedule, TcSchedule, WgSchedule)):
        return
    hint = (" (a key: use clgemm.Schedule.from_key(...))" if isinstance(schedule, str) else "")
    raise ScheduleError(f"schedule must be None or a clgemm.Schedule, got "
                        f"{type(schedule).__name__} {schedule!r:.80}{hint}")


def check_output(C) -> None:
    """C is written in place: it must be writable and own distinct memory for each entry
    (a broadcast or zero-stride view would receive every row's result in one place)."""
    if C is None:
        return
    if isinstance(C, np.ndarray) and not C.flags.writeable:
        raise ShapeError("C is read-only; pass a writable array (C.copy()) or omit C")
    if any(st == 0 and d > 1 for d, st in zip(C.shape, C.strides)):
        raise ShapeError(f"C has a zero stride (strides {tuple(C.strides)}: a broadcast view); "
                         "its entries alias each other, so pass a real array (C.copy())")


def reject_nonfinite(name: str, x) -> None:
    host = x.get() if is_device_array(x) else x
    if host.size and not np.isfinite(host).all():
        raise NonFiniteError(
            f"{name} contains NaN or Inf and nonfinite='raise' was asked; clean the input or "
            "pass nonfinite='propagate' for IEEE propagation as in BLAS"
        )


def check_nonfinite(A, B, C, beta: float) -> None:
    """nonfinite='raise': A and B, and C when beta != 0 (its old values are then read)."""
    reject_nonfinite("A", A)
    reject_nonfinite("B", B)
    if C is not None and beta != 0.0:
        reject_nonfinite("C", C)


def _dense(x: np.ndarray) -> bool:
    """Whether `operands.upload` can send x as it is stored (else it makes a dense copy)."""
    if len(x.shape) == 3:  # a batch goes as stored only when C-contiguous (batched.upload)
        return x.size == 0 or x.flags.c_contiguous
    return x.size == 0 or storage(x.shape, x.strides) is not None


def available_host_bytes() -> int | None:
    """Memory the host can still give (MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_host_memory(device, A, B, C, m: int, n: int, beta: float,
                      available: int | None = None) -> None:
    """Before any host allocation or copy of a host call: the device must hold the dense
    operands, and the host the result plus every dense copy the call would make (a
    zero-stride operand is densified; a 100000 x 100000 result is 40 GB)."""
    if m == 0 or n == 0:
        return
    for what, size in (("A", A.size), ("B", B.size), ("C", m * n)):
        if 4 * size > device.max_alloc_bytes:  # as Runtime.check_alloc, before densifying
            raise OutOfDeviceMemoryError(
                f"{what} needs {4 * size / 2**20:.1f} MiB in one buffer but {device.name!r} "
                f"allows at most {device.max_alloc_bytes / 2**20:.1f} MiB per buffer; split "
                "the product into blocks or use a device with more memory")
    need = 4 * (A.size + B.size + m * n)
    if need > device.global_mem_bytes:
        raise OutOfDeviceMemoryError(
            f"the product needs {need / 2**30:.2f} GiB on the device but {device.name!r} "
            f"has {device.global_mem_bytes / 2**30:.2f} GiB; split it into blocks"
        )
    host = 0 if C is not None else 4 * m * n  # the result array
    host += sum(4 * x.size for x in (A, B) if not _dense(x))
    if C is not None and (beta != 0.0 or not C.flags.c_contiguous):
        host += 4 * m * n  # a dense copy of C to upload, or the read-back staging array
    available = available_host_bytes() if available is None else available
    if available is not None and host > available:
        raise OutOfHostMemoryError(
            f"the call would allocate {host / 2**30:.2f} GiB on the host but only "
            f"{available / 2**30:.2f} GiB is available; pass a preallocated C, contiguous "
            "operands, or split the product into blocks")


def check_to_device(x) -> None:
    """`to_device` takes a float32 numpy array (not masked, not already on a device)."""
    if is_device_array(x):
        raise ArgumentError("x is already a device array; pass it to matmul as it is")
    check_array("x", x, on_device=False)


_F32 = np.dtype(np.float32)
_ARRAY = cla.Array


def check_call(A, B, C, alpha, beta, trans_a, trans_b, return_info
               ) -> tuple[float, float, int, int, int]:
    """Everything a call passes, checked: (alpha, beta, m, n, k)."""
    alpha, beta = _check_scalars(alpha, beta, trans_a, trans_b, return_info)
    return (alpha, beta) + check_operands(A, B, C, beta, trans_a, trans_b)


def check_batched_call(A, B, C, alpha, beta, trans_a, trans_b, return_info):
    """A batched call (an operand with a batch dimension), checked: (alpha, beta,
    BatchShape)."""
    alpha, beta = _check_scalars(alpha, beta, trans_a, trans_b, return_info)
    if C is None and beta != 0.0:
        raise ShapeError("beta != 0 needs an input C; pass C=... or beta=0")
    if not (type(A) is _ARRAY and type(B) is _ARRAY and A.dtype is _F32 and B.dtype is _F32
            and (C is None or (type(C) is _ARRAY and C.dtype is _F32 and len(C.shape) == 3
                               and C.strides[0] > 0 and C.strides[1:] != (0, 0)))):
        # (device arrays that go together take the hot path's few checks: their strides are
        # checked when the operands are read, batched.device_operand)
        _check_kinds(A, B, C)
    return alpha, beta, batch_shape(A, B, C, trans_a, trans_b)


def _check_scalars(alpha, beta, trans_a, trans_b, return_info) -> tuple[float, float]:
    """The flags (True or False, nothing else) and alpha and beta (as floats)."""
    for name, flag in (("trans_a", trans_a), ("trans_b", trans_b), ("return_info", return_info)):
        if flag is not True and flag is not False:
            check_flag(name, flag)
    return check_scalar("alpha", alpha), check_scalar("beta", beta)


def _check_kinds(A, B, C) -> None:
    """The operands are all numpy or all device arrays, float32, and C is writable with
    distinct entries."""
    on_device = is_device_array(A)
    check_array("A", A, on_device)
    check_array("B", B, on_device)
    if C is not None:
        check_array("C", C, on_device)
    check_output(C)


def check_operands(A, B, C, beta: float, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """(m, n, k) of the product, after checking that the operands go together: all numpy
    or all device arrays, float32, inner dimensions equal, C of the product's shape, writable
    and without aliased entries (and given where beta != 0)."""
    if (type(A) is _ARRAY and type(B) is _ARRAY and A.dtype is _F32 and B.dtype is _F32
            and len(A.shape) == 2 and len(B.shape) == 2
            and (C is None or (type(C) is _ARRAY and C.dtype is _F32))):
        # device arrays that go together: the hot path's few comparisons (a C whose entries
        # alias is refused when its storage is read, operands.device_operand)
        m, k = (A.shape[1], A.shape[0]) if trans_a else A.shape
        k2, n = (B.shape[1], B.shape[0]) if trans_b else B.shape
        if k == k2 and (C.shape == (m, n) if C is not None else beta == 0.0):
            return m, n, k
    _check_kinds(A, B, C)
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
