"""The tensor-core lane through mma.sync (compute capability >= 8.0): TF32 and 3xTF32 kernels
of kernels/tensorcore.py, one compiled kernel per (schedule, layout), launched for any M, N, K.

Supported: any M, N, K >= 0; alpha, beta (C unread when beta == 0); A stored M x K or K x M,
B stored K x N or N x K, any leading dimensions and offsets (16-byte copies where lda/ldb and
the offsets are multiples of 4, element copies otherwise); C row-major (a column-major C is
mapped by swapping operands). Whether the device runs it at all: lanes/probe.py.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import replace

import numpy as np
import pyopencl as cl

from ..errors import ShapeError
from ..kernels.tensorcore import (KERNEL_NAME, Dialect, TcLayout, TcSchedule, TcSearchSpace,
                                  render_tc)
from ..operands import Operand, check_index_range
from ..runtime import BuildInfo, Runtime
from .fp32 import BoundArgs
from .recording import launch

# Defaults until a device table says otherwise (H100 measurements: benchmarks/tc/).
DEFAULT_SCHEDULES = {
    "tf32": TcSchedule(block_m=128, block_n=128, block_k=16, warps_m=2, warps_n=2, stages=2,
                       mode="tf32", fold=0, async_copy=1, raster=1),
    "3xtf32": TcSchedule(block_m=128, block_n=128, block_k=16, warps_m=2, warps_n=2, stages=2,
                         mode="3xtf32", fold=3, async_copy=1, raster=1),
}


def default_dialect() -> Dialect:
    """PTX, or (CLGEMM_TC_EMULATE=1, for tests and dry runs) its plain OpenCL C stand-ins."""
    return Dialect(emulate=os.environ.get("CLGEMM_TC_EMULATE") == "1")


def search_space(rt: Runtime) -> TcSearchSpace:
    d = rt.device
    return TcSearchSpace(local_mem_bytes=d.local_mem_bytes, max_work_group_size=d.max_work_group_size)


def layout_for(a: Operand, b: Operand, batch_strides: tuple[int, int] = (0, 0)) -> TcLayout:
    """The operands' storage facts: an operand is aligned (16-byte chunk loads) where its
    leading dimension, offset and, in a batch, its stride between matrices are multiples of 4."""
    sa, sb = batch_strides
    return TcLayout(trans_a=a.transposed, trans_b=b.transposed,
                    aligned_a=a.ld % 4 == 0 and a.offset % 4 == 0 and sa % 4 == 0,
                    aligned_b=b.ld % 4 == 0 and b.offset % 4 == 0 and sb % 4 == 0)


# the tensor-core kernel's arguments, its flag last (lanes/tc_batched.py adds batch strides)
ARG_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
             None, np.int32, np.int32, None, np.int32, np.int32, None]


class TcKernel:
    """One compiled tensor-core kernel (schedule + layout) for any M, N, K; its last argument
    is the non-finite output flag. `ieee_fallback`: tiles with a non-finite output are
    recomputed in float32 inside the kernel (render_tc), so one launch keeps IEEE
    propagation; the flag then only reports that it happened."""

    def __init__(self, rt: Runtime, schedule: TcSchedule, layout: TcLayout,
                 dialect: Dialect | None = None, ieee_fallback: bool = False,
                 block_sums: bool = False) -> None:
        dialect = dialect or default_dialect()
        space = search_space(rt) if not dialect.emulate else TcSearchSpace(
            rt.device.local_mem_bytes, rt.device.max_work_group_size)
        space.check(schedule, layout)
        self.rt, self.schedule, self.layout, self.dialect = rt, schedule, layout, dialect
        self.ieee_fallback, self.block_sums = ieee_fallback, block_sums
        self.source = render_tc(schedule, layout, dialect, ieee_fallback, block_sums)
        built = rt.build(self.source, options="-cl-mad-enable")
        self.build_info: BuildInfo = built.info
        self.program = built.program
        types = ARG_TYPES + [None, None, None] if block_sums else ARG_TYPES
        self._args = BoundArgs(built.kernel(KERNEL_NAME), types)
        self._lock = threading.Lock()
        self._sizes: dict[tuple[int, int, int], int] = {}  # global size per (m, n, k), checked

    def global_size(self, m: int, n: int) -> int:
        s = self.schedule
        return (-(-m // s.block_m)) * (-(-n // s.block_n)) * s.threads

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, queue=None, wait_for=None,
                flag: "cl.Buffer | None" = None, sums: tuple = ()) -> "cl.Event":
        """`flag` (an int32 buffer, zero before) becomes nonzero when an output is not
        finite; without one, a scratch flag that nobody reads is used. `sums`: the three
        double buffers of C's block sums (S, Q, Sa) a block_sums kernel writes."""
        if bool(sums) != self.block_sums:
            raise ValueError("C's block sums go with a block_sums kernel; this is a clgemm bug")
        if a.transposed != self.layout.trans_a or b.transposed != self.layout.trans_b:
            raise ShapeError("operand layout does not match the kernel's; this is a clgemm bug")
        if c.transposed:
            raise ShapeError("the tensor-core kernel writes row-major C; map column-major C first")
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset,
                flag if flag is not None else nonfinite_flag(self.rt).scratch, *sums]
        gsize = self._sizes.get((m, n, k))
        if gsize is None:
            check_index_range(m, n, k)
            # an empty C: one idle group
            gsize = self._sizes[(m, n, k)] = max(self.global_size(m, n), self.schedule.threads)
        # buffers pinned on the hot path only (fp32.BoundArgs)
        return launch(self._args, self._lock, queue or self.rt.queue, args, (gsize,),
                      (self.schedule.threads,), keep=queue is self.rt.user_queue,
                      wait_for=wait_for)


