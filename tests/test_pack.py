"""The direct form's pre-pass (lanes/pack.py): a transposed A is copied into plain storage,
B (transposed, or read by enough rows) into panels before the product, a wide product in
blocks of columns and a long K in slices. Checked where the copy could go wrong: partial
16 x 16 blocks and partial panels, views with an offset and a leading dimension, batches
(strided and broadcast), a chain of products on one queue reusing the scratch, and threads
sharing the queue."""

from __future__ import annotations

import numpy as np
import pytest

import clgemm
from clgemm import Schedule
from clgemm.lanes import fp32, pack
from clgemm.lanes.fp32 import Fp32Lane
from clgemm.operands import Operand
from clgemm.runtime import get_runtime
from conftest import (assert_close_to_reference, rand, reference, require_valid,
                      run_in_threads)

DIRECT = Schedule.from_key("wm4-wn8-om6-on16-tk16-va1-vb1-vc1-sa0-sb0-uk1-db0-st0-lp0-ac128-dr1")


def _operands(rng, m, n, k, ta, tb):
    return (rand(rng, (k, m) if ta else (m, k)), rand(rng, (n, k) if tb else (k, n)))


@pytest.mark.parametrize("ta,tb", [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", [(17, 33, 15), (50, 47, 129), (3, 70, 33)])
def test_transposed_operands_are_packed_and_right(rng, m, n, k, ta, tb, monkeypatch):
    require_valid(DIRECT)
    packed = []
    real = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append(a[1]) or real(*a, **kw))
    A, B = _operands(rng, m, n, k, ta, tb)
    out = clgemm.matmul(A, B, C=np.full((m, n), np.nan, np.float32), trans_a=ta,
                        trans_b=tb, schedule=DIRECT)
    ref, np_err = reference(A, B, trans_a=ta, trans_b=tb)
    assert_close_to_reference(out, ref, np_err, f"{m}x{n}x{k} trans={ta},{tb}")
    lane = fp32.lane_for(get_runtime(), DIRECT)
    a_op, b_op, c_op = (Operand(None, 0, 1, t) for t in (ta, tb, False))
    if lane._swaps(m, n, a_op, b_op, c_op):  # op(B)^T is the kernel's A, op(A)^T its B
        assert packed == ["A"] * (not tb) + ["B"] * (not ta or n >= fp32.PANEL_MIN_ROWS)
    else:
        assert packed == ["A"] * ta + ["B"] * (tb or m >= fp32.PANEL_MIN_ROWS)


def test_views_with_offsets_and_leading_dimensions(rng):
    require_valid(DIRECT)
    m, n, k = 41, 35, 58
    big_a, big_b = rand(rng, (k + 5, m + 9)), rand(rng, (n + 4, k + 11))
    A, B = big_a[3:3 + k, 5:5 + m], big_b[1:1 + n, 7:7 + k]  # stored K x M and N x K
    dA = clgemm.to_device(big_a)[3:3 + k, 5:5 + m]
    dB = clgemm.to_device(big_b)[1:1 + n, 7:7 + k]
    for a, b in ((A, B), (dA, dB)):
        out = clgemm.matmul(a, b, trans_a=True, trans_b=True, schedule=DIRECT)
        out = out if isinstance(out, np.ndarray) else out.get()
        ref, np_err = reference(A, B, trans_a=True, trans_b=True)
        assert_close_to_reference(out, ref, np_err)


@pytest.mark.parametrize("ba,bb", [(5, 5), (None, 5), (5, 1)])
def test_batches_strided_and_broadcast(rng, ba, bb):
    require_valid(DIRECT)
    m, n, k = 19, 37, 23
    A = rand(rng, ((ba,) if ba else ()) + (k, m))
    B = rand(rng, ((bb,) if bb else ()) + (n, k))
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), trans_a=True, trans_b=True,
                        schedule=DIRECT).get()
    for i in range(5):
        a = A if A.ndim == 2 else A[0 if A.shape[0] == 1 else i]
        b = B if B.ndim == 2 else B[0 if B.shape[0] == 1 else i]
        ref, np_err = reference(a, b, trans_a=True, trans_b=True)
        assert_close_to_reference(got[i], ref, np_err, f"product {i}")


