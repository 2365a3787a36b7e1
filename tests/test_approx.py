"""matmul(rel_tol=...): budgets respected on low-rank inputs, exact fallback on full rank,
Info fields, beta and device arrays."""

from __future__ import annotations

import numpy as np
import pytest

import clgemm
from clgemm.approx import contract, lowrank
from clgemm.runtime import get_runtime


def _lowrank(rng, m, k, r, noise=0.0):
    X = rng.standard_normal((m, r)) @ rng.standard_normal((r, k)) / np.sqrt(r)
    return (X + noise * rng.standard_normal((m, k))).astype(np.float32)


def _orthonormal(rng, n, r):
    return np.linalg.qr(rng.standard_normal((n, r)))[0]


def _transposed_pair(rng, n, r):
    """A and B whose product A^T B^T = P Q^T has rank r and r equal singular values (P, Q
    and the shared R random orthonormal). Two independent low-rank Gaussians would multiply
    through an r x r Gaussian core, whose smallest singular value falls below 1e-3 of its
    largest about once in 300 draws: a direction the sketch rightly drops, after which the
    estimate sends the call exact."""
    P, Q, R = (_orthonormal(rng, n, r) * np.sqrt(n) for _ in range(3))
    return (R @ P.T / np.sqrt(n)).astype(np.float32), (Q @ R.T / np.sqrt(n)).astype(np.float32)


def _rel(x, ref):
    return np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref)


@pytest.fixture
def no_tc_lane(monkeypatch):
    """The low-rank path and the planner alone: on a device with the tensor-core lane (the
    H100), TF32 would serve the loose budgets first."""
    monkeypatch.setenv("CLGEMM_APPROX_TC", "0")


@pytest.mark.parametrize("budget", [1e-1, 1e-2, 1e-3, 1e-4])
def test_lowrank_budget_respected(no_tc_lane, rng, budget):
    n = 384
    A, B = _lowrank(rng, n, n, 8), rng.standard_normal((n, n)).astype(np.float32)
    ref = A.astype(np.float64) @ B
    C, info = clgemm.matmul(A, B, rel_tol=budget, return_info=True)
    assert info.method == "lowrank" and not info.fell_back, info.extra
    assert _rel(C, ref) <= budget
    assert info.error_estimate is not None and info.error_estimate <= budget
    assert 8 <= info.extra["approx"]["rank"] <= 16
    assert info.extra["approx"]["skipped"]["tensor_core"]


def test_noisy_lowrank_within_budget_or_exact(rng):
    n = 384
    for noise, budget in [(1e-3, 1e-1), (1e-3, 1e-4), (3e-2, 1e-2)]:
        A = _lowrank(rng, n, n, 8, noise)
        B = _lowrank(rng, n, n, 300)
        ref = A.astype(np.float64) @ B
        C, info = clgemm.matmul(A, B, rel_tol=budget, return_info=True)
        err = _rel(C, ref)
        assert err <= budget, (noise, budget, err, info.extra)
        if info.method == "exact":
            assert err < 1e-5


def test_full_rank_falls_back_early(no_tc_lane, rng):
    n = 384
    A, B = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
    C, info = clgemm.matmul(A, B, rel_tol=1e-2, return_info=True)
    x = info.extra["approx"]
    assert info.method == "exact" and info.fell_back
    assert "full rank" in x["stop"]
    assert x["sketch_cols"] == x["basis_cols"] + lowrank.PROBES  # turned away after one sketch
    assert x["sketch_cols"] * 2 / n <= 0.25  # its flops vs the exact ones (9% at 3072)
    assert _rel(C, A.astype(np.float64) @ B) < 1e-5


def test_small_shapes_go_exact(no_tc_lane, rng):
    A, B = rng.standard_normal((40, 30)).astype(np.float32), rng.standard_normal((30, 50)).astype(np.float32)
    C, info = clgemm.matmul(A, B, rel_tol=0.5, return_info=True)
    assert info.method == "exact" and not info.fell_back
    assert "lowrank" in info.extra["approx"]["skipped"]


