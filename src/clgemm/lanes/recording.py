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

A recording holds what the call used besides its operands: kernels and constant buffers.
A pooled buffer among a launch's arguments (not an operand) is the call's scratch (the
partial sums of a split K, taken from the pool per call): a launch again takes its own of
the same size from the pool, the one buffer in every launch that used it, so calls on other
threads never share it. A call whose lane enqueues anything but kernels through `launch` (a
copy, a fill, a wait on an event) cannot be recorded: lanes say so with `replayable`
(lanes/__init__.Lane), and a launch with events to wait for spoils a recording.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyopencl as cl
import pyopencl.tools as cltools


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
    scratch: tuple  # (argument index, scratch index) of each buffer of the call's scratch
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
        self._scratch: list = []  # the call's pooled scratch buffers, in order met

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
        slots, scratch = [], []
        for i, x in enumerate(template):
            for j, buf in enumerate(self.buffers):
                if x is buf:
                    slots.append((i, j))
                    template[i] = None  # the recording holds no operand of the call
                    break
            else:
                if type(x) is cltools.PooledBuffer:
                    known = [s for s, y in enumerate(self._scratch) if y is x]
                    if not known:
                        self._scratch.append(x)
                    scratch.append((i, known[0] if known else len(self._scratch) - 1))
                    template[i] = None  # nor its scratch
        self.steps.append(Step(bound, lock, tuple(template), tuple(slots), tuple(scratch),
                               global_size, local_size, keep))

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
        return Recording(tuple(self.steps), tuple(x.size for x in self._scratch))


def _handle(x) -> int | None:
    """The cl_mem handle of a buffer argument (None for a scalar)."""
    return getattr(x, "int_ptr", None)


@dataclass(frozen=True)
class Recording:
    """A recorded call: `launch(queue, buffers, allocate)` enqueues its kernels again with
    `buffers` (A, B, C of the same geometry) in the operands' places and scratch of the
    recorded sizes from `allocate(nbytes)` (the queue's pool) in its places; returns the
    last event."""

    steps: tuple
    scratch_sizes: tuple  # bytes of each buffer of the call's scratch

    def launch(self, queue: "cl.CommandQueue", buffers: tuple, allocate) -> "cl.Event":
        scratch = [allocate(size) for size in self.scratch_sizes]
        event = None
        for s in self.steps:
            args = list(s.template)
            for i, j in s.slots:
                args[i] = buffers[j]
            for i, j in s.scratch:
                args[i] = scratch[j]
            event = launch(s.bound, s.lock, queue, args, s.global_size, s.local_size, s.keep)
        return event
