"""The Ozaki int8 lane (kernels/ozaki.py, ozaki.py): schedule space, generated PTX structure,
the host model of the split, and on PoCL the generated kernels through the emulated dialect
(the same fragment loads, swizzle, pipeline, chunking and recombination): digit planes
bit-exact against the host model, results against float64 and numpy float32's error."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyopencl as cl
import pytest

from clgemm.lanes import ozaki
from clgemm.errors import ScheduleError
from clgemm.kernels.ozaki import OzDialect, OzSchedule, render_product, render_split, violations
from clgemm.operands import Operand
from clgemm.runtime import get_runtime

ROOT = Path(__file__).resolve().parents[1]
EMU = OzDialect(emulate=True)
SMALL = OzSchedule(slices=4, levels=4, block_m=32, block_n=32, block_k=32, warps_m=1, warps_n=1,
                   stages=2, raster=1)


def _has_fp64() -> bool:
    return "cl_khr_fp64" in get_runtime().cl_device.extensions


# the lane's split and recombination run in double: a device without it (Rusticl on llvmpipe)
# is never offered the lane, and its emulated kernels cannot be built there
needs_fp64 = pytest.mark.skipif(not _has_fp64(), reason="the device has no cl_khr_fp64")


def test_schedule_key_and_space():
    for s in (ozaki.DEFAULT_SCHEDULE, SMALL, ozaki.PROBE_SCHEDULE):
        assert OzSchedule.from_key(s.key()) == s
        assert violations(s) == [], s.key()
    assert SMALL.products == 10 and replace(SMALL, levels=5).products == 13
    assert replace(SMALL, slices=3, levels=3).products == 6
    assert SMALL.pairs()[:3] == [(1, 1), (1, 2), (2, 1)]
    # int32 exactness: pairs per level * K * 64^2 < 2^31
    assert SMALL.k_limit() * 4 * 64**2 < 2**31 and (SMALL.k_limit() + 64) * 4 * 64**2 >= 2**31
    assert "local memory" in violations(OzSchedule(block_m=128, block_n=128, block_k=32,
                                                   warps_m=4, warps_n=4, stages=2))
    assert "registers" in violations(OzSchedule(block_m=128, block_n=64, warps_m=2, warps_n=2,
                                                stages=2))
    assert "block_k is 32, 64 or 128" in violations(replace(SMALL, block_k=16))
    assert "levels in 1..2*slices-1" in violations(replace(SMALL, levels=8))
    with pytest.raises(ScheduleError):
        OzSchedule.from_key("tc-3xtf32-b1x1x1-w1x1-s2-f1-a1-r1")
    with pytest.raises(ScheduleError):
        render_product(replace(SMALL, block_m=48))


def test_generated_ptx_structure():
    s = ozaki.DEFAULT_SCHEDULE
    src = render_product(s)
    assert "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32" in src
    assert "cp.async.cg.shared.global [%0], [%1], 16;" in src and "cp.async.wait_group" in src
    assert "asm volatile(\"mma" not in src and "#define MMA_VOLATILE volatile" in src
    assert "#define MMA_VOLATILE \n" in render_product(s, OzDialect(volatile_mma=False))
    assert "cl_khr_fp64" in src and f"#define NT {s.threads}" in src
    calls = re.findall(r"^\s+IMMA\((.*)\);", src, re.M)
    assert len(calls) == s.products  # one mma per kept pair (t, u) per 16x8 tile per k32
    levels = [int(c.split("]")[0].split("[")[1]) for c in calls]
    assert sorted(set(levels)) == list(range(s.levels))
    # no pragma inside a macro body (NVIDIA's and PoCL's front ends reject or ignore it)
    for block in re.findall(r"#define[^\n]*\\\n(?:[^\n]*\\\n)*[^\n]*", src):
        assert "#pragma" not in block
    split = render_split(4, kcont_a=True, kcont_b=False)
    assert "clgemm_oz_scale" in split and "clgemm_oz_split" in split and "rint(r)" in split
    emu = render_product(s, EMU)
    assert "mma.sync" not in emu and "cp.async" not in emu and "IMMA_X" in emu


def test_split_model():
    """Host model of the split: |digits| <= 64, x = 2^(e-6) sum d_t 2^(-7(t-1)) up to
    2^(e-7S) (half the last digit's weight: relative to the row's max, not to the element)."""
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((20, 50)) * np.exp2(rng.uniform(-30, 30, (20, 50)))).astype(np.float32)
    X[3] = 0.0
    X[4] = 0.0
    X[4, 7] = np.float32(2.0**-140)  # a subnormal row max
    for S in (3, 4, 5):
        d, e = ozaki.split_reference(X, S)
        assert np.abs(d.astype(int)).max() <= 64
        back = sum(d[t].astype(np.float64) * 2.0**(-7 * t) for t in range(S))
        back = np.ldexp(back, (e - 6)[:, None])
        bound = np.ldexp(np.ones(20), e - 7 * S)[:, None]
        assert (np.abs(back - X) <= bound * (1 + 1e-12)).all()
        assert e[3] == 0 and (d[:, 3] == 0).all()
    assert back[4, 7] == X[4, 7]


def _device_problem(rt, m, n, k, ta, tb, pad=0, off=0, seed=0, wide=False, C0=None):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    if wide:
        A = (A * np.exp2(rng.uniform(-20, 20, A.shape))).astype(np.float32)
        B = (B * np.exp2(rng.uniform(-20, 20, B.shape))).astype(np.float32)

    def store(X):
        r, c = X.shape
        ld = c + pad
        buf = np.zeros(off + r * ld + 4, np.float32)
        buf[off:off + r * ld].reshape(r, ld)[:, :c] = X
        mf = cl.mem_flags
        return Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=buf), off, ld, False)

    a, b = store(A)._replace(transposed=ta), store(B)._replace(transposed=tb)
    return A, B, a, b


def _run(rt, s, m, n, k, ta=False, tb=False, alpha=1.0, beta=0.0, pad=0, off=0, seed=0,
         wide=False, k_chunk=None):
    A, B, a, b = _device_problem(rt, m, n, k, ta, tb, pad, off, seed, wide)
    C0 = np.random.default_rng(seed + 1).standard_normal((m, n)).astype(np.float32)
    init = C0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    cb = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=init)
    flag = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                     hostbuf=np.zeros(1, np.int32))
    evs = ozaki.enqueue_product(rt, m, n, k, alpha, beta, a, b, Operand(cb, 0, n, False), s,
                                flag=flag, dialect=EMU, k_chunk=k_chunk)
    evs.wait()
    out = np.empty((m, n), np.float32)
    cl.enqueue_copy(rt.queue, out, cb)
    raised = np.empty(1, np.int32)
    cl.enqueue_copy(rt.queue, raised, flag)
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    ref = alpha * (opA.astype(np.float64) @ opB.astype(np.float64)) + beta * C0.astype(np.float64)
    f32 = np.float32(alpha) * (opA @ opB) + np.float32(beta) * C0
    assert np.isfinite(out).all(), "unwritten outputs"
    err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    np_err = float(np.linalg.norm(f32 - ref) / np.linalg.norm(ref))
    return dict(out=out, opA=opA, opB=opB, C0=C0, err=err, np_err=np_err, flag=int(raised[0]),
                evs=evs)


def _model(r, s, alpha=1.0, beta=0.0):
    return alpha * ozaki.product_reference(r["opA"], r["opB"], s) + beta * r["C0"].astype(np.float64)


CASES = [
    # one warp, 32x32 tile, alpha/beta, the default 10 pairs
    dict(s=SMALL, m=37, n=45, k=29, alpha=0.5, beta=-2.0),
    # both transposed, unaligned leading dimensions and offsets; 64-byte k-tiles (CPR=4
    # swizzle), two warps, three stages, several 16-byte chunks per thread, 13 pairs
    dict(s=OzSchedule(slices=4, levels=5, block_m=64, block_n=32, block_k=64, warps_m=2,
                      warps_n=1, stages=3, raster=1), m=70, n=33, k=150, ta=True, tb=True,
         pad=3, off=1),
    # three slices (6 pairs), 2 warps along N, rasterised groups, A transposed
    dict(s=OzSchedule(slices=3, levels=3, block_m=32, block_n=64, block_k=32, warps_m=1,
                      warps_n=2, stages=2, raster=2), m=75, n=70, k=41, ta=True),
]


@pytest.mark.parametrize("case", CASES, ids=["s4l4-NN-beta", "s4l5-TT-bk64-unaligned",
                                             "s3l3-TN-raster"])
@needs_fp64
def test_emulated_kernel(case):
    """The generated kernels with plain OpenCL C stand-ins for the PTX: the device result is
    the host model of the scheme (same split, same pairs, float64 recombination) rounded once
    to float32, and its error against float64 is numpy float32's or better for S = 4."""
    rt = get_runtime()
    case = dict(case)
    s = case.pop("s")
    r = _run(rt, s, **case)
    model = _model(r, s, case.get("alpha", 1.0), case.get("beta", 0.0))
    scale = np.abs(model).max()
    assert np.abs(r["out"] - model).max() <= 2.0**-23 * scale, "device != host model"
    assert r["flag"] == 0
    if s.slices >= 4:
        assert r["err"] <= r["np_err"], (r["err"], r["np_err"])
    else:  # 3 slices keep 20 bits below the row max: not float32-level (a known limit)
        assert r["np_err"] < r["err"] < 1e-4