class NonfiniteFlag:
    """int32 device flags of one runtime that the kernels raise on a non-finite output.

    `buffer` is read back by the host (`raised`): zero between calls, only a call that finds
    it raised clears it. `gates` serve the hot path, which reads nothing back: the lane
    raises one, a gated float32 kernel recomputes the product where it is raised and clears
    the other, which the next call's lane raises (`next_gate`). Each gate is cleared one call
    before its next use, after the last kernel that read it (the queue is in order)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        zero = np.zeros(1, np.int32)
        mf = cl.mem_flags

        def flag() -> "cl.Buffer":
            return cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=zero)

        self.buffer, self.scratch = flag(), flag()
        self.gates = (flag(), flag())
        self._parity = 0
        # The read lands in page-locked host memory (a mapped ALLOC_HOST_PTR buffer): a small
        # read into pageable memory goes through a staging copy that cost ~100 us per call on
        # NVIDIA's OpenCL.
        self._pinned_buffer = cl.Buffer(rt.context, mf.READ_WRITE | mf.ALLOC_HOST_PTR, size=4)
        self._pinned, _ = cl.enqueue_map_buffer(rt.queue, self._pinned_buffer,
                                                cl.map_flags.READ | cl.map_flags.WRITE, 0, (1,),
                                                np.int32, is_blocking=True)
        self.lock = threading.Lock()

    def next_gate(self) -> "tuple[cl.Buffer, cl.Buffer, int]":
        """(the gate this call raises and reads, the gate it clears, which of the two pairs
        it is); held under `lock` from here to the last enqueue of the call."""
        self._parity ^= 1
        return self.gates[self._parity], self.gates[self._parity ^ 1], self._parity

    def raised(self, queue=None, wait_for=None) -> bool:
        """Read the flag after the kernel (blocking) and clear it if it was raised."""
        queue = queue or self.rt.queue
        got = self._pinned
        cl.enqueue_copy(queue, got, self.buffer, wait_for=wait_for, is_blocking=True)
        if got[0]:
            cl.enqueue_copy(queue, self.buffer, np.zeros(1, np.int32), is_blocking=True)
            return True
        return False



def nonfinite_flag(rt: Runtime) -> NonfiniteFlag:
    return rt.cached("nonfinite flag", lambda: NonfiniteFlag(rt))


def get_kernel(rt: Runtime, schedule: TcSchedule, layout: TcLayout,
               dialect: Dialect | None = None, slot: int = 0,
               ieee_fallback: bool = False, block_sums: bool = False) -> TcKernel:
    """The kernel, built once per runtime; `slot`: another kernel object of the same program
    (its own bound arguments)."""
    dialect = dialect or default_dialect()
    key = ("tc", schedule, layout, dialect, slot, ieee_fallback) + (
        ("block sums",) if block_sums else ())
    return rt.cached(key, lambda: TcKernel(rt, schedule, layout, dialect, ieee_fallback,
                                           block_sums))


def fitting_schedule(rt: Runtime, s: TcSchedule, layout: TcLayout) -> TcSchedule:
    """`s`, or the mode's default where `s` does not fit this layout on the device (e.g. a
    transposed layout's pads overflow local memory)."""
    if valid_for(rt, s, layout):
        return s
    return replace(DEFAULT_SCHEDULES[s.mode], async_copy=s.async_copy,
                   stages=s.stages if s.async_copy else 2)


@functools.lru_cache(maxsize=4096)
def _valid_memo(local_mem: int, max_wg: int, s: TcSchedule, layout: TcLayout) -> bool:
    return TcSearchSpace(local_mem, max_wg).is_valid(s, layout)


def valid_for(rt: Runtime, s: TcSchedule, layout: TcLayout) -> bool:
    """Validity of a schedule for a layout on this device, computed once per combination
    (every launch asks)."""
    d = rt.device
    return _valid_memo(d.local_mem_bytes, d.max_work_group_size, s, layout)