def test_a_chain_on_one_queue_reuses_the_scratch(rng):
    """Products enqueued back to back, none waited for: each pack writes the scratch the
    previous product reads, after it (the queue is in order)."""
    require_valid(DIRECT)
    shapes = [(64, 96, 80), (47, 35, 63), (64, 96, 80), (61, 45, 69)]
    ops = [_operands(rng, m, n, k, False, True) for m, n, k in shapes]
    outs = [clgemm.matmul(clgemm.to_device(a), clgemm.to_device(b), trans_b=True,
                          schedule=DIRECT) for a, b in ops]
    for (a, b), out in zip(ops, outs):
        ref, np_err = reference(a, b, trans_b=True)
        assert_close_to_reference(out.get(), ref, np_err)


def test_threads_sharing_the_queue(rng):
    require_valid(DIRECT)
    rt = get_runtime(None)
    lane = Fp32Lane(rt, DIRECT)
    assert lane._pack
    # (not smaller: at 40 x 30 x 60 and 33 x 20 x 150 with B transposed, numpy's float32
    # error on this host is 2.1-2.6x below its error on the same product stored plainly, and
    # clgemm's, the same in both layouts, is then outside twice numpy's, with or without the
    # pack; noted in records/cpu-pocl-amd-epyc/2026-12-06-model-traces-2)
    cases = [_operands(rng, 47 + 7 * i, 35 + 5 * i, 63 + 3 * i, False, True) for i in range(4)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        a, b = cases[i]
        for _ in range(5):
            out = clgemm.matmul(clgemm.to_device(a), clgemm.to_device(b), trans_b=True,
                                schedule=DIRECT)
        results[i] = out.get()

    run_in_threads(work, len(cases))
    for i, (a, b) in enumerate(cases):
        ref, np_err = reference(a, b, trans_b=True)
        assert_close_to_reference(results[i], ref, np_err, f"thread {i}")


def test_the_work_group_form_keeps_its_layouts():
    rt = get_runtime(None)
    staged = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
                      stage_a=1, stage_b=1, unroll_k=1, double_buffer=0, strided=1,
                      local_pad=1)
    require_valid(staged)
    assert not Fp32Lane(rt, staged)._pack


