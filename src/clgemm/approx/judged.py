"""TF32 under an error budget, judged on the device: the call never waits for its estimate.

The TF32 product, its a-posteriori estimate and the decision run on the device, on the
call's queue, in order:

  1. (beta != 0) C's old content copied aside (its span, from the runtime's pool);
  2. the TF32 product into C;
  3. the estimate: Gaussian probes W (n x PROBES, drawn on the device), X = alpha op(A)
     (op(B) W) (+ beta C_old W) and R W, by the small-rows lane (each product reads its large
     operand once);
  4. `budget_judge`: ||R W - X||_F / ||X||_F times the safety factor of PROBES probes, written
     with a gate that is raised where the estimate exceeds the budget or is not a number
     (a non-finite operand, or sums of squares past float range, go exact);
  5. (beta != 0) `budget_restore`: C_old back into C where the gate is raised;
  6. the float32 family's gated kernel: the exact product where the gate is raised (where it
     is not, every work-group returns at once).

The host learns the outcome only when it asks (`BudgetJudge.read`, one 8-byte read): a
reported call asks; a call on device arrays that reports nothing returns after its enqueues,
as the exact contract's hot path does, and the result it hands back is, in queue order, the
TF32 product or the exact one. A rejected TF32 result is replaced by the exact product, not by
another approximate method. Such a hot call with beta 0 is recorded by its plan and launched
again (lanes/recording.py: every launch of it draws a fresh seed for the probes) where each of
its kernels goes through `recording.launch`: the mma.sync TF32 kernel, the small-rows lane's
GPU form, the float32 family's work-group form (`BudgetJudge.recordable`); a call with beta
!= 0 (C's copy aside) or on the wgmma kernel is not.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from ..guard.device import guard_device
from ..lanes import recording
from ..lanes.fp32 import BoundArgs, Fp32Lane
from ..lanes.gemv import GemvLane
from ..lanes.scratch import Scratch
from ..lanes.tc import tc_product, wgmma_route
from ..operands import Operand, transposed_c
from ..runtime import Runtime
from ..staging import pinned_host
from . import lowrank

PROBES = 16  # Gaussian probe columns (safety_for(16) = 3)
GROUP = 256  # work-items of the judge's one work-group
GATE_SLOT = 2  # the fallback kernel object that keeps this gate bound (3xTF32 uses 0 and 1)

_SOURCE = r"""
#ifdef JUDGE_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

