"""3xTF32 serving the exact contract on the tensor cores, with float32 arithmetic as the
fallback that keeps IEEE propagation: the split x = hi + lo does not (Inf - Inf is NaN), so
outputs that are not finite are recomputed in float32.

mma.sync kernels do it themselves (render_tc's `ieee_fallback`): a work-group whose tile has a
non-finite output recomputes that tile with float32 dot products before storing it, so every
call is one launch and the host never waits; a reported call reads the flag only to say that
a tile fell back. The wgmma kernels do not: where the call reports nothing and reads no old C
(beta == 0), the lane raises a gate and a gated float32 kernel enqueued behind it computes
only where the gate is raised; otherwise the host reads the flag back and, where it is
raised, restores C and recomputes with the float32 family.
"""

from __future__ import annotations


import pyopencl as cl

from ..kernels import wgmma
from ..kernels.tensorcore import TcSchedule
from ..operands import Operand, transposed_c
from ..runtime import Runtime
from .fp32 import Fp32Lane
from .mma import TcKernel, fitting_schedule, get_kernel, layout_for, nonfinite_flag
from .wgmma import enqueue_wgmma


class TcExactLane:
    """The exact contract on a 3xTF32 schedule (mma.sync or wgmma)."""

    def __init__(self, rt: Runtime, schedule: "TcSchedule | wgmma.WgSchedule",
                 fallback: Fp32Lane) -> None:
        self.rt = rt
        self.schedule = schedule
        self.fallback = fallback
        self.wgmma = isinstance(schedule, wgmma.WgSchedule)
        self.name = "3xtf32-wgmma" if self.wgmma else "3xtf32-mma"
        self.flag = nonfinite_flag(rt)
        self._kernels: dict[tuple, TcKernel] = {}  # mma.sync kernels per operand layout
        # a hot call may be recorded and launched again (lanes/recording.py): mma.sync's one
        # launch; wgmma's hot call turns a pair of gates each call
        self.replayable = not self.wgmma

    def _mma_kernel(self, a: Operand, b: Operand, slot: int) -> TcKernel:
        key = (a.transposed, b.transposed, a.ld % 4 == 0 and a.offset % 4 == 0,
               b.ld % 4 == 0 and b.offset % 4 == 0, slot)
        kernel = self._kernels.get(key)
        if kernel is None:
            layout = layout_for(a, b)
            kernel = get_kernel(self.rt, fitting_schedule(self.rt, self.schedule, layout),
                                layout, slot=slot, ieee_fallback=True)
            kernel = self._kernels.setdefault(key, kernel)
        return kernel

    def product(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue, flag: "cl.Buffer", slot: int = 0) -> "cl.Event":
        """The 3xTF32 product alone, raising `flag` on a non-finite output; `slot` picks the
        kernel object (one per gate, so that the flag argument stays bound)."""
        a, b, c, m, n = transposed_c(a, b, c, m, n)
        if self.wgmma:
            return enqueue_wgmma(self.rt, m, n, k, alpha, beta, a, b, c, flag=flag,
                                 schedule=self.schedule, queue=queue)
        return self._mma_kernel(a, b, slot).enqueue(m, n, k, alpha, beta, a, b, c,
                                                    queue=queue, flag=flag)

    def block_sums_kernel(self, a: Operand, b: Operand, c: Operand,
                          rows_per_block: int) -> "TcKernel | None":
        """The kernel of this product (IEEE fallback inside, as the hot call's) that also
        writes C's block sums over `rows_per_block` rows (render_tc's block_sums; its
        `enqueue(..., sums=(S, Q, Sa))`), or None where this lane cannot: wgmma, a
        column-major C, or tiles not that many rows high."""
        if self.wgmma or c.transposed:
            return None
        layout = layout_for(a, b)
        schedule = fitting_schedule(self.rt, self.schedule, layout)
        if schedule.block_m != rows_per_block:
            return None
        return get_kernel(self.rt, schedule, layout, ieee_fallback=True, block_sums=True)

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue", info=None) -> "cl.Event":
        if not self.wgmma:
            return self._self_contained(m, n, k, alpha, beta, a, b, c, queue, info)
        if info is None and beta == 0.0:
            flag = self.flag
            with flag.lock:
                raise_gate, clear_gate, slot = flag.next_gate()
                event = self.product(m, n, k, alpha, beta, a, b, c, queue, raise_gate, slot)
                self.fallback.enqueue(m, n, k, alpha, beta, a, b, c, queue,
                                      gate=(raise_gate, clear_gate), slot=slot)
            return event
        return self._reported(m, n, k, alpha, beta, a, b, c, queue, info)

    def _self_contained(self, m, n, k, alpha, beta, a: Operand, b: Operand, c: Operand,
                        queue, info) -> "cl.Event":
        """One launch of a kernel that falls back by itself (mma.sync); a reported call reads
        the flag to say so (the only wait, and only where `info` asks)."""
        if info is None:
            return self.product(m, n, k, alpha, beta, a, b, c, queue, self.flag.scratch)
        info.extra["lane"] = "3xtf32"
        with self.flag.lock:
            event = self.product(m, n, k, alpha, beta, a, b, c, queue, self.flag.buffer)
            raised = self.flag.raised(queue, wait_for=[event])
        if raised:
            info.extra["lane_fallback"] = ("non-finite output: the tiles that hold one were "
                                           "recomputed in float32 inside the kernel for IEEE "
                                           "propagation")
        return event

    def _reported(self, m, n, k, alpha, beta, a: Operand, b: Operand, c: Operand, queue,
                  info) -> "cl.Event":
        """The product with the flag read back (one wait): a fallback is reported in `info`,
        and with beta != 0 the old C is kept on the device to recompute from."""
        rt = self.rt
        if info is not None:
            info.extra["lane"] = "3xtf32"
        span = (m - 1) * c.ld + n  # C's elements from its offset, in floats
        saved = (rt.pooled(4 * span, "C (kept for a float32 recompute)", queue)
                 if beta != 0.0 else None)
        if saved is not None:
            cl.enqueue_copy(queue, saved, c.buffer, byte_count=4 * span,
                            src_offset=4 * c.offset)
        flag = nonfinite_flag(rt)
        with flag.lock:
            event = self.product(m, n, k, alpha, beta, a, b, c, queue, flag.buffer)
            raised = flag.raised(queue, wait_for=[event])
        if not raised:
            return event
        if saved is not None:
            cl.enqueue_copy(queue, c.buffer, saved, byte_count=4 * span, dst_offset=4 * c.offset)
        if info is not None:
            info.extra["lane_fallback"] = ("non-finite output: recomputed by the float32 "
                                           f"family ({self.fallback.schedule.key()}) for IEEE "
                                           "propagation")
            info.schedule = self.fallback.schedule.key()
        return self.fallback.enqueue(m, n, k, alpha, beta, a, b, c, queue, info)
