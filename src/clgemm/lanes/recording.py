"""A call's kernel launches, recorded once and launched again (the hot path's replay).

Every kernel a lane launches goes through `launch` (bind the arguments that changed, then
enqueue, under the lane's lock). While a `Recorder` is active on the thread, `launch` also
notes each launch: its bound kernel, lock, arguments, sizes. A `Recording` made from those
notes is the call with its operands' buffers left open: launched again on other buffers of
the same geometry (offsets, strides, alpha, beta: the plan's replay key) it enqueues the
same kernels with the same arguments, without the lane's per-call decisions (strides,
vector alignment, splits of K, scratch sizes, kernel lookups), which cost most of a hot
call's host time: 11.7 us a call of a decode product with the GPU's small-rows form on this
project's CI host, enqueues stubbed out, of which the lane's decisions took ~5.

A recording holds what the call used besides its operands: kernels, constant scratch, and
any pooled scratch (the partial sums of a split K), kept out of the pool from then on and
reused call after call; the hot path's queue is in order, so one call's scratch is free
again when the next call's kernels run. A call whose lane enqueues anything but kernels
through `launch` (a copy, a fill, a wait on an event) cannot be recorded: lanes say so with
`replayable` (lanes/__init__.Lane), and a launch with events to wait for spoils a recording.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pyopencl as cl


class AllArgs:
    """A plain kernel in `launch`'s form: every argument set on every bind (kernels whose
    arguments a lane always sets whole)."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: "cl.Kernel") -> None:
        self.kernel = kernel

    def bind(self, args, keep: bool = True) -> None:  # noqa: ARG002 - BoundArgs' signature
        self.kernel.set_args(*args)


_active = threading.local()


def launch(bound, lock, queue: "cl.CommandQueue", args, global_size: tuple,
           local_size: tuple | None, keep: bool = True, wait_for=None) -> "cl.Event":
    """Bind `args` to `bound` (a fp32.BoundArgs or an AllArgs) and enqueue its kernel, under
    `lock`; noted by the thread's active Recorder, if any."""
    with lock:
        bound.bind(args, keep=keep)
        event = cl.enqueue_nd_range_kernel(queue, bound.kernel, global_size, local_size,
                                           wait_for=wait_for)
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.note(bound, lock, args, global_size, local_size, keep, wait_for)
    return event


@dataclass(frozen=True)
class Step:
    """One launch of a recording: its arguments with the operands' places open."""

    bound: object
    lock: object
    template: tuple
    slots: tuple  # (argument index, operand index) of each operand buffer
    global_size: tuple
    local_size: tuple | None
    keep: bool


class Recorder:
    """The launches of one call on this thread (`with Recorder(buffers) as r:`), the call's
    operand buffers (A, B, C) named so that a Recording can leave their places open."""

    def __init__(self, buffers: tuple) -> None:
        self.buffers = buffers
        self.steps: list[Step] = []
        self.spoiled = False

    def __enter__(self) -> "Recorder":
        if getattr(_active, "recorder", None) is not None:
            raise RuntimeError("a recording is already active on this thread; this is a "
                               "clgemm bug")
        _active.recorder = self
        return self

    def __exit__(self, *exc) -> None:
        _active.recorder = None
        if exc[0] is not None:
            self.spoiled = True

    def note(self, bound, lock, args, global_size, local_size, keep, wait_for) -> None:
        if wait_for:
            self.spoiled = True  # an event to wait for belongs to this call alone
            return
        template = list(args)
        slots = []
        for i, x in enumerate(template):
            for j, buf in enumerate(self.buffers):
                if x is buf:
                    slots.append((i, j))
                    template[i] = None  # the recording holds no operand of the call
                    break
        self.steps.append(Step(bound, lock, tuple(template), tuple(slots), global_size,
                               local_size, keep))

    def recording(self) -> "Recording | None":
        """The call as a Recording (None where it cannot be launched again): every operand
        met in some launch by its own buffer object, and no other argument naming an
        operand's memory (a buffer made again from its handle would be held, and written
        call after call, by the recording)."""
        if self.spoiled or not self.steps:
            return None
        handles = {_handle(b) for b in self.buffers}
        met = {_handle(self.buffers[j]) for s in self.steps for _, j in s.slots}
        if met != handles:
            return None
        for s in self.steps:
            if any(x is not None and _handle(x) in handles for x in s.template):
                return None
        return Recording(tuple(self.steps))


def _handle(x) -> int | None:
    """The cl_mem handle of a buffer argument (None for a scalar)."""
    return getattr(x, "int_ptr", None)


@dataclass(frozen=True)
class Recording:
    """A recorded call: `launch(queue, buffers)` enqueues its kernels again with `buffers`
    (A, B, C of the same geometry) in the operands' places; returns the last event. Its
    launches are enqueued together under its own lock: two threads replaying it share its
    scratch, which the in-order queue then hands from one call to the next whole."""

    steps: tuple
    lock: object = field(default_factory=threading.Lock, compare=False)

    def launch(self, queue: "cl.CommandQueue", buffers: tuple) -> "cl.Event":
        event = None
        with self.lock:
            for s in self.steps:
                args = list(s.template)
                for i, j in s.slots:
                    args[i] = buffers[j]
                event = launch(s.bound, s.lock, queue, args, s.global_size, s.local_size,
                               s.keep)
        return event
