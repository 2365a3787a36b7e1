"""Plans: one route per product, decided once; the hot path on device arrays; every lane
through the plan against float64."""

from __future__ import annotations

import ast
import contextlib
import time
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import clgemm
from clgemm.errors import ShapeError
from clgemm.runtime import get_runtime
from conftest import (QueueGate, assert_close_to_reference, emulate_tensor_cores, rand,
                      reference, run_in_threads)

SRC = Path(clgemm.__file__).parent


def test_plan_is_decided_once_printable_and_used_by_matmul():
    p = clgemm.plan(37, 29, 41, trans_b=True)
    assert clgemm.plan(37, 29, 41, trans_b=True) is p
    text = str(p)
    assert "37x29" in text and "K=41" in text and "A @ B.T" in text
    assert p.lane.schedule.key() in text and "why:" in text
    assert p.station == "exact"
    rt = get_runtime()
    a = clgemm.to_device(np.ones((37, 41), np.float32))
    b = clgemm.to_device(np.ones((29, 41), np.float32))
    clgemm.matmul(a, b, trans_b=True)
    assert rt.plans.get(p.key) is p  # the call looked up the same plan
    checked = clgemm.plan(37, 29, 41, trans_b=True, check=True)
    assert checked is not p and checked.station == "abft" and "ABFT" in str(checked)
    assert clgemm.plan(37, 29, 41, rel_tol=1e-2).station == "approx"


def test_plan_call_checks_its_operands(rng):
    p = clgemm.plan(12, 10, 8)
    with pytest.raises(ShapeError, match="this plan is for a 12x10x8"):
        p(rand(rng, (12, 9)), rand(rng, (9, 10)))
    with pytest.raises(clgemm.ContractError):
        clgemm.plan(-1, 4, 4)
    A, B = rand(rng, (12, 8)), rand(rng, (8, 10))
    out = p(A, B)  # numpy in, numpy out, through the same plan
    assert isinstance(out, np.ndarray)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err)


def _device_view(rng, shape, order, pad):
    """A device array of `shape` in `order` whose leading dimension exceeds its rows or
    columns by `pad` (a slice of a larger array), its host copy, and a reader of its
    content (pyopencl reads only contiguous arrays: the parent is read and sliced)."""
    rows, cols = shape
    host = rand(rng, shape)
    if order == "F":
        parent = clgemm.to_device(np.ascontiguousarray(
            np.concatenate([host, rand(rng, (pad, cols))]).T))  # (cols, rows + pad)
        return parent.T[:rows, :], host, lambda: parent.get().T[:rows, :]
    parent = clgemm.to_device(np.concatenate([host, rand(rng, (rows, pad))], axis=1))
    return parent[:, :cols], host, lambda: parent.get()[:, :cols]


# Every transpose on the float32 family; the emulated tensor-core lane on one (each layout
# is a kernel of its own, and an emulated 3xTF32 kernel takes PoCL minutes to compile).
LANE_CASES = [("fp32", False, False), ("fp32", True, False), ("fp32", False, True),
              ("fp32", True, True), ("3xtf32-mma (emulated)", True, False),
              ("3xtf32-splitk (emulated)", False, True)]


@pytest.fixture
def lane(request, monkeypatch):
    """Each lane the exact contract can take on this device: the float32 family, and the
    3xTF32 mma.sync lane with its PTX emulated (small tiles: the emulated 128 x 128 kernels
    compile for minutes on the CPU)."""
    rt = get_runtime()
    if request.param == "fp32":
        return "fp32"
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, rt)
    if request.param.startswith("3xtf32-splitk"):
        _split_tc_lane(monkeypatch, rt, small)
        return "3xtf32-splitk"
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: small)
    return "3xtf32-mma"


