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
(lanes/__init__.Lane), a launch with events to wait for spoils a recording, and a path that
decides per call to enqueue something else says so with `spoil()`.

An argument that must change every call (the seed of the rel_tol judge's Gaussian probes:
fresh probes each call) is `fresh`: a function called at every launch, the recording's
included, for the values of those argument places. `flush` is noted too: a replay flushes
the queue where the recorded call did (the device starts the product while the rest of the
call is enqueued).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pyopencl as cl
import pyopencl.tools as cltools


class AllArgs:
    """A plain kernel in `launch`'s form: every argument set on every bind (kernels whose
    arguments a lane always sets whole); `types` are its arguments' (None for a buffer),
    set on the kernel here."""

    __slots__ = ("kernel", "types")

    def __init__(self, kernel: "cl.Kernel", types: list) -> None:
        self.kernel = kernel
        self.types = types
        kernel.set_scalar_arg_dtypes(types)

    def bind(self, args, keep: bool = True) -> None:  # noqa: ARG002 - BoundArgs' signature
        self.kernel.set_args(*args)


_active = threading.local()


def set_arg(kernel: "cl.Kernel", index: int, value, dtype) -> None:
    """kernel.set_arg(index, value); `dtype` the scalar's numpy type (None: a buffer).
    pyopencl's Kernel.set_arg tries each kind of argument in turn (buffer, SVM, sampler, ...)
    before the bytes of a scalar: 9-13 us a scalar on this project's CI host (PoCL's and
    Intel's runtimes alike) and 9.4-17.6 us on an H100's host (NVIDIA's), against 0.2-1.5 us
    for a buffer, or for a scalar's packed bytes through the setter pyopencl's own invokers
    use (set_scalar_arg_dtypes), taken where the kernel has it
    (records/nvidia-h100/2026-12-07-judged-replay)."""
    if dtype is None:
        kernel.set_arg(index, value)
        return
    set_bytes = getattr(kernel, "_set_arg_buf", None)
    if set_bytes is not None:
        set_bytes(index, dtype(value).tobytes())
    else:
        kernel.set_arg(index, dtype(value))


@dataclass(frozen=True)
class Fresh:
    """Argument places whose values a launch takes anew each time: `values()` gives them, in
    the order of `places`."""

    places: tuple
    values: Callable[[], tuple]


def launch(bound, lock, queue: "cl.CommandQueue", args, global_size: tuple,
           local_size: tuple | None, keep: bool = True, wait_for=None,
           fresh: "Fresh | None" = None) -> "cl.Event":
    """Bind `args` to `bound` (a fp32.BoundArgs or an AllArgs) and enqueue its kernel, under
    `lock`; noted by the thread's active Recorder, if any. `fresh`: places of `args` whose
    values a recording of this launch takes anew at each of its launches (`args` holds
    this call's)."""
    with lock:
        bound.bind(args, keep=keep)
        event = cl.enqueue_nd_range_kernel(queue, bound.kernel, global_size, local_size,
                                           wait_for=wait_for)
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.note(bound, args, global_size, local_size, wait_for, fresh)
    return event


def flush(queue: "cl.CommandQueue") -> None:
    """queue.flush(), which a recording made meanwhile does at the same place."""
    queue.flush()
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.steps.append(FLUSH)


def active() -> bool:
    """Whether a call is being recorded on this thread."""
    return getattr(_active, "recorder", None) is not None


def spoil() -> None:
    """The call being recorded on this thread (if any) cannot be launched again: it enqueued,
    or decided per call, what a recording does not hold (a copy, a kernel chosen by the
    operands' contents, a kernel launched outside `launch`)."""
    recorder = getattr(_active, "recorder", None)
    if recorder is not None:
        recorder.spoiled = True


@dataclass(frozen=True)
class Step:
    """One launch of a recording: its arguments with the operands' places open."""

    bound: object  # the lane's kernel (its types; the recording launches a clone of it)
    template: tuple
    slots: tuple  # (argument index, operand index) of each operand buffer
    scratch: tuple  # (argument index, scratch index) of each buffer of the call's scratch
    global_size: tuple
    local_size: tuple | None
    fresh: "Fresh | None" = None