def test_beta_transposes_device_arrays(rng):
    # the low-rank method itself, not the planner's memory of earlier calls at this shape
    # (another test's low-rank call at 384 would send this one exact, to time it once)
    get_runtime().forget(contract.COSTS_MEMO)
    n = 384
    A, B = _transposed_pair(rng, n, 6)  # both used transposed
    C0 = rng.standard_normal((n, n)).astype(np.float32)
    ref = 0.5 * (A.T.astype(np.float64) @ B.T) - 0.01 * C0
    dA, dB, dC = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(C0)
    out, info = clgemm.matmul(dA, dB, C=dC, alpha=0.5, beta=-0.01, trans_a=True, trans_b=True,
                              rel_tol=1e-3, return_info=True)
    assert out is dC and info.method == "lowrank", info.extra
    assert _rel(out.get(), ref) <= 1e-3


def test_estimator_catches_a_bad_approximation(rng, monkeypatch):
    """Force a too-small sketch (12 columns for a rank-24 product) with the early give-up off:
    the a-posteriori check on the probes must see the error and fall back to exact."""
    n = 384
    A, B = _lowrank(rng, n, n, 24), rng.standard_normal((n, n)).astype(np.float32)
    monkeypatch.setattr(lowrank, "sketch_cols", lambda m, nn, k, cap: 12)
    monkeypatch.setattr(lowrank, "GIVE_UP_FLOOR", float("inf"))
    C, info = clgemm.matmul(A, B, rel_tol=1e-3, return_info=True)
    assert info.fell_back and info.method == "exact"
    assert info.error_estimate > 1e-3
    assert "estimate" in info.extra["approx"]["stop"]
    assert _rel(C, A.astype(np.float64) @ B) < 1e-5


def test_full_rank_turned_away_at_every_budget(no_tc_lane, rng):
    n = 384
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    ref = A.astype(np.float64) @ B
    for budget in (1e-1, 1e-4):
        C, info = clgemm.matmul(A, B, rel_tol=budget, return_info=True)
        x = info.extra["approx"]
        assert info.method == "exact" and "full rank" in x["stop"] and x["rank"] == 0
        assert _rel(C, ref) < 1e-5


def test_beta_kept_when_falling_back_on_device(rng):
    """beta != 0 on device arrays: a rejected approximation leaves C's old content for exact."""
    n = 384
    A, B = _lowrank(rng, n, n, 8, 1e-2), _lowrank(rng, n, n, 300)
    C0 = rng.standard_normal((n, n)).astype(np.float32)
    ref = 2.0 * (A.astype(np.float64) @ B) + 0.5 * C0
    dC = clgemm.to_device(C0)
    out, info = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=dC, alpha=2.0,
                              beta=0.5, rel_tol=1e-4, return_info=True)
    assert info.method == "exact" and info.fell_back
    assert _rel(out.get(), ref) < 1e-5


def test_confidence_statement():
    for b in (16, 32):
        f = lowrank.safety_for(b)
        assert lowrank.confidence(b, f) >= 0.99
        assert lowrank.confidence(b, f - 0.25) < 0.99  # the smallest such factor
    assert lowrank.confidence(16, 1.0) < 0.5


def test_tensor_core_hook_skipped(no_tc_lane):
    from clgemm.runtime import get_runtime

    methods, skipped = contract.plan(get_runtime(), 3072, 3072, 3072, 1e-2)
    assert methods == ["lowrank", "exact"] and "tensor_core" in skipped


@pytest.fixture
def tc_lane(monkeypatch):
    """Tensor cores claimed present, the PTX emulated in plain OpenCL C (runs on PoCL)."""
    from clgemm.runtime import get_runtime

    from conftest import emulate_tensor_cores

    emulate_tensor_cores(monkeypatch, get_runtime())


@pytest.fixture
def small_tc_tiles(monkeypatch):
    """Small tensor-core schedules (conftest.small_tc_tiles)."""
    from conftest import small_tc_tiles as small

    return small(monkeypatch)