@pytest.mark.parametrize("batch", [None, 3])
def test_b_read_by_enough_rows_is_packed_in_panels(rng, batch, monkeypatch):
    """B stored plainly (a view of a wider array, N not a multiple of the panel width: the
    last panel padded with zeros) is packed into panels of out_n columns where enough rows
    of C read it, and read in place by fewer rows; stored transposed it is packed always."""
    require_valid(DIRECT)
    packed = []
    real = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append((a[1], kw.get("panel")))
                        or real(*a, **kw))
    m, n, k = 45, 70, 37
    lead = (batch,) if batch else ()
    A, wide = rand(rng, lead + (m, k)), rand(rng, lead + (k, 512))
    B = wide[..., :n]
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(wide)[..., :n],
                        schedule=DIRECT).get()
    for i in range(batch or 1):
        ref, np_err = reference(A[i] if batch else A, B[i] if batch else B)
        assert_close_to_reference(got[i] if batch else got, ref, np_err)
    assert packed == [("B", DIRECT.out_n)]
    packed.clear()
    few = clgemm.matmul(clgemm.to_device(A[..., :5, :]), clgemm.to_device(wide)[..., :n],
                        schedule=DIRECT).get()
    assert packed == []
    ref, np_err = reference(A[0, :5] if batch else A[:5], B[0] if batch else B)
    assert_close_to_reference(few[0] if batch else few, ref, np_err)
    # stored transposed, B is packed from fewer rows too (20 rows, 10 columns: not swapped,
    # which would pack op(A)^T, 20 floats a step, instead of B's 10)
    narrow = np.ascontiguousarray(np.swapaxes(B[..., :10], -1, -2))
    packed.clear()
    few = clgemm.matmul(clgemm.to_device(A[..., :20, :]), clgemm.to_device(narrow),
                        trans_b=True, schedule=DIRECT).get()
    assert packed == [("B", DIRECT.out_n)]
    ref, np_err = reference(A[0, :20] if batch else A[:20], B[0, :, :10] if batch else B[:, :10])
    assert_close_to_reference(few[0] if batch else few, ref, np_err)
    assert pack.padded_ld(n) % 32 == 16  # A's plain copies: an odd number of 64-byte lines


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False)])
@pytest.mark.parametrize("batch", [None, 3])
def test_wide_products_run_in_blocks_of_columns(rng, ta, tb, batch, monkeypatch):
    """N over fp32.N_CHUNK (with B packed): products over blocks of columns, each its own
    K slices (beta on each block's first only), alpha and beta, a batch with a broadcast B;
    the blocks whole lines of 16 columns but the last. Every block and slice is a kernel of
    the reported call."""
    require_valid(DIRECT)
    monkeypatch.setattr(fp32, "N_CHUNK", 48)
    monkeypatch.setattr(fp32, "K_CHUNK", 100)
    # blocks of 48, 48 and 5 columns, slices of 80 and 51; fewer rows than columns (else A
    # stored transposed runs swapped)
    m, n, k = 37, 101, 131
    lead = (batch,) if batch else ()
    A = rand(rng, lead + ((k, m) if ta else (m, k)))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, lead + (m, n))
    out, info = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-1.25, trans_a=ta,
                              trans_b=tb, schedule=DIRECT, return_info=True)
    for i in range(batch or 1):
        ref, np_err = reference(A[i] if batch else A, B, C0[i] if batch else C0, 0.5, -1.25,
                                ta, tb)
        assert_close_to_reference(out[i] if batch else out, ref, np_err, f"product {i}")
    if not batch:  # per block of columns and slice of K: A's copy, B's panels, the product;
        # with A transposed the last block (5 columns) runs swapped: its B^T copied plainly
        # costs less than A's transposing copy, and op(A)^T is read as stored
        assert len(info.events) == (2 * 2 * 3 + 2 * 2 if ta else 3 * 2 * 2)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_long_k_runs_in_slices_added_into_c(rng, ta, tb, monkeypatch):
    """K over fp32.K_CHUNK: products over slices of K added into C (beta on the first only),
    every layout, alpha and beta, a batch with a broadcast operand; beta == 0 reads no C."""
    require_valid(DIRECT)
    from clgemm.lanes import fp32

    monkeypatch.setattr(fp32, "K_CHUNK", 100)  # 3 slices of 77 and the layouts' offsets
    m, n, k = 37, 41, 231
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-1.25, trans_a=ta, trans_b=tb,
                        schedule=DIRECT)
    ref, np_err = reference(A, B, C0, 0.5, -1.25, ta, tb)
    assert_close_to_reference(out, ref, np_err)
    out = clgemm.matmul(A, B, C=np.full((m, n), np.nan, np.float32), trans_a=ta, trans_b=tb,
                        schedule=DIRECT)
    ref, np_err = reference(A, B, trans_a=ta, trans_b=tb)
    assert_close_to_reference(out, ref, np_err)
    As = rand(rng, (3,) + A.shape)
    got = clgemm.matmul(clgemm.to_device(As), clgemm.to_device(B), trans_a=ta, trans_b=tb,
                        schedule=DIRECT).get()
    for i in range(3):
        ref, np_err = reference(As[i], B, trans_a=ta, trans_b=tb)
        assert_close_to_reference(got[i], ref, np_err, f"product {i}")


def test_info_counts_the_copies_and_k_slices_in_kernel_time(rng):
    # a reported call whose lane runs a plain copy of each transposed operand and K slices
    # (K over lanes.fp32.K_CHUNK) lists every kernel, and its kernel time is their sum
    require_valid(DIRECT)
    from clgemm.lanes.fp32 import K_CHUNK

    m, n, k = 40, 56, 2 * K_CHUNK + 37  # A transposed, m < n: not swapped
    A, B = _operands(rng, m, n, k, True, False)
    out, info = clgemm.matmul(A, B, trans_a=True, schedule=DIRECT, return_info=True)
    ref, np_err = reference(A, B, trans_a=True)
    assert_close_to_reference(out, ref, np_err, "packed, sliced")
    rt = get_runtime()
    assert len(info.events) == 3 * 3  # per slice of K: A's copy, B's panels, the product
    assert info.kernel_s == pytest.approx(sum(rt.seconds(e) for e in info.events))
    assert info.kernel_s > rt.seconds(info.events[-1])


@pytest.mark.parametrize("key", ["wm4-wn8-om4-on4-tk8-va1-vb1-vc1-sa0-sb0-uk1-db0-st0-lp0-ac64-dr1",
                                 "wm8-wn4-om2-on1-tk4-va1-vb1-vc1-sa0-sb0-uk2-db0-st0-lp0-ac64-dr1"])
