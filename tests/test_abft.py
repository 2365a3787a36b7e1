"""ABFT (check=True, clgemm.abft.verify): no false positives on clean products, detection,
localisation and repair of injected faults, NaN/Inf, products computed elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

import clgemm
import clgemm.abft
from clgemm.guard import faults
from clgemm.lanes.fp32 import choose_schedule
from clgemm.lab import guard_campaign as campaign
from clgemm.guard.device import guard_device
from clgemm.runtime import get_runtime
from conftest import assert_close_to_reference, rand, reference


@pytest.fixture
def one_build_per_kernel(monkeypatch):
    """Campaigns of random shapes: PoCL builds each kernel once for any work-group size. The
    guard launches abft_ublock with the work-group size left to the driver, which on PoCL
    (specialising per size by default) built it again for nearly every new shape: 111 builds
    in 240 products, half the campaign's time. Only PoCL reads this variable."""
    monkeypatch.setenv("POCL_WORK_GROUP_SPECIALIZATION", "0")


def test_clean_products_never_flagged(one_build_per_kernel):
    r = campaign.clean_campaign(240, seed=int(np.random.SeedSequence().entropy % 2**31),
                                max_dim=160)
    assert r["false_positives"] == 0, r["false_positive_cases"]
    assert r["max_ratio"] < 1.0


def test_clean_device_arrays_and_transposes(rng, one_build_per_kernel):
    r = campaign.clean_campaign(40, seed=int(rng.integers(2**31)), max_dim=96, on_device=True)
    assert r["false_positives"] == 0, r["false_positive_cases"]
    # every product is counted under the kernel family that computed it (here: no tensor
    # cores, so the float32 family)
    assert r["served_by"] == {"fp32": 40}


def test_clean_large_counts_its_products(one_build_per_kernel):
    """clean_large (the GPU campaigns' large clean products), small here: no false positive,
    each product counted under the kernel family that computed it."""
    r = campaign.clean_large(96, 3)
    assert r["false_positives"] == 0 and r["products"] == 3
    assert r["served_by"] == {"fp32": 3}


def test_check_result_matches_exact(rng):
    A, B, C0 = rand(rng, (70, 50)), rand(rng, (90, 50)), rand(rng, (70, 90))
    out, info = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-1.5, trans_b=True,
                              check=True, return_info=True)
    ref = 0.5 * A.astype(np.float64) @ B.T.astype(np.float64) - 1.5 * C0
    assert np.abs(out - ref).max() < 1e-4 * np.abs(ref).max()
    assert info.checked and info.extra["abft"]["ok"] and not info.extra["abft"]["detected"]


@pytest.mark.parametrize("model", ["bit_exponent", "scaled", "nan", "inf", "row"])
def test_result_faults_detected_located_corrected(rng, model):
    m, n, k = 64, 48, 80
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    clean = clgemm.matmul(A, B)
    i, j = int(rng.integers(m)), int(rng.integers(n))
    big = float(np.abs(clean).max())
    fn = {"bit_exponent": faults.bit_flip([30]),  # exponent MSB: the value explodes or vanishes
          "scaled": faults.add(big * 1e-3), "nan": faults.set_value(np.nan),
          "inf": faults.set_value(-np.inf), "row": faults.add(big * 1e-2)}[model]
    cells = [(i, jj) for jj in range(n)] if model == "row" else [(i, j)]
    with faults.inject(result=fn, cells=cells) as hooks:
        out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert hooks.applied == 1
    v = info.extra["abft"]
    assert v["detected"] and v["ok"] and v["corrected"], v
    assert i in v["first"]["rows"]
    if model != "row":
        assert v["first"]["cols"] == [j]
        # only the flagged block-column was recomputed
        assert 1 <= v["repaired_elements"] <= v["block"]
    else:  # every column of the block's rows, flagged or not
        assert v["repaired_elements"] == min(v["block"], m) * n
    np.testing.assert_allclose(out, clean, rtol=1e-5, atol=1e-5 * big)


def test_a_fault_along_a_row_repairs_the_whole_rows_of_its_block():
    """Two or more flagged columns in one block: the cells to recompute are the block's rows
    in every column (a row fault below one column's tolerance would otherwise stay); one
    flagged column keeps to its block-column."""
    from clgemm.guard.abft import block_check
    from clgemm.guard.device import guard_device
    from clgemm.runtime import get_runtime

    m, n, k = 200, 30, 64
    ck = block_check(guard_device(get_runtime()), m, n, k)
    bs = ck.bs
    rows, cols, pair = ck.cells({"flagged": 3, "idx": [1 * n + 4, 1 * n + 9, 3 * n + 7]})
    in_block1 = (rows >= bs) & (rows < 2 * bs)
    assert set(cols[in_block1]) == set(range(n)) and in_block1.sum() == bs * n
    assert set(pair[in_block1 & (cols == 4)]) == {0} and set(pair[in_block1 & (cols == 9)]) == {1}
    assert set(pair[in_block1 & (cols == 5)]) == {-1}
    in_block3 = (rows >= 3 * bs) & (rows < 4 * bs)
    assert set(cols[in_block3]) == {7} and set(pair[in_block3]) == {2}
    assert len(rows) == bs * n + min(bs, m - 3 * bs)