def _split_tc_lane(monkeypatch, rt, schedule, slices: int = 3) -> None:
    """The 3xTF32 split-K lane for every product (slices of K from 16 deep: the tests' K
    is small)."""
    from clgemm import route
    from clgemm.lanes import splitk

    monkeypatch.setattr(splitk, "MIN_SLICE", 16)
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: None)
    monkeypatch.setattr(route, "tc_splitk_lane",
                        lambda rt_, m, n, k: splitk.TcSplitKLane(rt, schedule, slices))


@pytest.mark.parametrize("lane,ta,tb", LANE_CASES, indirect=["lane"])
def test_every_lane_through_the_plan(lane, ta, tb, rng):
    """Odd shapes, every transpose, leading dimensions beyond the matrix, a column-major C,
    alpha and beta, on device arrays (the hot path) and numpy arrays, against float64."""
    m, n, k = 45, 37, 53
    p = clgemm.plan(m, n, k, trans_a=ta, trans_b=tb)
    assert p.lane.name == lane
    a, A, _ = _device_view(rng, (k, m) if ta else (m, k), "C", 3)
    b, B, _ = _device_view(rng, (n, k) if tb else (k, n), "F", 5)
    c, C0, read_c = _device_view(rng, (m, n), "F", 2)
    out = p(a, b, C=c, alpha=-0.75, beta=1.5)
    assert out is c
    ref, np_err = reference(A, B, C0, -0.75, 1.5, ta, tb)
    assert_close_to_reference(read_c(), ref, np_err)
    # beta == 0: C's old content is not read (poisoned), the output allocated by the call
    fresh = p(a, b, alpha=2.0)
    ref0, np_err0 = reference(A, B, None, 2.0, 0.0, ta, tb)
    assert_close_to_reference(fresh.get(), ref0, np_err0)
    poisoned = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    assert_close_to_reference(p(a, b, C=poisoned, alpha=2.0).get(), ref0, np_err0)
    host = p(A, B, alpha=2.0)  # numpy operands through the same plan
    assert_close_to_reference(host, ref0, np_err0)