@pytest.mark.parametrize("tb", [False, True])
def test_panels_of_every_width(rng, key, tb):
    """Panels as wide as the schedule's out_n (4 and 1 here; 16 above), N not a multiple of
    it, B stored either way, alpha and beta."""
    schedule = Schedule.from_key(key)
    require_valid(schedule)
    m, n, k = 39, 23, 45
    A = rand(rng, (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=-0.5, beta=0.75, trans_b=tb, schedule=schedule)
    ref, np_err = reference(A, B, C0, -0.5, 0.75, False, tb)
    assert_close_to_reference(out, ref, np_err)


def test_panels_are_a_direct_form_layout_of_a_plain_b():
    from clgemm.kernels.gemm import Layout, render

    render(DIRECT, Layout(panel_b=True))
    staged = Schedule.from_key("wm8-wn8-om2-on2-tk8-va1-vb1-vc1-sa1-sb1-uk1-db0-st1-lp0-ac64")
    for schedule, layout in ((staged, Layout(panel_b=True)),
                             (DIRECT, Layout(trans_b=True, panel_b=True))):
        with pytest.raises(ValueError, match="clgemm bug"):
            render(schedule, layout)


def test_the_benchmark_times_the_product_as_the_lane_runs_it(rng):
    """The KPI harness's kernel time of a direct schedule is the lane's: B's panels and the
    product (every kernel's event), its result right, its build figures of the product
    kernel that reads the panels."""
    require_valid(DIRECT)
    from clgemm.bench.harness import DeviceProblem
    from clgemm.bench.inputs import InputSets
    from clgemm.bench.suites import Case

    rt = get_runtime()
    case = Case(45, 70, 37, "test")
    inputs = InputSets(*case.shape, 2, rng)
    prob = DeviceProblem(rt, case, inputs, DIRECT)
    assert prob.kernel.layout.panel_b
    assert len(prob.enqueue(0)) == 2  # the panels' copy, the product
    times = prob.kernel_times(1, 3, 5.0)
    assert len(times) == 3 and min(times) > 0
    a, b = inputs.sets[0]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(prob.checked_result() - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("batch", [None, (3, 3), (3, 1), (1, 3)])
def test_b_stored_transposed_with_fewer_rows_runs_swapped(rng, ta, batch, monkeypatch):
    """B stored transposed and m < n: C^T = op(B)^T op(A)^T, written into C transposed by
    the kernel (C not read where beta is 0), B never copied; alpha,
    beta, odd sizes, batches strided and broadcast. With m >= n the product runs as it is."""
    require_valid(DIRECT)
    packed = []
    real_pack = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append(a[2].transposed)
                        or real_pack(*a, **kw))
    m, n, k = 37, 85, 43
    la, lb = ((batch[0],), (batch[1],)) if batch else ((), ())
    A = rand(rng, la + ((k, m) if ta else (m, k)))
    B = rand(rng, lb + (n, k))
    lc = (max(batch),) if batch else ()
    C0 = rand(rng, lc + (m, n))
    dev = clgemm.to_device
    got, info = clgemm.matmul(dev(A), dev(B), C=dev(C0), alpha=-0.5, beta=0.75, trans_a=ta,
                              trans_b=True, schedule=DIRECT, return_info=True)
    got = got.get()
    for i in range(max(batch) if batch else 1):
        a = A[min(i, A.shape[0] - 1)] if batch else A
        b = B[min(i, B.shape[0] - 1)] if batch else B
        ref, np_err = reference(a, b, C0[i] if batch else C0, -0.5, 0.75, ta, True)
        assert_close_to_reference(got[i] if batch else got, ref, np_err, f"product {i}")
    assert packed == [not ta]  # op(A)^T into panels (stored transposed where A is plain)
    if not batch:
        assert len(info.events) == 2  # op(A)^T's panels, the product
        assert "trans_c=True" in clgemm.plan(m, n, k, trans_a=ta, trans_b=True,
                                              schedule=DIRECT).lane.product_kernel(
            m, n, k, *(Operand(None, 0, x, t) for x, t in ((k, ta), (k, True), (n, False)))
        ).source.splitlines()[0]
    nan = np.full(lc + (m, n), np.nan, np.float32)
    out = clgemm.matmul(A, B, C=nan, trans_a=ta, trans_b=True, schedule=DIRECT)
    assert np.isfinite(out).all()
    rows = rand(rng, (90, k))  # m >= n: runs as it is, B into panels
    packed.clear()
    wide = clgemm.matmul(rows, B[0] if batch else B, trans_b=True, schedule=DIRECT)
    assert packed == [True] and wide.shape == (90, n)
    ref, np_err = reference(rows, B[0] if batch else B, trans_b=True)
    assert_close_to_reference(wide, ref, np_err)


def test_a_plan_says_what_the_direct_form_does():
    """The plan's `why` names the direct form's copies, blocks and slices, or its swap."""
    def why(*shape, **layout):
        plan = clgemm.plan(*shape, **layout)
        if not (plan.lane is plan.fallback and plan.lane.schedule.direct):
            pytest.skip("this device's plan does not run the direct form")
        return plan.why

    assert "C^T = op(B)^T op(A)^T" in why(512, 4096, 4096, trans_b=True)
    plain = why(600, 2048, 1500, trans_a=True)
    assert "C^T" not in plain and "A copied plainly" in plain
    assert f"panels of {clgemm.plan(600, 2048, 1500).lane.schedule.out_n} columns" in plain
    assert f"blocks of at most {fp32.N_CHUNK} columns" in plain
    assert f"K in slices of at most {fp32.K_CHUNK}" in plain
    assert "C^T" not in why(600, 300, 200, trans_b=True)
    assert "C^T = op(B)^T op(A)^T" in why(100, 300, 200, trans_b=True, batch=4)


def test_a_checked_product_runs_as_the_call_runs_it(rng, monkeypatch):
    """check=True computes the product through the lane (B's panels, K slices), not a bare
    launch of the kernel the call never makes; the result is right and verified."""
    require_valid(DIRECT)
    monkeypatch.setattr(fp32, "K_CHUNK", 64)
    packed = []
    real = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append(kw.get("panel"))
                        or real(*a, **kw))
    m, n, k = 70, 45, 150  # more rows than columns: not swapped; three slices of K
    A, B = _operands(rng, m, n, k, False, True)
    out, info = clgemm.matmul(A, B, trans_b=True, check=True, schedule=DIRECT,
                              return_info=True)
    ref, np_err = reference(A, B, trans_b=True)
    assert_close_to_reference(out, ref, np_err)
    assert info.checked and packed == [DIRECT.out_n] * 3