def test_accumulator_fault_flag_detected_and_corrected(rng):
    m, n, k = 40, 56, 72
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    clean = clgemm.matmul(A, B)
    i, j = 17, 33
    with faults.inject(accumulator_at=i * n + j):
        out, info = clgemm.matmul(A, B, check=True, return_info=True)
    v = info.extra["abft"]
    assert v["detected"] and v["corrected"]
    assert v["first"]["rows"] == [i] and v["first"]["cols"] == [j]
    assert abs(v["delta_estimate"] - (-2 * clean[i, j] + 1)) < 1e-3 * (1 + abs(clean[i, j]))
    np.testing.assert_allclose(out, clean, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("persistent_cells", [False, True])
def test_repairs_with_beta_use_the_kept_copy_of_c(rng, persistent_cells):
    """beta != 0: C_old is overwritten by the product, so the repairs (cells recomputed in
    double; the whole product again) read the copy check=True keeps. Persistent on the first
    product and the cell repair, the fault sends the call to the full recompute."""
    m, n, k = 48, 40, 64
    A, B, C0 = rand(rng, (m, k)), rand(rng, (k, n)), rand(rng, (m, n))
    ref = 0.5 * A.astype(np.float64) @ B - 0.75 * C0
    big = float(np.abs(ref).max())
    hits = []

    def fault(x):
        hits.append(1)
        return x + np.float32(big * 1e-2)

    class FirstTwo(faults.Hooks):  # the product's result and the cell repair, not the recompute
        def corrupt(self, gd, view, stage):
            if persistent_cells and stage in ("gemm", "cells"):
                faults.corrupt_cells(gd.queue, view, self.cells, self.result)
            elif not persistent_cells and stage == "gemm":
                faults.corrupt_cells(gd.queue, view, self.cells, self.result)

    hooks = FirstTwo(result=fault, cells=[(5, 7)])
    prev = faults.active()
    faults._state.hooks = hooks
    try:
        out, info = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-0.75, check=True,
                                  return_info=True)
    finally:
        faults._state.hooks = prev
    v = info.extra["abft"]
    assert v["detected"] and v["ok"], v
    assert v["recomputed"] if persistent_cells else v["corrected"], v
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * big)


def test_unchecked_accumulator_fault_is_really_wrong(rng):
    """The flag corrupts the product (so the test above is not vacuous)."""
    from clgemm.guard.abft import View, _launch
    from clgemm.lanes.fp32 import choose_schedule
    from clgemm.operands import upload
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    A, B = rand(rng, (24, 24)), rand(rng, (24, 24))
    a, _ = upload(rt, "A", A, False)
    b, _ = upload(rt, "B", B, False)
    buf = rt.buffer(4 * 24 * 24)
    c = View(buf, 0, 24, False, 24, 24)
    s = choose_schedule(rt, 24, 24, 24)

    class I:
        kernel_s = 0.0
    _launch(rt, s, 24, 24, 24, 1.0, 0.0, View.of(a, 24, 24), View.of(b, 24, 24), c, I, 5 * 24 + 7)
    out = np.empty((24, 24), np.float32)
    import pyopencl as cl
    cl.enqueue_copy(rt.queue, out, buf)
    ref = A @ B
    assert abs(out[5, 7] - (-ref[5, 7] + 1)) < 1e-4
    v = clgemm.abft.verify(A, B, out)
    assert not v.ok and v.rows == [5] and v.cols == [7]


def test_persistent_fault_raises(rng):
    A, B = rand(rng, (32, 40)), rand(rng, (40, 36))
    with faults.inject(result=faults.set_value(1e6), cells=[(3, 4)], persistent=True):
        with pytest.raises(clgemm.FaultError):
            clgemm.matmul(A, B, check=True)


def test_verify_numpy_product(rng):
    A, B, C0 = rand(rng, (120, 70)), rand(rng, (70, 90)), rand(rng, (120, 90))
    C = (2.0 * (A @ B) + 0.5 * C0).astype(np.float32)  # computed by numpy
    v = clgemm.abft.verify(A, B, C, alpha=2.0, beta=0.5, C_old=C0)
    assert v.ok and v.max_ratio < 1.0, v
    bad = C.copy()
    bad[11, 22] += 1e-3 * np.abs(C).max()
    v = clgemm.abft.verify(A, B, bad, alpha=2.0, beta=0.5, C_old=C0)
    assert not v.ok and v.rows == [11] and v.cols == [22]
    assert abs(v.delta_estimate - 1e-3 * np.abs(C).max()) < 1e-4 * np.abs(C).max()
    # Wrong beta is a fault too.
    assert not clgemm.abft.verify(A, B, C, alpha=2.0, beta=0.25, C_old=C0).ok


def test_verify_transposed_and_nonfinite(rng):
    A, B = rand(rng, (50, 30)), rand(rng, (40, 50))
    C = (A.T @ B.T).astype(np.float32)
    assert clgemm.abft.verify(A, B, C, trans_a=True, trans_b=True).ok
    for val in (np.nan, np.inf):
        bad = C.copy()
        bad[7, 9] = val
        v = clgemm.abft.verify(A, B, bad, trans_a=True, trans_b=True)
        assert not v.ok and v.nonfinite and 7 in v.rows and 9 in v.cols


def test_nonfinite_input_is_not_a_fault(rng):
    A, B = rand(rng, (20, 30)), rand(rng, (30, 25))
    A[3, 4] = np.nan
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert np.isnan(out[3]).all()
    v = info.extra["abft"]
    assert v["ok"] and v["unverifiable"] > 0