@needs_fp64
def test_digit_planes_bit_exact():
    """The split kernel's int8 planes and row/column maxima equal the host model's
    (zero padding included), for a k-contiguous A and a k-strided B."""
    rt = get_runtime()
    s = SMALL
    m, n, k = 37, 45, 29
    r = _run(rt, s, m, n, k, alpha=0.5, beta=-2.0)  # the same kernel as the first case
    kern = ozaki.get_kernel(rt, s, False, False, EMU)
    ws = kern.workspace(m, n, k)
    a8 = np.empty((s.slices, ws.mp, ws.kp), np.int8)
    b8 = np.empty((s.slices, ws.np_, ws.kp), np.int8)
    amax, bmax = np.empty(ws.mp, np.uint32), np.empty(ws.np_, np.uint32)
    for host, dev in ((a8, ws.a8), (b8, ws.b8), (amax, ws.amax), (bmax, ws.bmax)):
        cl.enqueue_copy(rt.queue, host, dev)
    for planes, mx, X in ((a8, amax, r["opA"]), (b8, bmax, r["opB"].T)):
        d, e = ozaki.split_reference(np.ascontiguousarray(X), s.slices)
        rows = X.shape[0]
        assert (planes[:, :rows, :k] == d).all()
        assert not planes[:, rows:].any() and not planes[:, :, k:].any()
        assert (mx[:rows] == np.abs(X).max(axis=1).view(np.uint32)).all()