def test_tensor_core_lane_falls_back_on_the_device(monkeypatch, rng):
    """The 3xTF32 lane on the hot path reads no flag back and launches one kernel: a tile
    whose output is not finite is recomputed in float32 inside it. Inf and NaN then
    propagate as numpy's float32 does, and the products after it are the lane's own again,
    finite and accurate."""
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = get_runtime()
    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, rt)
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: small)
    monkeypatch.setattr(route, "_stackable", lambda *args: 0)  # (a GPU table stacks 18 rows)
    m, n, k = 33, 18, 40
    assert clgemm.plan(m, n, k).lane.name == "3xtf32-mma"
    for step, bad in enumerate([False, True, False, False, True, True, False]):
        A, B = rand(rng, (m, k)), rand(rng, (k, n))
        if bad:
            A[step % m, 3] = np.inf
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        with counting_launches() as launches:
            out = clgemm.matmul(a, b)
        assert launches == [1], launches  # the product alone, no gated second kernel
        out = out.get()
        with np.errstate(invalid="ignore", over="ignore"):
            ref32 = A @ B
        assert np.array_equal(np.isnan(out), np.isnan(ref32)), step
        assert np.array_equal(np.isinf(out), np.isinf(ref32)), step
        fin = np.isfinite(ref32)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        err = np.linalg.norm(out[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        np_err = np.linalg.norm(ref32[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        assert err <= 2.0 * np_err + 1e-7, (step, err, np_err)


def test_split_tensor_core_lane_propagates_inf_and_nan(monkeypatch, rng):
    """3xTF32 over K slices: a slab's tile with a non-finite output is recomputed in float32
    over its slice inside the kernel, so Inf and NaN reach C as numpy's float32 makes them,
    every finite entry at float32-level accuracy; the product is two launches (the slabs,
    their sum), none waited for."""
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = get_runtime()
    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, rt)
    _split_tc_lane(monkeypatch, rt, small)
    monkeypatch.setattr(route, "_stackable", lambda *args: 0)  # (a GPU table stacks 18 rows)
    m, n, k = 33, 18, 70
    assert clgemm.plan(m, n, k).lane.name == "3xtf32-splitk"
    for step, bad in enumerate([False, True, True, False]):
        A, B = rand(rng, (m, k)), rand(rng, (k, n))
        if bad:
            A[step % m, 3 + 40 * (step == 2)] = np.inf  # in the first slice, then the last
            A[(step + 5) % m, 50] = np.nan
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        with counting_launches() as launches:
            out = clgemm.matmul(a, b)
        assert launches == [2], launches
        out = out.get()
        with np.errstate(invalid="ignore", over="ignore"):
            ref32 = A @ B
        assert np.array_equal(np.isnan(out), np.isnan(ref32)), step
        assert np.array_equal(np.isinf(out), np.isinf(ref32)), step
        assert np.array_equal(np.signbit(out[np.isinf(out)]), np.signbit(ref32[np.isinf(ref32)]))
        fin = np.isfinite(ref32)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        err = np.linalg.norm(out[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        np_err = np.linalg.norm(ref32[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        assert err <= 2.0 * np_err + 1e-7, (step, err, np_err)


@contextlib.contextmanager
def counting_launches():
    """Counts the kernel launches (pyopencl's enqueue_nd_range_kernel) inside the block."""
    real = cl.enqueue_nd_range_kernel
    count = [0]

    def counted(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    cl.enqueue_nd_range_kernel = counted
    try:
        yield count
    finally:
        cl.enqueue_nd_range_kernel = real


@pytest.mark.parametrize("tb", [False, True])
def test_tensor_core_fallback_keeps_old_c_and_reports(monkeypatch, rng, tb):
    """beta != 0 with a non-finite output: the tile falls back before anything of it is
    stored, so the float32 recompute reads the old C; tiles without one keep the lane's
    result. A reported call says that a tile fell back, and only where one did."""
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = get_runtime()
    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, rt)
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: small)
    m, n, k = 71, 37, 29  # several tiles each way, ragged edges
    for bad in (True, False):
        A = rand(rng, (m, k))
        B = rand(rng, (n, k) if tb else (k, n))
        C0 = rand(rng, (m, n))
        if bad:
            A[40, 5] = -np.inf  # one row of the second tile-row goes infinite or NaN
        c = clgemm.to_device(C0)
        with counting_launches() as launches:
            out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, alpha=0.5,
                                beta=-1.25, trans_b=tb)
        assert launches == [1], launches
        got = out.get()
        Bm = B.T if tb else B
        with np.errstate(invalid="ignore", over="ignore"):
            ref32 = 0.5 * (A @ Bm) - 1.25 * C0
        assert np.array_equal(np.isnan(got), np.isnan(ref32))
        assert np.array_equal(np.isinf(got), np.isinf(ref32))
        assert np.array_equal(np.sign(got[np.isinf(got)]), np.sign(ref32[np.isinf(ref32)]))
        fin = np.isfinite(ref32)
        ref = 0.5 * (A.astype(np.float64) @ Bm.astype(np.float64)) - 1.25 * C0
        err = np.abs(got[fin] - ref[fin]).max()
        assert err <= 2.0 * np.abs(ref32[fin] - ref[fin]).max() + 1e-6, err
        _, info = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-1.25, trans_b=tb,
                                return_info=True)
        assert ("lane_fallback" in info.extra) == bad, info.extra


def test_hot_path_does_not_wait_on_the_device(rng):
    """Chained calls on device arrays (C given, or allocated by the call) enqueued behind a
    command that cannot start until the test lets it (it waits for a user event) all return
    while it still waits: none of them waited for the device. Their results are right once
    the queue drains. (A kernel made to spin for seconds told this less surely: on the H100
    one calibration in a run came out a thousand times short, and the device was free before
    the calls began.)"""
    rt = get_runtime()
    A, B = rand(rng, (31, 26)), rand(rng, (26, 29))
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.to_device(np.full((31, 29), np.nan, np.float32))
    clgemm.matmul(a, b, C=c)  # plan decided and kernel built before the queue is held
    # Outputs of this size made once and freed: the pool then holds their buffers. (A new
    # buffer's first use waits for the queue on NVIDIA's OpenCL: a call that needs one pays
    # that once per size, which this test does not measure.)
    warm = [clgemm.matmul(a, b) for _ in range(3)]
    del warm
    rt.user_queue.finish()
    gate = QueueGate(rt, deadline_s=20.0)
    t0 = time.perf_counter()
    last = None
    for _ in range(5):
        clgemm.matmul(a, b, C=c, alpha=0.5)
        last = clgemm.matmul(a, b)
    calls_s = time.perf_counter() - t0
    opened_by_deadline = not gate.open()
    rt.user_queue.finish()
    assert not opened_by_deadline, (
        f"the calls on device arrays took {calls_s:.1f} s: one of them waited for the queue, "
        "which only the test's deadline let go")
    ref, np_err = reference(A, B)
    assert_close_to_reference(last.get(), ref, np_err)
    assert_close_to_reference(c.get(), 0.5 * ref, np_err)


def test_one_plan_serves_many_threads(rng):
    """Threads calling one plan at once (its kernel's arguments are shared state) each get
    their own product."""
    m, n, k = 40, 24, 35
    p = clgemm.plan(m, n, k)
    cases = [(rand(rng, (m, k)), rand(rng, (k, n))) for _ in range(8)]
    devs = [(clgemm.to_device(A), clgemm.to_device(B)) for A, B in cases]
    results: dict = {}

    def work(i):
        a, b = devs[i]
        for _ in range(10):
            out = p(a, b)
        results[i] = out.get()

    run_in_threads(work, len(devs))
    for i, (A, B) in enumerate(cases):
        ref, np_err = reference(A, B)
        assert_close_to_reference(results[i], ref, np_err)


def test_stations_and_hot_path_share_arrays_in_order(rng):
    """A chain that passes the hot path, check=True and rel_tol on the same device arrays
    (two queues underneath) sees every step's result."""
    n = 48
    A = rand(rng, (n, n))
    a = clgemm.to_device(A)
    x = clgemm.matmul(a, a)  # hot path, not waited for
    y = clgemm.matmul(x, a, check=True)  # a station: must see x complete
    z = clgemm.matmul(y, a)  # hot path again: must see y
    ref = A.astype(np.float64)
    ref = ref @ ref @ ref @ ref
    got = z.get().astype(np.float64)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5


def test_the_lane_is_chosen_in_one_module():
    """Only clgemm.route decides which lane serves a product: nothing else makes the exact
    lanes or asks which schedule serves the exact contract (a lab campaign may read it)."""
    deciders = {"exact_schedule", "exact_lane", "TcExactLane", "wgmma_exact_schedule"}
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel in ("route.py", "lanes/tc_exact.py") or rel.startswith("lab/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)
                if name in deciders:
                    offenders.append(f"{rel}:{node.lineno} calls {name}")
    assert offenders == []


def test_no_module_state_keyed_by_runtime_identity():
    """Per-device state lives on the Runtime (`rt.cached`), not in module dicts keyed by
    id(rt): an id is reused once its object is collected."""
    hits = [f"{p.relative_to(SRC)}" for p in SRC.rglob("*.py") if "id(rt)" in p.read_text()]
    assert hits == []


def test_runtime_empty_arrays_behave_like_pyopencl_ones(rng):
    rt = get_runtime()
    first, second = rt.empty(13, 7), rt.empty(13, 7)
    assert isinstance(second, cla.Array) and second.shape == (13, 7)
    assert second.strides == first.strides and second.queue is rt.user_queue
    assert second.base_data != first.base_data
    X = rand(rng, (13, 7))
    second.set(X)
    assert np.array_equal(second.get(), X)
    assert np.array_equal((second * 2).get(), 2 * X)
    assert rt.empty(0, 4).shape == (0, 4)
