"""The exact contract's split-K lane (lanes/splitk.SplitKLane): a generated float32 kernel over
K slices into slabs, summed in order into C by one small kernel. On a GPU it serves products
whose output would leave most compute units idle (CLGEMM_SPLITK=0 switches it off); here its
work-group
kernels run on the CPU device, against float64, at odd shapes, every transpose, alpha and beta,
a C with a leading dimension wider than its rows, and through the plan where the route takes it."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla
import pytest

import clgemm
from clgemm.lanes import splitk
from clgemm.lanes.fp32 import search_space
from clgemm.operands import Operand, device_operand
from clgemm.runtime import LruMemo, get_runtime
from clgemm.schedule import Schedule
from conftest import assert_close_to_reference, rand, reference


def _work_group_schedule(rt) -> Schedule:
    space = search_space(rt)
    for key, _ in reversed(splitk.CANDIDATES):  # the smallest tiles first
        s = Schedule.from_key(key)
        if space.is_valid(s):
            return s
    pytest.skip("no split-K candidate schedule is valid on this device")


SHAPES = [(37, 29, 517, False, False), (5, 70, 1000, True, False), (33, 17, 777, False, True),
          (64, 48, 1031, True, True)]


@pytest.mark.parametrize("m,n,k,ta,tb", SHAPES)
@pytest.mark.parametrize("beta", [0.0, -1.25])
def test_split_k_lane_against_float64(rng, m, n, k, ta, tb, beta):
    rt = get_runtime()
    lane = splitk.SplitKLane(rt, splitk.Plan(_work_group_schedule(rt), 3))
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    C0 = rand(rng, (m, n)) if beta else np.full((m, n), np.nan, np.float32)  # beta 0: unread
    ref, np_err = reference(A, B, C0, 0.5, beta, ta, tb)
    dA, dB, dC = (cla.to_device(rt.queue, x) for x in (A, B, C0))
    a = device_operand(rt, "A", dA, ta)
    b = device_operand(rt, "B", dB, tb)
    c = device_operand(rt, "C", dC, False)
    lane.enqueue(m, n, k, 0.5, beta, a, b, c, rt.queue).wait()
    assert_close_to_reference(dC.get(), ref, np_err, f"{m}x{n}x{k} ta={ta} tb={tb}")


def test_split_k_lane_writes_a_strided_c_and_leaves_the_rest(rng):
    """C inside a wider row-major buffer (leading dimension 50 for 21 columns): the product's
    entries are written, the columns between rows keep their poison."""
    rt = get_runtime()
    lane = splitk.SplitKLane(rt, splitk.Plan(_work_group_schedule(rt), 4))
    m, n, k, ld = 19, 21, 600, 50
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    C0 = rand(rng, (m, n))
    ref, np_err = reference(A, B, C0, 2.0, 0.5)
    full = np.full((m, ld), -7.0, np.float32)
    full[:, :n] = C0
    dA, dB, dF = (cla.to_device(rt.queue, x) for x in (A, B, full))
    a = device_operand(rt, "A", dA, False)
    b = device_operand(rt, "B", dB, False)
    c = Operand(dF.base_data, dF.offset // 4, ld, False)
    lane.enqueue(m, n, k, 2.0, 0.5, a, b, c, rt.queue).wait()
    got = dF.get()
    assert_close_to_reference(got[:, :n], ref, np_err)
    assert (got[:, n:] == -7.0).all()


def test_the_route_takes_the_split_k_lane_where_asked_and_the_grid_is_underfilled(
        rng, monkeypatch):
    """By default, with the float32 family's schedule a work-group one whose grid is
    underfilled (here: every grid, the threshold raised) and the cost model asking for
    slices, the plan's lane is the split-K lane,
    and matmul through it is right on numpy and device arrays; with CLGEMM_SPLITK=0, or with
    K too short to split, the float32 family serves."""
    from clgemm import route

    rt = get_runtime()
    wg = _work_group_schedule(rt)
    monkeypatch.setattr(rt, "plans", LruMemo(64))
    monkeypatch.setattr(route, "_stackable", lambda *args: 0)  # (a GPU table stacks 32 rows)
    monkeypatch.setattr("clgemm.route.choose_schedule", lambda rt, m, n, k, s=None: s or wg)
    monkeypatch.setattr(splitk, "UNDERFILLED", 1e9)
    # the cost model's slices as on a GPU of many units (on two CPU cores it wants none)
    monkeypatch.setattr(splitk, "plan", lambda rt, m, n, k, s=None, allow_split=True:
                        splitk.Plan(wg, max(1, min(4, k // splitk.MIN_SLICE))))
    m, n, k = 32, 100, 2048
    monkeypatch.setenv("CLGEMM_SPLITK", "0")
    assert not isinstance(clgemm.plan(m, n, k).lane, splitk.SplitKLane)
    monkeypatch.delenv("CLGEMM_SPLITK")
    monkeypatch.setattr(rt, "plans", LruMemo(64))
    p = clgemm.plan(m, n, k, trans_b=True)
    assert isinstance(p.lane, splitk.SplitKLane), p.why
    assert "slices" in p.why
    A, B = rand(rng, (m, k)), rand(rng, (n, k))
    ref, np_err = reference(A, B, trans_b=True)
    assert_close_to_reference(clgemm.matmul(A, B, trans_b=True), ref, np_err, "numpy")
    out, info = clgemm.matmul(A, B, trans_b=True, return_info=True)
    assert info.kernel_s > 0 and info.schedule == p.lane.schedule.key()
    dA, dB = clgemm.to_device(A), clgemm.to_device(B)
    got = clgemm.matmul(dA, dB, trans_b=True)  # the hot path
    assert_close_to_reference(got.get(), ref, np_err, "device arrays")
    assert not isinstance(clgemm.plan(m, n, 200).lane, splitk.SplitKLane)  # K under 2 slices


def test_the_route_splits_3xtf32_only_where_it_would_leave_units_idle(monkeypatch):
    """route.tc_splitk_lane on a 132-unit device that promoted 3xTF32 (128 x 128 tiles):
    a prefill's 512 x 2048 output (64 tiles) and BERT's 1024 x 768 (48) split over K where K
    is 2048 or more; not BERT's 1024 x 768 x 768 (1.2e9 flops, K under TC_SPLITK_MIN_K), a
    4096 square (1024 tiles), a product under TC_SPLITK_MIN_FLOPS, anything with
    CLGEMM_TC_SPLITK=0 or without a promoted lane."""
    from types import SimpleNamespace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = SimpleNamespace(device=SimpleNamespace(compute_units=132),
                         cached=lambda key, build: build())
    monkeypatch.setattr(route, "schedule_for", lambda rt, mode, m, n, k: DEFAULT_SCHEDULES[mode])
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: object())
    monkeypatch.delenv("CLGEMM_TC_SPLITK", raising=False)  # on by default
    for m, n, k in ((512, 2048, 5632), (1024, 768, 3072), (1568, 512, 4608), (1024, 768, 2048)):
        lane = route.tc_splitk_lane(rt, m, n, k)
        tiles = -(-m // 128) * -(-n // 128)
        assert lane is not None and lane.name == "3xtf32-splitk", (m, n, k)
        assert lane.slices >= 2 and tiles * lane.slices >= 132, (m, n, k, lane.slices)
    assert route.tc_splitk_lane(rt, 1024, 768, 768) is None  # K under TC_SPLITK_MIN_K
    assert route.tc_splitk_lane(rt, 1024, 768, 2047) is None
    assert route.tc_splitk_lane(rt, 4096, 4096, 4096) is None
    assert route.tc_splitk_lane(rt, 64, 256, 4096) is None  # 1.3e8 flops
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: None)
    assert route.tc_splitk_lane(rt, 512, 2048, 5632) is None
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: object())
    monkeypatch.setenv("CLGEMM_TC_SPLITK", "0")
    assert route.tc_splitk_lane(rt, 512, 2048, 5632) is None
