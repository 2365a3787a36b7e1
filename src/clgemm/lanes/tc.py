"""Which tensor-core kernel runs a TF32 or 3xTF32 product: the device table's mma.sync
schedule for the shape, or the warpgroup-MMA kernel where it passed its probe and the
operands' layout pays for it. The kernel choice inside the tensor-core family; which lane
serves a product at all is clgemm.route's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyopencl as cl

from ..errors import ClgemmError
from ..kernels import wgmma
from ..kernels.tensorcore import TcSchedule
from ..operands import Operand, host_pair, transposed_c
from ..runtime import LruMemo, Runtime, get_runtime
from ..select import table as tables
from ..select.table import TcLane
from .mma import DEFAULT_SCHEDULES, fitting_schedule, get_kernel, layout_for
from .probe import tensorcore_available, tensorcore_support, wgmma_support
from .wgmma import enqueue_wgmma

# Schedules kept per runtime and shape (least recently used dropped first).
MEMO_SIZE = 4096


def schedule_for(rt: Runtime, mode: str, m: int, n: int, k: int) -> TcSchedule:
    """The device table's tensor-core schedule for this shape (tuned per shape class), else
    the built-in default; memoized per runtime (least recently used dropped)."""
    memo = rt.cached("tc schedules", lambda: LruMemo(MEMO_SIZE))
    key = (mode, m, n, k)
    s = memo.get(key)
    if s is None:
        s = memo.put(key, _schedule_for(rt, mode, m, n, k))
    return s


def _schedule_for(rt: Runtime, mode: str, m: int, n: int, k: int) -> TcSchedule:
    lane = tables.load_table(rt.device).tensorcore
    s = ((lane.lookup(mode, m, n, k, rt.device.compute_units) if lane is not None else None)
         or DEFAULT_SCHEDULES[mode])
    if s.mode != mode:
        s = replace(s, mode=mode)
    if not tensorcore_support(rt).async_copy:
        s = replace(s, async_copy=0, stages=2)
    return s


# Below this many flops (2 m n k) a product whose operands must be transposed first stays on
# mma.sync: with B stored K x N the call's span (transpose, host gaps, product) lost to
# mma.sync at 1400 and 2048 and won at 3072 and 4096 on the H200 (benchmarks/tc/h200/wgmma,
# lane3: 34 vs 52, 91 vs 104, 126 vs 100, 163 vs 132 TFLOPS); without a transpose it won at
# every size (78, 140, 150, 182 TFLOPS).
WGMMA_TRANSPOSE_MIN_FLOPS = 3.0e10


def wgmma_route(rt: Runtime, a: Operand, b: Operand, m: int, n: int, k: int) -> bool:
    """Whether a TF32 product of these operands takes the wgmma kernel: the device passed its
    probe, the operands stored K-contiguous have 16-byte rows (the others are transposed into
    scratch, which has), and a product that needs a transpose is big enough to pay for it."""
    def fits(x: Operand, k_contiguous: bool) -> bool:
        return not k_contiguous or (x.ld % 4 == 0 and x.offset % 4 == 0)

    if not (fits(a, not a.transposed) and fits(b, b.transposed)):
        return False
    if (a.transposed or not b.transposed) and 2.0 * m * n * k < WGMMA_TRANSPOSE_MIN_FLOPS:
        return False
    return wgmma_support(rt).available


def _wave_efficiency(s: "wgmma.WgSchedule", m: int, n: int,
                     compute_units: int) -> tuple[float, int, int]:
    """(efficiency, work-groups, slots of one wave) of `s` on an m x n output."""
    groups = (-(-m // s.block_m)) * (-(-n // s.block_n))
    slots = wgmma.resident_groups(s) * max(compute_units, 1)
    return groups / (-(-groups // slots) * slots), groups, slots


def wgmma_3x_schedule(rt: Runtime, m: int, n: int) -> "wgmma.WgSchedule":
    """The 3xTF32 wgmma schedule for an m x n output: DEFAULT_3X unless its work-groups need
    more than one wave and leave the last mostly empty (efficiency under the device tables'
    bar, 0.85) where WIDE_3X's fill theirs better (2048 on 132 SMs: 512 groups on 396 slots,
    0.65, against 0.97)."""
    cu = rt.device.compute_units
    eff, groups, slots = _wave_efficiency(wgmma.DEFAULT_3X, m, n, cu)
    if groups <= slots or eff >= TcLane.MIN_WAVE_EFFICIENCY:
        return wgmma.DEFAULT_3X
    wide, _, _ = _wave_efficiency(wgmma.WIDE_3X, m, n, cu)
    return wgmma.WIDE_3X if wide > eff else wgmma.DEFAULT_3X


def tc_product(rt: Runtime, mode: str, m: int, n: int, k: int, alpha: float, beta: float,
               a: Operand, b: Operand, c: Operand,
               schedule: "TcSchedule | wgmma.WgSchedule | None" = None,
               flag: "cl.Buffer | None" = None, queue=None) -> "cl.Event":
    """C = alpha op(A) op(B) + beta C through the tensor cores (the stations' products);
    returns the kernel's event. A wgmma schedule (of the product's mode) runs the wgmma
    kernel; without a schedule a TF32 product takes the wgmma kernel where `wgmma_route`
    says so, else the table's mma.sync schedule."""
    a, b, c, m, n = transposed_c(a, b, c, m, n)
    if isinstance(schedule, wgmma.WgSchedule):
        if schedule.mode != mode:
            raise ClgemmError(f"a {schedule.mode} schedule for a {mode} product; "
                              "this is a clgemm bug")
        return enqueue_wgmma(rt, m, n, k, alpha, beta, a, b, c, flag=flag, schedule=schedule,
                             queue=queue)
    if schedule is None and mode == "tf32" and wgmma_route(rt, a, b, m, n, k):
        return enqueue_wgmma(rt, m, n, k, alpha, beta, a, b, c, flag=flag, queue=queue)
    s = schedule or schedule_for(rt, mode, m, n, k)
    if s.mode != mode:
        s = replace(s, mode=mode)
    layout = layout_for(a, b)
    s = fitting_schedule(rt, s, layout)
    return get_kernel(rt, s, layout).enqueue(m, n, k, alpha, beta, a, b, c, queue=queue,
                                             flag=flag)