def test_tf32_serves_loose_budgets(tc_lane, small_tc_tiles, rng):
    m, n, k = 70, 52, 90
    A = rng.standard_normal((k, m)).astype(np.float32)  # used transposed
    B = rng.standard_normal((k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    ref = 0.5 * (A.T.astype(np.float64) @ B) - 0.25 * C0
    C = C0.copy()
    out, info = clgemm.matmul(A, B, C=C, alpha=0.5, beta=-0.25, trans_a=True, rel_tol=2e-2,
                              return_info=True)
    assert info.method == "tf32" and not info.fell_back, info.extra
    assert out is C
    err = _rel(out, ref)
    assert err <= 2e-2
    assert err > 1e-6  # really reduced precision, not the float32 product
    assert 0 < info.error_estimate <= 2e-2
    assert info.extra["approx"]["plan"][0] == "tensor_core"
    # tighter than TF32 serves: the lane is skipped, with the reason
    methods, skipped = contract.plan(__import__("clgemm.runtime").runtime.get_runtime(),
                                     m, n, k, 1e-3)
    assert "tensor_core" not in methods and "tensor_core" in skipped


def test_tf32_bad_result_falls_back(tc_lane, small_tc_tiles, rng, monkeypatch):
    """A TF32 result far off the product must be caught by the estimate: exact comes back."""
    from clgemm.approx import judged

    real = judged.tc_product

    def poisoned(rt, mode, m, n, k, alpha, *args, **kw):  # a 10% wrong TF32 product
        return real(rt, mode, m, n, k, alpha * 1.1, *args, **kw)
    monkeypatch.setattr(judged, "tc_product", poisoned)
    A = rng.standard_normal((50, 60)).astype(np.float32)  # same layout as above: one compile
    B = rng.standard_normal((50, 40)).astype(np.float32)
    out, info = clgemm.matmul(A, B, trans_a=True, rel_tol=1e-2, return_info=True)
    assert info.method == "exact" and info.fell_back
    assert info.extra["approx"]["tensor_core"]["estimate"] > 1e-2
    assert _rel(out, A.T.astype(np.float64) @ B) < 1e-5


@pytest.mark.parametrize("mode,ta,tb", [("3xtf32", False, False), ("tf32", True, False),
                                         ("3xtf32", False, True)])
def test_tensor_core_split_k_products(tc_lane, small_tc_tiles, rng, mode, ta, tb):
    """The split-K variant of the tensor-core kernel (low-rank path's skinny products): slabs
    over K summed, against float64, at odd shapes where K does not divide into the slices."""
    import pyopencl as cl

    from clgemm.lanes import mma, splitk
    from clgemm.operands import Operand, upload
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    m, n, k, slices = 70, 37, 301, 3
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    a, _ = upload(rt, "A", A, ta)
    b, _ = upload(rt, "B", B, tb)
    s = mma.DEFAULT_SCHEDULES[mode]
    sk = splitk.get_tc_splitk(rt, s, mma.layout_for(a, b))
    stride = splitk.slab_stride(m, n)
    part = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 4 * stride * slices)
    out = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                    hostbuf=np.full(m * n, np.nan, np.float32))
    used, kc, _ = sk.enqueue(rt.queue, m, n, k, 0.5, a, b, part, slices,
                          mma.nonfinite_flag(rt).scratch)
    assert used == 3 and kc % s.block_k == 0
    splitk.sum_slabs(rt, rt.queue, m, n, used, stride, part, 0.0, Operand(out, 0, n, False))
    got = np.empty(m * n, np.float32)
    cl.enqueue_copy(rt.queue, got, out)
    ref = 0.5 * (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    err = _rel(got.reshape(m, n), ref)
    assert err < (1e-6 if mode == "3xtf32" else 3e-3), err


@pytest.mark.parametrize("budget,lane", [(1e-4, "3xtf32"), (3e-2, "tf32")])
def test_lowrank_products_on_tensor_cores(tc_lane, small_tc_tiles, rng, monkeypatch, budget,
                                          lane):
    """With the tensor-core lane, the low-rank path's big products run there (TF32 for loose
    budgets, 3xTF32 for tight ones, after a TF32 sketch decided the product is worth it) and
    the result still meets the budget."""
    from clgemm.approx import lowrank

    monkeypatch.setattr(contract, "tensor_cores_serve", lambda rt, b: False)
    monkeypatch.setattr(lowrank, "TC_MIN_FLOPS", 0.0)
    modes = []
    real = lowrank.Products._tc

    def spy(self, lane, *args):
        took = real(self, lane, *args)
        modes.append(lane if took else None)
        return took
    monkeypatch.setattr(lowrank.Products, "_tc", spy)
    n, rank = 384, 8
    X = rng.standard_normal((n, rank)).astype(np.float32)
    A = (X @ rng.standard_normal((rank, n)).astype(np.float32)) / np.float32(rank)
    B = rng.standard_normal((n, n)).astype(np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    out, info = clgemm.matmul(A, B, rel_tol=budget, return_info=True)
    assert info.method == "lowrank", info.extra["approx"]
    assert info.extra["approx"]["lane"] == lane
    # the decision sketch is TF32; a float32-level budget sketches again in 3xTF32
    assert modes[:2] == ["tf32", "tf32"] and set(modes[2:]) == {lane}, modes
    assert _rel(out, ref) <= budget


def test_participation_ratio_separates_low_rank_from_full_rank(rng):
    """The cheap full-rank test: the sketch Gram of a product of rank <= l stays near or below
    l / 2; a large full-rank product's fills most of l; never above the rank."""
    from clgemm.approx import lowrank

    n, l = 1536, 64
    Om = rng.standard_normal((n, l))
    full = rng.standard_normal((n, n)) @ rng.standard_normal((n, n))
    for r in (8, 48, 64):
        low = rng.standard_normal((n, r)) @ rng.standard_normal((r, n))
        Y = low @ Om
        pr = lowrank.participation_ratio(Y.T @ Y)
        assert pr <= r + 1e-9 and pr < lowrank.PR_GIVE_UP * l, (r, pr)
    Y = full @ Om
    assert lowrank.participation_ratio(Y.T @ Y) > lowrank.PR_GIVE_UP * l


def test_planner_remembers_that_low_rank_lost(no_tc_lane, rng):
    """Per shape the planner measures low rank against exact and skips low rank where it
    lost, trying it again every EXPLORE_EVERY calls; where it won it keeps it."""
    from clgemm.runtime import get_runtime

    n = 384
    A, B = _lowrank(rng, n, n, 6), rng.standard_normal((n, n)).astype(np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    _, info = clgemm.matmul(A, B, rel_tol=1e-3, return_info=True)
    assert info.method == "lowrank"  # first encounter: tried
    _, info = clgemm.matmul(A, B, rel_tol=1e-3, return_info=True)
    assert info.method == "exact" and "timing the exact product" in info.extra["approx"][
        "exact_reason"]
    costs = contract.method_costs(get_runtime(), n, n, n, None, 1e-3)
    assert costs.lowrank_s > 0 and costs.exact_s > 0
    costs.lowrank_s, costs.exact_s = 1.0, 1e-3  # low rank lost
    methods, reasons = [], []
    for _ in range(contract.EXPLORE_EVERY):
        out, info = clgemm.matmul(A, B, rel_tol=1e-3, return_info=True)
        methods.append(info.method)
        reasons.append(info.extra["approx"].get("exact_reason", ""))
        assert _rel(out, ref) <= 1e-3
    assert methods[:-1] == ["exact"] * (contract.EXPLORE_EVERY - 1)
    assert all("measured slower than exact" in r for r in reasons[:-1])
    assert methods[-1] == "lowrank"  # the periodic re-try
    costs.lowrank_s, costs.exact_s = 1e-3, 1.0  # low rank won
    _, info = clgemm.matmul(A, B, rel_tol=1e-3, return_info=True)
    assert info.method == "lowrank"


# ---- TF32 judged on the device (approx/judged.py) ------------------------------------------
def _operands(rng, m, n, k, ta, tb):
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    return A, B, C0


def _ref(A, B, C0, alpha, beta, ta, tb):
    a = (A.T if ta else A).astype(np.float64)
    b = (B.T if tb else B).astype(np.float64)
    return alpha * (a @ b) + beta * C0.astype(np.float64)


def _poison_tf32(monkeypatch, factor=1.1):
    """Every TF32 product of the judged path `factor` times the true one (10% off); calls
    are not replayed meanwhile (a recording holds the kernel launched, not this stand-in,
    and one made meanwhile would hold the stand-in's arguments)."""
    from importlib import import_module

    from clgemm.approx import judged

    monkeypatch.setattr(import_module("clgemm.plan"), "REPLAY", False)
    real = judged.tc_product

    def poisoned(rt, mode, m, n, k, alpha, *args, **kw):
        return real(rt, mode, m, n, k, alpha * factor, *args, **kw)
    monkeypatch.setattr(judged, "tc_product", poisoned)


@pytest.mark.parametrize("ta,tb,beta,given", [(False, False, 0.0, False), (True, False, -0.25, True),
                                              (False, True, 0.5, True), (True, True, 0.0, True)])
def test_judged_tf32_on_device_arrays(tc_lane, small_tc_tiles, rng, ta, tb, beta, given):
    """rel_tol on device arrays with nothing reported takes the plan's judged path: the TF32
    product is kept (its error really TF32's, within the budget), C given or not."""
    m, n, k = 70, 52, 90
    A, B, C0 = _operands(rng, m, n, k, ta, tb)
    assert clgemm.plan(m, n, k, trans_a=ta, trans_b=tb, rel_tol=2e-2).judged
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32) if beta == 0.0 else C0)
    out = clgemm.matmul(a, b, C=c if given else None, alpha=0.5, beta=beta, trans_a=ta,
                        trans_b=tb, rel_tol=2e-2)
    assert (out is c) == given
    err = _rel(out.get(), _ref(A, B, C0, 0.5, beta, ta, tb))
    assert 1e-6 < err <= 2e-2


@pytest.mark.parametrize("beta", [0.0, 0.75])
def test_judged_path_replaces_a_bad_tf32_product_with_exact(tc_lane, small_tc_tiles, rng,
                                                            monkeypatch, beta):
    """A TF32 product 10% off: the device's verdict raises the gate, C's old content comes
    back (beta != 0) and the float32 family's exact product replaces it; the next, sound,
    product is TF32 again (the gate is the verdict of each call, not left raised)."""
    m, n, k = 61, 45, 77
    A, B, C0 = _operands(rng, m, n, k, False, True)
    a, b, c = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(C0)
    ref = _ref(A, B, C0, 0.5, beta, False, True)
    with monkeypatch.context() as patch:
        _poison_tf32(patch)
        out = clgemm.matmul(a, b, C=c, alpha=0.5, beta=beta, trans_b=True, rel_tol=1e-2)
        assert _rel(out.get(), ref) < 1e-5  # 10% off had the TF32 product been kept
    c.set(C0)
    out = clgemm.matmul(a, b, C=c, alpha=0.5, beta=beta, trans_b=True, rel_tol=1e-2)
    assert 1e-6 < _rel(out.get(), ref) <= 1e-2


def test_judged_reported_call_says_what_the_device_decided(tc_lane, small_tc_tiles, rng,
                                                           monkeypatch):
    """A reported call reads the verdict: the estimate, and the fallback where it missed."""
    m, n, k = 48, 40, 64
    A, B, C0 = _operands(rng, m, n, k, False, False)
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    out, info = clgemm.matmul(a, b, rel_tol=1e-2, return_info=True)
    tc = info.extra["approx"]["tensor_core"]
    assert info.method == "tf32" and not info.fell_back and tc["judged_on_device"]
    assert 0 < info.error_estimate <= 1e-2 and tc["device_s"] > 0
    _poison_tf32(monkeypatch)
    out, info = clgemm.matmul(A, B, rel_tol=1e-2, return_info=True)
    assert info.method == "exact" and info.fell_back
    tc = info.extra["approx"]["tensor_core"]
    assert tc["estimate"] > 1e-2 and "rejected" in tc and info.error_estimate is None
    assert _rel(out, _ref(A, B, C0, 1.0, 0.0, False, False)) < 1e-5


def test_judged_path_propagates_a_nan_operand_exactly(tc_lane, small_tc_tiles, rng):
    """A NaN operand makes the estimate NaN: the gate rises and the float32 family's product
    propagates it as IEEE arithmetic does (its row NaN, every other entry exact)."""
    m, n, k = 40, 33, 50
    A, B, _ = _operands(rng, m, n, k, False, False)
    A[7, 3] = np.nan
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), rel_tol=1e-2).get()
    ref = _ref(A, B, np.zeros((m, n), np.float32), 1.0, 0.0, False, False)
    assert np.array_equal(np.isnan(out), np.isnan(ref)) and np.isnan(out[7]).all()
    keep = ~np.isnan(ref)
    assert np.abs(out[keep] - ref[keep]).max() <= 1e-5 * np.abs(ref[keep]).max()


