"""3xTF32 on the tensor cores for a batch of products in one launch: the mma.sync kernel
(render_tc, with its in-kernel IEEE fallback: a tile with a non-finite output is recomputed in
float32) given a second grid dimension over the batch, each work-group's operands and output
offset by the batch strides (a stride of 0 broadcasts that operand).

The batched exact lane where the device table promoted 3xTF32, for batches the small-rows
lane does not take (attention: prefill's 512 x 512 x 128 products, 32 heads, ran 1.45-1.68x
torch's time on the float32 family's batched kernel, records/nvidia-h100/2026-12-07-plan-traces).
The route (route.tc_batched_lane) sends it batches whose dimensions are all at least 128: the
plan campaign's `batched_lanes` part timed it at 1.38-1.48x the route's lane on attention
batches of 512 x 512 x 128 and 512 x 128 x 512 on an H200 and an H100, and 0.84-1.06x where
one dimension was 64 (records/nvidia-h200/2026-12-07-plan-traces, records/nvidia-h100/
2026-12-07-plan-traces-2); CLGEMM_TC_BATCH=0 switches it off.
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from ..kernels.tensorcore import KERNEL_NAME, TcLayout, TcSchedule, render_tc
from ..operands import Operand
from ..runtime import Runtime
from .fp32 import BoundArgs
from .recording import launch
from .mma import ARG_TYPES, default_dialect, fitting_schedule, layout_for, nonfinite_flag

BATCHED_NAME = "clgemm_tc_batched"


def batched_source(src: str) -> str:
    """A tensor-core kernel's source made batched: grid dimension 1 picks the product, whose
    A, B and C start `sa`, `sb`, `sc` elements further per index. The generator keeps the
    three lines this rewrites stable (asserted, as lanes/splitk.split_source does)."""
    head = f"__kernel void {KERNEL_NAME}(const int M,"
    last = "__global int* nonfinite)"
    body = "  A += a_off; B += b_off; C += c_off;"
    for part in (head, last, body):
        assert part in src, "generated tensor-core kernel changed: " + part
    src = src.replace(head, f"__kernel void {BATCHED_NAME}(const int M,", 1)
    src = src.replace(last, "__global int* nonfinite, const long sa, const long sb, "
                            "const long sc)", 1)
    return src.replace(body, "  const long bt_ = get_group_id(1);\n"
                             "  A += a_off + bt_ * sa; B += b_off + bt_ * sb; "
                             "C += c_off + bt_ * sc;", 1)


class TcBatchedKernel:
    """One compiled batched 3xTF32 kernel (schedule + layout), its arguments kept bound."""

    def __init__(self, rt: Runtime, schedule: TcSchedule, layout: TcLayout) -> None:
        self.rt, self.schedule, self.layout = rt, schedule, layout
        source = batched_source(render_tc(schedule, layout, default_dialect(),
                                          ieee_fallback=True))
        built = rt.build(source, options="-cl-mad-enable")
        self._args = BoundArgs(built.kernel(BATCHED_NAME), ARG_TYPES + [np.int64] * 3)
        self._lock = threading.Lock()

    def enqueue(self, batch: int, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, strides: tuple[int, int, int],
                queue) -> "cl.Event":
        s = self.schedule
        tiles = (-(-m // s.block_m)) * (-(-n // s.block_n))
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset, nonfinite_flag(self.rt).scratch, *strides]
        return launch(self._args, self._lock, queue, args, (max(tiles, 1) * s.threads, batch),
                      (s.threads, 1), keep=queue is self.rt.user_queue)


class TcBatchedLane:
    """The exact contract on 3xTF32 for batches (enqueue_batched, the batched lanes'
    interface), C row-major (the plan maps a column-major C first)."""

    name = "3xtf32-batched"
    replayable = True  # one launch (lanes/recording.py)

    def __init__(self, rt: Runtime, schedule: TcSchedule) -> None:
        self.rt = rt
        self.schedule = schedule

    def _kernel(self, layout: TcLayout) -> TcBatchedKernel:
        s = fitting_schedule(self.rt, self.schedule, layout)
        return self.rt.cached(("tc batched", s, layout, default_dialect()),
                              lambda: TcBatchedKernel(self.rt, s, layout))

    def enqueue_batched(self, batch: int, m: int, n: int, k: int, alpha: float, beta: float,
                        a: Operand, b: Operand, c: Operand, strides: tuple[int, int, int],
                        queue) -> "cl.Event":
        layout = layout_for(a, b, strides[:2])  # float4 loads in every matrix of the batch
        return self._kernel(layout).enqueue(batch, m, n, k, alpha, beta, a, b, c, strides,
                                            queue)