def tf32_schedule(rt: Runtime, a: Operand, b: Operand, m: int, n: int,
                  k: int) -> "TcSchedule | wgmma.WgSchedule":
    """The schedule a TF32 product of these operands runs (for reporting it)."""
    return wgmma.DEFAULT if wgmma_route(rt, a, b, m, n, k) else schedule_for(rt, "tf32", m, n, k)


def tc_matmul(A: np.ndarray, B: np.ndarray, *, C: np.ndarray | None = None, alpha: float = 1.0,
              beta: float = 0.0, trans_a: bool = False, trans_b: bool = False,
              mode: str = "3xtf32", rt: Runtime | None = None,
              schedule: "TcSchedule | wgmma.WgSchedule | None" = None
              ) -> tuple[np.ndarray, float]:
    """Host arrays in, (result, kernel seconds) out, through the tensor cores. For tests and
    benchmarks; the public door stays clgemm.matmul."""
    rt = rt or get_runtime()
    if not tensorcore_available(rt):
        raise ClgemmError(f"no tensor-core lane on {rt.device.name!r}: "
                          f"{tensorcore_support(rt).reason}")
    A, B, m, n, k = host_pair(A, B, trans_a, trans_b)
    mf = cl.mem_flags
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0,
                max(A.shape[1], 1), trans_a)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0,
                max(B.shape[1], 1), trans_b)
    out = (np.ascontiguousarray(C, np.float32).copy() if (C is not None and beta != 0.0)
           else np.empty((m, n), np.float32))
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0,
                max(n, 1), False)
    if m == 0 or n == 0:
        return out, 0.0
    ev = tc_product(rt, mode, m, n, k, alpha, beta, a, b, c, schedule)
    ev.wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    return out, (ev.profile.end - ev.profile.start) * 1e-9
