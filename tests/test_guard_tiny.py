"""check=True on tiny products (guard/elementwise.py): every injected fault above the guard's
floor found and repaired at shapes of 1..15 (odd) in each dimension, and no clean product of
any data kind of the guard campaign flagged. The floor of a cell of a tiny product is the
larger of 1e-5 max|C| and its float32 error bound (K + 4) u S_ij: a change within that bound
is a result a correct float32 GEMM may return (the soak's verification accepts it too)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import clgemm
from clgemm.guard import elementwise as EW
from clgemm.guard import faults
from clgemm.lab import guard_campaign as campaign

ODD = range(1, 16, 2)
SHAPES = list(itertools.product(ODD, ODD, ODD))  # 512 shapes, every one of 1..15 odd


def _case(rng, m, n, k, kind="normal"):
    ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
    A = campaign.gen(rng, kind, (k, m) if ta else (m, k))
    B = campaign.gen(rng, kind, (n, k) if tb else (k, n))
    beta = float(rng.choice([0.0, 1.0, -0.75]))
    C0 = campaign.gen(rng, kind, (m, n)) if beta else None
    alpha = float(rng.choice([1.0, -0.5, 3.0]))
    opa = (A.T if ta else A).astype(np.float64)
    opb = (B.T if tb else B).astype(np.float64)
    ref = alpha * opa @ opb + (beta * C0 if beta else 0.0)
    mag = abs(alpha) * np.abs(opa) @ np.abs(opb) + (abs(beta) * np.abs(C0) if beta else 0.0)
    return A, B, C0, alpha, beta, ta, tb, ref, mag


def _checked(A, B, C0, alpha, beta, ta, tb):
    C = None if C0 is None else C0.copy()
    return clgemm.matmul(A, B, C=C, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb,
                         check=True, return_info=True)


def _gamma(k: int) -> float:
    """The cell bound's factor on this device: twice as wide where the guard recomputes in
    float (no cl_khr_fp64: Rusticl), whose own error is as large as the product's (a fault
    between the two bounds is below that device's floor; on Rusticl the test failed about
    once in six runs when it took the double-recompute factor everywhere)."""
    from clgemm.guard.device import guard_device
    from clgemm.runtime import get_runtime

    return EW.gamma(k, guard_device(get_runtime()).fp64)


def _within_bound(out, ref, mag, k):
    """Every cell within the float32 error bound the guard judges by."""
    tol = _gamma(k) * mag + EW.tiny(k, 3.0)
    return bool(np.all(np.abs(out.astype(np.float64) - ref) <= tol))


def test_tiny_shapes_are_judged_cell_by_cell():
    assert all(EW.applies(m, n, k) for m, n, k in SHAPES)
    # every CPU soak product with a dimension <= 11 (records/cpu-pocl-amd-epyc/2026-12-06-soak)
    for shape in [(35, 7, 11), (61, 11, 3), (45, 5, 1), (261, 129, 1), (165, 1, 77),
                  (1, 64, 64), (73, 23, 7), (7, 13, 5), (39, 9, 377), (301, 3, 77)]:
        assert EW.applies(*shape), shape
    assert not EW.applies(256, 256, 256)


@pytest.mark.parametrize("model", ["rel_1e-5", "rel_1e-4", "nan", "inf", "bit_exponent",
                                   "accumulator"])
def test_tiny_faults_above_floor_found_and_repaired(rng, model):
    """Faults of 1.01e-5 max|C| (and larger, and non-finite) on 128 of the 512 odd shapes of
    1..15, at a random cell: every one found, and the returned result within the bound."""
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), 128, replace=False)]
    judged = below = 0
    for m, n, k in shapes:
        A, B, C0, alpha, beta, ta, tb, ref, mag = _case(rng, m, n, k)
        big = float(np.abs(ref).max())
        if big == 0.0:
            continue
        i, j = int(rng.integers(m)), int(rng.integers(n))
        floor = max(1e-5 * big, _gamma(k) * mag[i, j])
        sign = float(rng.choice([-1.0, 1.0]))
        if model == "accumulator":
            hook = {"accumulator_at": i * n + j}
            # the kernel's accumulator turns into -acc + 1: a change of alpha (2 acc - 1)
            acc = (ref[i, j] - (beta * C0[i, j] if beta else 0.0)) / alpha
            if abs(alpha * (2 * acc - 1)) <= floor:
                continue
        else:
            fn = {"rel_1e-5": faults.add(sign * 1.01e-5 * big),
                  "rel_1e-4": faults.add(sign * 1.01e-4 * big),
                  "nan": faults.set_value(np.nan), "inf": faults.set_value(sign * np.inf),
                  "bit_exponent": faults.bit_flip([30])}[model]
            hook = {"result": fn, "cells": [(i, j)]}
            hit = faults.corrupt_host(ref.astype(np.float32), [(i, j)], fn)[i, j]
            if np.isfinite(hit) and abs(float(hit) - ref[i, j]) <= floor:
                below += 1  # within the cell's roundoff bound: not a fault any rule can see
                continue
        judged += 1
        with faults.inject(**hook):
            out, info = _checked(A, B, C0, alpha, beta, ta, tb)
        v = info.extra["abft"]
        case = (m, n, k, ta, tb, alpha, beta, i, j)
        assert v["detected"], case
        assert v["ok"] and v["cellwise"], case
        assert _within_bound(out, ref, mag, k), case
    assert judged >= 64 and below <= judged // 4, (judged, below)


def test_tiny_persistent_fault_raises(rng):
    """A fault that comes back after every repair: FaultError, never a wrong result."""
    A, B, C0, alpha, beta, ta, tb, ref, _ = _case(rng, 7, 5, 3)
    big = float(np.abs(ref).max())
    with faults.inject(result=faults.add(1e-3 * big), cells=[(3, 2)], persistent=True):
        with pytest.raises(clgemm.FaultError):
            _checked(A, B, C0, alpha, beta, ta, tb)


@pytest.mark.parametrize("kind", campaign.KINDS)
def test_tiny_clean_products_never_flagged(rng, kind):
    """0 false positives over clean random products of every data kind the guard campaign
    uses (80 a kind, shapes of 1..16 in each dimension, random transposes, alpha, beta)."""
    for _ in range(80):
        m, n, k = (int(x) for x in rng.integers(1, 17, 3))
        A, B, C0, alpha, beta, ta, tb, ref, mag = _case(rng, m, n, k, kind)
        out, info = _checked(A, B, C0, alpha, beta, ta, tb)
        v = info.extra["abft"]
        assert v["cellwise"] and not v["detected"] and v["cells_off"] == 0, (
            kind, m, n, k, ta, tb, alpha, beta, v)
        assert _within_bound(out, ref, mag, k), (kind, m, n, k)


def test_tiny_nonfinite_operands_not_flagged(rng):
    """An Inf or NaN operand: the result's non-finite cells are what IEEE gives, not faults."""
    A, B = campaign.gen(rng, "normal", (9, 5)), campaign.gen(rng, "normal", (5, 7))
    A[2, 1], B[3, 4] = np.inf, np.nan
    out, info = clgemm.matmul(A, B, check=True, return_info=True)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    assert not info.extra["abft"]["cells_off"]
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.array_equal(np.isinf(out), np.isinf(ref))


def test_verify_judges_a_tiny_product_cell_by_cell(rng):
    """clgemm.abft.verify, on a product computed elsewhere, applies the same cell-by-cell
    rule as check=True: a cell moved past its float32 bound (and 1e-5 max|C|) is flagged,
    the clean product is not."""
    flagged = 0
    for m, n, k in [(5, 7, 9), (13, 3, 11), (9, 15, 1), (1, 11, 13)]:
        A, B, C0, alpha, beta, ta, tb, ref, mag = _case(rng, m, n, k)
        big = float(np.abs(ref).max())
        C = ref.astype(np.float32)
        kw = dict(alpha=alpha, beta=beta, C_old=C0, trans_a=ta, trans_b=tb)
        assert clgemm.abft.verify(A, B, C, **kw).ok, (m, n, k)
        i, j = int(rng.integers(m)), int(rng.integers(n))
        floor = max(1e-5 * big, _gamma(k) * mag[i, j])
        bad = C.copy()
        bad[i, j] = np.float32(ref[i, j] + 3.0 * floor)
        v = clgemm.abft.verify(A, B, bad, **kw)
        assert not v.ok and v.cellwise and (i, j) in {(r, c) for r in v.rows for c in v.cols}
        flagged += 1
    assert flagged == 4
