"""The small-rows lane (decode products: m or n up to 16) through the plan, against float64,
every layout, within the exact contract."""

from __future__ import annotations

import numpy as np
import pytest

import clgemm
from clgemm.kernels.gemv import MAX_ROWS
from conftest import assert_close_to_reference, rand, reference

SHAPES = [(1, 37, 53), (13, 77, 129), (16, 5, 300), (200, 1, 65), (201, 7, 65), (3, 2, 1)]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_small_rows_lane_every_layout(m, n, k, ta, tb, rng):
    p = clgemm.plan(m, n, k, trans_a=ta, trans_b=tb)
    assert p.lane.name == "gemv" and "gemv" in str(p)
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-2.0, trans_a=ta, trans_b=tb)
    ref, np_err = reference(A, B, C0, 0.5, -2.0, ta, tb)
    assert_close_to_reference(out, ref, np_err)
    # device arrays, C column-major and poisoned (beta == 0 must not read it)
    c = clgemm.to_device(np.full((n, m), np.nan, np.float32)).T
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, trans_a=ta, trans_b=tb)
    ref0, np_err0 = reference(A, B, None, 1.0, 0.0, ta, tb)
    assert_close_to_reference(got.get(), ref0, np_err0)


def test_small_rows_lane_strided_operands(rng):
    """Leading dimensions beyond the matrix (slices of larger arrays) on device arrays."""
    m, n, k = 4, 90, 70
    big_a, big_b = rand(rng, (m, k + 6)), rand(rng, (k, n + 3))
    a = clgemm.to_device(big_a)[:, :k]
    b = clgemm.to_device(big_b)[:, :n]
    got = clgemm.matmul(a, b).get()
    ref, np_err = reference(big_a[:, :k], big_b[:, :n])
    assert_close_to_reference(got, ref, np_err)


def test_small_rows_lane_holds_the_exact_contract_on_long_rows(rng):
    """A single row against a long K: the lane's blocked sums stay within twice numpy
    float32's error (the square-tile kernels ran 2.2-2.7x on such rows)."""
    for _ in range(3):
        A, B = rand(rng, (1, 4099)), rand(rng, (4099, 257))
        ref, np_err = reference(A, B)
        assert_close_to_reference(clgemm.matmul(A, B), ref, np_err)
        # B stored N x K (a Linear layer's weight), rows 16-byte aligned: float4 loads, and a
        # K that leaves a tail of two
        W = rand(rng, (257, 4100))
        got = clgemm.matmul(clgemm.to_device(A[:, :4098]), clgemm.to_device(W)[:, :4098],
                            trans_b=True).get()
        ref, np_err = reference(A[:, :4098], W[:, :4098], trans_b=True)
        assert_close_to_reference(got, ref, np_err)


