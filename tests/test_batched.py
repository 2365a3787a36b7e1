"""Batched products (3-D operands, broadcast as np.matmul broadcasts) through matmul and the
plan, against float64 per product, within the exact contract."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla
import pytest

import clgemm
from clgemm.errors import ShapeError
from conftest import assert_close_to_reference, rand, reference


def _check(got, A, B, C0, alpha, beta, ta, tb):
    batch = got.shape[0]
    for i in range(batch):
        a = A if A.ndim == 2 else A[0 if A.shape[0] == 1 else i]
        b = B if B.ndim == 2 else B[0 if B.shape[0] == 1 else i]
        c = None if C0 is None else C0[i]
        ref, np_err = reference(a, b, c, alpha, beta, ta, tb)
        assert_close_to_reference(got[i], ref, np_err)


def _operand(rng, batch, rows, cols, trans):
    shape = (cols, rows) if trans else (rows, cols)
    return rand(rng, shape if batch is None else (batch,) + shape)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("ba,bb", [(7, 7), (7, None), (None, 7), (1, 7), (7, 1)])
def test_batches_every_layout_and_broadcast(ta, tb, ba, bb, rng):
    m, n, k = 37, 45, 29
    A, B = _operand(rng, ba, m, k, ta), _operand(rng, bb, k, n, tb)
    C0 = rand(rng, (7, m, n))
    got = clgemm.matmul(A, B, C=C0.copy(), alpha=0.75, beta=-1.5, trans_a=ta, trans_b=tb)
    assert got.shape == (7, m, n)
    _check(got, A, B, C0, 0.75, -1.5, ta, tb)
    # device arrays, output poisoned: beta == 0 must not read it
    c = clgemm.to_device(np.full((7, m, n), np.nan, np.float32))
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, trans_a=ta, trans_b=tb)
    assert out is c
    _check(out.get(), A, B, None, 1.0, 0.0, ta, tb)


def test_batch_on_device_allocates_and_matches_numpy_semantics(rng):
    A, B = rand(rng, (5, 13, 70)), rand(rng, (70, 9))
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B))
    assert isinstance(out, cla.Array) and out.shape == (5, 13, 9)
    assert np.matmul(A, B).shape == out.shape
    _check(out.get(), A, B, None, 1.0, 0.0, False, False)
    host = clgemm.matmul(A, B)
    assert isinstance(host, np.ndarray) and host.shape == (5, 13, 9)
    _check(host, A, B, None, 1.0, 0.0, False, False)


def test_strided_batches_and_column_major_output(rng):
    """Batches sliced out of larger device arrays (every other matrix, a column range), and C
    whose matrices are column-major (each C[i].T contiguous)."""
    big_a = rand(rng, (8, 21, 40))
    big_b = rand(rng, (4, 33, 17))
    a = clgemm.to_device(big_a)[::2, :, :33]
    b = clgemm.to_device(big_b)
    c_store = clgemm.to_device(np.full((4, 17, 21), np.nan, np.float32))
    c = c_store.transpose((0, 2, 1))
    assert clgemm.matmul(a, b, C=c) is c
    _check(c_store.get().transpose((0, 2, 1)), big_a[::2, :, :33], big_b, None, 1.0, 0.0,
           False, False)
    # host operands that are not contiguous (a dense copy is staged)
    A = big_a[::2, :, :33]
    _check(clgemm.matmul(A, big_b), A, big_b, None, 1.0, 0.0, False, False)


def test_batch_through_a_plan_and_its_description(rng):
    p = clgemm.plan(19, 23, 31, batch=6, trans_b=True)
    assert p.station == "exact" and "a batch of 6" in str(p)
    A, B = rand(rng, (6, 19, 31)), rand(rng, (6, 23, 31))
    _check(p(A, B), A, B, None, 1.0, 0.0, False, True)
    with pytest.raises(ShapeError, match="batch of 6"):
        p(A[:5], B[:5])
    with pytest.raises(ShapeError, match="batch"):
        clgemm.plan(19, 23, 31, trans_b=True)(A, B)


@pytest.mark.parametrize("contract", [{"check": True}, {"rel_tol": 1e-2}])
def test_batches_under_a_station_go_product_by_product(contract, rng):
    A, B, C0 = rand(rng, (3, 40, 50)), rand(rng, (3, 50, 30)), rand(rng, (3, 40, 30))
    p = clgemm.plan(40, 30, 50, batch=3, **contract)
    assert p.station == "each"
    got, info = clgemm.matmul(A, B, C=C0.copy(), beta=0.5, return_info=True, **contract)
    assert info.extra["batch"] == 3
    if "rel_tol" in contract:
        for i in range(3):
            ref = A[i].astype(np.float64) @ B[i] + 0.5 * C0[i]
            assert np.linalg.norm(got[i] - ref) <= 1e-2 * np.linalg.norm(ref)
    else:
        _check(got, A, B, C0, 1.0, 0.5, False, False)


def test_empty_batches_and_empty_products(rng):
    A, B = rand(rng, (0, 4, 5)), rand(rng, (0, 5, 6))
    assert clgemm.matmul(A, B).shape == (0, 4, 6)
    A, B, C0 = rand(rng, (3, 4, 0)), rand(rng, (3, 0, 6)), rand(rng, (3, 4, 6))
    np.testing.assert_array_equal(clgemm.matmul(A, B, C=C0.copy(), beta=2.0), 2.0 * C0)
    c = clgemm.to_device(C0)
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, beta=2.0).get()
    np.testing.assert_array_equal(got, 2.0 * C0)


def test_bad_batches_say_what_to_do(rng):
    with pytest.raises(ShapeError, match="batch sizes differ"):
        clgemm.matmul(rand(rng, (3, 4, 5)), rand(rng, (2, 5, 6)))
    with pytest.raises(ShapeError, match="reshape"):
        clgemm.matmul(rand(rng, (2, 3, 4, 5)), rand(rng, (5, 6)))
    with pytest.raises(ShapeError, match=r"\(3, 4, 6\)"):
        clgemm.matmul(rand(rng, (3, 4, 5)), rand(rng, (5, 6)), C=rand(rng, (3, 6, 4)))
    with pytest.raises(ShapeError, match="inner dimensions"):
        clgemm.matmul(rand(rng, (3, 4, 5)), rand(rng, (3, 4, 6)))
    with pytest.raises(ShapeError, match="3-D but A and B"):
        clgemm.matmul(rand(rng, (4, 5)), rand(rng, (5, 6)), C=rand(rng, (1, 4, 6)))
    with pytest.raises(ShapeError, match="overwritten|shares"):
        a = clgemm.to_device(rand(rng, (2, 4, 4)))
        clgemm.matmul(a, clgemm.to_device(rand(rng, (4, 4))), C=a)


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("m,n", [(1, 133), (11, 70), (90, 3)])
def test_small_rows_batches_take_the_small_rows_lane(m, n, ta, tb, rng):
    """Decode attention: a batch of one- or few-row products (every head) in one launch of
    the small-rows lane, with K long enough to be split over work-groups."""
    k = 1030
    p = clgemm.plan(m, n, k, batch=5, trans_a=ta, trans_b=tb)
    assert p.lane.name == "gemv" and "small-rows" in p.why
    A, B = _operand(rng, 5, m, k, ta), _operand(rng, None, k, n, tb)
    C0 = rand(rng, (5, m, n))
    got = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=1.5, trans_a=ta, trans_b=tb)
    _check(got, A, B, C0, 0.5, 1.5, ta, tb)
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), trans_a=ta, trans_b=tb)
    _check(out.get(), A, B, None, 1.0, 0.0, ta, tb)


def test_batch_on_device_with_beta_needs_c(rng):
    a = clgemm.to_device(rand(rng, (2, 3, 4)))
    with pytest.raises(ShapeError, match="beta != 0 needs an input C"):
        clgemm.matmul(a, a, trans_b=True, beta=1.0)


def test_a_batch_of_sixteen_row_products_at_decode_attention_size(rng):
    """32 heads of 16 tokens against 1024 cached keys: PoCL, left to choose the small-rows
    lane's work-group size, crashed here (each work-item's accumulators on one stack)."""
    A, B = rand(rng, (32, 16, 128)), rand(rng, (32, 1024, 128))
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), trans_b=True).get()
    for i in (0, 31):
        ref, np_err = reference(A[i], B[i], trans_b=True)
        assert_close_to_reference(got[i], ref, np_err)


# ---- 3xTF32's batched kernel (lanes/tc_batched.py; emulated PTX on the CPU devices) ---------
@pytest.fixture
def tc_batched(monkeypatch):
    """3xTF32's batched lane for every batch that is not the small-rows lane's, its PTX
    emulated in plain OpenCL C, small tiles (PoCL compiles the emulated 128 x 128 kernels
    for minutes)."""
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES
    from clgemm.lanes.tc_batched import TcBatchedLane
    from clgemm.runtime import get_runtime
    from conftest import emulate_tensor_cores

    rt = get_runtime()
    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, rt)
    monkeypatch.setattr(route, "tc_batched_lane",
                        lambda rt_, batch, m, n, k: TcBatchedLane(rt, small))
    return small


@pytest.mark.parametrize("ta,tb,ba,bb", [(False, False, 5, 5), (True, False, 5, None),
                                         (False, True, 1, 5), (True, True, 5, 1)])
def test_tensor_core_batches_every_layout_and_broadcast(tc_batched, ta, tb, ba, bb, rng):
    """Odd shapes, each transpose, broadcast operands (2-D, or a batch of one), alpha and
    beta, numpy and device arrays (C poisoned where beta == 0), within the exact contract."""
    m, n, k = 37, 45, 29
    assert clgemm.plan(m, n, k, batch=5, trans_a=ta, trans_b=tb).lane.name == "3xtf32-batched"
    A, B = _operand(rng, ba, m, k, ta), _operand(rng, bb, k, n, tb)
    C0 = rand(rng, (5, m, n))
    got = clgemm.matmul(A, B, C=C0.copy(), alpha=0.75, beta=-1.5, trans_a=ta, trans_b=tb)
    _check(got, A, B, C0, 0.75, -1.5, ta, tb)
    c = clgemm.to_device(np.full((5, m, n), np.nan, np.float32))
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, trans_a=ta, trans_b=tb)
    assert out is c
    _check(out.get(), A, B, None, 1.0, 0.0, ta, tb)


def test_tensor_core_batches_strided_column_major_and_nonfinite(tc_batched, rng):
    """Every other matrix of a larger array, a column-major C, and an Inf and a NaN in one
    product of the batch: they propagate there as numpy's float32 does, the other products
    stay finite and accurate (the kernel's in-tile float32 fallback)."""
    assert clgemm.plan(21, 17, 33, batch=4).lane.name == "3xtf32-batched"
    big_a = rand(rng, (8, 21, 40))
    big_b = rand(rng, (4, 33, 17))
    big_a[2, 5, 7] = np.inf  # product 1 of the batch (every other matrix)
    big_a[2, 9, 30] = np.nan
    a = clgemm.to_device(big_a)[::2, :, :33]
    b = clgemm.to_device(big_b)
    c_store = clgemm.to_device(np.full((4, 17, 21), np.nan, np.float32))
    c = c_store.transpose((0, 2, 1))
    assert clgemm.matmul(a, b, C=c) is c
    got = c_store.get().transpose((0, 2, 1))
    A = big_a[::2, :, :33]
    with np.errstate(invalid="ignore", over="ignore"):
        ref32 = np.matmul(A, big_b)
    assert np.array_equal(np.isnan(got), np.isnan(ref32))
    assert np.array_equal(np.isinf(got), np.isinf(ref32)) and np.isinf(got[1]).any()
    keep = [0, 2, 3]
    _check(got[keep], A[keep], big_b[keep], None, 1.0, 0.0, False, False)


def test_the_route_takes_3xtf32_batches_only_where_they_fill_its_tiles(monkeypatch):
    """route.tc_batched_lane: a prefill's attention batches (32 x 512 x 512 x 128 and
    32 x 512 x 128 x 512) on a device that promoted 3xTF32; not those with a dimension of 64
    (the two cards' verdicts: 0.84-1.06x), not a batch under TC_BATCH_MIN_FLOPS, nor with
    CLGEMM_TC_BATCH=0 or without a promoted lane."""
    from types import SimpleNamespace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = SimpleNamespace(device=SimpleNamespace(compute_units=132),
                         cached=lambda key, build: build())
    monkeypatch.setattr(route, "schedule_for", lambda rt, mode, m, n, k: DEFAULT_SCHEDULES[mode])
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: object())
    monkeypatch.delenv("CLGEMM_TC_BATCH", raising=False)  # on by default
    for shape in ((32, 512, 512, 128), (32, 512, 128, 512), (8, 128, 128, 4096)):
        lane = route.tc_batched_lane(rt, *shape)
        assert lane is not None and lane.name == "3xtf32-batched", shape
    for shape in ((32, 512, 512, 64), (32, 512, 64, 512), (64, 64, 512, 512),
                  (8, 512, 512, 127), (8, 128, 128, 128)):  # the last: 3.4e7 flops
        assert route.tc_batched_lane(rt, *shape) is None, shape
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: None)
    assert route.tc_batched_lane(rt, 32, 512, 512, 128) is None
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: object())
    monkeypatch.setenv("CLGEMM_TC_BATCH", "0")
    assert route.tc_batched_lane(rt, 32, 512, 512, 128) is None


