"""The float32 family: one compiled kernel per (schedule, layout), launched for any M, N, K.

Exact float32 arithmetic (FMA, float32 accumulation over K): every device runs it, and it is
the fallback of every other lane.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyopencl as cl

from ..errors import ShapeError
from ..kernels.gemm import KERNEL_NAME, Layout, render, source_lines
from ..operands import Operand, check_index_range
from ..runtime import BuildInfo, Runtime
from ..schedule import DeviceLimits, Schedule, SearchSpace
from ..select import table as tables
from ..select.table import DEFAULT_CPU, DEFAULT_GPU
from . import pack
from .recording import POOLED, HeldPooled, kernel_cloner, launch, set_arg

_ARG_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32,
              None, np.int32, np.int32, None, np.int32, np.int32, None, np.int32, np.int32]


def device_limits(rt: Runtime) -> DeviceLimits:
    d = rt.device
    return DeviceLimits(
        max_work_group_size=d.max_work_group_size,
        local_mem_bytes=d.local_mem_bytes,
        cpu_device=int(d.type == "CPU"),
    )


def search_space(rt: Runtime) -> SearchSpace:
    """The device's valid schedules (built once per device: parsing the rules is not free)."""
    return rt.cached("fp32 space", lambda: SearchSpace(device_limits(rt)))


class BoundArgs:
    """A kernel's arguments as last set: a launch sets only those that changed (a call in
    a chain of products changes its buffers, rarely its sizes). Held under the kernel's
    lock from `bind` to the enqueue.

    Nothing here may keep a block of the memory pool in use: blocks pinned as the last
    arguments of every kernel could not serve the next call of their size, so the pool
    allocated more of their size class as the kernels that pinned them changed (the CPU
    soak's pool grew 12% after warm-up: records/cpu-pocl-amd-epyc/2026-12-06-soak). A pooled
    buffer is remembered by a retained reference to its cl_mem, not by the pool's block: the
    pool hands the block out again, and should the pool ever give it back to OpenCL
    (pyopencl frees held blocks when an allocation fails) the retain keeps its handle from
    being reused by another cl_mem, so an equal handle is the cl_mem the kernel holds. Any
    other buffer is kept alive while bound (what makes its equal handle the same buffer), on
    the hot path only (`keep`: device arrays on the user queue, where a chain of calls passes
    the same buffers); the waiting paths stage new buffers every call and keep none."""

    def __init__(self, kernel: "cl.Kernel", types: list, clone=None) -> None:
        self.kernel = kernel
        self.types = types
        self.values: list = [_UNSET] * len(types)
        self.buffers = [i for i, t in enumerate(types) if t is None]
        self._sizes = [i for i, t in enumerate(types) if t is not None]  # the scalars
        # Instances of the kernel, each with its own arguments (most recently used first):
        # a chain of several products on one kernel (a model's trace: the same kernel for
        # its q, k, v and o projections) rebound every argument of every call: 17-21 us a
        # bind on PoCL's host for gemv_dot's 21 arguments alternating among five products,
        # 2.2-3.2 us with instances. On the H100 the traces' passes ran 15-33 us a call over
        # their products' own loops (records/nvidia-h100/2026-12-07-plan-traces-4), which
        # this is meant to close (not yet measured there). On the hot path (`keep`) a call
        # takes the instance already holding its arguments, else one holding its sizes (one
        # instance a shape: an instance keeps its buffers alive until it is rebound, so a
        # shape's loop on fresh arrays holds one call's, not CLONES calls'), else a new one or
        # the least recently used; `clone` makes another (None: another cl.Kernel of the
        # same program and function, where the kernel is one).
        if clone is None and isinstance(kernel, cl.Kernel):
            clone = kernel_cloner(kernel)
        self._clone = clone
        self._slots: list[list] = [[kernel, self.values]]

    def bind(self, args, keep: bool = True) -> None:
        """Set the arguments that differ from those last set (the caller then launches
        `self.kernel`, under the lock it holds)."""
        if type(args) is not list:
            args = list(args)
        if self.values == args:  # all the same (a buffer compares by its handle; stored first)
            return
        if keep and self._clone is not None:
            self._take_slot(args)
            if self.values == args:
                return
        values = self.values
        types, kernel = self.types, self.kernel
        for i, x in enumerate(args):
            old = values[i]
            if x is old or (type(x) is type(old) and x == old) or (
                    type(old) is HeldPooled and old == x):
                continue
            set_arg(kernel, i, x, types[i])
            values[i] = HeldPooled(x) if type(x) is POOLED and keep else x
        if not keep:
            for i in self.buffers:  # set again next time: nothing pinned
                if type(values[i]) is not HeldPooled:
                    values[i] = _UNSET

    def _take_slot(self, args: list) -> None:
        """Make current the instance that holds `args`; else one that holds its sizes (its
        buffers then set by `bind`: a loop of one shape on fresh arrays keeps one instance,
        so it holds one call's buffers, not CLONES calls'); else a new one (up to CLONES),
        else the least recently used."""
        slots = self._slots
        for i, slot in enumerate(slots):
            if slot[1] == args:
                break
        else:
            sizes = self._sizes
            for i, slot in enumerate(slots):
                held = slot[1]  # (an instance never bound holds any sizes)
                if all(held[j] is _UNSET or held[j] == args[j] for j in sizes):
                    break
            else:
                if len(slots) < CLONES:
                    slots.append([self._clone(), [_UNSET] * len(self.types)])
                i = len(slots) - 1
        slot = slots.pop(i)
        slots.insert(0, slot)
        self.kernel, self.values = slot