def test_fault_campaign_small(one_build_per_kernel):
    r = campaign.fault_campaign(70, seed=int(np.random.SeedSequence().entropy % 2**31),
                                max_dim=160,
                                models=("bit_exponent", "nan", "inf", "scaled", "accumulator",
                                        "rel_1e-3", "rel_1e-5"))
    fp64 = guard_device(get_runtime()).fp64
    for model, s in r["models"].items():
        if model == "rel_1e-5":
            # at the edge of significance: statistical, ~97% on PoCL; 80-87% where the device
            # has no fp64 (Rusticl on llvmpipe: the sums in float, the bounds doubled)
            need = 0.8 if fp64 else 0.5
            assert s["detected_significant"] >= need * s["significant"], (model, s)
        elif model == "scaled" and not fp64:  # sizes from 1e-5: the edge, as above
            assert all(x < 1e-4 for x in s["missed_significant_rel_sizes"]), (model, s)
        else:
            assert s["detected_significant"] == s["significant"], (model, s)
        assert s["wrong_result"] == 0, (model, s)
        assert s["correction_rate"] == 1.0, (model, s)


def test_calibration_roundtrip(tmp_path, monkeypatch, one_build_per_kernel):
    monkeypatch.setenv("CLGEMM_STATE_DIR", str(tmp_path))
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    r = clgemm.abft.calibrate(count=20, max_dim=64, max_k=1024, deep=4, deep_dim=48)
    assert r["c"] >= clgemm.abft.DEFAULT_C
    floors = r["floors"]["fp32"]
    assert set(floors) >= {"9", "10"}, floors  # the deep octaves were measured
    assert all(f >= clgemm.abft.DEFAULT_C for o, f in floors.items() if int(o) < 9)
    # from K = 512 up: margin x the largest |r|/scale seen in the octave
    assert floors["9"] == pytest.approx(r["margin"] * r["max_z"]["fp32:9"])
    top = r["max_z_product"]["fp32:9"]  # the product that set it, to read a high floor by
    assert top["kind"] in campaign.KINDS and 512 <= top["mnk"][2] < 1024
    # the stored table answers per lane and K: the octave at or below K, else the lowest
    assert clgemm.abft.calibration_for(rt, "fp32", 600) == pytest.approx(floors["9"])
    assert clgemm.abft.calibration_for(rt, "fp32", 9000) == pytest.approx(floors["10"])
    low = min(floors, key=int)
    assert clgemm.abft.calibration_for(rt, "fp32", 1) == pytest.approx(floors[low])
    # no K (an older caller) or a lane the device has no floors for: the global floor c
    assert clgemm.abft.calibration_for(rt) == pytest.approx(r["c"])
    assert clgemm.abft.calibration_for(rt, "3xtf32", 600) in (
        pytest.approx(r["c"]), pytest.approx(r["floors"].get("3xtf32", {}).get("9", -1)))


@pytest.fixture(params=["groups", "rows"])
def abft_form(request, monkeypatch):
    """Both forms of the check's sums (GuardDevice.rows_form): the work-group kernels of a
    GPU, and the rows form of a CPU device with double sums, on whatever device runs the
    tests."""
    from clgemm.guard.device import guard_device

    gd = guard_device(get_runtime())
    if request.param == "rows" and not gd.rows_built:
        pytest.skip("the rows form is built for a CPU device with double sums")
    monkeypatch.setattr(gd, "rows_form", request.param == "rows")
    return gd


def test_the_sums_form_follows_the_device():
    """The rows form on a CPU device with double sums; elsewhere its kernels are not even in
    the program (a GPU compiles none of them)."""
    import os

    import pyopencl as cl

    from clgemm.guard import abft_kernels as AK
    from clgemm.guard.device import guard_device

    if os.environ.get("CLGEMM_ABFT_FORM"):
        pytest.skip("$CLGEMM_ABFT_FORM forces a form")
    rt = get_runtime()
    gd = guard_device(rt)
    assert gd.rows_form == gd.rows_built == (gd.fp64 and rt.device.type == "CPU")

    def names(rows: bool) -> str:
        program = rt.build(AK.source(gd.fp64, rows)).program
        return program.get_info(cl.program_info.KERNEL_NAMES)

    assert "abft_expect_rows" not in names(False) and "abft_expect" in names(False)
    assert ("abft_expect_rows" in names(True)) == gd.fp64


@pytest.mark.parametrize("m,n,k,bs,ta,tb", [
    (203, 131, 77, 8, False, False),   # n not a multiple of the 4-column tile, 26 blocks
    (97, 66, 300, 16, True, False),    # several K slices, a partial last block
    (150, 45, 129, 4, False, True),    # transposed B: the scalar path
    (33, 257, 65, 2, True, True),
    (70, 48, 1500, 8, False, False),   # whole 16-column strips only, several K slices
])
def test_expected_block_sums_match_float64(rng, monkeypatch, abft_form, m, n, k, bs, ta, tb):
    """E[b, j] = sum_{i in b} (op(A) op(B))[i, j] from the expected-sums kernel, in fp64, against
    numpy in float64 (the check's reference side; every other kernel judges against it)."""
    import pyopencl as cl

    from clgemm.guard import abft
    from clgemm.guard.device import View
    from clgemm.operands import upload

    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", str(bs))
    rt = get_runtime()
    gd = abft_form
    A = rand(rng, (k, m) if ta else (m, k))
    B = rand(rng, (n, k) if tb else (k, n))
    a_op, _ = upload(rt, "A", A, ta)
    b_op, _ = upload(rt, "B", B, tb)
    ck = abft.BlockCheck(gd, m, n, k, bs)
    ck.expected(View.of(a_op, m, k), View.of(b_op, k, n))
    ep = np.empty(ck.ns * ck.nb * n, gd.rdtype)
    cl.enqueue_copy(rt.queue, ep, ck.Ep, is_blocking=True)
    got = ep.reshape(ck.ns, ck.nb, n).sum(axis=0)
    opa = (A.T if ta else A).astype(np.float64)
    opb = (B.T if tb else B).astype(np.float64)
    u = np.add.reduceat(opa, np.arange(0, m, bs), axis=0)
    want = u @ opb
    scale = (np.add.reduceat(np.abs(opa), np.arange(0, m, bs), axis=0) @ np.abs(opb)).max()
    tol = (1e-12 if gd.fp64 else 1e-5) * k * scale
    assert np.abs(got - want).max() <= tol
    # the tolerances' norms: sum over slices of Bq = ||op(B)[:, j]||^2, of Aq = ||rows of b||_F^2
    bq = np.empty(ck.ns * n, gd.rdtype)
    aq = np.empty(ck.ns * ck.nb, gd.rdtype)
    cl.enqueue_copy(rt.queue, bq, ck.Bq)
    cl.enqueue_copy(rt.queue, aq, ck.Aq, is_blocking=True)
    rel = 1e-12 if gd.fp64 else 1e-5
    np.testing.assert_allclose(bq.reshape(ck.ns, n).sum(axis=0), (opb**2).sum(axis=0),
                               rtol=rel * k)
    want_aq = np.add.reduceat((opa**2).sum(axis=1), np.arange(0, m, bs))
    np.testing.assert_allclose(aq.reshape(ck.ns, ck.nb).sum(axis=0), want_aq, rtol=rel * k)


