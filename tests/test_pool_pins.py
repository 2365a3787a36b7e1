"""The memory pool after warm-up: a waiting call pins none of its buffers in the kernels'
bound arguments, so that a workload of many shapes stops allocating once every shape has
run (the CPU soak's pool grew 12% after warm-up while kernels pinned the last buffers they
ran on, records/cpu-pocl-amd-epyc/2026-12-06-soak); the hot path still binds only what
changed."""

from __future__ import annotations

import numpy as np

import clgemm
from clgemm.lanes.fp32 import _UNSET, BoundArgs
from clgemm.runtime import get_runtime


class _Kernel:
    """Records set_arg calls."""

    def __init__(self) -> None:
        self.sets: list[int] = []

    def set_arg(self, i, value) -> None:
        self.sets.append(i)


class _Buf:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __eq__(self, other) -> bool:
        return isinstance(other, _Buf) and other.handle == self.handle

    __hash__ = None


def test_bound_args_keep_buffers_only_when_asked():
    k = _Kernel()
    args = BoundArgs(k, [np.int32, None, np.int32, None])
    a, b = _Buf(1), _Buf(2)
    args.bind([3, a, 4, b], keep=True)
    args.bind([3, a, 4, b], keep=True)
    assert k.sets == [0, 1, 2, 3]  # the second launch set nothing
    assert args.values[1] is a
    k.sets.clear()
    args.bind([3, a, 5, b], keep=False)
    assert k.sets == [2] and args.values[1] is _UNSET and args.values[3] is _UNSET
    k.sets.clear()
    args.bind([3, a, 5, b], keep=True)  # nothing pinned: the buffers are set again
    assert k.sets == [1, 3]


def test_pooled_buffers_are_bound_by_handle_not_pinned():
    """A pooled buffer is remembered by its handle: the pool may hand the block out again,
    and a buffer of the same block is not bound twice."""
    rt = get_runtime()
    k = _Kernel()
    args = BoundArgs(k, [np.int32, None])
    before = rt.pool.active_blocks
    buf = rt.pooled(4096, "scratch", rt.user_queue)
    handle = buf.int_ptr
    args.bind([1, buf], keep=True)
    del buf
    assert rt.pool.active_blocks == before  # not pinned
    again = rt.pooled(4096, "scratch", rt.user_queue)  # the same block, from the pool
    assert again.int_ptr == handle
    k.sets.clear()
    args.bind([1, again], keep=True)
    assert k.sets == []
    other = rt.pooled(4096, "scratch", rt.user_queue)
    args.bind([1, other], keep=True)
    assert k.sets == [1]


def test_waiting_calls_pin_nothing_and_the_pool_stops_growing(rng):
    """Numpy operands (the waiting path) of 24 shapes in shuffled rounds: no block stays in
    use after a call, and the pool holds no more after the first round than after five
    (numpy operands are staged for the stations' queue, from its pool)."""
    rt = get_runtime()
    shapes = [tuple(int(x) for x in rng.integers(1, 90, 3)) for _ in range(24)]
    before = rt.station_pool.active_blocks
    held = []
    for _ in range(5):
        for i in rng.permutation(len(shapes)):
            m, n, k = shapes[i]
            ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
            A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            out = clgemm.matmul(A, B, trans_a=ta, trans_b=tb)
            ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B)
            assert np.abs(out - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1.0) * k
            assert rt.station_pool.active_blocks == before
        held.append(rt.station_pool.managed_bytes)
    assert held[-1] == held[0], held


def test_a_block_the_pool_frees_cannot_alias_a_bound_handle():
    """pyopencl's pool gives its held blocks back to OpenCL when an allocation fails: the
    bound cl_mem stays retained, so no new buffer takes its handle and skips a set_arg."""
    import pyopencl.tools as cltools

    rt = get_runtime()
    pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
    k = _Kernel()
    args = BoundArgs(k, [None])
    buf = pool.allocate(8192)
    handle = buf.int_ptr
    args.bind([buf], keep=True)
    del buf
    pool.free_held()
    fresh = [pool.allocate(8192) for _ in range(4)]
    assert all(b.int_ptr != handle for b in fresh)
    k.sets.clear()
    args.bind([fresh[0]], keep=True)
    assert k.sets == [0]


def test_a_block_dropped_on_one_queue_is_not_handed_to_the_other():
    """The hot path drops its scratch while its kernels are still queued on the user queue;
    only work queued behind them (the same in-order queue) may get that block, never a
    station's queue, which another thread could be writing at the same time."""
    rt = get_runtime()
    hot = rt.pooled(4096, "scratch", rt.user_queue)
    handle = hot.int_ptr
    del hot  # back to the user queue's pool, its kernels perhaps still queued
    station = rt.pooled(4096, "scratch", rt.queue)
    assert station.int_ptr != handle
    assert rt.pooled(4096, "scratch", rt.user_queue).int_ptr == handle  # reused behind them
    station_handle = station.int_ptr
    del station
    assert rt.pooled(4096, "scratch", rt.user_queue).int_ptr != station_handle


def test_a_chain_of_argument_sets_rebinds_nothing_once_each_has_an_instance():
    """On the hot path a kernel keeps instances of its own (CLONES): a chain alternating
    among a few products' arguments (a model's q, k, v projections on one kernel) sets no
    argument once each set has an instance; one set more than the instances evicts the least
    recently used; the waiting path (keep=False) pins nothing, in whichever instance."""
    from clgemm.lanes.fp32 import CLONES

    made: list[_Kernel] = []

    def clone() -> _Kernel:
        made.append(_Kernel())
        return made[-1]

    first = _Kernel()
    args = BoundArgs(first, [np.int32, None], clone=clone)
    sets = [[i, _Buf(i)] for i in range(CLONES)]
    for s in sets:
        args.bind(s, keep=True)
        assert args.values == s and args.kernel.sets == [0, 1]
    assert len(made) == CLONES - 1
    for k in [first, *made]:
        k.sets.clear()
    for _ in range(3):
        for s in reversed(sets):  # any order: each set finds its instance
            args.bind(s, keep=True)
            assert args.values == s
    assert all(not k.sets for k in [first, *made])
    used_least = args._slots[-1][0]  # sets[-1]'s instance: bound first in the last round
    args.bind([99, _Buf(99)], keep=True)  # a set more: the least recently used goes
    assert args.kernel is used_least and used_least.sets == [0, 1]
    assert len(made) == CLONES - 1
    args.bind([98, _Buf(98)], keep=False)
    assert args.values[1] is _UNSET  # nothing pinned on the waiting path


def test_one_shape_on_fresh_buffers_keeps_one_instance():
    """A loop of one shape on new arrays every call (a training step's activations) takes
    the instance that holds its sizes and sets only the buffers: it holds one call's buffers,
    not CLONES calls' (the instances keep what they are bound to alive)."""
    made: list[_Kernel] = []

    def clone() -> _Kernel:
        made.append(_Kernel())
        return made[-1]

    first = _Kernel()
    args = BoundArgs(first, [np.int32, None, np.int32, None], clone=clone)
    args.bind([5, _Buf(0), 7, _Buf(1)], keep=True)
    args.bind([6, _Buf(2), 7, _Buf(3)], keep=True)  # another shape: an instance of its own
    assert len(made) == 1
    first.sets.clear()
    for i in range(2, 20):
        args.bind([5, _Buf(10 * i), 7, _Buf(10 * i + 1)], keep=True)
        assert args.kernel is first and args.values[1] == _Buf(10 * i)
    assert len(made) == 1 and first.sets == [1, 3] * 18