CLONES = 8  # kernel instances a BoundArgs keeps bound on the hot path


_UNSET = object()


class GemmKernel:
    """A compiled kernel for one schedule and layout on one device."""

    def __init__(self, rt: Runtime, schedule: Schedule, layout: Layout,
                 fault_injection: bool = False, gated: bool = False) -> None:
        search_space(rt).check(schedule)
        self.rt = rt
        self.schedule = schedule
        self.layout = layout
        self.source = render(schedule, layout, fault_injection=fault_injection, gated=gated)
        self.fault_injection = fault_injection
        self.gated = gated
        built = rt.build(self.source, options="-cl-mad-enable")
        self.build_info: BuildInfo = built.info
        types = list(_ARG_TYPES)
        if layout.batched:
            types += [np.int64] * 3  # the operands' batch strides
        if fault_injection:
            types.append(np.int32)
        if gated:
            types += [None, None]
        self._args = BoundArgs(built.kernel(KERNEL_NAME), types)
        self._lock = threading.Lock()  # kernel arguments are shared state
        self.local_size = (schedule.wg_n, schedule.wg_m) + ((1,) if layout.batched else ())

    @property
    def source_lines(self) -> int:
        return source_lines(self.source)

    def global_size(self, m: int, n: int) -> tuple[int, int]:
        s = self.schedule
        groups_n = -(-n // s.tile_n)
        groups_m = -(-m // s.tile_m)
        return (groups_n * s.wg_n, groups_m * s.wg_m)

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, queue=None, wait_for=None,
                fault_at: int = -1, gate: "tuple[cl.Buffer, cl.Buffer] | None" = None
                ) -> "cl.Event":
        """Enqueue C = alpha * op(A) op(B) + beta * C; returns the kernel's event. `gate`
        (gated kernels only): the flag to compute on and the flag to clear."""
        if a.transposed != self.layout.trans_a or b.transposed != self.layout.trans_b:
            raise ShapeError("operand layout does not match the kernel's; this is a clgemm bug")
        check_index_range(m, n, k)
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset]
        if self.fault_injection:
            args.append(fault_at)
        if self.gated:
            args += list(gate)
        return self.launch(args, self.global_size(m, n), queue or self.rt.queue, wait_for)

    def launch(self, args: list, global_size: tuple[int, int], queue,
               wait_for=None) -> "cl.Event":
        """The launch with arguments already checked (a plan's hot path)."""
        return launch(self._args, self._lock, queue, args, global_size, self.local_size,
                      keep=queue is self.rt.user_queue, wait_for=wait_for)