// verdict[0]: the gate (1: the exact product replaces the TF32 one), verdict[1]: the
// estimate's bits (float, safety factor applied)
__kernel void budget_judge(const int count, const float budget, const float safety,
                           __global const float* x, __global const float* r,
                           __global int* verdict)
{
  __local acc_t dd[GROUP];
  __local acc_t xx[GROUP];
  const int lid = get_local_id(0);
  acc_t d2 = 0, x2 = 0;
  for (int i = lid; i < count; i += GROUP) {
    const acc_t xv = x[i];
    const acc_t d = (acc_t)r[i] - xv;
    d2 += d * d;
    x2 += xv * xv;
  }
  dd[lid] = d2;
  xx[lid] = x2;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = GROUP / 2; s > 0; s >>= 1) {
    if (lid < s) {
      dd[lid] += dd[lid + s];
      xx[lid] += xx[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) {
    const float e = (float)((xx[0] > 0 ? sqrt(dd[0] / xx[0]) : sqrt(dd[0])) * safety);
    verdict[1] = as_int(e);
    verdict[0] = (e <= budget) ? 0 : 1;  // a NaN estimate raises the gate
  }
}

// C's old content back where the gate is raised (beta != 0: the exact product reads it)
__kernel void budget_restore(const long span, __global const int* verdict,
                             __global const float* saved, __global float* c, const long c_off)
{
  if (verdict[0] == 0) return;
  const long i = get_global_id(0);
  if (i < span) c[c_off + i] = saved[i];
}
"""

_JUDGE_TYPES = [np.int32, np.float32, np.float32, None, None, None]
_RESTORE_TYPES = [np.int64, None, None, None, np.int64]


@dataclass(frozen=True)
class Judgement:
    """What the device decided for one product."""

    estimate: float  # relative Frobenius error estimate, safety factor applied
    fell_back: bool  # the gate was raised: C holds the exact float32 product


@dataclass(frozen=True)
class Enqueued:
    """The events of one judged product: the TF32 kernel's, and the last command's."""

    product: "cl.Event"
    last: "cl.Event"


class BudgetJudge:
    """The judged TF32 product of one runtime on one queue: its kernels (arguments kept
    bound), the probes' scratch (lanes/scratch: grown to the largest product seen) and the
    verdict buffer.
    `lock` is held from `enqueue` to `read` where the verdict is read: the next product on
    this queue writes the same buffers."""

    def __init__(self, rt: Runtime, queue: "cl.CommandQueue") -> None:
        self.rt = rt
        self.queue = queue
        self.gd = guard_device(rt)
        options = f"-DGROUP={GROUP}" + (" -DJUDGE_DOUBLE" if self.gd.fp64 else "")
        built = rt.build(_SOURCE, options=options)
        self._judge = BoundArgs(built.kernel("budget_judge"), _JUDGE_TYPES)
        self._restore = BoundArgs(built.kernel("budget_restore"), _RESTORE_TYPES)
        # $CLGEMM_JUDGE_PROBE_SPLITS caps the K splits of the probe products (an experiment:
        # a cap of 1 drops their three gemv_reduce launches from the call's host path, at
        # the price of fewer work-groups; the plan campaign's approx_probe_nosplit part times
        # it beside the default, which splits as the small-rows lane does)
        cap = os.environ.get("CLGEMM_JUDGE_PROBE_SPLITS")
        self.gemv = (GemvLane(rt, max_splits=int(cap)) if cap
                     else rt.cached("gemv lane", lambda: GemvLane(rt)))
        self.safety = lowrank.safety_for(PROBES)
        self.verdict = rt.buffer(8, "budget verdict", hostbuf=np.zeros(2, np.int32))
        self._sink = rt.buffer(4, "budget gate sink", hostbuf=np.zeros(1, np.int32))
        # the read lands in page-locked memory: a small read into pageable memory went
        # through a staging copy (~100 us a call on NVIDIA's OpenCL; lanes.mma.NonfiniteFlag)
        self._host, self._host_buffer = pinned_host(rt, (2,), np.int32)
        self._scratch = Scratch(rt, "probe")  # this queue's W, op(B) W, X and R W
        self._saved = None  # C's old content of the last product with beta != 0
        self._seeds = np.random.default_rng()  # fresh probes every call (OS entropy once)
        self.lock = threading.Lock()
        # held while the judge's own kernels are bound and enqueued (recording.launch): the
        # callers hold `lock` around the whole call
        self._bind_lock = threading.Lock()

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, budget: float, fallback: Fp32Lane,
                seed: int | None = None, info=None) -> Enqueued:
        """C = alpha op(A) op(B) + beta C within `budget` (steps 1-6 above), nothing waited
        for; m, n, k > 0. The caller holds `lock`. `info` (an Info): every command's event
        lands in its `events` (a profiling queue's device time of the whole judged call)."""
        a, b, c, m, n = transposed_c(a, b, c, m, n)
        q, rt = self.queue, self.rt
        events = info.events if info is not None else []
        saved = None
        span = (m - 1) * c.ld + n
        if beta != 0.0:
            saved = rt.pooled(4 * span, "C kept for the exact fallback", q)
            events.append(cl.enqueue_copy(q, saved, c.buffer, byte_count=4 * span,
                                          src_offset=4 * c.offset))
        if recording.active() and (saved is not None
                                   or not self.recordable(m, n, k, a, b, fallback)):
            recording.spoil()  # (a copy, or a kernel not launched through recording.launch)
        product = tc_product(rt, "tf32", m, n, k, alpha, beta, a, b, c, queue=q)
        events.append(product)
        recording.flush(q)  # the device starts the product while the estimate is enqueued
        ws = self._scratch.buffer  # kept and grown: bound once for a chain of one shape
        w = Operand(ws("w", 4 * n * PROBES), 0, PROBES, False)
        y = Operand(ws("y", 4 * k * PROBES), 0, PROBES, False)
        x = Operand(ws("x", 4 * m * PROBES), 0, PROBES, False)
        rw = Operand(ws("rw", 4 * m * PROBES), 0, PROBES, False)
        draw = self._draw() if seed is None else seed
        # a recording of this call draws fresh probes at each of its launches
        events.append(self.gd.randn_into(w.buffer, 0, n * PROBES, draw, q,
                                         reseed=self._draw if seed is None else None))
        gemv = self.gemv.enqueue
        # (the lanes list their own commands' events in `info`)
        gemv(k, PROBES, n, 1.0, 0.0, b, w, y, q, info)  # op(B) W
        gemv(m, PROBES, k, alpha, 0.0, a, y, x, q, info)  # alpha op(A) (op(B) W)
        if saved is not None:  # + beta C_old W
            gemv(m, PROBES, n, beta, 1.0, Operand(saved, 0, c.ld, False), w, x, q, info)
        gemv(m, PROBES, n, 1.0, 0.0, c, w, rw, q, info)  # R W
        keep = q is rt.user_queue
        events.append(recording.launch(
            self._judge, self._bind_lock, q,
            (m * PROBES, budget, self.safety, x.buffer, rw.buffer, self.verdict),
            (GROUP,), (GROUP,), keep=keep))
        if saved is not None:
            events.append(recording.launch(
                self._restore, self._bind_lock, q,
                (span, self.verdict, saved, c.buffer, c.offset), (-(-span // 256) * 256,),
                (256,), keep=keep))
        self._saved = saved  # held until the next product: the restore may not have run yet
        last = fallback.enqueue(m, n, k, alpha, beta, a, b, c, q, info,
                                gate=(self.verdict, self._sink), slot=GATE_SLOT)
        return Enqueued(product, last)

    def recordable(self, m: int, n: int, k: int, a: Operand, b: Operand,
                   fallback: Fp32Lane) -> bool:
        """Whether a call of these (C-transposed) operands with beta 0 launches only kernels
        that a recording holds (lanes/recording.py): the TF32 product by mma.sync (the wgmma
        kernel is not launched through `recording.launch`), the small-rows lane's and the
        fallback's forms that can be replayed."""
        return (self.gemv.replayable and fallback.replayable
                and not wgmma_route(self.rt, a, b, m, n, k))

    def _draw(self) -> int:
        """A fresh seed for the probes (the caller holds `lock`: the generator is not safe to
        share between threads)."""
        return int(self._seeds.integers(1, 2**62))

    def read(self) -> Judgement:
        """The last product's verdict (waits for it); the caller holds `lock`."""
        cl.enqueue_copy(self.queue, self._host, self.verdict, is_blocking=True)
        gate, bits = self._host
        return Judgement(float(np.int32(bits).view(np.float32)), bool(gate))


def judge_for(rt: Runtime, queue: "cl.CommandQueue") -> BudgetJudge:
    """The runtime's judge of `queue` (the user queue's hot path, the stations' queue): one
    each, so that neither writes the scratch the other's commands read."""
    which = "user" if queue is rt.user_queue else "station"
    return rt.cached(("budget judge", which), lambda: BudgetJudge(rt, queue))
