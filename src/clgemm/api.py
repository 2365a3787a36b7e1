"""The public door: `matmul`, `plan`, `to_device`.

Contract (rel_tol=None): the result is computed in float32 arithmetic (fused multiply-add,
float32 accumulation), as BLAS sgemm does. float64 or integer input is refused rather than
silently rounded: cast with `.astype(np.float32)` if float32 is what you want. NaN and Inf
propagate as IEEE arithmetic makes them (as in BLAS); pass `nonfinite="raise"` to refuse them.
When beta == 0, C's old content is not read (a NaN there does not propagate), as in BLAS.

On a device whose table carries a tensor-core lane that `clgemm gate` promoted (the H100's
does), rel_tol=None runs 3xTF32 instead, not float32 arithmetic operation for operation:
relative Frobenius error within 2x numpy float32's on normal data (checked by the gate and
the tests), but over it where few terms dominate each sum (on an H100 2.16x on sparse data
at 1400 and 2.90x on Cauchy-tailed data at 3072: records/nvidia-h100/2026-12-07-accuracy-
kinds; the split keeps about 22 of an operand's 24 bits). A product with a non-finite
output there is recomputed by the float32 family, so Inf and NaN propagate as above.
CLGEMM_EXACT_LANE=fp32 (or an explicit `schedule=`) keeps the float32 family; it is read
when a product's plan is decided (the first call of that shape in a process).

Each call looks up its plan (clgemm.route decides it once per shape, layout, contract and
device) and calls it; `clgemm.plan(...)` hands the plan to the caller, to print or to call.
"""

from __future__ import annotations

import time

import numpy as np
import pyopencl.array as cla

from . import route, validate
from .batched import is_batched
from .device import DeviceInfo
from .errors import ContractError
from .info import Info
from .plan import Contract, Plan, PlanKey
from .runtime import get_runtime, runtime_of
from .schedule import Schedule
from .validate import is_device_array, validate_contract

__all__ = ["Info", "Plan", "matmul", "plan", "to_device"]

_SELECTORS = ("static", "online")
_EXACT = Contract()


def _contract(rel_tol, check, nonfinite) -> Contract:
    if rel_tol is None and check is False and nonfinite == "propagate":
        return _EXACT  # the common call: no checks to run, no object to make
    validate_contract(rel_tol, check, nonfinite)
    return Contract(None if rel_tol is None else float(rel_tol), check, nonfinite)


def plan(m: int, n: int, k: int, *, trans_a: bool = False, trans_b: bool = False,
         rel_tol: float | None = None, check: bool = False, nonfinite: str = "propagate",
         device: "DeviceInfo | int | str | None" = None, schedule: Schedule | None = None,
         selector: str = "static", batch: int | None = None) -> Plan:
    """The plan of C[m x n] = alpha * op(A) @ op(B) + beta * C with inner dimension k (with
    `batch`: of `batch` such products, C of shape (batch, m, n)): decided once (and cached),
    printable, and callable as `p(A, B, C=None, alpha=1.0, beta=0.0, return_info=False)` on
    operands of that shape."""
    for name, v in (("m", m), ("n", n), ("k", k)) + ((("batch", batch),) if batch is not None else ()):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ContractError(f"{name} must be a non-negative integer, got {v!r}")
    for name, flag in (("trans_a", trans_a), ("trans_b", trans_b)):
        validate.check_flag(name, flag)
    if selector not in _SELECTORS:
        raise ContractError(f"selector must be 'static' or 'online', got {selector!r}")
    validate.check_schedule(schedule)
    key = PlanKey(int(m), int(n), int(k), bool(trans_a), bool(trans_b),
                  _contract(rel_tol, check, nonfinite), schedule, selector,
                  None if batch is None else int(batch))
    return route.plan(get_runtime(device), key)


def to_device(x: np.ndarray, device: "DeviceInfo | int | str | None" = None) -> cla.Array:
    """A float32 device copy of a host array, usable with `matmul` on the same device."""
    validate.check_to_device(x)
    return get_runtime(device).to_device(np.ascontiguousarray(x))