def test_a_transposed_with_more_rows_than_columns_runs_swapped(rng, monkeypatch):
    """A stored transposed, B plainly, m > n: swapped, the small op(B)^T (n x k) is the one
    copied plainly and A, as stored, packed into panels; alpha, beta, C poisoned for beta 0."""
    require_valid(DIRECT)
    packed = []
    real = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append((a[1], a[3], a[4]))
                        or real(*a, **kw))
    m, n, k = 85, 37, 43
    A, B = _operands(rng, m, n, k, True, False)
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-0.25, trans_a=True,
                        schedule=DIRECT)
    ref, np_err = reference(A, B, C0, 0.5, -0.25, True, False)
    assert_close_to_reference(out, ref, np_err)
    assert packed == [("A", n, k), ("B", k, m)]
    out = clgemm.matmul(A, B, C=np.full((m, n), np.nan, np.float32), trans_a=True,
                        schedule=DIRECT)
    ref, np_err = reference(A, B, trans_a=True)
    assert_close_to_reference(out, ref, np_err)


@pytest.mark.parametrize("tb", [False, True])
def test_a_swapped_product_in_blocks_and_slices(rng, tb, monkeypatch):
    """A swapped product (A stored transposed, more rows than columns; or both transposed)
    whose transpose is wider than N_CHUNK and deeper than K_CHUNK: blocks of C's rows and
    slices of K, all written into C transposed, beta on each block's first slice only."""
    require_valid(DIRECT)
    monkeypatch.setattr(fp32, "N_CHUNK", 48)
    monkeypatch.setattr(fp32, "K_CHUNK", 100)
    m, n, k = 101, 37, 131
    A, B = _operands(rng, m, n, k, True, tb)
    C0 = rand(rng, (m, n))
    out, info = clgemm.matmul(A, B, C=C0.copy(), alpha=-1.5, beta=0.5, trans_a=True,
                              trans_b=tb, schedule=DIRECT, return_info=True)
    ref, np_err = reference(A, B, C0, -1.5, 0.5, True, tb)
    assert_close_to_reference(out, ref, np_err)
    assert len(info.events) >= 3 * 2 * 2  # 3 blocks x 2 slices x (a copy, the product)