@pytest.mark.parametrize("rows", [2, 5, 8, 11, 16])
def test_every_row_bucket_on_aligned_and_split_paths(rows, rng):
    """Each compiled row bucket: A and B read as float4 words (16-byte aligned rows, K with a
    tail of three), and B stored K x N with K split over work-groups (partial sums added by
    a second kernel), with alpha and beta, against float64."""
    k = 1027
    A, W = rand(rng, (rows, 1028)), rand(rng, (133, 1028))
    C0 = rand(rng, (rows, 133))
    c = clgemm.to_device(C0)
    got = clgemm.matmul(clgemm.to_device(A)[:, :k], clgemm.to_device(W)[:, :k], C=c,
                        trans_b=True, alpha=1.5, beta=0.25).get()
    ref, np_err = reference(A[:, :k], W[:, :k], C0, 1.5, 0.25, False, True)
    assert_close_to_reference(got, ref, np_err)
    lane = clgemm.plan(rows, 133, 2 * k).lane
    groups = -(-133 // (4 * lane.schedule.axpy_cols))
    assert lane.splits(lane.schedule.axpy_fill_for(rows), groups, 2 * k)[0] > 1
    A2, B2 = rand(rng, (rows, 2 * k)), rand(rng, (2 * k, 133))
    got = clgemm.matmul(A2, B2, C=C0.copy(), alpha=-0.5, beta=2.0)
    ref, np_err = reference(A2, B2, C0, -0.5, 2.0)
    assert_close_to_reference(got, ref, np_err)


def test_a_long_row_against_b_stored_k_by_n_unsplit(rng):
    """B stored K x N with enough columns that K is not split over work-groups: the slices'
    blocked sums keep the exact contract (one slice summed 3001 products in a row: ~3x
    numpy's error)."""
    for _ in range(3):
        A, B = rand(rng, (1, 3001)), rand(rng, (3001, 1100))
        ref, np_err = reference(A, B)
        assert_close_to_reference(clgemm.matmul(A, B), ref, np_err)


def test_only_small_products_take_the_lane():
    assert clgemm.plan(MAX_ROWS, 300, 40).lane.name == "gemv"
    assert clgemm.plan(300, MAX_ROWS, 40).lane.name == "gemv"
    assert clgemm.plan(MAX_ROWS + 1, MAX_ROWS + 1, 40).lane.name != "gemv"
    # a checked product keeps the float32 family: the guard recomputes with its kernels
    assert clgemm.plan(1, 300, 40, check=True).lane.name == "fp32"


@pytest.mark.parametrize("rows", [1, 3, 16])
@pytest.mark.parametrize("cpw", [1, 4])
@pytest.mark.parametrize("stage,fill", [(1, 0), (1, 64), (0, 64)])
def test_staged_wide_and_split_dot_schedules(rows, cpw, stage, fill, rng):
    """Other schedules of the dot kernel than the default (A staged in local memory, more
    columns per work-item, K split over work-groups and reduced in order), on aligned and
    unaligned operands, against float64; the split ones with alpha and beta."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import GemvSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, GemvSchedule(dot_lanes=(8,) * 5, dot_items=32, cpw=(cpw,) * 5,
                                     stage=(stage,) * 5, dot_fill=(fill,) * 5))
    step = 4 * 8 * (4 if stage else 1)
    splits, per_split = lane.splits(fill, -(-77 // (4 * cpw)), 1030, step)
    assert (splits > 1) == (fill > 0) and per_split % step == 0
    alpha, beta = (-0.75, 0.5) if fill else (1.0, 0.0)
    # float4 words with a tail of two (in the last split); then A's rows unaligned (an odd
    # leading dimension: A read element by element), B's aligned
    for k, lda in ((1030, 1032), (1030, 1031)):
        A, W = rand(rng, (rows, lda)), rand(rng, (77, 1032))
        C0 = rand(rng, (rows, 77))
        a, w = clgemm.to_device(A), clgemm.to_device(W)
        c = cla.empty(rt.user_queue, (rows, 77), np.float32)
        if beta:
            c.set(C0)
        else:
            c.fill(np.float32(np.nan))
        lane.enqueue(rows, 77, k, alpha, beta, Operand(a.base_data, 0, lda, False),
                     Operand(w.base_data, 0, 1032, True), Operand(c.base_data, 0, 77, False),
                     rt.user_queue)
        ref, np_err = reference(A[:, :k], W[:, :k], C0 if beta else None, alpha, beta,
                                trans_b=True)
        assert_close_to_reference(c.get(), ref, np_err)


def test_split_dot_schedule_on_a_batch(rng):
    """A batch of small-rows products through the dot kernel with K split over work-groups:
    each product's partial sums land in its own part of the scratch and are reduced into its
    own C (one operand broadcast along the batch)."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import GemvSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, GemvSchedule(dot_lanes=(8,) * 5, dot_items=32, stage=(1,) * 5,
                                     dot_fill=(64,) * 5))
    batch, rows, n, k = 3, 5, 45, 1100
    assert lane.splits(64, batch * -(-n // 4), k, 128)[0] > 1
    A = rand(rng, (batch, rows, k))
    W = rand(rng, (n, k))  # broadcast: batch stride 0
    a, w = clgemm.to_device(A), clgemm.to_device(W)
    c = cla.empty(rt.user_queue, (batch, rows, n), np.float32)
    c.fill(np.float32(np.nan))
    lane.enqueue_batched(batch, rows, n, k, 2.0, 0.0, Operand(a.base_data, 0, k, False),
                         Operand(w.base_data, 0, k, True), Operand(c.base_data, 0, n, False),
                         (rows * k, 0, rows * n), rt.user_queue)
    got = c.get()
    for i in range(batch):
        ref, np_err = reference(A[i], W, None, 2.0, 0.0, trans_b=True)
        assert_close_to_reference(got[i], ref, np_err)


@pytest.mark.parametrize("rows,k", [(1, 128), (1, 61), (2, 200), (5, 64), (16, 130),
                                    (16, 9)])
def test_short_k_dot_schedule_with_fewer_lanes(rows, k, rng):
    """A K too short for the GPU form's lanes (decode attention's scores: K = 64 or 128)
    runs gemv_dot with fewer lanes a column (GemvSchedule.for_k): a batch of 3 against B
    stored N x K, odd K, alpha/beta, C poisoned, against float64 (the GPU's form, run
    here)."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import MIN_LANES, SHORT_WORDS, default_schedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    gpu = default_schedule("GPU")
    short = gpu.for_k(k)
    assert short.lanes(rows) == gpu.lanes(rows) or (
        MIN_LANES <= short.lanes(rows) < gpu.lanes(rows)
        and (4 * SHORT_WORDS * short.lanes(rows) <= k or short.lanes(rows) == MIN_LANES))
    assert gpu.for_k(4096) == gpu  # long rows keep the measured schedule
    lane = GemvLane(rt, gpu)
    batch, n = 3, 203
    A, W = rand(rng, (batch, rows, k)), rand(rng, (batch, n, k))
    C0 = rand(rng, (batch, rows, n))
    for alpha, beta in ((1.0, 0.0), (0.5, -1.25)):
        c = cla.empty(rt.user_queue, (batch, rows, n), np.float32)
        if beta == 0.0:
            c.fill(np.float32(np.nan))
        else:
            c.set(C0)
        a, w = clgemm.to_device(A), clgemm.to_device(W)
        lane.enqueue_batched(batch, rows, n, k, alpha, beta, Operand(a.base_data, 0, k, False),
                             Operand(w.base_data, 0, k, True), Operand(c.base_data, 0, n, False),
                             (rows * k, n * k, rows * n), rt.user_queue)
        got = c.get()
        for i in range(batch):
            ref, np_err = reference(A[i], W[i], C0[i] if beta else None, alpha, beta,
                                    trans_b=True)
            assert_close_to_reference(got[i], ref, np_err)


@pytest.mark.parametrize("rows,k,batch", [(1, 1029, 3), (3, 517, 1), (16, 2053, 2),
                                          (16, 1024, 2), (2, 2052, 3)])
def test_axpy_unrolled_rows_of_b_stored_k_by_n(rows, k, batch, rng):
    """gemv_axpy's runs (AXPY_UNROLL rows of B in flight, float4 columns: N a multiple of 4;
    A read as float4 words where K is one too) and the rest of each split, split and unsplit
    over K, a batch with A and C strided and B broadcast, with alpha/beta and C poisoned
    where beta is 0, against float64 (the GPU's form, run here)."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, default_schedule("GPU"))
    n = 132
    A, B = rand(rng, (batch, rows, k)), rand(rng, (k, n))
    C0 = rand(rng, (batch, rows, n))
    for alpha, beta in ((1.0, 0.0), (-0.75, 1.5)):
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        c = cla.empty(rt.user_queue, (batch, rows, n), np.float32)
        if beta == 0.0:
            c.fill(np.float32(np.nan))
        else:
            c.set(C0)
        lane.enqueue_batched(batch, rows, n, k, alpha, beta, Operand(a.base_data, 0, k, False),
                             Operand(b.base_data, 0, n, False),
                             Operand(c.base_data, 0, n, False), (rows * k, 0, rows * n),
                             rt.user_queue)
        got = c.get()
        for i in range(batch):
            ref, np_err = reference(A[i], B, C0[i] if beta else None, alpha, beta)
            assert_close_to_reference(got[i], ref, np_err)


@pytest.mark.parametrize("rows", [1, 2, 5, 16])
def test_the_gpu_default_schedule_on_this_device(rows, rng):
    """The GPU default (a column-group shape, columns per work-item, staging and K split per
    row bucket) computed here against float64: odd sizes, both layouts of B, alpha/beta."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, default_schedule("GPU"))
    n, k = 301, 2053
    for tb in (True, False):
        A, B, C0 = rand(rng, (rows, k)), rand(rng, (n, k) if tb else (k, n)), rand(rng, (rows, n))
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        c = cla.empty(rt.user_queue, (rows, n), np.float32)
        c.set(C0)
        lane.enqueue(rows, n, k, 0.5, -2.0, Operand(a.base_data, 0, k, False),
                     Operand(b.base_data, 0, k if tb else n, tb),
                     Operand(c.base_data, 0, n, False), rt.user_queue)
        ref, np_err = reference(A, B, C0, 0.5, -2.0, trans_b=tb)
        assert_close_to_reference(c.get(), ref, np_err)


@pytest.mark.parametrize("m,n,ta,tb", [(5, 300, False, True), (300, 5, True, False),
                                       (16, 300, False, False), (300, 16, False, True),
                                       (7, 9, True, True), (1, 300, False, False),
                                       (300, 1, True, False)])
def test_few_rows_on_the_direct_kernel_pack_only_the_few(m, n, ta, tb, rng, monkeypatch):
    """On a CPU (the lane's direct_rows), a few rows run on the float32 family's direct
    kernel (a single row too where the large operand is not stored along K), swapped where
    the large operand is stored transposed, so that only the few rows are ever copied (a
    copy of the large operand costs as much as the product)."""
    from clgemm.lanes import pack

    lane = clgemm.plan(m, n, 129, trans_a=ta, trans_b=tb).lane
    if not lane.schedule.direct_rows:
        pytest.skip("this device's small-rows lane keeps its dot kernels")
    packed = []
    real_pack = pack.pack
    monkeypatch.setattr(pack, "pack", lambda *a, **kw: packed.append(a[3:5]) or real_pack(*a, **kw))
    k = 129
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=-0.75, beta=0.5, trans_a=ta, trans_b=tb)
    ref, np_err = reference(A, B, C0, -0.75, 0.5, ta, tb)
    assert_close_to_reference(out, ref, np_err)
    few = min(m, n)
    assert all(few in shape for shape in packed), packed  # (rows, cols) of each copy
    # swapped where the large operand is stored transposed: written into C transposed
    large_transposed = tb if m <= n else ta
    kernel_note = lane.kernel_note(m, n, ta, tb)
    assert ("written into C transposed" in kernel_note) == large_transposed, kernel_note


@pytest.mark.parametrize("rows", [1, 5, 16])
def test_vector_form_kernels_for_several_rows(rows, rng):
    """The vector form's kernels (gemv_dotv, and gemv_axpy for B stored K x N) at every
    row count, where the direct kernel does not take the rows (direct_rows=0)."""
    import pyopencl.array as cla

    from clgemm.kernels.gemv import GemvSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, GemvSchedule(dot_form="vector", cpw=(4,) * 5))
    k, n = 1027, 77
    A = rand(rng, (rows, k))
    a = clgemm.to_device(A)
    for tb in (True, False):
        W = rand(rng, (n, k) if tb else (k, n))
        c = cla.empty(rt.user_queue, (rows, n), np.float32)
        c.fill(np.float32(np.nan))
        lane.enqueue(rows, n, k, 1.0, 0.0, Operand(a.base_data, 0, k, False),
                     Operand(clgemm.to_device(W).base_data, 0, W.shape[1], tb),
                     Operand(c.base_data, 0, n, False), rt.user_queue)
        ref, np_err = reference(A, W, trans_b=tb)
        assert_close_to_reference(c.get(), ref, np_err, f"B transposed={tb}")


def test_a_reported_split_call_lists_both_kernels(rng):
    # K split over work-groups is two kernels (partial sums, their reduction): a reported
    # call lists both, so that Info.kernel_s (their sum) is the product's device time
    from clgemm.info import Info
    from clgemm.kernels.gemv import GemvSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    lane = GemvLane(rt, GemvSchedule(dot_lanes=(8,) * 5, dot_items=32, cpw=(1,) * 5,
                                     stage=(0,) * 5, dot_fill=(64,) * 5))
    m, n, k = 3, 77, 1030
    assert lane.splits(64, -(-n // 4), k, 32)[0] > 1  # K is split on this device
    A, W = rand(rng, (m, k)), rand(rng, (n, k))
    a, w = clgemm.to_device(A), clgemm.to_device(W)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    info = Info(method="exact", schedule=lane.schedule.key(), device=rt.device.name,
                shape=(m, n, k))
    last = lane.enqueue(m, n, k, 1.0, 0.0, Operand(a.base_data, 0, k, False),
                        Operand(w.base_data, 0, k, True), Operand(c.base_data, 0, n, False),
                        rt.queue, info)
    last.wait()
    assert len(info.events) == 2 and info.events[-1] is last
    ref, np_err = reference(A, W, trans_b=True)
    assert_close_to_reference(c.get(), ref, np_err, "split, reported")


def test_a_table_names_the_lanes_measured_launch_shapes(rng, monkeypatch):
    """A device table's `gemv` fields replace the device type's default schedule's (the
    campaign's sweeps write them); a field the schedule lacks is refused when read."""
    import dataclasses

    from clgemm.errors import ScheduleError
    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.runtime import get_runtime
    from clgemm.select import table as tables

    rt = get_runtime()
    shipped = tables.load_table(rt.device)
    fields = {"axpy_cols": 8, "axpy_slices": 2, "axpy_fill": 0, "direct_rows": 0}
    measured = dataclasses.replace(shipped, gemv=fields)
    data = measured.to_json()
    assert data["gemv"] == fields
    again = tables.Table.from_json(data, "test")
    assert again.gemv == measured.gemv
    want = dataclasses.replace(default_schedule(rt.device.type), **fields)
    assert again.gemv_schedule(default_schedule(rt.device.type)) == want
    monkeypatch.setattr(tables, "load_table", lambda device, path=None: again)
    lane = GemvLane(rt)
    assert lane.schedule == want
    # B stored K x N: the axpy kernel (direct_rows 0: not the CPU's direct one), unsplit
    m, n, k, batch = 3, 70, 300, 5
    A, B = rand(rng, (batch, m, k)), rand(rng, (batch, k, n))
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.to_device(np.full((batch, m, n), np.nan, np.float32))
    from clgemm.operands import Operand

    lane.enqueue_batched(batch, m, n, k, 1.0, 0.0, Operand(a.base_data, 0, k, False),
                         Operand(b.base_data, 0, n, False), Operand(c.base_data, 0, n, False),
                         (m * k, k * n, m * n), rt.user_queue)
    got = c.get()
    for i in range(batch):
        ref, np_err = reference(A[i], B[i])
        assert_close_to_reference(got[i], ref, np_err)
    data["gemv"] = {"axpy_colums": 8}
    with pytest.raises(ScheduleError, match="axpy_colums"):
        tables.Table.from_json(data, "test")


@pytest.mark.parametrize("m,n,k,ta,tb", [
    (32, 211, 300, False, True),   # a classifier: 32 rows against W stored N x K
    (20, 150, 97, False, False),   # a block of 16 and 4 rows more, B stored K x N
    (170, 24, 130, True, False),   # the few are C's columns, A stored transposed
    (133, 31, 64, False, True),
])
def test_stacked_rows_run_as_blocks_of_the_lanes_rows(m, n, k, ta, tb, rng):
    """A schedule with stack_rows serves 17 to stack_rows rows (or columns) as blocks of
    MAX_ROWS in one batched launch, the rest as one more product; odd shapes, both layouts,
    alpha and beta, against float64 (C poisoned where beta is 0)."""
    import dataclasses

    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    # the GPU's form (the dot and axpy kernels), with stacking on
    schedule = dataclasses.replace(default_schedule("GPU"), stack_rows=32)
    lane = GemvLane(rt, schedule)
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    for alpha, beta in ((1.0, 0.0), (-0.5, 0.75)):
        C0 = rand(rng, (m, n)) if beta else np.full((m, n), np.nan, np.float32)
        a, b, c = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(C0)
        lane.enqueue(m, n, k, alpha, beta, Operand(a.base_data, 0, m if ta else k, ta),
                     Operand(b.base_data, 0, k if tb else n, tb), Operand(c.base_data, 0, n, False),
                     rt.user_queue)
        ref, np_err = reference(A, B, C0 if beta else None, alpha, beta, ta, tb)
        assert_close_to_reference(c.get(), ref, np_err, f"alpha {alpha} beta {beta}")


def test_the_route_stacks_rows_only_where_the_table_says(monkeypatch):
    """MAX_ROWS + 1 to stack_rows rows go to the small-rows lane only under a schedule whose
    stack_rows covers them (a table's gemv fields), and only where the large operand is
    stored along K (the dot kernels; stored K x N the blocks lost); a batch of them runs the
    float32 family's batched kernel (the stacked form is a batch of its own)."""
    import dataclasses

    from clgemm import route
    from clgemm.lanes import gemv as gemv_lane
    from clgemm.runtime import LruMemo, get_runtime

    rt = get_runtime()
    table_stacks = gemv_lane.device_schedule(rt).stack_rows >= 32  # (the H100's table does)
    assert isinstance(clgemm.plan(32, 1000, 2048, trans_b=True).lane,
                      gemv_lane.GemvLane) == table_stacks
    stacked = dataclasses.replace(gemv_lane.device_schedule(rt), stack_rows=32)
    monkeypatch.setattr(route, "device_schedule", lambda rt: stacked)
    monkeypatch.setattr(gemv_lane, "device_schedule", lambda rt: stacked)
    # the memos in a copy without the lane: the stacking form made here serves no later test
    monkeypatch.setattr(rt, "_memo", {k: v for k, v in rt._memo.items() if k != "gemv lane"})
    monkeypatch.setattr(rt, "plans", LruMemo(16))
    p = clgemm.plan(32, 1000, 2048, trans_b=True)
    assert isinstance(p.lane, gemv_lane.GemvLane) and "blocks of" in p.why
    assert not isinstance(clgemm.plan(33, 1000, 2048, trans_b=True).lane, gemv_lane.GemvLane)
    for m, n, ta, tb in ((32, 1000, False, False), (1000, 24, True, False)):
        assert not isinstance(clgemm.plan(m, n, 2048, trans_a=ta, trans_b=tb).lane,
                              gemv_lane.GemvLane), (m, n, ta, tb)
    assert isinstance(clgemm.plan(1000, 24, 2048).lane, gemv_lane.GemvLane)  # A: M x K
    batch = clgemm.plan(32, 1000, 2048, trans_b=True, batch=3)
    assert batch.lane is batch.fallback
