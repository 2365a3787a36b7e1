"""check=True on device arrays without a wait per call: the verdict is read later.

A checked call on device arrays of the user queue (beta = 0, no Info asked for) enqueues its
product on the user queue and the blocked check of guard/abft.py (the same kernels, judged on
the device as ever) on the guard's second queue: the operand sums beside the product, C's
block sums after it (on the user queue, in order, where the caller gave C: C_SUMS; or taken
inside a 3xTF32 product whose tiles are the check's blocks: FUSED_SUMS), the judges after
those (beside the next call's product), then a copy of the judges' header words into
page-locked memory; and returns. Its verdict settles later:
  * before any later clgemm call that reads that C (by its buffer): clgemm computes nothing
    from a checked result whose check is open;
  * at `clgemm.settle()`, which settles every open check of the device and returns the
    verdicts settled since the last settle() (implicit ones included);
  * when DEPTH checks are open, the oldest (the device finished it long before);
  * at the interpreter's exit, where a fault can only be a RuntimeWarning.
A clean header settles with no device work and no wait. Anything else (a block-column over
its tolerance, a T lifted far over the device's floor, a non-finite operand under the
tensor-core lane) runs the product again through the waiting check (abft.checked_core: its
recheck, repair and fallbacks), which leaves C right or raises FaultError from the call that
settles it; the verdict says `detected` where the first product was off. A later call that
overwrites the C, A or B of an open check does not wait for it either: the check is marked
superseded (a recheck could not see what the product saw) and judged by its header alone
when it settles, a fault then raising FaultError (nothing to repair: that C is gone); that
call's queue waits, on the device, for the check's commands that read what it overwrites.
Until then C holds what the product wrote: read a checked result you must trust (C.get(), a
kernel of your own) after clgemm.settle(). The waiting check stays where this cannot serve:
beta != 0 (C's old values are gone once overwritten), tiny products (judged cell by cell),
fault-injection campaigns, C sharing a buffer with A or B, reported calls.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from ..errors import FaultError
from ..lanes.mma import nonfinite_flag
from ..operands import Operand
from ..runtime import Runtime
from ..schedule import Schedule
from ..staging import pinned_host
from . import abft
from . import abft_kernels as AK
from . import elementwise as EW
from . import faults
from .device import View, guard_device

# CLGEMM_CHECK_DEFER=0: every check=True call waits for its verdict (A/B campaigns)
ENABLED = os.environ.get("CLGEMM_CHECK_DEFER", "1") != "0"
DEPTH = 8  # open checks at most: page-locked header slots per runtime
KEEP = 1024  # settled verdicts kept for settle() (the oldest dropped first, and counted)
# Where C's block sums run. "given" (the default): on the product's queue, in order after it,
# where the caller gave C (a loop into one output: the next product then waits for nothing of
# another queue), on the side queue after the product's event where the call allocated C
# (the next product writes another buffer: the sums stay off its path). On an H100
# (records/nvidia-h100/2026-12-07-check-placement) chains into one C ran 9.0/5.6/6.7% over
# unchecked ones at 2048/3072/4096 with the sums in order, 10.9/6.0/7.8% on the side queue
# (a second run: 9.4/6.1/5.2 and 9.1/9.6/7.3%); chains into allocated outputs 9.7/6.7/-1.4%
# in order, 7.0/3.7/-4.4% on the side (12.7/6.9/-6.7 and 6.6/6.4/-5.4%).
# CLGEMM_CHECK_CSUMS = side or user forces one placement (A/B campaigns).
C_SUMS = os.environ.get("CLGEMM_CHECK_CSUMS", "given")
# C's block sums taken inside a 3xTF32 product whose tiles are the check's blocks (render_tc's
# block_sums): no block-sums kernel and no gap for it between chained products. Off until a
# card has timed it (CLGEMM_CHECK_FUSED_SUMS=1 turns it on).
FUSED_SUMS = os.environ.get("CLGEMM_CHECK_FUSED_SUMS", "0") == "1"


def c_sums_in_order(c_given: bool) -> bool:
    """Whether C's block sums follow the product on its queue (C_SUMS)."""
    return C_SUMS == "user" or (C_SUMS != "side" and c_given)