@pytest.fixture
def exact_tc_lane(monkeypatch):
    """A promoted 3xTF32 exact lane, tensor cores claimed present and the PTX emulated in
    plain OpenCL C, with small tiles (the emulated 128 x 128 kernels compile for minutes)."""
    from dataclasses import replace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES
    from clgemm.runtime import get_runtime

    from conftest import emulate_tensor_cores

    small = replace(DEFAULT_SCHEDULES["3xtf32"], block_m=32, block_n=16, block_k=16,
                    warps_m=2, warps_n=1)
    emulate_tensor_cores(monkeypatch, get_runtime())
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: small)
    return small


def test_check_runs_the_promoted_lane(rng, exact_tc_lane):
    """check=True computes with the exact lane the unchecked call takes, at float32 accuracy
    (a product over guard/elementwise's tiny size: tiny ones are the float32 family's)."""
    m, n, k = 70, 45, 340
    A, B, C0 = rand(rng, (k, m)), rand(rng, (k, n)), rand(rng, (m, n))
    out, info = clgemm.matmul(A, B, C=C0.copy(), alpha=0.5, beta=-1.5, trans_a=True,
                              check=True, return_info=True)
    assert info.extra.get("lane") == "3xtf32" and info.schedule == exact_tc_lane.key()
    ref = 0.5 * A.T.astype(np.float64) @ B.astype(np.float64) - 1.5 * C0
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
    v = info.extra["abft"]
    assert v["ok"] and not v["detected"], v


def test_check_on_the_lane_repairs_a_fault(rng, exact_tc_lane):
    m, n, k = 64, 40, 416  # over the tiny size, which the float32 family computes
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    ref = A.astype(np.float64) @ B
    big = float(np.abs(ref).max())
    # a fault in the lane's result: found in its block-column and repaired there
    with faults.inject(result=faults.add(big * 1e-2), cells=[(5, 7)]) as hooks:
        out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert hooks.applied == 1
    v = info.extra["abft"]
    assert v["detected"] and v["ok"] and (v["corrected"] or v["recomputed"]), v
    assert 5 in v["first"]["rows"] and v["first"]["cols"] == [7]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * big)


def test_tiny_checked_products_leave_the_lane(rng, exact_tc_lane):
    """A tiny product under check=True is the float32 family's, judged cell by cell (its
    bound is the float32 family's; the lane takes no product this small on a real device:
    route.MIN_TILES_PER_UNIT)."""
    A, B = rand(rng, (33, 17)), rand(rng, (17, 29))
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert "lane" not in info.extra and info.extra["abft"]["cellwise"]
    ref = A.astype(np.float64) @ B
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()


def test_check_on_the_lane_keeps_ieee_propagation(rng, exact_tc_lane):
    """An Inf operand: the split hi + lo would turn Inf into NaN; the checked call hands the
    product to the float32 family, as the unchecked lane does."""
    A, B = rand(rng, (40, 900)), rand(rng, (900, 30))  # over the tiny size (40 30 900)
    A[3, 4] = np.inf
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    want = clgemm.matmul(A, B, schedule=choose_schedule(get_runtime(), 40, 30, 900))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    assert "lane_fallback" in info.extra
    assert info.extra["abft"]["ok"] and info.extra["abft"]["unverifiable"] > 0


def test_few_live_sums_among_near_exact_ones_are_not_flagged(rng, monkeypatch):
    """Almost every block-column near-exact (|r| / scale ~ 1e-4), a few with ordinary roundoff
    (|r| / scale 0.3): the 99th percentile says nothing of the few, and T must not drop to
    it. (An H200 clean campaign flagged such a product of tiny data, where the product
    vanished in the rounding of C_old's entries, while T followed 5 x p99 alone.) C is
    crafted on the host from an exact integer product, its residuals set through the
    documented scale."""
    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "4")
    m, n, k, bs = 64, 400, 600, 4
    A = rng.integers(-3, 4, (m, k)).astype(np.float32)
    B = rng.integers(-3, 4, (k, n)).astype(np.float32)
    exact = A.astype(np.float64) @ B  # integers below 2^24: float32 holds them
    C = exact.astype(np.float32)
    rows = np.arange(0, m, bs)
    norm_c = np.sqrt(np.add.reduceat(exact**2, rows, axis=0))
    ab = np.sqrt(np.add.reduceat((A.astype(np.float64) ** 2).sum(1), rows))[:, None] * \
        np.sqrt((B.astype(np.float64) ** 2).sum(0))[None, :]
    scale = 2.0**-24 * np.sqrt(k + 4) * (norm_c + ab / np.sqrt(k))
    # one entry per block-column carries the residual: one ulp (|r| / scale <= 0.05) in
    # 398 columns, 0.3 in 2 of 400 (0.5% of the block-columns, an ordinary roundoff)
    C[rows, :] = np.nextafter(C[rows, :], np.float32(np.inf))
    live = (exact[rows, :2] + 0.3 * scale[:, :2]).astype(np.float32)
    C[rows[:, None], np.arange(2)[None, :]] = live
    z = np.abs(C[rows, :] - exact[rows, :]) / scale
    assert z[:, 2:].max() < 0.05 and 0.25 < z[:, :2].min() and z[:, :2].max() < 0.35
    v = clgemm.abft.verify(A, B, C)
    assert v.ok, (v.threshold, v.max_ratio, v.flagged)
    assert v.threshold >= clgemm.abft.calibration_for(get_runtime(), None, k) / 2


