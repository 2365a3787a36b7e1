"""A plan: the route of one kind of product, decided once by clgemm.route and then called.

    p = clgemm.plan(1024, 768, 3072, trans_b=True)   # printable: lane, schedule, why
    C = p(A, B)                                       # numpy or device arrays of that shape

A call on device arrays with the exact contract is the hot path: no kernel argument set
that is already bound, the output (when C is not given) from the runtime's memory pool, one
enqueue per kernel on a queue without profiling (launched from the recording of the plan's
first call of the same operand geometry: lanes/recording.py), and no wait on the device
(one exception, the driver's: on NVIDIA's OpenCL the first use of a newly allocated buffer
waits for the queue, so a call whose output size the pool has not held yet waits once). So
is a rel_tol call on device arrays that TF32 serves (`Plan.judged`: approx/judged.py, the
verdict and the exact fallback on the device). Everything else (numpy arrays, `return_info`,
check=True, the other approximate methods, the online selector) passes a station that
waits for its answer, on the runtime's profiling queue.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import batched
from .approx import contract as approx
from .approx import judged
from .errors import ShapeError
from .guard import abft, deferred
from .info import Info
from .lanes import Lane
from .lanes.fp32 import Fp32Lane, lane_for
from .lanes.recording import Recorder
from .lanes.tc_exact import TcExactLane
from .operands import (Operand, check_index_range, device_operand, output_buffer, read_back,
                       refuse_overlap, run_product, scale_empty_product, transposed_c)
from .runtime import LruMemo, Runtime
from .schedule import Schedule
from .validate import (check_batched_call, check_call, check_host_memory, check_nonfinite,
                       is_device_array)


# A hot call on device arrays is launched again from the recording of an earlier call of the
# same geometry (lanes/recording.py); CLGEMM_REPLAY=0 runs the lane's own path every call
# (a module attribute, read per call: campaigns time both in one process).
REPLAY = os.environ.get("CLGEMM_REPLAY", "1") != "0"
REPLAYS = 8  # recordings a plan keeps (geometries of its operands, alpha and beta)
# kept in a plan's replays for a geometry whose hot call cannot be recorded (a judged call
# with beta != 0 or on the wgmma kernel; a call whose recording was refused: Recorder.
# recording): not recorded again at every call
_UNRECORDABLE = object()


class Contract(NamedTuple):
    """What the caller asked of the result."""

    rel_tol: float | None = None  # None: the exact float32 contract
    check: bool = False  # verify (and repair) with ABFT checksums
    nonfinite: str = "propagate"  # or "raise": refuse NaN/Inf operands


class PlanKey(NamedTuple):
    """What decides a route: the shape, the layout asked for, the contract, a schedule forced
    by the caller, and the selector. (Named tuples: a call makes and hashes one.)"""

    m: int
    n: int
    k: int
    trans_a: bool = False
    trans_b: bool = False
    contract: Contract = Contract()
    schedule: Schedule | None = None
    selector: str = "static"
    batch: int | None = None  # None: one product of matrices; else a batch of that many


@dataclass(frozen=True, eq=False)
class Plan:
    """One product's route, decided once: its lane (the kernel family and schedule of the
    exact contract), the float32 family's schedule that backs it, the station the call passes
    (exact, abft, approx or online) and why. Calling it runs the product."""

    key: PlanKey
    device: str
    station: str
    lane: Lane
    fallback: Fp32Lane  # the float32 family: the exact lane itself, or the 3xTF32 lane's fallback
    alternative: Schedule  # another float32 kernel, for the guard's recompute
    why: str
    rt: Runtime = field(repr=False)
    # a batch under a station (check, rel_tol, the online selector): the plan of one of its
    # products, which serves them one at a time
    matrix_plan: "Plan | None" = field(default=None, repr=False)
    # rel_tol served first by TF32 judged on the device (approx/judged.py): a call on device
    # arrays that reports nothing then waits for nothing
    judged: bool = False
    # recordings of hot calls by their operands' geometry (None: the lane is not replayable)
    replays: "LruMemo | None" = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_index_range(self.key.m, self.key.n, self.key.k)
        # a judged call is recorded where its judge says its launches can be (beta 0, the
        # product by mma.sync, the replayable forms): approx/judged.BudgetJudge.recordable
        if ((getattr(self.lane, "replayable", False) or self.judged)
                and self.replays is None):
            object.__setattr__(self, "replays", LruMemo(REPLAYS))

    def __str__(self) -> str:
        k = self.key
        op = ("A.T" if k.trans_a else "A") + " @ " + ("B.T" if k.trans_b else "B")
        c = k.contract
        contract = ("exact float32" if c.rel_tol is None else f"rel_tol={c.rel_tol:g}") + \
            (", checked (ABFT)" if c.check else "") + \
            (", NaN/Inf refused" if c.nonfinite == "raise" else "")
        batch = "" if k.batch is None else f", a batch of {k.batch}"
        return "\n".join([
            f"plan: C[{k.m}x{k.n}] = alpha * {op} + beta * C, K={k.k}{batch}, on {self.device!r}",
            f"  contract: {contract}",
            f"  station:  {self.station}",
            f"  lane:     {self.lane.name} {self.lane.schedule.key()}",
            f"  fallback: fp32 {self.fallback.schedule.key()}",
            f"  why:      {self.why}",
        ])

    # ---- calling ------------------------------------------------------------------------
    def __call__(self, A, B, C=None, *, alpha: float = 1.0, beta: float = 0.0,
                 return_info: bool = False):
        """C = alpha * op(A) @ op(B) + beta * C for operands of this plan's shape; returns C
        (numpy in, numpy out; device arrays in, a device array out), with an Info when
        `return_info`."""
        start = time.perf_counter()
        k = self.key
        rows = k.m
        if k.batch is not None or batched.is_batched(A, B, C):
            alpha, beta, got = check_batched_call(A, B, C, alpha, beta, k.trans_a, k.trans_b,
                                                  return_info)
            if got != (k.batch, k.m, k.n, k.k):
                raise ShapeError(
                    f"this plan is for {self._what()}, these operands make a batch of "
                    f"{got.batch} {got.m}x{got.n}x{got.k} products: make a plan for them with "
                    "clgemm.plan(..., batch=...)")
            rows = got.batch * k.m
        else:
            alpha, beta, *shape = check_call(A, B, C, alpha, beta, k.trans_a, k.trans_b,
                                             return_info)
            if tuple(shape) != (k.m, k.n, k.k):
                raise ShapeError(
                    f"this plan is for a {k.m}x{k.n}x{k.k} product, these operands make "
                    f"{shape[0]}x{shape[1]}x{shape[2]}: make a plan for them with "
                    "clgemm.plan(...)")
        if is_device_array(A) and A.context != self.rt.context:
            raise ShapeError("the operands live on another device than this plan's; make "
                             "the plan with device=... of their device")
        if k.contract.nonfinite == "raise":
            check_nonfinite(A, B, C, beta)
        if not is_device_array(A):
            check_host_memory(self.rt.device, A, B, C, rows, k.n, beta)
        return self.run(A, B, C, alpha, beta, return_info, start)

    def _what(self) -> str:
        k = self.key
        one = f"{k.m}x{k.n}x{k.k}"
        return f"a {one} product" if k.batch is None else f"a batch of {k.batch} {one} products"

    def run(self, A, B, C, alpha: float, beta: float, return_info: bool, start: float):
        """The call, its operands already checked (by __call__ or clgemm.matmul)."""
        rt = self.rt
        if rt.checks_open:  # checks whose verdicts are open: settle those this call meets
            deferred.settle_for(rt, A, B, C)
        if self.key.batch is not None:
            return self._batched(A, B, C, alpha, beta, return_info, start)
        hot = (not return_info and type(A) is cla.Array and _on(rt.user_queue, A, B, C))
        if hot and (self.station == "exact" or self.judged):
            return self._hot(A, B, C, alpha, beta)
        if hot and self.station == "abft" and beta == 0.0 and deferred.ENABLED:
            done, C = self._hot_checked(A, B, C, alpha)
            if done:
                return C
        k = self.key
        info = Info(method="exact", schedule=self.lane.schedule.key(), device=self.device,
                    shape=(k.m, k.n, k.k))
        if type(A) is cla.Array:
            _finish_foreign(rt, A, B, C)
        with rt.station():
            if self.station == "abft":
                tc = self.lane if isinstance(self.lane, TcExactLane) else None
                result, info = abft.checked_matmul(
                    rt, A, B, C=C, alpha=alpha, beta=beta, trans_a=k.trans_a,
                    trans_b=k.trans_b, schedule=self.fallback.schedule, lane=tc,
                    alternative=self.alternative, info=info)
            elif self.station == "approx":
                result, info = approx.approximate_matmul(
                    rt, A, B, C=C, alpha=alpha, beta=beta, trans_a=k.trans_a,
                    trans_b=k.trans_b, rel_tol=float(k.contract.rel_tol),
                    exact=self.exact_product, fallback=self.fallback, info=info)
            elif self.station == "online":
                result = self._online(A, B, C, alpha, beta, info)
            else:
                result = self.exact_product(A, B, C, alpha, beta, info)
        info.total_s = time.perf_counter() - start
        return (result, info) if return_info else result

    def _hot(self, A, B, C, alpha: float, beta: float):
        """Device arrays, nothing reported: launch and return. The exact contract's lane, or
        under rel_tol TF32 with its estimate, its verdict and the exact fallback
        (approx/judged.py), all enqueued on the user queue; no wait."""
        rt = self.rt
        k = self.key
        out = self._output(A, B, C)
        if k.m == 0 or k.n == 0:
            return out
        if k.k == 0:
            return scale_empty_product(out, beta, rt.user_queue)
        if not self.judged:
            if self.replays is not None and REPLAY:
                self._replay(A, B, out, alpha, beta)
                return out
            self._enqueue_hot(A, B, out, alpha, beta)
            return out
        judge = judged.judge_for(rt, rt.user_queue)
        with judge.lock:  # the judge's scratch and verdict: one call's at a time
            if REPLAY:
                self._replay(A, B, out, alpha, beta)
            else:
                self._enqueue_hot(A, B, out, alpha, beta)
        return out

    def _enqueue_hot(self, A, B, out, alpha: float, beta: float) -> None:
        """The hot call through the lane's own path (or the judge's, under rel_tol; its
        caller holds the judge's lock): every decision made again."""
        rt, k = self.rt, self.key
        if k.batch is not None:
            self._launch_batch(self._batch_operands(A, B, out), alpha, beta, rt.user_queue)
            return
        a, b, c, m, n = self._hot_operands(A, B, out)
        if self.judged:
            judged.judge_for(rt, rt.user_queue).enqueue(
                m, n, k.k, alpha, beta, a, b, c, float(k.contract.rel_tol), self.fallback)
        else:
            self.lane.enqueue(m, n, k.k, alpha, beta, a, b, c, rt.user_queue)

    def _replay(self, A, B, out, alpha: float, beta: float) -> None:
        """The hot call from the recording of an earlier one of this geometry (the operands'
        offsets, shapes and strides (a batch's 2-D operand is broadcast), A and B one buffer
        or two, alpha, beta), else the lane's own path, recorded for the next (a geometry
        whose call cannot be recorded is remembered as such)."""
        buffers = (A.base_data, B.base_data, out.base_data)
        key = (A.offset, A.shape, A.strides, B.offset, B.shape, B.strides, out.offset,
               out.strides, buffers[0] is buffers[1], alpha, beta)
        recording = self.replays.get(key)
        if recording is _UNRECORDABLE:
            self._enqueue_hot(A, B, out, alpha, beta)
            return
        if recording is not None:
            recording.launch(self.rt.user_queue, buffers, self._scratch)
            return
        with Recorder(buffers) as recorder:
            self._enqueue_hot(A, B, out, alpha, beta)
        recording = recorder.recording()
        self.replays.put(key, _UNRECORDABLE if recording is None else recording)

    def _scratch(self, nbytes: int):
        """Scratch of a replayed call (a split's partial sums), from the user queue's pool."""
        return self.rt.pooled(nbytes, "the scratch of a replayed call", self.rt.user_queue)

    def _hot_checked(self, A, B, C, alpha: float):
        """check=True on device arrays, beta 0, nothing reported: the product enqueued on the
        user queue, its check on the guard's second queue, the verdict read later
        (guard/deferred.py). (done, C): not done where the waiting check must serve (C then
        the output to give it)."""
        k = self.key
        given = C is not None
        C = self._output(A, B, C)
        if k.m == 0 or k.n == 0 or k.k == 0:
            return False, C
        a, b, c, m, n = self._hot_operands(A, B, C)
        return deferred.enqueue(self.rt, self, a, b, c, m, n, k.k, alpha, given), C

    def _output(self, A, B, C):
        """C, or an output from the runtime's pool; an output that overlaps an operand is
        refused."""
        if C is None:
            return self.rt.empty(self.key.m, self.key.n)
        refuse_overlap(C, A, B)
        return C

    def _hot_operands(self, A, B, out):
        """(a, b, c, m, n) of a call on device arrays of the user queue (so in the runtime's
        context); a C stored transposed runs as the transposed product."""
        k = self.key
        a = device_operand(None, "A", A, k.trans_a)
        b = device_operand(None, "B", B, k.trans_b)
        c = device_operand(None, "C", out, False)
        m, n = k.m, k.n
        if c.transposed:
            a, b, c, m, n = transposed_c(a, b, c, m, n)
        return a, b, c, m, n

    def exact_product(self, A, B, C, alpha: float, beta: float, info: Info,
                      lane: "Lane | None" = None):
        """The exact product through the profiling queue, waited for, its kernel time in
        `info`: the path of numpy operands and reported calls, and the fallback the stations
        return to. `lane` replaces the plan's (the online selector's choice)."""
        lane = lane or self.lane
        k = self.key
        launched: list = []  # (the lane's last event, where its kernels start in info.events)

        def compute(a: Operand, b: Operand, c: Operand, m: int, n: int) -> None:
            # not waited for here: on numpy operands the blocking read that follows on the
            # same in-order queue waits for it (one wake-up of the host per call, not two)
            first = len(info.events)
            launched.append((lane.enqueue(m, n, k.k, alpha, beta, a, b, c, self.rt.queue,
                                          info), first))

        result = run_product(self.rt, A, B, C, beta, k.trans_a, k.trans_b, info, compute)
        if launched:
            event, first = launched[-1]
            event.wait()  # done already after a read; device arrays wait here
            ran = info.events[first:]  # a lane that runs several kernels lists them all
            info.kernel_s = sum(map(self.rt.seconds, ran)) if ran else self.rt.seconds(event)
        return result

    # ---- batches ------------------------------------------------------------------------
    def _batched(self, A, B, C, alpha: float, beta: float, return_info: bool, start: float):
        """A batch: one launch of the lane's batched kernel on the exact contract; under a
        station, product by product through the plan of one of them."""
        rt = self.rt
        k = self.key
        on_device = type(A) is cla.Array
        if on_device and self.station == "exact" and not return_info and _on(
                rt.user_queue, A, B, C):
            return self._batch_on(rt.user_queue, A, B, C, alpha, beta, None)
        info = Info(method="exact", schedule=self.fallback.schedule.key(), device=self.device,
                    shape=(k.m, k.n, k.k))
        info.extra["batch"] = k.batch
        if on_device:
            _finish_foreign(rt, A, B, C)
        if self.matrix_plan is not None:
            result = self._each_product(A, B, C, alpha, beta, info)
        elif on_device:
            with rt.station():
                result = self._batch_on(rt.queue, A, B, C, alpha, beta, info)
        else:
            with rt.station():
                result = self._batch_from_host(A, B, C, alpha, beta, info)
        info.total_s = time.perf_counter() - start
        return (result, info) if return_info else result

    def _batch_on(self, queue, A, B, C, alpha: float, beta: float, info: "Info | None"):
        """The batch on device arrays, enqueued on `queue` (waited for where `info` asks
        for its kernel time)."""
        k = self.key
        if C is None:
            out = self.rt.empty(k.batch, k.m, k.n)
        else:
            refuse_overlap(C, A, B)
            out = C
        if k.batch == 0 or k.m == 0 or k.n == 0:
            return out
        if k.k == 0:
            return scale_empty_product(out, beta, queue)
        if info is None and queue is self.rt.user_queue and self.replays is not None and REPLAY:
            self._replay(A, B, out, alpha, beta)
            return out
        event = self._launch_batch(self._batch_operands(A, B, out), alpha, beta, queue)
        if info is not None:
            event.wait()
            info.kernel_s = self.rt.seconds(event)
        return out

    def _batch_operands(self, A, B, out) -> tuple:
        """The batch's operands on the device (A, B, C as batched.BatchedOperand)."""
        k = self.key
        ops = (batched.device_operand("A", A, k.trans_a), batched.device_operand("B", B, k.trans_b),
               batched.device_operand("C", out, False))
        if ops[2].stride == 0 and k.batch > 1:
            raise ShapeError("C's matrices share memory (batch stride 0); pass a C that holds "
                             "each product's result")
        return ops

    def _launch_batch(self, ops, alpha: float, beta: float, queue) -> "cl.Event":
        k = self.key
        a, b, c, m, n = batched.flipped_c(*ops, k.m, k.n)
        return self.lane.enqueue_batched(k.batch, m, n, k.k, alpha, beta, a.first, b.first,
                                         c.first, (a.stride, b.stride, c.stride), queue)

    def _batch_from_host(self, A, B, C, alpha: float, beta: float, info: Info):
        """The batch on numpy arrays: staged once, one launch, read back."""
        rt = self.rt
        k = self.key
        shape = (k.batch, k.m, k.n)
        out = C if C is not None else np.empty(shape, np.float32)
        if k.batch == 0 or k.m == 0 or k.n == 0:
            return out
        if k.k == 0:
            out[...] = 0.0 if beta == 0.0 else np.float32(beta) * out
            return out
        t0 = time.perf_counter()
        a = batched.upload(rt, "A", A, k.trans_a)
        b = batched.upload(rt, "B", B, k.trans_b)
        c_buf = output_buffer(rt, C, beta, k.batch * k.m * k.n)
        info.h2d_s = time.perf_counter() - t0
        c = batched.BatchedOperand(Operand(c_buf, 0, k.n, False), k.m * k.n)
        event = self._launch_batch((a, b, c), alpha, beta, rt.queue)
        t1 = time.perf_counter()
        read_back(rt, out, c_buf)  # behind the launch on the in-order queue: no wait of its own
        info.d2h_s = time.perf_counter() - t1
        event.wait()  # done already
        info.kernel_s = rt.seconds(event)
        return out

    def _each_product(self, A, B, C, alpha: float, beta: float, info: Info):
        """A station's batch: each product through the plan of one (its checks and fallbacks
        judge one product at a time); the Info of the last."""
        k = self.key
        if C is not None:
            out = C
        elif type(A) is cla.Array:
            out = self.rt.empty(k.batch, k.m, k.n)
        else:
            out = np.empty((k.batch, k.m, k.n), np.float32)

        def pick(x, i):
            return x if len(x.shape) == 2 else x[0 if x.shape[0] == 1 else i]

        found = []  # each product's guard verdict: the Info keeps the last one's whole
        for i in range(k.batch):
            _, last = self.matrix_plan.run(pick(A, i), pick(B, i), out[i], alpha, beta, True,
                                           time.perf_counter())
            info.method, info.kernel_s = last.method, info.kernel_s + last.kernel_s
            info.extra.update(last.extra)
            if "abft" in last.extra:
                found.append(bool(last.extra["abft"].get("detected")))
        if found:
            info.extra["abft_each"] = found
            info.extra["abft"] = {**info.extra["abft"], "detected": any(found)}
        info.extra["batch"] = k.batch
        info.extra["per_product"] = self.matrix_plan.station
        return out

    def _online(self, A, B, C, alpha: float, beta: float, info: Info):
        """The online selector's schedule for this call, its kernel time fed back."""
        from .select.online import get_selector  # noqa: PLC0415 - optional station

        k = self.key
        selector = get_selector(self.rt)
        decision = selector.choose(k.m, k.n, k.k, k.trans_a, k.trans_b)
        lane = lane_for(self.rt, decision.schedule)
        info.schedule = decision.schedule.key()
        result = self.exact_product(A, B, C, alpha, beta, info, lane)
        if info.kernel_s > 0:
            selector.observe(decision, info.kernel_s)
        info.extra["selector"] = decision.reason
        return result


def _finish_foreign(rt: Runtime, A, B, C) -> None:
    """Arrays of a queue of the caller's own: its work first (the stations' queue does not
    order itself after it)."""
    for x in (A, B, C):
        if x is not None and x.queue is not None and x.queue is not rt.user_queue:
            x.queue.finish()


def _on(queue: "cl.CommandQueue", A, B, C) -> bool:
    """Whether the arrays are bound to `queue`: arrays of another queue (made outside
    clgemm.to_device) take the waiting path, which orders itself against every queue."""
    return A.queue is queue and B.queue is queue and (C is None or C.queue is queue)