def layout_for(schedule: Schedule, a: Operand, b: Operand, c: Operand) -> Layout:
    """The kernel layout that fits these operands (vector casts only where aligned)."""

    def aligned(op: Operand, vec: int) -> bool:
        return vec > 1 and op.ld % vec == 0 and op.offset % vec == 0

    return Layout(
        trans_a=a.transposed,
        trans_b=b.transposed,
        aligned_a=aligned(a, schedule.vec_a),
        aligned_b=aligned(b, schedule.vec_b),
        aligned_c=aligned(c, schedule.vec_c),
    )


def get_kernel(rt: Runtime, schedule: Schedule, layout: Layout,
               fault_injection: bool = False, gated: bool = False, slot: int = 0) -> GemmKernel:
    """The kernel for (device, schedule, layout), built once per runtime; `slot`: another
    kernel object of the same program (its own bound arguments)."""
    return rt.cached(("fp32", schedule, layout, fault_injection, gated, slot),
                     lambda: GemmKernel(rt, schedule, layout, fault_injection, gated))


# Rows of C from which the direct form packs a plainly stored B into panels (pack.pack's
# `panel`; a transposed B is packed whatever the rows): the copy reads and writes B once,
# the product reads it about m / tile_m times, each work-item's K x out_n panel then in one
# run instead of a line per K step on another page (PoCL, 576 x 4096 x 1024: 29.5 ms from
# rows 4112 floats apart, 23.9 from panels; 576 x 4096 x 4096 in one launch 239 and 102).
PANEL_MIN_ROWS = 32
# The longest K the direct form runs in one launch: a longer K runs as products over slices of
# it added into C. The direct kernel walks all of K for its tile, and past ~1k its operand
# panels leave the caches (PoCL, loaded, best of 4: 1024x768x3072 149 ms in one launch, 55-58
# in slices of 768-1536; 512x4096x4096 654 in one, 331 in slices of 1024, 716 of 2048). From
# B's panels the penalty is smaller but stays: 576 x 4096 x 4096 102 ms in one, 96 in slices.
K_CHUNK = 1024
# The widest block of columns the direct form packs B for at a time: a wider product runs as
# products over blocks of its columns, each packing only its own panels, which are then still
# in the caches when its product reads them (PoCL, 512 x 11008 x 4096 with B transposed:
# 309 ms packing each K slice's whole width, 258 in blocks of 1024 columns).
N_CHUNK = 1024