def test_gaussian_top_bounds():
    """The Gaussian-tail branch's bar: 1.3 x the level 10 of N |Gaussian| draws exceed; off
    below K = 512, below 2000 block sums and below 128 rows a block."""
    from clgemm.guard import abft

    z = abft.gaussian_top(24 * 3072, 3072)
    assert abs(z / 1.3 - 3.816) < 0.01  # P(|Z| > 3.816) = 10 / 73728
    assert abft.gaussian_top(24 * 3072, 511) == 0.0 and abft.gaussian_top(1999, 4096) == 0.0
    # blocks of fewer rows: a sum of fewer entries' errors is not Gaussian enough (off)
    assert abft.gaussian_top(24 * 3072, 3072, 64) == 0.0
    assert abft.gaussian_top(24 * 3072, 3072, 128) == z and abft.GAUSS_MIN_BLOCK == 128
    assert abft.block_rows(3072, 3072, 3072) >= abft.GAUSS_MIN_BLOCK  # 3072 keeps it


def _noisy_product(rng, m, n, k, noise):
    """An exact product rounded to float32 plus independent noise of `noise` per entry (far
    above float32's roundoff, so the residuals are the noise's block sums)."""
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    return A, B, exact, (exact + noise(exact.shape)).astype(np.float32)


def test_gaussian_residuals_lower_T_to_find_a_10_sigma_fault(rng, monkeypatch):
    """Gaussian residuals (128-row block sums of Gaussian noise): T falls from kappa p75
    (11.5 sigma) to about 6.5-7 sigma; the clean product passes and a fault of 10 block sigmas
    (which the old T would miss about 14 times in 15, by the normal tail) is flagged. With a
    heavy tail (Student t, 2 degrees of freedom) the branch stays off.

    Why 10 and not 9 sigma: the fault's block sum carries the block's own noise, so a 9-sigma
    fault falls under a T of 7 sigma about once in 80 (5 of 400 missed over seeds 0-39 on
    PoCL, the test failing about once in 140 runs); at 10 sigma none of 600 was missed."""
    from clgemm.guard import abft

    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "128")
    monkeypatch.setattr(abft, "GAUSS_ON_FLOAT_SUMS", True)  # the noise dwarfs float sums' own
    m, n, k, e = 1024, 320, 768, 1e-3
    rt = get_runtime()
    A, B, exact, C = _noisy_product(rng, m, n, k, lambda s: e * rng.standard_normal(s))
    keep: list = []
    a = abft._as_view(rt, "A", A, False, keep)
    b = abft._as_view(rt, "B", B, False, keep)
    vc, s = abft.check_views(rt, a, b, abft._as_view(rt, "C", C, False, keep), 1.0, 0.0,
                             None, 4.0, locate_cells=False)
    level = abft.summary_level(s)  # p75 as the old rule reads it (its bin's upper edge)
    assert vc.ok and vc.threshold < 0.75 * abft.KAPPA * level, (vc.threshold, level)
    found = 0
    for _ in range(10):
        bad = C.copy()
        bad[rng.integers(m), rng.integers(n)] += np.float32(10.0 * e * np.sqrt(128.0))
        vf, _ = abft.check_views(rt, a, b, abft._as_view(rt, "C", bad, False, keep), 1.0,
                                 0.0, None, 4.0, locate_cells=False)
        found += not vf.ok
    assert found >= 9
    H = (exact + e * rng.standard_t(2, exact.shape)).astype(np.float32)
    vh, sh = abft.check_views(rt, a, b, abft._as_view(rt, "C", H, False, keep), 1.0, 0.0,
                              None, 4.0, locate_cells=False)
    assert vh.threshold >= 0.999 * abft.KAPPA * abft.summary_level(sh)  # the old rule's T


def test_gaussian_branch_needs_double_sums(rng, monkeypatch):
    """Where the check's sums are float (no cl_khr_fp64) their own rounding is half of every
    residual and its tail follows the data, not a Gaussian: the branch and the centred rule
    stay off there (T from the other rules, T_c infinite), on where the sums are double."""
    from clgemm.guard import abft
    from clgemm.guard.device import guard_device

    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "128")
    m, n, k, e = 1024, 320, 768, 1e-3
    rt = get_runtime()
    A, B, exact, C = _noisy_product(rng, m, n, k, lambda s: e * rng.standard_normal(s))
    keep: list = []
    vc, s = abft.check_views(rt, abft._as_view(rt, "A", A, False, keep),
                             abft._as_view(rt, "B", B, False, keep),
                             abft._as_view(rt, "C", C, False, keep), 1.0, 0.0, None, 4.0,
                             locate_cells=False, centred=True)
    lowered = vc.threshold < 0.75 * abft.KAPPA * abft.summary_level(s)
    assert vc.ok and lowered == guard_device(rt).fp64
    assert (vc.threshold_centred < float("inf")) == guard_device(rt).fp64


