"""The public door: `matmul`, `Info`, and the helpers to keep arrays on the device.

Contract (rel_tol=None): the result is computed in float32 arithmetic (fused multiply-add,
float32 accumulation), as BLAS sgemm does. float64 or integer input is refused rather than
silently rounded: cast with `.astype(np.float32)` if float32 is what you want. NaN and Inf
propagate as IEEE arithmetic makes them (as in BLAS); pass `nonfinite="raise"` to refuse them.
When beta == 0, C's old content is not read (a NaN there does not propagate), as in BLAS.

On a device whose table carries a tensor-core lane that `clgemm gate` promoted (the H100's
does), rel_tol=None runs 3xTF32 instead: float32-level accuracy (relative Frobenius error
within 2x numpy float32's, checked by the gate and the tests), not float32 arithmetic
operation for operation. A product with a non-finite output there is recomputed by the
float32 family, so Inf and NaN propagate as above. CLGEMM_EXACT_LANE=fp32 (or an explicit
`schedule=`) keeps the float32 family.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .device import DeviceInfo
from . import validate
from .errors import ShapeError
from .kernels.tensorcore import TcSchedule
from .kernels.wgmma import WgSchedule
from .operands import logical_shape, run_product
from .plan import GemmKernel, Operand, get_kernel, layout_for, search_space
from .runtime import Runtime, get_runtime
from .schedule import Schedule
from .select.table import DEFAULT_CPU, DEFAULT_GPU, load_table

# The last resort when neither the table's nor the default schedule fits a device:
# 64 work-items, no vector loads, small local tiles.
SAFE_SCHEDULE = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1,
                         vec_c=1, stage_a=1, stage_b=1, unroll_k=1, double_buffer=0,
                         strided=1, local_pad=0)


@dataclass
class Info:
    """What happened in one call (returned with `return_info=True`)."""

    method: str  # "exact" (float32), or a method named by later contracts
    schedule: str  # Schedule.key() of the kernel that ran
    device: str
    shape: tuple[int, int, int]
    kernel_s: float = 0.0  # device time of the GEMM kernel (OpenCL event profiling)
    h2d_s: float = 0.0  # host-to-device copies (wall)
    d2h_s: float = 0.0  # device-to-host copy (wall)
    total_s: float = 0.0  # the whole call (wall)
    build_s: float = 0.0  # compile or cache load paid in this call (0 when already built)
    build_from_cache: bool | None = None
    error_estimate: float | None = None  # filled by approximate methods
    fell_back: bool = False  # an approximate method gave way to exact
    checked: bool = False  # ABFT verified the result
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        m, n, k = self.shape
        return 2.0 * m * n * k / self.kernel_s / 1e9 if self.kernel_s > 0 else 0.0


# Input checks live in validate.py (pure functions, run before any work).
_is_device_array = validate.is_device_array
_check_scalar = validate.check_scalar
_validate_contract = validate.validate_contract


def choose_schedule(rt: Runtime, m: int, n: int, k: int,
                    schedule: Schedule | None = None) -> Schedule:
    """The schedule a call will use: the caller's (checked), else the device table's, else a
    default that is valid on the device."""
    space = search_space(rt)
    if schedule is not None:
        space.check(schedule)
        return schedule
    table = load_table(rt.device)
    for candidate in (table.lookup(m, n, k), table.default, DEFAULT_GPU, DEFAULT_CPU, SAFE_SCHEDULE):
        if space.is_valid(candidate):
            return candidate
    raise ShapeError(f"no built-in schedule fits {rt.device.name!r}; pass schedule=...")


def to_device(x: np.ndarray, device: "DeviceInfo | int | str | None" = None) -> cla.Array:
    """A float32 device copy of a host array, usable with `matmul` on the same device."""
    validate.check_to_device(x)
    rt = get_runtime(device)
    return cla.to_device(rt.queue, np.ascontiguousarray(x))


def matmul(A, B, *, C=None, alpha: float = 1.0, beta: float = 0.0,
           trans_a: bool = False, trans_b: bool = False, rel_tol: float | None = None,
           check: bool = False, device: "DeviceInfo | int | str | None" = None,
           schedule: Schedule | None = None, nonfinite: str = "propagate",
           selector: str = "static", return_info: bool = False):
    """C = alpha * op(A) @ op(B) + beta * C, in float32.

    A, B (and C) are numpy arrays (a numpy array is returned) or pyopencl arrays from
    `clgemm.to_device` (a pyopencl array is returned, nothing is copied to the host).
    op(X) is X, or X.T when trans_x. With C given, the result is written into it.
    rel_tol=None is the exact float32 contract. check=True verifies the result with
    checksums (ABFT). `selector="online"` lets the online bandit pick among the device
    table's validated schedules (learning from each call's kernel time) instead of the
    static table. `return_info=True` returns (result, Info).
    """
    start = time.perf_counter()
    _validate_contract(rel_tol, check, nonfinite, selector)
    for name, flag in (("trans_a", trans_a), ("trans_b", trans_b), ("return_info", return_info)):
        validate.check_flag(name, flag)
    validate.check_schedule(schedule)
    alpha = _check_scalar("alpha", alpha)
    beta = _check_scalar("beta", beta)
    on_device = _is_device_array(A)
    operands = [("A", A), ("B", B)] + ([("C", C)] if C is not None else [])
    for name, x in operands:
        validate.check_array(name, x, on_device)
    validate.check_output(C)
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
    if nonfinite == "raise":
        validate.check_nonfinite(A, B, C, beta)

    if on_device:
        rt = _runtime_of(A, device)
    else:
        rt = get_runtime(device)
        validate.check_host_memory(rt.device, A, B, C, m, n, beta)
    decision = None
    if selector == "online" and schedule is None and not check and rel_tol is None:
        from .select.online import get_selector  # noqa: PLC0415 - optional station

        decision = get_selector(rt).choose(m, n, k, trans_a, trans_b)
        chosen = decision.schedule
    else:
        chosen = choose_schedule(rt, m, n, k, schedule)
    lane = None
    if schedule is None and decision is None:
        # The tensor-core lane where the gate promoted it: the exact product (checked or
        # not), and the fallback of an approximate call whose estimate says no.
        from . import tc  # noqa: PLC0415

        lane = tc.exact_schedule(rt, m, n, k)
    info = Info(method="exact", schedule=(lane or chosen).key(), device=rt.device.name,
                shape=(m, n, k))

    if check:
        from .guard import abft  # noqa: PLC0415 - optional station on the road

        result, info = abft.checked_matmul(
            rt, A, B, C=C, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b,
            schedule=chosen, lane=lane, info=info)
    elif rel_tol is not None:
        from .guard import contract  # noqa: PLC0415

        result, info = contract.approximate_matmul(
            rt, A, B, C=C, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b,
            rel_tol=float(rel_tol), schedule=lane or chosen, info=info)
    else:
        # Device-array callers who want no Info keep the queue flowing (no wait per call).
        wait = not on_device or return_info or decision is not None
        result = exact_product(rt, A, B, C, alpha, beta, trans_a, trans_b, lane or chosen,
                               info, wait)
    if decision is not None and info.kernel_s > 0:
        get_selector(rt).observe(decision, info.kernel_s)
        info.extra["selector"] = decision.reason
    info.total_s = time.perf_counter() - start
    return (result, info) if return_info else result


def _runtime_of(x: cla.Array, device) -> Runtime:
    if device is not None:
        return get_runtime(device)
    from .device import devices

    for d in devices():
        rt = get_runtime(d)
        if rt.context == x.context:
            return rt
    raise ShapeError("device arrays must come from clgemm.to_device (unknown OpenCL context)")


def _launch(rt: Runtime, schedule: Schedule, m: int, n: int, k: int, alpha: float,
            beta: float, a: Operand, b: Operand, c: Operand, info: Info,
            wait: bool = True) -> None:
    """Enqueue the kernel; with `wait`, block and record its device time in `info`
    (device-array callers who need no Info keep the queue flowing instead)."""
    t0 = time.perf_counter()
    kernel: GemmKernel = get_kernel(rt, schedule, layout_for(schedule, a, b, c))
    info.build_s = time.perf_counter() - t0  # ~0 when this process already built it
    info.build_from_cache = kernel.build_info.from_cache
    event = kernel.enqueue(m, n, k, alpha, beta, a, b, c)
    if wait:
        event.wait()
        info.kernel_s = (event.profile.end - event.profile.start) * 1e-9


def _launch_tc(rt: Runtime, schedule: "TcSchedule | WgSchedule", m: int, n: int, k: int, alpha: float,
               beta: float, a: Operand, b: Operand, c: Operand, info: Info) -> None:
    """3xTF32 for the exact contract. It always waits: a non-finite output (an Inf or NaN
    operand, or overflow) is recomputed by the float32 family, whose IEEE propagation the
    split x = hi + lo would not keep (Inf - Inf is NaN). With beta != 0 the old C is kept
    on the device for that case."""
    from . import tc  # noqa: PLC0415

    info.extra["lane"] = schedule.mode
    span = (m - 1) * c.ld + n  # C's elements from its offset, in floats
    saved = rt.buffer(4 * span, what="C (kept for a float32 recompute)") if beta != 0.0 else None
    if saved is not None:
        cl.enqueue_copy(rt.queue, saved, c.buffer, byte_count=4 * span, src_offset=4 * c.offset)
    flag = tc.nonfinite_flag(rt)
    with flag.lock:
        event = tc.enqueue_product(rt, schedule.mode, m, n, k, alpha, beta, a, b, c, schedule,
                                   flag=flag.buffer)
        raised = flag.raised(wait_for=[event])
    info.kernel_s = (event.profile.end - event.profile.start) * 1e-9
    if raised:
        if saved is not None:
            cl.enqueue_copy(rt.queue, c.buffer, saved, byte_count=4 * span, dst_offset=4 * c.offset)
        fallback = choose_schedule(rt, m, n, k)
        info.extra["lane_fallback"] = ("non-finite output: recomputed by the float32 family "
                                       f"({fallback.key()}) for IEEE propagation")
        info.schedule = fallback.key()
        _launch(rt, fallback, m, n, k, alpha, beta, a, b, c, info, True)


def exact_product(rt: Runtime, A, B, C, alpha: float, beta: float, trans_a: bool,
                  trans_b: bool, schedule: "Schedule | TcSchedule | WgSchedule", info: Info,
                  wait: bool = True):
    """The exact float32 product with one schedule: matmul's own path, and the fallback the
    guards (ABFT recompute, approximate methods) return to. A tensor-core schedule (mma.sync
    or wgmma) runs the 3xTF32 lane (float32-level accuracy on the tensor cores, where the
    gate promoted it)."""
    k = info.shape[2]

    def compute(a, b, c, m, n):
        if isinstance(schedule, (TcSchedule, WgSchedule)):
            _launch_tc(rt, schedule, m, n, k, alpha, beta, a, b, c, info)
        else:
            _launch(rt, schedule, m, n, k, alpha, beta, a, b, c, info, wait)

    return run_product(rt, A, B, C, beta, trans_a, trans_b, info, compute)