def settle(device: "DeviceInfo | int | str | None" = None) -> list:
    """Settle every check=True call on `device` whose verdict is still open (calls on device
    arrays return before their check is read: guard/deferred.py) and return the verdicts
    (abft.Verdict) settled since the last settle(), oldest first: those settled here and
    those clgemm settled on its own before a call used their result. A fault the recheck
    could not repair raises FaultError here. Read a checked result you must trust after it."""
    rt = get_runtime(device)
    return [] if rt.checks_open is None else rt.checks_open.settle()


def matmul(A, B, *, C=None, alpha: float = 1.0, beta: float = 0.0,
           trans_a: bool = False, trans_b: bool = False, rel_tol: float | None = None,
           check: bool = False, device: "DeviceInfo | int | str | None" = None,
           schedule: Schedule | None = None, nonfinite: str = "propagate",
           selector: str = "static", return_info: bool = False):
    """C = alpha * op(A) @ op(B) + beta * C, in float32.

    A, B (and C) are numpy arrays (a numpy array is returned) or pyopencl arrays from
    `clgemm.to_device` (a pyopencl array is returned, nothing is copied to the host).
    op(X) is X, or X.T when trans_x (of each matrix). A 3-D operand is a batch of matrices:
    C[i] = alpha op(A[i]) op(B[i]) + beta C[i], a 2-D operand or a batch of one serving every
    product (as np.matmul broadcasts), in one launch on the exact contract. With C given, the result is written into it.
    rel_tol=None is the exact float32 contract. check=True verifies the result with
    checksums (ABFT). `selector="online"` lets the online bandit pick among the device
    table's validated schedules (learning from each call's kernel time) instead of the
    static table. `return_info=True` returns (result, Info).

    On device arrays with the exact contract and no Info asked for, the call returns as
    soon as its kernels are enqueued (reading the result, or the next call that waits,
    synchronises); so does a rel_tol call that TF32 serves (its estimate judged, and an
    exact product put in its place where it misses, on the device: approx/judged.py), and
    a check=True call with beta = 0, whose checksums are judged on the device and read
    later: before any later clgemm call reads its C (one that overwrites its C, A or B waits
    on the device for the check's reads instead, and the verdict stands on the checksums), at
    `clgemm.settle()`, which returns the verdicts and raises FaultError for a fault the
    recheck could not repair (guard/deferred.py; CLGEMM_CHECK_DEFER=0 makes it wait).
    Every other call returns with its work done.
    """
    start = time.perf_counter()
    contract = _contract(rel_tol, check, nonfinite)
    if selector not in _SELECTORS:
        raise ContractError(f"selector must be 'static' or 'online', got {selector!r}")
    if selector == "online" and (schedule is not None or check or rel_tol is not None):
        selector = "static"  # the selector serves the plain exact product only
    if schedule is not None:
        validate.check_schedule(schedule)
    if is_batched(A, B, C):
        return _batched(A, B, C, alpha, beta, trans_a, trans_b, contract, schedule, selector,
                        nonfinite, device, return_info, start)
    alpha, beta, m, n, k = validate.check_call(A, B, C, alpha, beta, trans_a, trans_b,
                                               return_info)
    key = PlanKey(m, n, k, trans_a, trans_b, contract, schedule, selector)
    return _run(A, B, C, alpha, beta, key, m, nonfinite, device, return_info, start)


def _batched(A, B, C, alpha, beta, trans_a, trans_b, contract, schedule, selector, nonfinite,
             device, return_info, start):
    """matmul on a batch: checked, then its plan (keyed by the batch too) is called."""
    alpha, beta, shape = validate.check_batched_call(A, B, C, alpha, beta, trans_a, trans_b,
                                                     return_info)
    key = PlanKey(shape.m, shape.n, shape.k, trans_a, trans_b, contract, schedule, selector,
                  shape.batch)
    return _run(A, B, C, alpha, beta, key, shape.batch * shape.m, nonfinite, device,
                return_info, start)


def _run(A, B, C, alpha, beta, key: PlanKey, rows: int, nonfinite, device, return_info, start):
    """The checked call's last checks (NaN policy, host memory for `rows` rows of C) and its
    plan, called."""
    if nonfinite == "raise":
        validate.check_nonfinite(A, B, C, beta)
    if is_device_array(A):
        rt = runtime_of(A, device)
    else:
        rt = get_runtime(device)
        validate.check_host_memory(rt.device, A, B, C, rows, key.n, beta)
    return route.plan(rt, key).run(A, B, C, alpha, beta, return_info, start)