def test_sixteen_row_batches_leave_the_small_rows_dot_kernels(monkeypatch):
    """With the GPU's small-rows form (dot kernels), a batch of 16-row products whose large
    operand is stored along K (decode attention's scores, Q K^T) runs the float32 family's
    batched kernel (route.BATCH_ROWS_FP32); a batch of single rows, and 16 rows against B
    stored K x N (the context, P V: the axpy kernel), keep the small-rows lane; with a CPU's
    form (the direct kernel from 2 rows) the lane keeps all. The batches are still right
    against float64."""
    from clgemm import route
    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes import gemv as gemv_lane
    from clgemm.runtime import get_runtime

    from clgemm.runtime import LruMemo

    rt = get_runtime()
    if rt.device.type == "CPU":
        # the CPU's own form keeps 16-row batches on the small-rows lane; then the GPU's
        # form is put in its place (a GPU runs the rest of the test with its own form)
        cpu = clgemm.plan(16, 128, 300, batch=4)
        assert isinstance(cpu.lane, gemv_lane.GemvLane) and cpu.lane.schedule.direct_rows
        monkeypatch.setattr(gemv_lane, "default_schedule",
                            lambda kind: default_schedule("GPU"))
        monkeypatch.delitem(rt._memo, "gemv lane", raising=False)
        monkeypatch.setattr(rt, "plans", LruMemo(16))  # plans decided afresh
    sixteen = clgemm.plan(route.BATCH_ROWS_FP32, 128, 300, batch=4, trans_b=True)
    context = clgemm.plan(route.BATCH_ROWS_FP32, 128, 300, batch=4)
    one = clgemm.plan(1, 128, 300, batch=4, trans_b=True)
    assert not isinstance(sixteen.lane, gemv_lane.GemvLane) and sixteen.lane is sixteen.fallback
    assert isinstance(one.lane, gemv_lane.GemvLane)
    assert isinstance(context.lane, gemv_lane.GemvLane)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 16, 300)).astype(np.float32)
    for tb in (True, False):
        B = rng.standard_normal((4, 128, 300) if tb else (4, 300, 128)).astype(np.float32)
        got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), trans_b=tb).get()
        ref = np.matmul(A.astype(np.float64),
                        np.swapaxes(B, 1, 2).astype(np.float64) if tb else B.astype(np.float64))
        assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5
