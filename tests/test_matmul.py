"""matmul against a float64 reference: shapes, transposes, layouts, alpha/beta, schedules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import clgemm
from clgemm import Schedule
from conftest import assert_close_to_reference, rand, reference, require_valid

SHAPES = [  # (M, N, K): odd, tiny, tall-skinny, no multiple of any tile
    (1, 1, 1), (7, 7, 7), (1, 129, 7), (129, 1, 65), (33, 65, 129), (200, 17, 301),
    (4097, 3, 5), (5, 4097, 3), (2, 3, 4097), (130, 131, 1), (96, 64, 128),
]


def _operands(rng, m, n, k, trans_a, trans_b, scale=1.0):
    A = rand(rng, (k, m) if trans_a else (m, k), scale)
    B = rand(rng, (n, k) if trans_b else (k, n), scale)
    return A, B


def _poisoned(m, n):
    return np.full((m, n), np.nan, np.float32)


def _direct_schedule():
    return Schedule.from_key("wm16-wn4-om6-on16-tk16-va1-vb1-vc1-sa0-sb0-uk4-db0-st0-lp0-ac256-dr1")


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_shapes_direct_schedule(rng, m, n, k):
    require_valid(_direct_schedule())
    A, B = _operands(rng, m, n, k, False, False)
    out = clgemm.matmul(A, B, C=_poisoned(m, n), schedule=_direct_schedule())
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err, f"direct at {m}x{n}x{k}")


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_shapes_default_schedule(rng, m, n, k):
    A, B = _operands(rng, m, n, k, False, False)
    C = _poisoned(m, n)
    out = clgemm.matmul(A, B, C=C)
    assert out is C
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err, f"at {m}x{n}x{k}")


@pytest.mark.parametrize("direct", [False, True], ids=["table", "direct"])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", [(37, 53, 71), (128, 64, 16), (1, 9, 130)])
def test_transposes(rng, trans_a, trans_b, m, n, k, direct):
    if direct:
        require_valid(_direct_schedule())
    A, B = _operands(rng, m, n, k, trans_a, trans_b)
    out = clgemm.matmul(A, B, C=_poisoned(m, n), trans_a=trans_a, trans_b=trans_b,
                        schedule=_direct_schedule() if direct else None)
    ref, np_err = reference(A, B, trans_a=trans_a, trans_b=trans_b)
    assert_close_to_reference(out, ref, np_err, f"trans={trans_a},{trans_b}")


@pytest.mark.parametrize("direct", [False, True], ids=["table", "direct"])
@pytest.mark.parametrize("m,n,k", [(33, 20, 150), (40, 30, 60), (37, 29, 45)])
def test_small_k_with_b_transposed_holds_the_exact_contract(rng, m, n, k, direct):
    # numpy sums a small product with B stored transposed dot-style, 2-3x more accurately
    # than stored plainly; one chunk of acc_chunk (a running sum) landed at 2.1-2.7x its
    # error here. The chunk is now at most an eighth of K.
    if direct:
        require_valid(_direct_schedule())
    for _ in range(6):
        A, B = _operands(rng, m, n, k, False, True)
        out = clgemm.matmul(A, B, C=_poisoned(m, n), trans_b=True,
                            schedule=_direct_schedule() if direct else None)
        ref, np_err = reference(A, B, trans_b=True)
        assert_close_to_reference(out, ref, np_err, f"{m}x{n}x{k} NT")


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.7, -0.3), (0.0, 1.0), (-2.0, 2.5)])
def test_alpha_beta(rng, alpha, beta):
    m, n, k = 45, 77, 93
    A, B = _operands(rng, m, n, k, False, False)
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=alpha, beta=beta)
    ref, np_err = reference(A, B, C0, alpha, beta)
    assert_close_to_reference(out, ref, np_err, f"alpha={alpha} beta={beta}")


def test_beta_zero_ignores_nan_in_c(rng):
    A, B = _operands(rng, 20, 30, 40, False, False)
    out = clgemm.matmul(A, B, C=_poisoned(20, 30), beta=0.0)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err)


def test_k_zero_scales_c(rng):
    C0 = rand(rng, (6, 9))
    out = clgemm.matmul(np.empty((6, 0), np.float32), np.empty((0, 9), np.float32),
                        C=C0.copy(), alpha=3.0, beta=0.25)
    np.testing.assert_array_equal(out, np.float32(0.25) * C0)
    zero = clgemm.matmul(np.empty((6, 0), np.float32), np.empty((0, 9), np.float32))
    np.testing.assert_array_equal(zero, np.zeros((6, 9), np.float32))


def test_empty_output():
    out = clgemm.matmul(np.ones((0, 4), np.float32), np.ones((4, 5), np.float32))
    assert out.shape == (0, 5)


DIRECT = Schedule.from_key("wm8-wn4-om2-on4-tk4-va1-vb1-vc1-sa0-sb0-uk1-db0-st0-lp0-ac64-dr1")


@pytest.mark.parametrize("schedule", [None, DIRECT], ids=["table", "direct"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_leading_dimensions_and_column_major(rng, trans_a, trans_b, schedule):
    require_valid(schedule)
    m, n, k = 61, 43, 87
    # Padded views (leading dimension > width), Fortran-ordered and plain operands.
    big_a = rand(rng, (k + 3, m + 5) if trans_a else (m + 3, k + 5))
    A = big_a[1:1 + (k if trans_a else m), 2:2 + (m if trans_a else k)]
    B = np.asfortranarray(rand(rng, (n, k) if trans_b else (k, n)))
    big_c = np.full((m + 2, n + 7), np.nan, np.float32)
    C = big_c[1:1 + m, 3:3 + n]
    out = clgemm.matmul(A, B, C=C, trans_a=trans_a, trans_b=trans_b, schedule=schedule)
    ref, np_err = reference(A, B, trans_a=trans_a, trans_b=trans_b)
    assert_close_to_reference(out, ref, np_err)
    assert np.isnan(big_c[0]).all() and np.isnan(big_c[:, :3]).all(), "wrote outside C's view"


def test_non_unit_strides_both_ways(rng):
    base = rand(rng, (80, 90))
    A = base[::2, ::3]  # neither rows nor columns unit-stride: copied, still right
    B = rand(rng, (A.shape[1], 11))
    out = clgemm.matmul(A, B)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err)


# Schedules that exercise every code path of the generator: strided and contiguous mapping,
# unstaged operands, double buffering, scalar and vector loads and stores, padding, unrolling.
SCHEDULES = [
    Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
             stage_a=1, stage_b=1, unroll_k=1, double_buffer=0, strided=1, local_pad=1),
    Schedule(wg_m=16, wg_n=8, out_m=4, out_n=8, tile_k=16, vec_a=4, vec_b=2, vec_c=4,
             stage_a=1, stage_b=1, unroll_k=8, double_buffer=1, strided=0, local_pad=4),
    Schedule(wg_m=8, wg_n=16, out_m=8, out_n=4, tile_k=8, vec_a=2, vec_b=4, vec_c=2,
             stage_a=1, stage_b=1, unroll_k=2, double_buffer=1, strided=0, local_pad=0),
    Schedule(wg_m=4, wg_n=16, out_m=4, out_n=2, tile_k=4, vec_a=1, vec_b=1, vec_c=1,
             stage_a=0, stage_b=1, unroll_k=4, double_buffer=0, strided=1, local_pad=0),
    Schedule(wg_m=8, wg_n=4, out_m=2, out_n=4, tile_k=16, vec_a=4, vec_b=1, vec_c=1,
             stage_a=1, stage_b=0, unroll_k=4, double_buffer=1, strided=0, local_pad=1),
    Schedule(wg_m=8, wg_n=8, out_m=1, out_n=1, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
             stage_a=0, stage_b=0, unroll_k=8, double_buffer=0, strided=0, local_pad=0,
             acc_chunk=64),
    Schedule(wg_m=16, wg_n=16, out_m=8, out_n=8, tile_k=16, vec_a=4, vec_b=4, vec_c=1,
             stage_a=1, stage_b=1, unroll_k=4, double_buffer=1, strided=1, local_pad=1),
    # The direct (CPU) form: 6 x 16 micro-tiles (float16 rows), 4 x 8, 2 x 4 and scalar ones;
    # chunks of 64 over K = 67 leave a remainder inside and outside the unrolled K steps.
    *(Schedule.from_key(f"wm{wm}-wn{wn}-om{om}-on{on}-tk{tk}-va1-vb1-vc1-sa0-sb0-uk{uk}-db0"
                        f"-st0-lp0-ac{ac}-dr1")
      for wm, wn, om, on, tk, uk, ac in [(16, 4, 6, 16, 16, 4, 64), (4, 8, 4, 8, 8, 2, 128),
                                         (8, 4, 2, 4, 4, 1, 64), (4, 4, 1, 1, 32, 8, 64)]),
]


# Each operand's code is generated from its own transpose flag alone (kernels/gemm.py; checked
# by test_mixed_layouts_add_no_code), so NN and TT together put every schedule's A and B
# through both storage orders; the mixed layouts run in test_transposes (a third layout here
# cost 11 more compiles).
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.key())
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_schedules(rng, schedule, trans_a, trans_b):
    require_valid(schedule)
    m, n, k = 77, 101, 67
    A, B = _operands(rng, m, n, k, trans_a, trans_b, scale=3.0)
    C0 = rand(rng, (m, n))
    out = clgemm.matmul(A, B, C=C0.copy(), alpha=1.25, beta=-0.5, trans_a=trans_a,
                        trans_b=trans_b, schedule=schedule)
    ref, np_err = reference(A, B, C0, 1.25, -0.5, trans_a, trans_b)
    assert_close_to_reference(out, ref, np_err, schedule.key())


def test_mixed_layouts_add_no_code():
    """Every line of a mixed-layout (NT, TN) kernel is a line of the NN or the TT kernel of the
    same schedule: what test_schedules leaves out runs no code that it does not run."""
    from clgemm.kernels.gemm import Layout, render

    for s in SCHEDULES:
        src = {t: render(s, Layout(*t)).splitlines()[1:]  # after the header comment
               for t in itertools.product([False, True], repeat=2)}
        covered = set(src[False, False]) | set(src[True, True])
        for mixed in ((False, True), (True, False)):
            new = [line for line in src[mixed] if line not in covered]
            assert not new, (f"{s.key()} {mixed}: lines NN and TT lack (test_schedules needs "
                             f"this layout back): {new[:3]}")


@pytest.mark.parametrize("direct", [0, 1])
@pytest.mark.parametrize("acc_chunk", [64, 128, 512])
def test_blocked_accumulation(rng, acc_chunk, direct):
    """Chunked partial sums fold into the total at every chunk boundary and at the end."""
    if direct:
        s = Schedule(wg_m=8, wg_n=4, out_m=6, out_n=16, tile_k=16, acc_chunk=acc_chunk, vec_a=1,
                     vec_b=1, vec_c=1, stage_a=0, stage_b=0, direct=1)
    else:
        s = Schedule(wg_m=8, wg_n=8, out_m=4, out_n=4, tile_k=16, acc_chunk=acc_chunk,
                     double_buffer=acc_chunk == 128)
    require_valid(s)
    m, n, k = 70, 90, 1000  # e.g. 7 chunks of 128 and a remainder
    A, B = _operands(rng, m, n, k, False, False)
    out = clgemm.matmul(A, B, schedule=s)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err, s.key())


def test_error_does_not_move_between_runs(rng):
    """Same inputs, same kernel: bit-identical results (a moving error is a race)."""
    A, B = _operands(rng, 150, 130, 170, False, False)
    first = clgemm.matmul(A, B, schedule=SCHEDULES[1])
    for _ in range(3):
        np.testing.assert_array_equal(clgemm.matmul(A, B, schedule=SCHEDULES[1]), first)


def test_wide_scales(rng):
    for scale in (1e-20, 1e15):
        A, B = _operands(rng, 40, 50, 60, False, False, scale=scale)
        out = clgemm.matmul(A, B)
        ref, np_err = reference(A, B)
        assert_close_to_reference(out, ref, np_err, f"scale={scale}")


def test_info_reports_the_call(rng):
    A, B = _operands(rng, 64, 64, 64, False, False)
    _, info = clgemm.matmul(A, B, return_info=True)
    assert info.method == "exact" and info.shape == (64, 64, 64)
    assert info.kernel_s > 0 and info.total_s >= info.kernel_s
    assert Schedule.from_key(info.schedule)


def test_online_selector_path(rng):
    A, B = _operands(rng, 64, 48, 80, False, False)
    for _ in range(3):
        out, info = clgemm.matmul(A, B, selector="online", return_info=True)
        ref, np_err = reference(A, B)
        assert_close_to_reference(out, ref, np_err)
        assert info.extra["selector"] in ("exploit", "explore", "probe", "baseline", "fallback", "only")
    with pytest.raises(clgemm.ContractError):
        clgemm.matmul(A, B, selector="bandit")