class Fp32Lane:
    """The float32 family with one schedule: its kernels per operand layout, looked up by a
    tuple (a Layout object per call cost more than the lookup)."""

    name = "fp32"

    def __init__(self, rt: Runtime, schedule: Schedule) -> None:
        search_space(rt).check(schedule)
        self.rt = rt
        self.schedule = schedule
        self._vec = (schedule.vec_a, schedule.vec_b, schedule.vec_c)
        self._kernels: dict[tuple, GemmKernel] = {}
        self._sizes: dict[tuple, tuple] = {}  # global size per (m, n), or (m, n, batch)
        # the direct form: a transposed A runs from a plain, padded copy, B from panels
        # (`_packs_b`; lanes/pack.py), a K over K_CHUNK in slices
        self._pack = bool(schedule.direct)
        # a hot call may be recorded and launched again (lanes/recording.py): not the direct
        # form, whose packs go to scratch shared with other calls under a lock of its own
        self.replayable = not self._pack

    def kernel_for(self, a: Operand, b: Operand, c: Operand, gated: bool = False,
                   slot: int = 0, batch_strides: "tuple[int, int, int] | None" = None
                   ) -> GemmKernel:
        """The kernel for these operands' layout; `batch_strides` (elements, batched
        kernels): whole-vector loads only where every matrix of the batch starts aligned."""
        va, vb, vc = self._vec
        sa, sb, sc = batch_strides or (0, 0, 0)
        key = (a.transposed, b.transposed,
               va > 1 and a.ld % va == 0 and a.offset % va == 0 and sa % va == 0,
               vb > 1 and b.ld % vb == 0 and b.offset % vb == 0 and sb % vb == 0,
               vc > 1 and c.ld % vc == 0 and c.offset % vc == 0 and sc % vc == 0,
               batch_strides is not None, b.panel > 0, c.transposed, gated, slot)
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = get_kernel(self.rt, self.schedule, Layout(*key[:8]), gated=gated, slot=slot)
            kernel = self._kernels.setdefault(key, kernel)
        return kernel

    def note(self, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> str:
        """What the direct form does around the kernel for this product ("" for the
        work-group form, which reads its operands as they are): a plan's `why`."""
        if not self._pack:
            return ""
        a, b = Operand(None, 0, 1, trans_a), Operand(None, 0, 1, trans_b)
        steps = []
        if self._swaps(m, n, a, b, Operand(None, 0, 1, False)):
            m, n, a, b = n, m, b.flipped(), a.flipped()
            steps.append("run as C^T = op(B)^T op(A)^T, written into C transposed")
            names = ("op(B)^T", "op(A)^T")
        else:
            names = ("A", "B")
        if a.transposed:
            steps.append(f"{names[0]} copied plainly")
        if self._packs_b(m, b):
            steps.append(f"{names[1]} packed into panels of {self.schedule.out_n} columns"
                         + (f", in blocks of at most {N_CHUNK} columns" if n > N_CHUNK else ""))
        if k > K_CHUNK:
            steps.append(f"K in slices of at most {K_CHUNK}")
        return "; ".join(steps) + " (the direct form)" if steps else ""

    def product_kernel(self, m: int, n: int, k: int, a: Operand, b: Operand,
                       c: Operand) -> GemmKernel:
        """The kernel `enqueue` launches for the product itself on these operands, after its
        copies (the benchmark's build and code-cost figures name it)."""
        if self._swaps(m, n, a, b, c):
            return self.product_kernel(n, m, k, b.flipped(), a.flipped(), c.flipped())
        if self._pack and a.transposed:
            a = a._replace(offset=0, ld=pack.padded_ld(min(k, K_CHUNK)), transposed=False)
        if self._pack and self._packs_b(m, b):
            width = self.schedule.out_n
            b = b._replace(offset=0, ld=min(k, K_CHUNK) * width, transposed=False, panel=width)
        return self.kernel_for(a, b, c)

    def enqueue_batched(self, batch: int, m: int, n: int, k: int, alpha: float, beta: float,
                        a: Operand, b: Operand, c: Operand, strides: tuple[int, int, int],
                        queue: "cl.CommandQueue") -> "cl.Event":
        """`batch` products in one launch, the i-th operands `strides[...] * i` elements past
        a, b and c (a stride of 0 broadcasts that operand)."""
        if self._pack:  # the direct form's swap, blocks and packs (none in the work-group form)
            if self._swaps(m, n, a, b, c):
                sa, sb, sc = strides
                return self.enqueue_batched(batch, n, m, k, alpha, beta, b.flipped(),
                                            a.flipped(), c.flipped(), (sb, sa, sc), queue)
            if self._splits(m, n, k, b):
                return self._blocked(m, n, k, alpha, beta, a, b, c,
                                     lambda nn, kk, al, be, aa, bb, cc: self.enqueue_batched(
                                         batch, m, nn, kk, al, be, aa, bb, cc, strides, queue))
            if a.transposed or self._packs_b(m, b):
                with pack.scratch(self.rt, queue).lock:
                    a, b, strides = self._packed(m, n, k, a, b, strides, queue, batch)
                    return self.enqueue_batched(batch, m, n, k, alpha, beta, a, b, c, strides,
                                                queue)
        kernel = self.kernel_for(a, b, c, batch_strides=strides)
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset, *strides]
        size = self._sizes.get((m, n, batch))
        if size is None:
            size = self._sizes[(m, n, batch)] = kernel.global_size(m, n) + (batch,)
        return kernel.launch(args, size, queue)

    def _packed(self, m: int, n: int, k: int, a: Operand, b: Operand,
                strides: tuple[int, int, int], queue, batch: int = 1,
                events: list | None = None) -> tuple[Operand, Operand, tuple[int, int, int]]:
        """a replaced by its plain copy where stored transposed, b by its panels where
        `_packs_b` (the copies enqueued on `queue`, in scratch; the caller holds the scratch
        lock until the product that reads them is enqueued)."""
        space = pack.scratch(self.rt, queue)
        sa, sb, sc = strides
        if a.transposed:
            a, sa = pack.pack(space, "A", a, m, k, queue, batch, sa, events)
        if self._packs_b(m, b):
            b, sb = pack.pack(space, "B", b, k, n, queue, batch, sb, events,
                              panel=self.schedule.out_n)
        return a, b, (sa, sb, sc)

    def _splits(self, m: int, n: int, k: int, b: Operand) -> bool:
        """Whether the direct form runs the product in pieces (`_blocked`): a K over K_CHUNK,
        or a packed B wider than N_CHUNK."""
        return self._pack and (k > K_CHUNK or (n > N_CHUNK and self._packs_b(m, b)))

    def _blocked(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand, b: Operand,
                 c: Operand, launch) -> "cl.Event":
        """The product as products over blocks of at most N_CHUNK columns (where B is
        packed: `_packs_b`), each as consecutive products over slices of K of at most
        K_CHUNK added into its block of C (beta only on the first slice: C is read from the
        second on, where it holds the first slices' sum); `launch(n, k, alpha, beta, a, b,
        c)` enqueues one. Returns the last one's event (the queue is in order)."""
        def even(total: int, most: int) -> int:
            # equal pieces of at most `most`, whole lines of 16 floats (a slice starting
            # inside a line reads B^T misaligned: 512 x 4096 x 11008, its pack 1.4 ms a
            # block in slices of 1001 against 0.5 at 1024)
            step = -(-total // -(-total // most))
            return min(most, -(-step // 16) * 16)

        n_step = even(n, N_CHUNK) if self._packs_b(m, b) else n
        k_step = even(k, K_CHUNK)
        event = None
        for n0 in range(0, n, n_step):
            nn = min(n_step, n - n0)
            b_n = b._replace(offset=b.offset + (n0 * b.ld if b.transposed else n0))
            c_n = c._replace(offset=c.offset + (n0 * c.ld if c.transposed else n0))
            for k0 in range(0, k, k_step):
                kk = min(k_step, k - k0)
                a_k = a._replace(offset=a.offset + (k0 * a.ld if a.transposed else k0))
                b_k = b_n._replace(offset=b_n.offset + (k0 if b.transposed else k0 * b.ld))
                event = launch(nn, kk, alpha, beta if k0 == 0 else 1.0, a_k, b_k, c_n)
        return event

    def _swaps(self, m: int, n: int, a: Operand, b: Operand, c: Operand) -> bool:
        """Whether the direct form runs the product as its transpose, C^T = op(B)^T op(A)^T,
        its kernel writing C^T straight into C (Layout.trans_c): where that copies less
        before the product (`_copied`). B stored transposed (a Linear layer's weight) with
        fewer rows than columns is read as stored, and op(A) (m k floats) packed instead of
        B (n k): PoCL, 512 x 4096 x 4096 with B transposed 113 ms against 84 swapped (numpy
        91), 64 x 4096 x 1024 7.1 against 2.9. With both stored transposed neither is then
        transposed by a copy."""
        if not self._pack or c.transposed or b.panel:
            return False
        return self._copied(n, m, b.flipped(), a.flipped()) < self._copied(m, n, a, b)

    def _copied(self, m: int, n: int, a: Operand, b: Operand) -> int:
        """Floats the direct form copies before the product, per unit of K, a transposing
        copy counted twice (A's plain copy from transposed storage runs at about a quarter
        of the panels' rate on PoCL: a batch of 24 512 x 64 x 512 products took 11 ms with A
        stored transposed against 5.5 stored plainly, the panels 0.8 ms per 4M floats)."""
        return (2 * m if a.transposed else 0) + (n if self._packs_b(m, b) else 0)

    @staticmethod
    def _packs_b(m: int, b: Operand) -> bool:
        """Whether B is packed into panels first: stored transposed (each K step of a
        work-item would gather out_n elements from as many stored rows), or read by enough
        rows of C to pay for the copy. Not again once packed."""
        return not b.panel and (b.transposed or m >= PANEL_MIN_ROWS)

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue", info=None,
                gate: "tuple[cl.Buffer, cl.Buffer] | None" = None, slot: int = 0) -> "cl.Event":
        """The product; `gate` runs the gated kernel (computes only where gate[0] is raised);
        `slot` picks one of several kernel objects (a gate pair stays bound to each)."""
        if self._pack:  # the direct form's swap, blocks and packs (none in the work-group form)
            if gate is None and self._swaps(m, n, a, b, c):
                return self.enqueue(n, m, k, alpha, beta, b.flipped(), a.flipped(), c.flipped(),
                                    queue, info)
            if self._splits(m, n, k, b):
                return self._blocked(m, n, k, alpha, beta, a, b, c,
                                     lambda nn, kk, al, be, aa, bb, cc: self.enqueue(
                                         m, nn, kk, al, be, aa, bb, cc, queue, info, gate, slot))
            if a.transposed or self._packs_b(m, b):
                with pack.scratch(self.rt, queue).lock:
                    a, b, _ = self._packed(m, n, k, a, b, (0, 0, 0), queue,
                                           events=None if info is None else info.events)
                    return self.enqueue(m, n, k, alpha, beta, a, b, c, queue, info, gate, slot)
        if info is not None:
            t0 = time.perf_counter()
            kernel = self.kernel_for(a, b, c, gate is not None, slot)
            info.build_s = time.perf_counter() - t0  # ~0 when this runtime already built it
            info.build_from_cache = kernel.build_info.from_cache
        else:
            kernel = self.kernel_for(a, b, c, gate is not None, slot)
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset]
        if gate is not None:
            args += gate
        size = self._sizes.get((m, n))
        if size is None:
            size = self._sizes[(m, n)] = kernel.global_size(m, n)
        event = kernel.launch(args, size, queue)
        if info is not None:
            info.events.append(event)
        return event


def lane_for(rt: Runtime, schedule: Schedule) -> Fp32Lane:
    """The runtime's float32 lane of one schedule (built once: its kernels per layout, its
    global sizes and bound arguments are kept for the next call)."""
    return rt.cached(("fp32 lane", schedule), lambda: Fp32Lane(rt, schedule))


def enqueue_product(rt: Runtime, schedule: Schedule, m: int, n: int, k: int, alpha: float,
                    beta: float, a: Operand, b: Operand, c: Operand, queue=None) -> list:
    """One float32-family product as the call runs it (the lane: a direct schedule's copies,
    blocks, slices or swap included), on `queue` (default: the runtime's waiting queue);
    its kernels' events, the last last. The road for the product's users outside a plan:
    the guard's checked product and recompute, the replay, the benchmarks, the tuner. (A
    bare kernel launch there ran, on a CPU, a product the call never makes: B read in place
    where the call packs it, all of K where it slices.)"""
    from ..info import Info  # noqa: PLC0415 - info is light, but lanes load before it

    info = Info(method="exact", schedule=schedule.key(), device="", shape=(m, n, k))
    last = lane_for(rt, schedule).enqueue(m, n, k, alpha, beta, a, b, c, queue or rt.queue,
                                          info)
    return info.events or [last]


# The last resort when neither the table's nor the default schedule fits a device:
# 64 work-items, no vector loads, small local tiles.
SAFE_SCHEDULE = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1,
                         vec_c=1, stage_a=1, stage_b=1, unroll_k=1, double_buffer=0,
                         strided=1, local_pad=0)


def choose_schedule(rt: Runtime, m: int, n: int, k: int,
                    schedule: Schedule | None = None) -> Schedule:
    """The float32 family's schedule: the caller's (checked), else the device table's, else a
    default that is valid on the device."""
    space = search_space(rt)
    if schedule is not None:
        space.check(schedule)
        return schedule
    table = tables.load_table(rt.device)
    for candidate in (table.lookup(m, n, k), table.default, DEFAULT_GPU, DEFAULT_CPU,
                      SAFE_SCHEDULE):
        if space.is_valid(candidate):
            return candidate
    raise ShapeError(f"no built-in schedule fits {rt.device.name!r}; pass schedule=...")


def alternative_schedule(rt: Runtime, chosen: Schedule) -> Schedule:
    """Another valid float32 schedule than `chosen` (the guard's recompute on another
    kernel), else `chosen`."""
    space = search_space(rt)
    cands = list(tables.load_table(rt.device).candidates()) + [DEFAULT_GPU, DEFAULT_CPU, SAFE_SCHEDULE]
    for s in cands:
        if s != chosen and space.is_valid(s):
            return s
    return chosen