def test_judged_calls_do_not_wait_for_the_device(tc_lane, small_tc_tiles, rng):
    """Chained rel_tol calls on device arrays return while the queue is held shut."""
    from conftest import QueueGate

    m, n, k = 64, 48, 80
    A, B, C0 = _operands(rng, m, n, k, False, False)
    a, b, c = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(C0)
    rt = get_runtime()
    for _ in range(2):  # first calls build kernels and map the verdict's host memory
        clgemm.matmul(a, b, C=c, beta=0.5, rel_tol=1e-2)
        clgemm.matmul(a, b, rel_tol=1e-2)
    rt.user_queue.finish()
    c.set(C0)
    gate = QueueGate(rt, deadline_s=20.0)
    clgemm.matmul(a, b, C=c, beta=0.5, rel_tol=1e-2)
    last = clgemm.matmul(a, b, rel_tol=1e-2)
    opened_by_deadline = not gate.open()
    assert not opened_by_deadline, "a judged call waited for the queue"
    assert _rel(last.get(), _ref(A, B, C0, 1.0, 0.0, False, False)) <= 1e-2
    assert _rel(c.get(), _ref(A, B, C0, 1.0, 0.5, False, False)) <= 1e-2


def test_judge_probe_split_cap_keeps_the_estimate(tc_lane, small_tc_tiles, rng, monkeypatch):
    """CLGEMM_JUDGE_PROBE_SPLITS=1 (the plan campaign's approx_probe_nosplit experiment): the
    judge's own small-rows lane (the GPU's dot form here) never splits K, and a sound TF32
    product is still kept, a 10%-off one still replaced by the exact product."""
    from clgemm.approx import judged
    from clgemm.kernels.gemv import default_schedule
    from clgemm.lanes import gemv as gemv_lane
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    monkeypatch.setattr(gemv_lane, "default_schedule", lambda kind: default_schedule("GPU"))
    monkeypatch.setenv("CLGEMM_JUDGE_PROBE_SPLITS", "1")
    for key in ("gemv lane", ("budget judge", "user"), ("budget judge", "station")):
        monkeypatch.delitem(rt._memo, key, raising=False)
    judge = judged.judge_for(rt, rt.user_queue)
    assert judge.gemv.max_splits == 1
    assert judge.gemv.splits(4, 1, 4096) == (1, 4096)
    assert gemv_lane.GemvLane(rt).splits(4, 1, 4096)[0] > 1  # the lane itself splits
    m, n, k = 70, 600, 530
    A, B, C0 = _operands(rng, m, n, k, False, True)
    a, b, c = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(C0)
    ref = _ref(A, B, C0, 0.5, 0.0, False, True)
    out = clgemm.matmul(a, b, C=c, alpha=0.5, trans_b=True, rel_tol=1e-2)
    assert 1e-6 < _rel(out.get(), ref) <= 1e-2
    with monkeypatch.context() as patch:
        _poison_tf32(patch)
        out = clgemm.matmul(a, b, C=c, alpha=0.5, trans_b=True, rel_tol=1e-2)
        assert _rel(out.get(), ref) < 1e-5
    for key in (("budget judge", "user"), ("budget judge", "station")):
        rt.forget(key)  # not left to later tests with the cap