FLUSH = Step(None, (), (), (), (), None)  # queue.flush() at this place


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

    def note(self, bound, args, global_size, local_size, wait_for,
             fresh: "Fresh | None" = None) -> None:
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
                if type(x) is POOLED:
                    known = [s for s, y in enumerate(self._scratch) if y is x]
                    if not known:
                        self._scratch.append(x)
                    scratch.append((i, known[0] if known else len(self._scratch) - 1))
                    template[i] = None  # nor its scratch
        self.steps.append(Step(bound, tuple(template), tuple(slots), tuple(scratch),
                               global_size, local_size, fresh))

    def recording(self) -> "Recording | None":
        """The call as a Recording (None where it cannot be launched again): every operand
        met in some launch by its own buffer object, and no other argument naming an
        operand's memory (a buffer made again from its handle would be held, and written
        call after call, by the recording)."""
        if self.spoiled or not any(s is not FLUSH for s in self.steps):
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


class _StepKernel:
    """A recording's own instance of one step's kernel: the recorded arguments set once, and
    at each launch only the places that change call by call (operands, scratch, fresh
    values), each set only where it differs from this instance's last (a buffer by identity,
    a pooled one by its handle). Its own instance: the lane's kernels serve other calls and
    other recordings, which bind them otherwise (a rel_tol call's three probe products on one
    gemv kernel rebound some 20 arguments each, ~5 us a launch on this project's CI host)."""

    __slots__ = ("kernel", "types", "last")

    def __init__(self, step: Step) -> None:
        self.kernel = kernel_cloner(step.bound.kernel)()
        self.types = getattr(step.bound, "types", None)  # None: arguments already typed
        places = {i for i, _ in step.slots} | {i for i, _ in step.scratch}
        if step.fresh is not None:
            places |= set(step.fresh.places)
        for i, x in enumerate(step.template):
            if i not in places:
                self.set(i, x)
        self.last: dict = {i: None for i in places}

    def set(self, i: int, x) -> None:
        set_arg(self.kernel, i, x, None if self.types is None else self.types[i])

    def update(self, i: int, x) -> None:
        old = self.last[i]
        if x is old or (type(old) is HeldPooled and old == x):
            return
        self.set(i, x)
        self.last[i] = HeldPooled(x) if type(x) is POOLED else x


@dataclass(frozen=True)
class Recording:
    """A recorded call: `launch(queue, buffers, allocate)` enqueues its kernels again with
    `buffers` (A, B, C of the same geometry) in the operands' places and scratch of the
    recorded sizes from `allocate(nbytes)` (the queue's pool) in its places; returns the
    last event. Its launches run on kernel instances of its own (_StepKernel), one launch of
    the recording at a time (`lock`)."""

    steps: tuple
    scratch_sizes: tuple  # bytes of each buffer of the call's scratch
    kernels: tuple = field(init=False, repr=False, compare=False)
    lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernels", tuple(
            None if s is FLUSH else _StepKernel(s) for s in self.steps))
        object.__setattr__(self, "lock", threading.Lock())

    def launch(self, queue: "cl.CommandQueue", buffers: tuple, allocate) -> "cl.Event":
        scratch = [allocate(size) for size in self.scratch_sizes]
        event = None
        with self.lock:
            for s, kernel in zip(self.steps, self.kernels):
                if kernel is None:
                    queue.flush()
                    continue
                for i, j in s.slots:
                    kernel.update(i, buffers[j])
                for i, j in s.scratch:
                    kernel.update(i, scratch[j])
                if s.fresh is not None:
                    for i, x in zip(s.fresh.places, s.fresh.values()):
                        kernel.update(i, x)
                event = cl.enqueue_nd_range_kernel(queue, kernel.kernel, s.global_size,
                                                   s.local_size)
        return event


def kernel_cloner(kernel: "cl.Kernel"):
    """A function that makes another instance of `kernel` (arguments unset)."""
    program = kernel.get_info(cl.kernel_info.PROGRAM)
    name = kernel.get_info(cl.kernel_info.FUNCTION_NAME)
    return lambda: cl.Kernel(program, name)


POOLED = cltools.PooledBuffer


class HeldPooled:
    """A bound pooled buffer: its cl_mem retained (the pool's block is free to serve the
    next call), equal to a pooled buffer of that handle."""

    __slots__ = ("ptr", "mem")

    def __init__(self, buf) -> None:
        self.ptr = buf.int_ptr
        self.mem = cl.Buffer.from_int_ptr(self.ptr, retain=True)

    def __eq__(self, other) -> bool:
        return type(other) is POOLED and other.int_ptr == self.ptr

    __hash__ = None
