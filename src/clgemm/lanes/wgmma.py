"""The tensor-core lane through the warpgroup MMA (Hopper, sm_90a): TF32 and 3xTF32 on the
kernel of kernels/wgmma.py, with the pre-passes that lay operands out K-major (a transpose
for TF32, the hi/lo split for 3xTF32) into per-runtime scratch."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import pyopencl as cl

from ..errors import ShapeError
from ..kernels import wgmma
from ..operands import Operand, check_index_range
from ..runtime import BuildInfo, Runtime
from .fp32 import BoundArgs
from .mma import nonfinite_flag
from .scratch import Scratch

_TRANSPOSE_C = """
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void clgemm_transpose(const int R, const int Cn, __global const float* restrict X,
                      const int ldx, const int x_off, __global float* restrict Y, const int ldy)
{
  // Y (Cn x R, leading dimension ldy) = X^T for X (R x Cn): 32 x 32 tiles through local
  // memory, one padding column against bank conflicts
  __local float tile[32][33];
  X += x_off;
  const int bx = get_group_id(0) * 32, by = get_group_id(1) * 32;
  const int tx = get_local_id(0), ty = get_local_id(1);
  for (int j = ty; j < 32; j += 8)
    if (by + j < R && bx + tx < Cn) tile[j][tx] = X[(long)(by + j) * ldx + bx + tx];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = ty; j < 32; j += 8)
    if (bx + j < Cn && by + tx < R) Y[(long)(bx + j) * ldy + by + tx] = tile[tx][j];
}

// 3xTF32's operand split: hi = x rounded to TF32 on its bits (to nearest, ties away: the top
// 19 bits after adding half of the dropped part), lo = x - hi (exact in float32). An Inf x
// gives a NaN lo (Inf - Inf), so the product is flagged non-finite, never silently wrong.
#define TF32_HI(x) as_float((as_uint(x) + 0x1000u) & 0xffffe000u)

void split_tile(const int R, const int Cn, __global const float* restrict X, const int ldx,
                const int transpose, __global float* restrict Y, const int ldy, const long lo,
                __local float (*tile)[33])
{
  // X is R x Cn; Y = X (transpose 0) or X^T (transpose 1), hi at Y and lo at Y + lo.
  // transpose is the same for the whole work-group: the early return skips no barrier
  // that other work-items wait at
  const int bx = get_group_id(0) * 32, by = get_group_id(1) * 32;
  const int tx = get_local_id(0), ty = get_local_id(1);
  if (!transpose) {
    for (int j = ty; j < 32; j += 8)
      if (by + j < R && bx + tx < Cn) {
        const float x = X[(long)(by + j) * ldx + bx + tx], h = TF32_HI(x);
        const long at = (long)(by + j) * ldy + bx + tx;
        Y[at] = h;
        Y[lo + at] = x - h;
      }
    return;
  }
  for (int j = ty; j < 32; j += 8)
    if (by + j < R && bx + tx < Cn) tile[j][tx] = X[(long)(by + j) * ldx + bx + tx];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = ty; j < 32; j += 8)
    if (bx + j < Cn && by + tx < R) {
      const float x = tile[tx][j], h = TF32_HI(x);
      const long at = (long)(bx + j) * ldy + by + tx;
      Y[at] = h;
      Y[lo + at] = x - h;
    }
}