def test_a_fault_in_an_exact_product_is_flagged(rng):
    """Integer data: every clean sum is exact, so a faulty sum is the histogram's only entry;
    its percentiles must not set T (they made T = kappa x the fault's own ratio)."""
    m, n, k = 256, 200, 600
    A = rng.integers(-3, 4, (m, k)).astype(np.float32)
    B = rng.integers(-3, 4, (k, n)).astype(np.float32)
    C = (A.astype(np.float64) @ B).astype(np.float32)
    assert clgemm.abft.verify(A, B, C).ok
    C[17, 33] += np.float32(1e-4 * np.abs(C).max())
    v = clgemm.abft.verify(A, B, C)
    assert not v.ok and 17 in v.rows and 33 in v.cols


def test_centred_rule_finds_a_fault_under_a_common_bias(rng, monkeypatch):
    """Every entry off by the same +0.5 e plus Gaussian noise e (the correlated roundoff of a
    truncating accumulator on same-sign data): |r| / scale sits ~4 sigma from zero, so the
    uncentred T (kappa p75) hides a 9-sigma fault; the residuals centred per block row are
    Gaussian again and T_c finds it. The clean product passes. The fault is 12 block sigmas:
    T_c sits near 6.5 sigma but moves with the seed (a 9-sigma fault was found 4 times in 10 once
    in CI), while the uncentred T stays over 30 sigma, so the fault still shows what centring
    buys."""
    from clgemm.guard import abft

    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "128")
    monkeypatch.setattr(abft, "GAUSS_ON_FLOAT_SUMS", True)
    m, n, k, e = 1024, 320, 768, 1e-3
    rt = get_runtime()
    A, B, exact, C = _noisy_product(rng, m, n, k, lambda s: e * (0.5 + rng.standard_normal(s)))
    keep: list = []
    a = abft._as_view(rt, "A", A, False, keep)
    b = abft._as_view(rt, "B", B, False, keep)
    vc, s = abft.check_views(rt, a, b, abft._as_view(rt, "C", C, False, keep), 1.0, 0.0,
                             None, 4.0, locate_cells=False, centred=True)
    assert vc.ok, (vc.threshold, vc.threshold_centred, vc.max_ratio)
    assert vc.threshold_centred < 0.5 * vc.threshold, (vc.threshold, vc.threshold_centred)
    found = hidden = 0
    for _ in range(10):
        bad = C.copy()
        i, j = rng.integers(m), rng.integers(n)
        bad[i, j] += np.float32(np.sign(rng.standard_normal()) * 12.0 * e * np.sqrt(128.0))
        view = abft._as_view(rt, "C", bad, False, keep)
        vf, sf = abft.check_views(rt, a, b, view, 1.0, 0.0, None, 4.0, locate_cells=False,
                                  centred=True)
        found += (not vf.ok) and list(sf["idx"]) == [(i // 128) * n + j]
        vu, _ = abft.check_views(rt, a, b, view, 1.0, 0.0, None, 4.0, locate_cells=False,
                                 centred=False)
        hidden += vu.ok
    assert found >= 9
    assert hidden == 10  # the uncentred rule misses every one of them


def test_centred_rule_off_for_constant_data(rng, monkeypatch):
    """Constant operands: every block sum has the same residual, the centred ratios are all
    zero (or the sums' own rounding, ~1e-7, with float sums) and the rule stays off (T_c
    infinite), so neither a clean product nor one with a column of other data is flagged."""
    from clgemm.guard import abft

    monkeypatch.setattr(abft, "GAUSS_ON_FLOAT_SUMS", True)
    m, n, k = 640, 512, 1024
    rt = get_runtime()
    A = np.full((m, k), np.float32(0.37))
    B = np.full((k, n), np.float32(0.61))
    B2 = B.copy()
    B2[:, 5] = np.float32(0.29)
    keep: list = []
    a = abft._as_view(rt, "A", A, False, keep)
    for b_host in (B, B2):
        C = clgemm.matmul(A, b_host)
        v, _ = abft.check_views(rt, a, abft._as_view(rt, "B", b_host, False, keep),
                                abft._as_view(rt, "C", C, False, keep), 1.0, 0.0, None, 4.0,
                                locate_cells=False, centred=True)
        assert v.ok and v.threshold_centred == float("inf"), (v.threshold, v.threshold_centred)


def test_centred_rule_modes(monkeypatch):
    """Lanes' products get the centred rule, others not; $CLGEMM_ABFT_CENTRED forces it."""
    from clgemm.guard import abft

    for mode, lane, other in (("auto", True, False), ("1", True, True), ("0", False, False)):
        monkeypatch.setattr(abft, "CENTRED_MODE", mode)
        assert abft.centred_rule(True) is lane and abft.centred_rule(False) is other


def test_abft_is_an_attribute_after_a_plain_import():
    """`import clgemm; clgemm.abft.verify(...)` in a fresh process (the issue's public API):
    the submodule loads on first use."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ)  # the clgemm this session imported, installed or not
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(clgemm.__file__).parents[1]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = ("import clgemm; assert callable(clgemm.abft.verify); "
            "assert 'abft' in clgemm.__all__\n"
            "try:\n    clgemm.nosuch\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('clgemm.nosuch resolved')")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_faults_in_data_of_large_magnitude_are_found(rng):
    """Entries of 1e15 (products near 1e31): the block sums' norms must not overflow. With
    float sums the sum of squares did (|x| > 1.8e19), every scale became infinite and only
    the rigorous bound judged: no fault of 1e-3 max|C| was seen on Rusticl (20 of 20 missed)."""
    for m, n, k in ((37, 61, 900), (150, 9, 2500), (5, 120, 4000)):
        A = (rng.standard_normal((m, k)) * 1e15).astype(np.float32)
        B = (rng.standard_normal((k, n)) * 1e15).astype(np.float32)
        C = clgemm.matmul(A, B)
        assert clgemm.abft.verify(A, B, C).ok
        for _ in range(3):
            bad = C.copy()
            i, j = rng.integers(m), rng.integers(n)
            bad[i, j] += np.float32(1e-3 * np.abs(C).max())
            v = clgemm.abft.verify(A, B, bad)
            assert not v.ok and i in v.rows and j in v.cols, (m, n, k, v.threshold, v.max_ratio)


@pytest.mark.parametrize("m", [1, 16])
def test_a_fault_over_the_only_block_row_is_found(rng, m):
    # A decode product has one block row: a fault spread over all of it lifts the robust
    # level KAPPA p75 (its own residuals) far above the floor, and no block-column stands
    # out; the guard computes it again and the fault is gone (the soak on an H100 let five
    # such row faults through, 2026-12-06)
    n, k = 257, 4100
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    ref = A.astype(np.float64) @ B.astype(np.float64)
    big = float(np.abs(ref).max())
    noise = np.random.default_rng(5)

    def spread(v):
        return v + np.float32(big * 1e-3) * (1 + noise.standard_normal(v.shape)).astype(np.float32)

    with faults.inject(result=spread, cells=[(m - 1, j) for j in range(n)]) as hooks:
        out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert hooks.applied == 1
    ab = info.extra["abft"]
    assert ab["detected"]
    if m == 1:
        bad = out.copy()
        bad[0] = spread(bad[0])
        assert clgemm.abft.verify(A, B, bad).lifted  # verify cannot recompute: it says so
        assert not clgemm.abft.verify(A, B, out).lifted  # the only block row (with 16 rows, blocks of fewer rows flag it directly)
        assert ab["recomputed"] and ab["attempts"] == ["confirm"]
    assert np.abs(out - ref).max() <= 1e-5 * big  # the fault is not in what came back


@pytest.mark.parametrize("kind", ["const", "normal"])
def test_a_confirmed_clean_product_reports_nothing(rng, monkeypatch, kind):
    # the confirming product of a clean one finds the same level, and nothing is reported:
    # with the trigger at zero every checked call is confirmed (constant data's systematic
    # roundoff lifts T to ~5-25 scale units on PoCL, under the real trigger; not on Intel's)
    from clgemm.guard import abft

    monkeypatch.setattr(abft, "LIFT_T", 0.0)
    monkeypatch.setattr(abft, "LIFT_OVER_FLOOR", 0.0)
    if kind == "const":
        A, B = np.full((1, 9000), 0.3, np.float32), np.full((9000, 300), 0.7, np.float32)
    else:
        A, B = rand(rng, (5, 3000)), rand(rng, (3000, 300))
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    ab = info.extra["abft"]
    assert ab["attempts"] == ["confirm"] and not ab["detected"] and not ab["recomputed"]
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err, kind)


@pytest.mark.parametrize("m,n,k", [(300, 250, 700), (1, 900, 2100), (96, 64, 4100)])
def test_a_fault_over_the_stated_floor_is_always_found(rng, m, n, k):
    # Info's floor_abs is a promise: a change of any one entry by more than it is found
    # (twice the largest block-column tolerance: the clean residual it adds to is within one)
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    _, info = clgemm.matmul(A, B, check=True, return_info=True)
    floor = info.extra["abft"]["floor_abs"]
    assert 0 < floor < np.inf
    cells = np.random.default_rng(11)
    for _ in range(8):
        i, j = int(cells.integers(m)), int(cells.integers(n))
        sign = float(cells.choice([-1.0, 1.0]))
        with faults.inject(result=faults.add(sign * 1.02 * floor), cells=[(i, j)]):
            _, got = clgemm.matmul(A, B, check=True, return_info=True)
        assert got.extra["abft"]["detected"], (i, j, floor)


def test_checked_kernel_time_counts_every_command_of_the_product(rng, monkeypatch):
    """A product of several commands (the direct form's packs and column blocks, on a CPU
    device) reports, checked, the time of all of them, as the unchecked call does: the
    guard once counted only the last (a quarter of the product at 2048 on PoCL)."""
    from clgemm.guard import abft as G

    seen = []
    real = G.enqueue_product

    def spy(*args, **kw):
        events = real(*args, **kw)
        seen.append(events)
        return events

    monkeypatch.setattr(G, "enqueue_product", spy)
    A, B = rand(rng, (40, 24)), rand(rng, (24, 1100))  # over N_CHUNK = 1024 columns
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    assert_close_to_reference(out, *reference(A, B))
    rt = get_runtime()
    if not seen or rt.device.type == "GPU":
        pytest.skip("the device's float32 product is one kernel here")
    assert len(seen) == 1 and len(seen[0]) > 1, seen
    assert info.kernel_s == sum(rt.seconds(e) for e in seen[0])


def test_runtime_finish_waits_for_the_user_queue():
    """Benchmarks wait on `Runtime.finish()`: a call on device arrays runs on the user queue,
    which `rt.queue.finish()` alone does not wait for."""
    import pyopencl as cl

    rt = get_runtime()
    gate = cl.UserEvent(rt.context)
    held = cl.enqueue_marker(rt.user_queue, wait_for=[gate])
    rt.queue.finish()
    assert held.command_execution_status != cl.command_execution_status.COMPLETE
    gate.set_status(cl.command_execution_status.COMPLETE)
    rt.finish()
    assert held.command_execution_status == cl.command_execution_status.COMPLETE


@pytest.mark.parametrize("m,n,bs,tx", [
    (203, 131, 8, False),  # an edge strip of 3 columns, a partial last block
    (64, 48, 16, False),   # whole strips
    (37, 50, 4, True),     # X stored transposed
])
def test_result_block_sums_match_float64(rng, abft_form, m, n, bs, tx):
    """C's block-column sums S, sums of squares (or the scaled norm with float sums) and sums
    of |x|, as the judges read them, against numpy in float64."""
    import pyopencl as cl

    from clgemm.guard import abft
    from clgemm.guard.device import View
    from clgemm.operands import upload

    rt = get_runtime()
    gd = abft_form
    X = rand(rng, (n, m) if tx else (m, n))
    x_op, _ = upload(rt, "C", X, tx)
    ck = abft.BlockCheck(gd, m, n, 16, bs)
    ck._cblock(View.of(x_op, m, n), ck.Sc, ck.Qc, ck.Sac)
    got = {}
    for name, buf in (("S", ck.Sc), ("Q", ck.Qc), ("Sa", ck.Sac)):
        got[name] = np.empty(ck.nb * n, gd.rdtype)
        cl.enqueue_copy(rt.queue, got[name], buf, is_blocking=True)
    x = (X.T if tx else X).astype(np.float64)
    starts = np.arange(0, m, bs)
    rel = 1e-12 if gd.fp64 else 1e-5
    np.testing.assert_allclose(got["S"].reshape(ck.nb, n), np.add.reduceat(x, starts, axis=0),
                               rtol=rel * bs, atol=rel * bs * np.abs(x).max())
    squares = np.add.reduceat(x**2, starts, axis=0)
    np.testing.assert_allclose(got["Q"].reshape(ck.nb, n),
                               squares if gd.fp64 else np.sqrt(squares), rtol=rel * bs)
    np.testing.assert_allclose(got["Sa"].reshape(ck.nb, n),
                               np.add.reduceat(np.abs(x), starts, axis=0), rtol=rel * bs)


def test_the_campaign_artifacts_name_their_environment(tmp_path, monkeypatch):
    """abft-campaign and approx-campaign artifacts carry the harness's environment (device,
    driver, the code's commit, the command line), as every other artifact does: the GPU
    campaigns' records had only the device's name."""
    import json

    from clgemm.cli import main

    monkeypatch.setenv("CLGEMM_CODE_COMMIT", "feedc0de" * 5)
    out = tmp_path / "abft.json"
    assert main(["abft-campaign", "--clean", "2", "--faults", "0", "--max-dim", "48",
                 "-o", str(out)]) == 0
    env = json.loads(out.read_text())["env"]
    assert env["code"]["commit"] == "feedc0de" * 5 and env["device"]["name"]
    out = tmp_path / "approx.json"
    assert main(["approx-campaign", "--sizes", "64", "--budgets", "0.1", "--reps", "1",
                 "-o", str(out)]) == 0
    assert json.loads(out.read_text())["env"]["code"]["commit"] == "feedc0de" * 5


def test_centres_and_their_zeros_counted_once(rng, monkeypatch):
    """abft_centre: each block row's centre sits in the fine sub-bin of its ratios' median
    (within 1e-3 of it), the count of centred ratios exactly zero is the number equal to
    their row's centre, and every other finite ratio is in the centred histogram. (PoCL ran
    the kernel's last one-work-item block on all 256 after its branch barriers and counted
    each row's zeros 256 times.)"""
    import pyopencl as cl

    from clgemm.guard import abft

    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "128")
    monkeypatch.setattr(abft, "GAUSS_ON_FLOAT_SUMS", True)  # the rule on float-sum devices too
    m, n, k = 512, 600, 520
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    C = (A @ B).astype(np.float32)  # numpy's own float32 roundoff, not ours
    rt = get_runtime()
    keep: list = []
    views = [abft._as_view(rt, name, x, False, keep) for name, x in (("A", A), ("B", B), ("C", C))]
    _, s = abft.check_views(rt, *views, 1.0, 0.0, None, 4.0, locate_cells=False, centred=True)
    ck = abft.block_check(guard_device(rt), m, n, k)

    def read(buf, count, dtype):
        out = np.empty(count, dtype)
        cl.enqueue_copy(rt.queue, out, buf, is_blocking=True)
        return out

    rd = guard_device(rt).rdtype
    R, SC, RG = (read(x, ck.nb * n, rd).reshape(ck.nb, n) for x in (ck.R, ck.SC, ck.RG))
    centres = read(ck.MC, ck.nb, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(R == 0, 0.0, R / SC).astype(np.float32)
    z[~np.isfinite(RG) | ~(np.abs(z) <= 3.0e38)] = np.nan
    assert ck.nb == 4 and np.isfinite(centres).all()
    zeros = 0
    for b in range(ck.nb):
        row = np.sort(z[b][np.isfinite(z[b])])
        median = row[(row.size + 1) // 2 - 1]
        assert abs(centres[b] - median) <= 1e-3 * abs(median), (b, centres[b], median)
        zeros += int((row == centres[b]).sum())
    # a centre alone in its sub-bin is that ratio: almost every row has such a zero
    assert s["centred_zero"] == zeros >= 1
    assert int(s["hist_centred"].sum()) + zeros == int(np.isfinite(z).sum())
