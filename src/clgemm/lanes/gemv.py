"""The small-rows lane: products with m or n at most MAX_ROWS (a decode step: a few tokens
against a weight matrix). The large operand streams once, coalesced; the few rows ride along
in registers (kernels/gemv.py: a work-group form for GPUs, a vector form for CPUs). A product
with n small is run as its transpose, C^T = op(B)^T op(A)^T, so the kernels only meet a small
number of rows R. Batches of such products run in one launch (the third dimension).
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from ..kernels.gemv import (AXPY_UNROLL, MAX_ROWS, STAGE_STEPS, GemvSchedule,
                             default_schedule, render, row_bucket)
from ..operands import Operand
from ..runtime import BuildInfo, LruMemo, Runtime
from ..schedule import Schedule
from .fp32 import BoundArgs, lane_for, search_space
from .recording import launch

_DOT_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32,
              None, np.int64, np.int64, np.int64, None, np.int64, np.int64,
              None, np.int64, np.int64, np.int64, np.int64, np.int64, np.int64]
_SPLIT_TYPES = _DOT_TYPES + [None, np.int32]  # the partial sums and K per split
_REDUCE_TYPES = [np.int32, np.int32, np.int32, np.float32, np.float32, None, None, np.int64,
                 np.int64, np.int64, np.int64]
_TYPES = {"gemv_dot": _SPLIT_TYPES, "gemv_dotv": _DOT_TYPES, "gemv_axpy": _SPLIT_TYPES,
          "gemv_reduce": _REDUCE_TYPES}

# Work-items a work-group of the vector form: a CPU runtime keeps every work-item's private
# arrays (up to 16 x 4 float8 accumulators, 2 KiB) for the whole group on one thread's
# stack; left to PoCL, a batch of 16-row products got groups that overflowed it (a crash).
VECTOR_GROUP = 8
MIN_K_PER_SPLIT = 256  # rows of B a split of gemv_axpy reads at least (its partials cost N R)


def _rows_schedule(rows: int) -> Schedule:
    """The direct kernel for a few rows as its N: all of them one vector (their bucket),
    one work-item across, six rows of the large operand a work-item. K is summed in blocks
    of 16: numpy's float32 error on such products is small (with B transposed, 2-3x below
    its error on the same product stored plainly at 13 x 77 x 129 and 4 x 90 x 70), and
    blocks of 128 erred up to 2.9x numpy's there, blocks of 32 up to 1.7x, of 16 up to 1.4x
    (6 inputs of each of 8 odd shapes and 4 layouts, PoCL)."""
    return Schedule(wg_m=4, wg_n=1, out_m=6, out_n=row_bucket(rows), tile_k=16, vec_a=1,
                    vec_b=1, vec_c=1, stage_a=0, stage_b=0, unroll_k=1, double_buffer=0,
                    strided=0, local_pad=0, acc_chunk=16, direct=1)


def _wide_schedule(rows: int) -> Schedule:
    """The direct kernel for a few rows as its M, the large operand its B read a row of 16
    a K step (an axpy: each row of the large operand meets every row of the few): up to
    four rows a work-item (four float16 accumulators), no rows computed past the few."""
    return Schedule(wg_m=1, wg_n=4, out_m=min(row_bucket(rows), 4), out_n=16, tile_k=16,
                    vec_a=1, vec_b=1, vec_c=1, stage_a=0, stage_b=0, unroll_k=1,
                    double_buffer=0, strided=0, local_pad=0, acc_chunk=16, direct=1)


def large_along_k(m: int, n: int, trans_a: bool, trans_b: bool) -> bool:
    """Whether the large operand of a product with few rows (or columns) is stored along K
    (a Linear layer's weight N x K; A stored M x K): the dot kernels read it so."""
    return trans_b if m <= n else not trans_a


def _strides(x: Operand) -> tuple[int, int]:
    """(row stride, column stride) in elements of the logical operand."""
    return (1, x.ld) if x.transposed else (x.ld, 1)


def device_schedule(rt: Runtime) -> GemvSchedule:
    """The lane's schedule on this device: its table's measured fields over the device
    type's default (select/table.Table.gemv)."""
    from ..select import table as tables

    return tables.load_table(rt.device).gemv_schedule(default_schedule(rt.device.type))


def fits(rt: Runtime, s: GemvSchedule) -> bool:
    """Whether the device launches the lane's work-groups and holds its local memory."""
    d = rt.device
    items = max(s.dot_items, s.axpy_group)
    return items <= d.max_work_group_size and s.local_bytes() <= d.local_mem_bytes


def _vec(x: Operand, stride: int) -> bool:
    """Whether float4 words of x along its unit stride start 16-byte aligned."""
    return x.offset % 4 == 0 and stride % 4 == 0


class GemvLane:
    """The exact contract for products with at most MAX_ROWS rows or columns."""

    name = "gemv"

    def __init__(self, rt: Runtime, schedule: GemvSchedule | None = None,
                 max_splits: int | None = None) -> None:
        self.rt = rt
        self.schedule = schedule or device_schedule(rt)
        self.max_splits = max_splits  # at most this many splits of K (None: as many as fill)
        self._kernels: dict[tuple, BoundArgs] = {}
        self._dot_launches = LruMemo(256)  # gemv_dot's launch per shape (_dot_launch)
        self._lock = threading.Lock()
        # a hot call may be recorded and launched again (lanes/recording.py): not where the
        # float32 family's direct form serves some rows (its packs: Fp32Lane.replayable)
        self.replayable = not self.schedule.direct_rows
        self.build_info: BuildInfo | None = None  # the last program built (or loaded)
        self._kernel("gemv_axpy", 1, False, False)  # a compile error shows when the lane is made

    def _kernel(self, name: str, rows: int, b_vec: bool, a_vec: bool,
                schedule: GemvSchedule | None = None) -> BoundArgs:
        """The kernel `name` of the program for a row bucket and operand alignment (each
        built once), with its arguments as last bound (a call sets only those that change);
        `schedule`: the lane's own, or its form for a short K (GemvSchedule.for_k)."""
        schedule = schedule or self.schedule
        key = (name, rows, b_vec, a_vec, schedule.lanes(rows))
        kern = self._kernels.get(key)
        if kern is None:
            built = self.rt.build(render(schedule, rows, b_vec, a_vec),
                                  options="-cl-mad-enable")
            self.build_info = built.info
            kern = self._kernels.setdefault(key, BoundArgs(built.kernel(name), _TYPES[name]))
        return kern

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue", info=None) -> "cl.Event":
        if min(m, n) > MAX_ROWS:
            return self._stacked(m, n, k, alpha, beta, a, b, c, queue, info)
        event = self.enqueue_batched(1, m, n, k, alpha, beta, a, b, c, (0, 0, 0), queue, info)
        if info is not None and not (info.events and info.events[-1] is event):
            info.events.append(event)  # every kernel of the call is listed (Info.kernel_s)
        return event

    def enqueue_batched(self, batch: int, m: int, n: int, k: int, alpha: float, beta: float,
                        a: Operand, b: Operand, c: Operand, strides: tuple[int, int, int],
                        queue: "cl.CommandQueue", info=None) -> "cl.Event":
        """`batch` products in one launch, the i-th operands `strides[...] * i` elements past
        a, b and c (0 broadcasts that operand); `info`: a reported call, whose Info.events
        get the kernels before the last."""
        direct_rows = self.schedule.direct_rows
        if direct_rows and (min(m, n) >= direct_rows
                            or not large_along_k(m, n, a.transposed, b.transposed)):
            direct = self._direct(batch, m, n, k, alpha, beta, a, b, c, strides, queue, info)
            if direct is not None:
                return direct
        (a_rs, a_ks), (b_ks, b_ns), (c_rs, c_ns) = _strides(a), _strides(b), _strides(c)
        rows, cols = m, n
        A, B = (a, a_rs, a_ks), (b, b_ks, b_ns)
        a_bs, b_bs, c_bs = strides
        if m > MAX_ROWS:  # n is the small one: C^T = op(B)^T op(A)^T
            rows, cols = n, m
            A, B = (b, b_ns, b_ks), (a, a_ks, a_rs)
            c_rs, c_ns = c_ns, c_rs
            a_bs, b_bs = b_bs, a_bs
        if rows > MAX_ROWS:
            raise ValueError(f"the gemv lane takes at most {MAX_ROWS} rows or columns, "
                             f"not {m}x{n}; this is a clgemm bug")
        (x, x_rs, x_ks), (y, y_ks, y_ns) = A, B
        bucket = row_bucket(rows)
        batch_strides = (a_bs, b_bs, c_bs)
        events = None if info is None else info.events
        if y_ks == 1:
            return self._dot(batch, bucket, rows, cols, k, alpha, beta, (x, x_rs, x_ks),
                             (y, y_ns), (c, c_rs, c_ns), batch_strides, queue, events)
        return self._axpy(batch, bucket, rows, cols, k, alpha, beta, (x, x_rs, x_ks), (y, y_ks),
                          (c, c_rs, c_ns), batch_strides, queue, events)

    def _stacked(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                 b: Operand, c: Operand, queue, info=None) -> "cl.Event":
        """A product of MAX_ROWS to stack_rows rows (or columns): its whole blocks of
        MAX_ROWS as one batched launch, the large operand shared (batch stride 0: read once
        from memory, again from cache), and the rest, if any, as one more product."""
        if min(m, n) > self.schedule.stack_rows:
            raise ValueError(f"the gemv lane stacks at most {self.schedule.stack_rows} rows or "
                             f"columns, not {m}x{n}; this is a clgemm bug")
        rows = m <= n  # the few are C's rows (else its columns)
        few = m if rows else n
        whole, rest = divmod(few, MAX_ROWS)
        (a_rs, _), (_, b_ns), (c_rs, c_ns) = _strides(a), _strides(b), _strides(c)
        step_x, step_c = (a_rs, c_rs) if rows else (b_ns, c_ns)  # one row (or column) on
        strides = ((MAX_ROWS * step_x, 0, MAX_ROWS * step_c) if rows
                   else (0, MAX_ROWS * step_x, MAX_ROWS * step_c))
        bm, bn = (MAX_ROWS, n) if rows else (m, MAX_ROWS)
        event = self.enqueue_batched(whole, bm, bn, k, alpha, beta, a, b, c, strides, queue,
                                     info)
        if info is not None:
            info.events.append(event)
        if rest:
            done = whole * MAX_ROWS

            def past(x: Operand, step: int) -> Operand:
                return x._replace(offset=x.offset + done * step)

            if rows:
                a, c, m = past(a, a_rs), past(c, c_rs), rest
            else:
                b, c, n = past(b, b_ns), past(c, c_ns), rest
            event = self.enqueue_batched(1, m, n, k, alpha, beta, a, b, c, (0, 0, 0), queue,
                                         info)
            if info is not None:
                info.events.append(event)
        return event

    def kernel_note(self, m: int, n: int, trans_a: bool, trans_b: bool) -> str:
        """What serves a product of this shape and layout (C row-major), for its plan's
        printout: "" for the dot kernels."""
        few = min(m, n)
        s = self.schedule
        if not s.direct_rows or (few < s.direct_rows and large_along_k(m, n, trans_a, trans_b)):
            return ""
        swap = trans_b if m <= n else trans_a
        return (" (the float32 family's direct kernel, the few as its "
                f"{'N' if (n, m)[swap] <= (m, n)[swap] else 'M'}"
                f"{', swapped, written into C transposed' if swap else ''})")

    def _direct(self, batch: int, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, strides: tuple[int, int, int],
                queue, info=None) -> "cl.Event | None":
        """A few rows on the float32 family's direct kernel (None where its schedule does
        not fit the device: the dot kernels serve). That kernel copies an operand stored
        transposed into plain storage first (lanes/pack.py), which the large operand must
        not need: where it is stored transposed (B stored N x K, a Linear layer's weight)
        the product runs swapped, C^T = op(B)^T op(A)^T, the kernel writing C^T into C
        transposed (Layout.trans_c). Where the few rows are the kernel's N (its B, read a
        row of `out_n` a K step) they are one vector (out_n: their bucket); as its M, up to
        four a work-item."""
        swap = b.transposed if m <= n else a.transposed
        km, kn = (n, m) if swap else (m, n)
        schedule = _rows_schedule(kn) if kn <= km else _wide_schedule(km)
        if not search_space(self.rt).is_valid(schedule):
            return None
        fp32 = lane_for(self.rt, schedule)
        if swap:  # C^T = op(B)^T op(A)^T, written into C transposed
            sa, sb, sc = strides
            m, n, a, b, c, strides = n, m, b.flipped(), a.flipped(), c.flipped(), (sb, sa, sc)
        return (fp32.enqueue(m, n, k, alpha, beta, a, b, c, queue, info) if batch == 1 else
                fp32.enqueue_batched(batch, m, n, k, alpha, beta, a, b, c, strides, queue))

    def _dot(self, batch, bucket, rows, cols, k, alpha, beta, A, B, C, strides,
             queue, events=None) -> "cl.Event":
        s = self.schedule
        (x, x_rs, x_ks), (y, y_ns), (c, c_rs, c_ns) = A, B, C
        if s.dot_form == "vector":
            kern = self._kernel("gemv_dotv", bucket, False, False)
            items = -(-cols // (s.cols_per_item(bucket) * VECTOR_GROUP)) * VECTOR_GROUP
            return launch(kern, self._lock, queue,
                          (rows, cols, k, alpha, beta, x.buffer, x.offset, x_rs, x_ks,
                           y.buffer, y.offset, y_ns, c.buffer, c.offset, c_rs, c_ns, *strides),
                          (items, 1, batch), (VECTOR_GROUP, 1, 1),
                          keep=queue is self.rt.user_queue)
        b_vec = _vec(y, y_ns) and strides[1] % 4 == 0
        a_vec = b_vec and x_ks == 1 and _vec(x, x_rs) and strides[0] % 4 == 0
        key = (batch, bucket, cols, k, b_vec, a_vec)
        shape = self._dot_launches.get(key)
        if shape is None:
            shape = self._dot_launches.put(key, self._dot_launch(*key))
        kern, splits, per_split, global_size, local_size = shape
        return self._split_launch(
            kern, (rows, cols, k, alpha, beta, x.buffer, x.offset, x_rs, x_ks, y.buffer,
                   y.offset, y_ns), (c, c_rs, c_ns, strides), batch, splits, per_split,
            bucket, global_size, local_size, queue, events)

    def _dot_launch(self, batch: int, bucket: int, cols: int, k: int, b_vec: bool,
                    a_vec: bool) -> tuple:
        """gemv_dot's launch for a shape, decided once (a decode step repeats its shapes
        every token; this arithmetic cost microseconds a call on the host): (kernel, splits,
        K per split, global size, local size)."""
        s = self.schedule.for_k(k)
        kern = self._kernel("gemv_dot", bucket, b_vec, a_vec, s)
        lanes, groups = s.lanes(bucket), s.groups(bucket)
        col_groups = -(-cols // (groups * s.cols_per_item(bucket)))
        # a split reads whole staged chunks (or whole float4 words a lane) of K
        step = 4 * lanes * (STAGE_STEPS if s.staged(bucket) else 1)
        splits, per_split = self.splits(s.fill(bucket), batch * col_groups, k, step)
        return (kern, splits, per_split, (col_groups * lanes, splits * groups, batch),
                (lanes, groups, 1))

    def _axpy(self, batch, bucket, rows, cols, k, alpha, beta, A, B, C, strides,
              queue, events=None) -> "cl.Event":
        s = self.schedule
        (x, x_rs, x_ks), (y, y_ks), (c, c_rs, c_ns) = A, B, C
        col_groups = -(-cols // (4 * s.axpy_cols))
        # splits of whole runs of AXPY_UNROLL rows: A's float4 words stay aligned
        splits, per_split = self.splits(s.axpy_fill_for(rows), batch * col_groups, k,
                                        AXPY_UNROLL)
        b_vec = _vec(y, y_ks) and strides[1] % 4 == 0
        a_vec = b_vec and x_ks == 1 and _vec(x, x_rs) and strides[0] % 4 == 0
        kern = self._kernel("gemv_axpy", bucket, b_vec, a_vec)
        return self._split_launch(
            kern, (rows, cols, k, alpha, beta, x.buffer, x.offset, x_rs, x_ks, y.buffer,
                   y.offset, y_ks), (c, c_rs, c_ns, strides), batch, splits, per_split,
            bucket, (col_groups * s.axpy_cols, splits * s.axpy_slices, batch),
            (s.axpy_cols, s.axpy_slices, 1), queue, events)

    def _split_launch(self, kern, head: tuple, out: tuple, batch: int, splits: int,
                      per_split: int, bucket: int, global_size: tuple, local_size: tuple,
                      queue, events: list | None = None) -> "cl.Event":
        """A kernel whose K may be split over work-groups (gemv_dot, gemv_axpy): `head` its
        arguments up to B's, `out` = (c, C's row and column strides, the batch strides);
        with several splits the partial sums go to pooled scratch and gemv_reduce adds them
        into C."""
        rows, cols, _, alpha, beta = head[:5]
        c, c_rs, c_ns, strides = out
        partial, scratch = self._partials(batch, splits, rows, cols, c, queue)
        event = launch(kern, self._lock, queue,
                       head + (c.buffer, c.offset, c_rs, c_ns, *strides, scratch, per_split),
                       global_size, local_size, keep=self._keeps(queue, partial))
        if events is not None and partial is not None:
            events.append(event)  # the reduction's event is the call's last
        return self._reduce(event, partial, batch, splits, bucket, rows, cols, alpha, beta,
                            (c, c_rs, c_ns, strides[2]), queue)

    def splits(self, fill: int, groups: int, k: int, step: int = 1) -> tuple[int, int]:
        """(splits of K over work-groups, K per split): enough splits to give the device
        about `fill` work-groups per compute unit beside the `groups` it has (column groups
        times the batch; fill 0: none), each reading MIN_K_PER_SPLIT of K at least, K per
        split a multiple of `step`."""
        want = -(-fill * self.rt.device.compute_units // groups) if fill else 1
        splits = max(1, min(want, k // MIN_K_PER_SPLIT, self.max_splits or want))
        per_split = -(-k // splits)
        per_split = -(-per_split // step) * step
        return (-(-k // per_split) if k else 1), per_split


    def _keeps(self, queue, partial) -> bool:
        """Whether a launch keeps its bound buffers (fp32.BoundArgs): on the hot path, and
        a split's partial sums, which nothing else holds while the kernels run."""
        return queue is self.rt.user_queue or partial is not None

    def _partials(self, batch: int, splits: int, rows: int, cols: int, c: Operand, queue):
        """(the pooled partial sums, None with one split; the buffer the kernel is given:
        C's own where it writes C itself)."""
        if splits == 1:
            return None, c.buffer
        partial = self.rt.pooled(4 * batch * splits * rows * cols,
                                 "gemv split partial sums", queue)
        return partial, partial

    def _reduce(self, event, partial, batch, splits, bucket, rows, cols, alpha, beta, out,
                queue) -> "cl.Event":
        """After a split launch, gemv_reduce adds the partial sums in order into C, `out`
        = (c, its row stride, column stride, batch stride)."""
        if partial is None:
            return event
        c, c_rs, c_ns, c_bs = out
        red = self._kernel("gemv_reduce", bucket, False, False)
        return launch(red, self._lock, queue,
                      (rows, cols, splits, alpha, beta, partial, c.buffer, c.offset, c_rs, c_ns,
                       c_bs), (-(-cols // 64) * 64, rows, batch), (64, 1, 1), keep=True)