// Both operands of a product in one launch (one enqueue less of host time per call):
// work-groups of z = 0 split A, of z = 1 split B
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void clgemm_split_tf32(
    const int Ra, const int Ca, __global const float* restrict Xa, const int lda, const int a_off,
    const int ta, __global float* restrict Ya, const long a_lo,
    const int Rb, const int Cb, __global const float* restrict Xb, const int ldb, const int b_off,
    const int tb, __global float* restrict Yb, const long b_lo, const int ldy)
{
  __local float tile[32][33];
  if (get_group_id(2) == 0) split_tile(Ra, Ca, Xa + a_off, lda, ta, Ya, ldy, a_lo, tile);
  else split_tile(Rb, Cb, Xb + b_off, ldb, tb, Yb, ldy, b_lo, tile);
}
"""

_ARG_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
              None, np.int32, np.int32, None, np.int32, np.int32, None]


class WgKernel:
    """The wgmma kernel of one schedule: A stored M x K, B stored N x K (K-major); 3xTF32
    reads each as hi and lo arrays a fixed number of floats apart. Its last arguments: the
    non-finite output flag, then (3xTF32) the offsets of the lo arrays."""

    def __init__(self, rt: Runtime, schedule: wgmma.WgSchedule) -> None:
        schedule.check(rt.device.local_mem_bytes)
        self.rt, self.schedule = rt, schedule
        self.source = wgmma.render_wgmma(schedule)
        built = rt.build_patched(self.source, "-cl-mad-enable",
                                 lambda ptx: wgmma.patch_ptx(ptx.decode()).encode(),
                                 tag="wgmma-sm90a/1")
        self.build_info: BuildInfo = built.info
        self.program = built.program
        lo = [np.int64, np.int64] if schedule.splits == 3 else []
        self._args = BoundArgs(built.kernel(wgmma.KERNEL_NAME), _ARG_TYPES + lo)
        self._lock = threading.Lock()

    def bind(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand, b: Operand,
             c: Operand, flag: "cl.Buffer | None" = None,
             lo: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        """Set the kernel's arguments (the caller holds `_lock` until `launch`); returns the
        global and local sizes. `lo`: (3xTF32) the floats from A's and B's hi elements to
        their lo ones."""
        if a.transposed or not b.transposed or c.transposed:
            raise ShapeError("the wgmma kernel takes A as M x K and B as N x K; "
                             "this is a clgemm bug")
        check_index_range(m, n, k)
        s = self.schedule
        groups = (-(-m // s.block_m)) * (-(-n // s.block_n))
        flag = flag if flag is not None else nonfinite_flag(self.rt).scratch
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset, flag]
        if s.splits == 3:
            args += list(lo)
        self._args.bind(args)
        return max(groups, 1) * s.threads, s.threads

    def launch(self, sizes: tuple[int, int], queue=None) -> "cl.Event":
        return cl.enqueue_nd_range_kernel(queue or self.rt.queue, self._args.kernel,
                                          (sizes[0],), (sizes[1],))

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue=None, flag: "cl.Buffer | None" = None,
                lo: tuple[int, int] = (0, 0)) -> "cl.Event":
        with self._lock:
            return self.launch(self.bind(m, n, k, alpha, beta, a, b, c, flag, lo), queue)


def get_wg_kernel(rt: Runtime, schedule: wgmma.WgSchedule) -> WgKernel:
    return rt.cached(("wgmma", schedule), lambda: WgKernel(rt, schedule))


def _helper_kernel(rt: Runtime, name: str, arg_types: list, slot: str = "") -> BoundArgs:
    """A kernel of _TRANSPOSE_C, one object per runtime and `slot` (two slots' arguments can
    be set before either is enqueued), its arguments set only where they changed."""
    return rt.cached(("wgmma helper", name, slot),
                     lambda: BoundArgs(rt.build(_TRANSPOSE_C).kernel(name), arg_types))


def scratch(rt: Runtime, queue: "cl.CommandQueue") -> Scratch:
    return rt.cached(("wgmma scratch", queue.int_ptr), lambda: Scratch(rt, "wgmma"))


Launch = Callable[[], cl.Event]  # an enqueue whose kernel arguments are already set


def _k_major(rt: Runtime, x: Operand, rows: int, k: int, name: str, queue,
             space: Scratch) -> "tuple[Operand, Launch | None]":
    """x as a rows x K, K-contiguous operand: itself when it is stored so (no launch), else
    its transpose in a scratch buffer, with the transpose's arguments set and its enqueue
    returned (the caller enqueues it before the product that reads it)."""
    stored_k_contiguous = (not x.transposed) if name == "A" else x.transposed
    if stored_k_contiguous:
        return x, None
    ld = -(-max(k, 1) // 4) * 4  # 16-byte rows
    buf = space.buffer(name, 4 * max(rows, 1) * ld)
    out = Operand(buf, 0, ld, name == "B")
    if not (rows and k):
        return out, None
    # x is stored K x rows: Y (rows x K) = X^T
    kern = _helper_kernel(rt, "clgemm_transpose",
                          [np.int32, np.int32, None, np.int32, np.int32, None, np.int32], name)
    kern.bind([k, rows, x.buffer, x.ld, x.offset, buf, ld])
    sizes = (-(-rows // 32) * 32, -(-k // 32) * 8)
    return out, lambda: cl.enqueue_nd_range_kernel(queue, kern.kernel, sizes, (32, 8))


def _split_operands(rt: Runtime, a: Operand, b: Operand, m: int, n: int, k: int, queue,
                    space: Scratch) -> "tuple[Operand, int, Operand, int, Launch | None]":
    """A and B split for 3xTF32 into hi and lo, each rows x K and K-contiguous with 16-byte
    rows, lo after hi in one scratch buffer per operand, by one launch whose arguments are
    set and whose enqueue is returned: (A's hi operand, the floats from its hi to its lo,
    B's hi operand, the same for B, the launch)."""
    ld = -(-max(k, 1) // 4) * 4
    a_lo, b_lo = max(m, 1) * ld, max(n, 1) * ld
    ya = space.buffer("A hi/lo", 8 * a_lo)
    yb = space.buffer("B hi/lo", 8 * b_lo)
    hi_a, hi_b = Operand(ya, 0, ld, False), Operand(yb, 0, ld, True)
    if not (m and n and k):
        return hi_a, a_lo, hi_b, b_lo, None
    ta, tb = a.transposed, not b.transposed  # 1: stored K x rows, transposed here
    ra, ca = (k, m) if ta else (m, k)  # the operands' stored rows and columns
    rb, cb = (k, n) if tb else (n, k)
    kern = _helper_kernel(rt, "clgemm_split_tf32",
                          [np.int32, np.int32, None, np.int32, np.int32, np.int32, None,
                           np.int64] * 2 + [np.int32])
    kern.bind([ra, ca, a.buffer, a.ld, a.offset, int(ta), ya, a_lo,
               rb, cb, b.buffer, b.ld, b.offset, int(tb), yb, b_lo, ld])
    sizes = (-(-max(ca, cb) // 32) * 32, -(-max(ra, rb) // 32) * 8, 2)
    return hi_a, a_lo, hi_b, b_lo, lambda: cl.enqueue_nd_range_kernel(queue, kern.kernel, sizes,
                                                                       (32, 8, 1))


def enqueue_wgmma(rt: Runtime, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                  b: Operand, c: Operand, flag: "cl.Buffer | None" = None,
                  schedule: wgmma.WgSchedule | None = None,
                  events: list | None = None, queue=None) -> "cl.Event":
    """C = alpha op(A) op(B) + beta C (row-major C) on the wgmma kernel, TF32 or (a 3xTF32
    schedule) 3xTF32: TF32 operands not stored K-contiguous are transposed into scratch
    first, 3xTF32 operands are always split into scratch. Returns the product's event;
    `events` (a list) receives every command's, in order (the harness times the span)."""
    s = schedule or wgmma.DEFAULT
    queue = queue or rt.queue
    kernel = get_wg_kernel(rt, s)
    space = scratch(rt, queue)
    with space.lock:
        if s.splits == 3:
            a_k, a_lo, b_k, b_lo, pre = _split_operands(rt, a, b, m, n, k, queue, space)
            launches, lo = [pre], (a_lo, b_lo)
        else:
            (a_k, pre_a), (b_k, pre_b) = (_k_major(rt, a, m, k, "A", queue, space),
                                          _k_major(rt, b, n, k, "B", queue, space))
            launches, lo = [pre_a, pre_b], (0, 0)
        with kernel._lock:
            # every argument is set before the first enqueue: on an idle device the product
            # then follows its pre-pass by one enqueue's host time, not by Python's set-up
            sizes = kernel.bind(m, n, k, alpha, beta, a_k, b_k, c, flag, lo)
            for go in launches:
                if go is not None:
                    ev = go()
                    if events is not None:
                        events.append(ev)
            ev = kernel.launch(sizes, queue)
    if events is not None:
        events.append(ev)
    return ev