@dataclass
class OpenCheck:
    """One checked product whose verdict has not been read."""

    a: View
    b: View
    c: View
    alpha: float
    schedule: Schedule  # the float32 family's (the plan's fallback): the recheck's kernel
    lane: object  # the tensor-core lane that computed it (lanes.tc_exact), or None
    alternative: Schedule | None
    c_dev: float
    check: "abft.BlockCheck"
    slot: int
    event: "cl.Event"  # the header's copy
    c_read: "cl.Event"  # the last of the check's commands that read C (its block sums)
    ab_read: "cl.Event"  # the last that read A or B (the expected sums)
    written: int = 0  # C's buffer (int_ptr)
    read: tuple[int, ...] = field(default=())  # A's and B's buffers
    superseded: bool = False  # a later call overwrote C, A or B before the verdict was read
    c_read_in_order: bool = False  # C's block sums ran on the user queue, after the product

    @property
    def buffers(self) -> tuple[int, ...]:
        return (self.written, *self.read)


class OpenChecks:
    """A runtime's open checks, oldest first, and the verdicts settled since the last
    settle(). Thread-safe: calls of several threads may add and settle."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.lock = threading.RLock()  # settling runs a waiting check, which may settle
        self.open: deque[OpenCheck] = deque()
        self.host, self._host_buffer = pinned_host(rt, (DEPTH, AK.HEAD), np.uint32)
        self.free = list(range(DEPTH))
        self.settled: list[abft.Verdict] = []
        self.dropped = 0  # verdicts dropped from `settled` (more than KEEP unread)

    def __bool__(self) -> bool:
        return bool(self.open)

    def before_call(self, read: tuple[int, ...], written: int | None,
                    queue: "cl.CommandQueue") -> None:
        """A call on `queue` is about to read `read` and write `written`: settle, oldest
        first, up to the last open check whose C it reads; an open check whose C, A or B it
        overwrites is marked superseded (its recheck could not run on what the product saw:
        it is judged by its header alone) and the queue waits, on the device, for the
        check's commands that read it (not for the judges after them) before the call's."""
        with self.lock:
            last, wait = -1, []
            for i, p in enumerate(self.open):
                if p.written in read:
                    last = i
                if written is not None and written in p.buffers:
                    p.superseded = True
                    # only the commands that read what the call writes: C's block sums
                    # (right after the product; none on the call's own queue, in order), or
                    # the operands' (beside it)
                    if written == p.written and not p.c_read_in_order:
                        wait.append(p.c_read)
                    if written in p.read:
                        wait.append(p.ab_read)
            if wait:
                cl.enqueue_marker(queue, wait_for=wait)
            for _ in range(last + 1):
                self._settle_one()

    def settle(self) -> list[abft.Verdict]:
        """Settle every open check; the verdicts settled since the last call, oldest first."""
        with self.lock:
            while self.open:
                self._settle_one()
            out, self.settled = self.settled, []
            self.dropped = 0
            return out

    def take_slot(self) -> int:
        with self.lock:
            if not self.free:
                self._settle_one()
            return self.free.pop()

    def add(self, p: OpenCheck) -> None:
        with self.lock:
            self.open.append(p)

    def _settle_one(self) -> None:
        p = self.open.popleft()
        try:
            p.event.wait()
            head = abft.summary_head(self.host[p.slot])
        finally:
            self.free.append(p.slot)
        v = self._verdict(p, head)
        self.settled.append(v)
        if len(self.settled) > KEEP:
            self.settled.pop(0)
            self.dropped += 1
        if not v.ok:
            m, n, k = v.shape
            raise FaultError(
                f"ABFT: a checked {m}x{n}x{k} product failed its checksums (max residual/"
                f"tolerance {v.max_ratio:.3g}, {v.flagged} block-columns), and a later call "
                "overwrote its C, A or B before the check was read, so it was not repaired; "
                "whatever read that C outside clgemm before then is suspect. Call "
                "clgemm.settle() before reading a checked result; the device may be faulty")

    def _verdict(self, p: OpenCheck, head: dict) -> abft.Verdict:
        first = p.check.verdict(head, p.c_dev)
        if first.ok and not first.lifted and not first.unverifiable:
            first.attempts = ["deferred"]
            return first
        if p.superseded:
            # What the product saw is gone: a fault (or a lifted T) stands as found; a
            # non-finite operand under the lane is not a fault, but its result was the lane's
            first.attempts = ["deferred", "superseded"]
            first.detected = not first.ok
            if first.unverifiable and first.ok:
                first.attempts.append("unverifiable")
            return first
        # Not clean: compute it again through the waiting check (its recheck of a lifted T,
        # its repair, its float32 recompute of a non-finite operand under the lane). C's
        # product is the one the check judged; nothing of it survives in the guard's buffers,
        # which later checks of the shape reuse.
        from ..info import Info

        m, n, k = p.c.rows, p.c.cols, p.a.cols
        info = Info(method="exact", schedule=p.schedule.key(), device=self.rt.device.name,
                    shape=(m, n, k))
        with self.rt.station():
            v = abft.checked_core(self.rt, p.a, p.b, p.c, p.alpha, 0.0, p.schedule, info,
                                  p.lane, p.alternative)  # FaultError where it persists
        # a lifted T came back under the same kernel: the data's roundoff (as abft's confirm)
        fault = not first.ok or (first.lifted and
                                 v.threshold * abft.LIFT_DROP < first.threshold)
        v.detected = v.detected or fault
        if fault and not (v.corrected or v.recomputed):
            v.recomputed = True  # the second product replaced the first
        v.attempts = ["deferred", "recheck"] + list(v.attempts)
        if "lane_fallback" in info.extra:
            v.attempts.append("lane_fallback")
        return v


def open_checks(rt: Runtime) -> OpenChecks:
    """The runtime's open checks (made on the first deferred check; Runtime.checks_open then
    holds them, which every call looks at)."""
    found = rt.cached("open checks", lambda: _made(OpenChecks(rt)))
    rt.checks_open = found
    return found


def _made(checks: OpenChecks) -> OpenChecks:
    # registered after pyopencl's own exit hooks, so it runs before them (last in, first out)
    atexit.register(_settle_at_exit, weakref.ref(checks))
    return checks


def _settle_at_exit(ref: "weakref.ref[OpenChecks]") -> None:
    """At interpreter exit: settle what is still open, so that a fault is not lost silently
    (a warning: nothing can be raised to the program any more)."""
    checks = ref()
    if checks is None or not checks.open:
        return
    try:
        verdicts = checks.settle()
    except FaultError as exc:
        warnings.warn(f"clgemm: at exit, {exc}", RuntimeWarning, stacklevel=1)
        return
    except Exception as exc:  # noqa: BLE001 - the device may be gone by now
        warnings.warn(f"clgemm: at exit, checks still open could not be read ({exc})",
                      RuntimeWarning, stacklevel=1)
        return
    found = [v for v in verdicts if v.detected]
    if found:
        m, n, k = found[0].shape
        warnings.warn(f"clgemm: at exit, {len(found)} checked product(s) (the first "
                      f"{m}x{n}x{k}) had failed their checksums and were computed again; "
                      "call clgemm.settle() to see verdicts before the program ends",
                      RuntimeWarning, stacklevel=1)


def settle_for(rt: Runtime, A, B, C) -> None:
    """Before a call on these operands (device arrays or not): settle the open checks whose
    C it reads, mark superseded those whose C, A or B it writes (OpenChecks.before_call)."""
    read = tuple(x.base_data.int_ptr for x in (A, B) if isinstance(x, cla.Array))
    written = C.base_data.int_ptr if isinstance(C, cla.Array) else None
    pend = rt.checks_open
    if pend is not None:
        pend.before_call(read, written, rt.user_queue)


def enqueue(rt: Runtime, plan, a: Operand, b: Operand, c: Operand, m: int, n: int, k: int,
            alpha: float, c_given: bool = True) -> bool:
    """The checked product C = alpha op(A) op(B) on the user queue, its verdict left open
    (module docstring); False where the call must take the waiting check instead. `c_given`:
    the caller gave C (not an output the call allocated; c_sums_in_order)."""
    from ..lanes.tc_exact import TcExactLane

    if (k == 0 or faults.active() is not None or EW.applies(m, n, k)
            or c.buffer.int_ptr in (a.buffer.int_ptr, b.buffer.int_ptr)):
        return False
    lane = plan.lane if isinstance(plan.lane, TcExactLane) else None
    gd = guard_device(rt)
    c_dev = abft.calibration_for(rt, "fp32" if lane is None else lane.schedule.mode, k)
    ck = abft.block_check(gd, m, n, k)
    pend = open_checks(rt)
    slot = pend.take_slot()
    q, side = rt.user_queue, gd.side_queue
    av, bv, cv = View.of(a, m, k), View.of(b, k, n), View.of(c, m, n)
    in_order = c_sums_in_order(c_given)
    try:
        with ck.lock:
            # The user queue holds the product, and C's block sums where `in_order`; the
            # rest of the check runs on the side queue: the operand sums beside the product,
            # the judges after C's sums (they wait for its event) beside the next call's
            # product, which later calls that write what the check reads wait for
            # (settle_for).
            ck.queue = side
            try:
                ready = cl.enqueue_marker(q)  # after it the expected sums may run beside
                fused = (lane.block_sums_kernel(a, b, c, ck.bs) if lane is not None
                         and FUSED_SUMS and gd.fp64 else None)
                taken = parity = None
                if fused is not None:
                    # the set of sums the check before last read: the product waits for its
                    # judges (long done: they ran beside the last product)
                    parity, sums, last = ck.fused_sums()
                    product = fused.enqueue(m, n, k, alpha, 0.0, a, b, c, queue=q,
                                            wait_for=[last] if last is not None else None,
                                            flag=nonfinite_flag(rt).scratch, sums=sums)
                    taken = (sums[0], sums[1], product)
                elif lane is not None:
                    product = lane.product(m, n, k, alpha, 0.0, a, b, c, q,
                                           nonfinite_flag(rt).scratch)
                else:
                    product = plan.fallback.enqueue(m, n, k, alpha, 0.0, a, b, c, q)
                q.flush()  # the device starts on the product now
                ck.old(None)
                # the judges of this shape's last check (side queue) read what C's block
                # sums overwrite: where those run on the user queue, they wait for its end
                before = ck.side_last
                ck.expected(av, bv, ready)
                if taken is not None:
                    ck.result(cv, alpha, 0.0, c_dev, True, taken=taken)
                elif in_order:
                    ck.result(cv, alpha, 0.0, c_dev, lane is not None,
                              after=[before] if before is not None else None, c_queue=q)
                else:
                    ck.result(cv, alpha, 0.0, c_dev, lane is not None, after=[product])
                # the header words only (the slot's size): a clean verdict needs no more
                event = cl.enqueue_copy(side, pend.host[slot], ck.sum, is_blocking=False)
                side.flush()
                ck.side_last = event
                if parity is not None:
                    ck.fused_last[parity] = event
                c_read, ab_read = ck.c_read, ck.side_done
            finally:
                ck.queue = gd.queue
    except BaseException:
        with pend.lock:
            pend.free.append(slot)
        raise
    pend.add(OpenCheck(av, bv, cv, alpha, plan.fallback.schedule, lane, plan.alternative,
                       c_dev, ck, slot, event, c_read, ab_read, c.buffer.int_ptr,
                       (a.buffer.int_ptr, b.buffer.int_ptr),
                       c_read_in_order=in_order or taken is not None))
    return True