@needs_fp64
def test_emulated_k_chunks_and_wide_exponents():
    """K cut into chunks (each chunk scaled on its own, beta folded once), and entries scaled
    by 2^U(-20,20): the row-wise scale loses the small entries' low bits. The Frobenius error
    stays within a few times numpy's (measured ~1.6x at 512 on the host model); printed."""
    rt = get_runtime()
    s = SMALL
    ozaki.get_kernel(rt, s, False, True, EMU).slab_min = 32  # two K slabs in the scale kernel
    r = _run(rt, s, 37, 45, 150, tb=True, beta=0.5, k_chunk=64, seed=3)
    assert len(r["evs"].product) == 3
    assert ozaki.get_kernel(rt, s, False, True, EMU).workspace(37, 45, 64).nslab == 2
    assert r["err"] <= r["np_err"]
    w = _run(rt, s, 37, 45, 29, wide=True, seed=11)
    print(f"wide exponents: Ozaki {w['err']:.2e}, numpy {w['np_err']:.2e}")
    assert np.abs(w["out"] - _model(w, s)).max() <= 2.0**-23 * np.abs(_model(w, s)).max()
    assert w["err"] <= 4.0 * w["np_err"]
    # elementwise: the smallest outputs of a wide-exponent product lose relative accuracy
    ref = w["opA"].astype(np.float64) @ w["opB"].astype(np.float64)
    rel = np.abs(w["out"] - ref) / np.abs(ref)
    print(f"elementwise relative error: median {np.median(rel):.1e}, max {rel.max():.1e}")


@needs_fp64
def test_edges_zero_k_and_nonfinite(monkeypatch):
    rt = get_runtime()
    monkeypatch.setenv("CLGEMM_TC_EMULATE", "1")
    A = np.ones((5, 0), np.float32)
    B = np.ones((0, 7), np.float32)
    C = np.full((5, 7), 3.0, np.float32)
    out, _ = ozaki.ozaki_matmul(A, B, C=C, beta=2.0, schedule=SMALL, rt=rt)
    assert (out == 6.0).all()
    rng = np.random.default_rng(2)
    A = rng.standard_normal((37, 29)).astype(np.float32)
    B = rng.standard_normal((29, 45)).astype(np.float32)
    A[3, 5] = np.inf
    out, info = ozaki.ozaki_matmul(A, B, schedule=SMALL, rt=rt, fallback=False)
    assert not info["fallback"]
    out, info = ozaki.ozaki_matmul(A, B, schedule=SMALL, rt=rt)
    assert info["fallback"] and not np.isfinite(out[3]).all() and np.isfinite(out[4]).all()


def test_not_offered_on_pocl():
    rt = get_runtime()
    if rt.device.is_nvidia:
        pytest.skip("an NVIDIA device")
    sup = ozaki.ozaki_support(rt)
    assert sup.available is False and sup.reason
    with pytest.raises(Exception):
        ozaki.ozaki_matmul(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), rt=rt,
                           dialect=OzDialect())


def test_card_is_valid():
    from clgemm.lab.cards import load_card

    card, errors = load_card(ROOT / "research/breakthrough_lab/t4_approximate_gemm/ozaki/card.toml")
    assert errors == [] and card["track"] == "T4"


# ---- NVIDIA only ------------------------------------------------------------------------------
def _nvidia_runtime():
    from clgemm.device import devices

    for d in devices():
        if d.is_nvidia:
            rt = get_runtime(d)
            if ozaki.ozaki_support(rt).available:
                return rt
    pytest.skip("no NVIDIA device with the Ozaki lane")


@pytest.mark.parametrize("shape,ta,tb", [((1000, 1003, 777), False, False),
                                         ((999, 1001, 1003), True, True),
                                         ((3, 5, 7), False, True)])
def test_nvidia_accuracy(shape, ta, tb, rng):
    rt = _nvidia_runtime()
    m, n, k = shape
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    out, _ = ozaki.ozaki_matmul(A, B, C=C0, alpha=1.5, beta=0.5, trans_a=ta, trans_b=tb, rt=rt,
                                dialect=OzDialect())
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    ref = 1.5 * (opA.astype(np.float64) @ opB.astype(np.float64)) + 0.5 * C0
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    np_err = np.linalg.norm(np.float32(1.5) * (opA @ opB) + np.float32(0.5) * C0 - ref) / np.linalg.norm(ref)
    assert err <= 2.0 * np_err + 1e-7
