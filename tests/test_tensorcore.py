"""The tensor-core lane (kernels/tensorcore.py, tc.py): generator structure, schedule space,
capability detection (not offered on PoCL), the generated kernel's indexing checked on PoCL
through the emulated dialect, and, on an NVIDIA device only, accuracy at odd shapes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyopencl as cl
import pytest

from clgemm.errors import ScheduleError
from clgemm.kernels.tensorcore import (Dialect, TcLayout, TcSchedule, TcSearchSpace,
                                       render_tc)
from clgemm.operands import Operand
from clgemm.runtime import get_runtime
from clgemm.approx.tf32 import estimate_error
from clgemm.lanes.mma import DEFAULT_SCHEDULES, get_kernel, layout_for
from clgemm.lanes.probe import tensorcore_available, tensorcore_support
from clgemm.lanes.tc import tc_matmul
from conftest import nvidia_tc_runtime

ROOT = Path(__file__).resolve().parents[1]
NN = TcLayout(False, False, True, True)
SMALL = TcSchedule(block_m=16, block_n=16, block_k=8, warps_m=1, warps_n=1, stages=2,
                   mode="tf32", fold=0, async_copy=1, raster=1)


def test_generated_ptx_structure():
    s = DEFAULT_SCHEDULES["3xtf32"]
    src = render_tc(s, NN)
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in src
    assert "cvt.rna.tf32.f32" in src
    assert "cp.async.cg.shared.global" in src and "cp.async.commit_group" in src
    assert "cp.async.wait_group" in src
    assert "reqd_work_group_size(NT, 1, 1)" in src and f"#define NT {s.threads}" in src
    # three mma per 16x8 tile per k8 step, small terms first, each chain folded in float32
    calls = re.findall(r"^\s+MMA\((.*)\);", src, re.M)
    assert len(calls) == 3
    first = calls[0].split(", ")
    assert first[4].startswith("al[") and first[8].startswith("bh[")  # a_lo * b_hi first
    assert "acc[i][j][0] += d[0];" in src
    assert f"#define MT {s.mt}" in src and f"#define NTL {s.nt}" in src and "k8 < BK / 8" in src
    tf32 = render_tc(replace(s, mode="tf32", fold=0), NN)
    calls = re.findall(r"^\s+MMA\((.*)\);", tf32, re.M)
    assert len(calls) == 1 and "al[" not in calls[0] and calls[0].startswith("acc[i][j][0]")
    # unaligned storage copies elements (cp.async.ca, 4 bytes); register staging has no cp.async
    assert "CP4(As" in render_tc(s, TcLayout(True, True, False, False))
    reg = render_tc(replace(s, async_copy=0), NN)
    assert "CP16(As" not in reg and "float4 rA[A_CHUNKS]" in reg
    # compact: loops, not unrolled text (the gate's code-cost criterion counts these lines)
    from clgemm.kernels.tensorcore import source_lines
    assert source_lines(src) < 250


def test_schedule_key_and_space():
    space = TcSearchSpace(local_mem_bytes=49152, max_work_group_size=1024)
    for s in DEFAULT_SCHEDULES.values():
        assert TcSchedule.from_key(s.key()) == s
        assert space.is_valid(s), space.violations(s)
    assert "warp tile is whole 16x8 mma tiles" in space.violations(replace(SMALL, block_m=24))
    assert "register staging has two stages" in space.violations(replace(SMALL, async_copy=0, stages=3))
    big = TcSchedule(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=2)
    assert "local memory" in space.violations(big)
    assert "registers" in space.violations(replace(DEFAULT_SCHEDULES["3xtf32"], fold=2))
    # local memory is checked per layout when one is given (pads differ by layout)
    wide = TcSchedule(block_m=128, block_n=256, block_k=8, warps_m=2, warps_n=4, stages=3)
    assert space.is_valid(wide, NN) and not space.is_valid(wide)
    # convert and interior came later: named in a key only when set, so old keys still parse
    late = replace(DEFAULT_SCHEDULES["3xtf32"], convert=1, interior=1)
    assert late.key().endswith("-c1-i1") and TcSchedule.from_key(late.key()) == late
    assert "-c" not in DEFAULT_SCHEDULES["3xtf32"].key()
    assert TcSchedule.from_key("tc-tf32-b128x128x16-w2x2-s2-f0-a1-r1-i1").interior == 1
    # swizzle: no pads, so 128 x 128 x 16 fits three stages and 256 x 128 x 16 two in 48 KB
    for tile in (TcSchedule(128, 128, 16, 2, 2, 3, swizzle=1), TcSchedule(256, 128, 16, 4, 2, 2, swizzle=1)):
        assert tile.local_bytes() == 49152 and space.is_valid(tile)
        assert "local memory" in space.violations(replace(tile, swizzle=0))
    assert TcSchedule.from_key(tile.key()) == tile and tile.key().endswith("-x1")
    assert "swizzle needs" in " ".join(space.violations(replace(SMALL, swizzle=1)))
    assert "the interior copy is a cp.async path" in space.violations(
        replace(SMALL, async_copy=0, interior=1))
    with pytest.raises(ScheduleError):
        TcSchedule.from_key("tc-tf32-b128x128x16-w2x2-s2-f0-a1-r1-z1")
    with pytest.raises(ScheduleError):
        TcSchedule.from_key("tc-nonsense")
    with pytest.raises(ScheduleError):
        space.check(replace(SMALL, mode="fp16"))
    assert sum(1 for _ in TcSearchSpace(domains={**__import__("clgemm.kernels.tensorcore", fromlist=["x"]).TC_DOMAINS,
                                                 "mode": ("tf32",), "fold": (0,), "raster": (1,),
                                                 "stages": (2,), "async_copy": (1,)}).iter_valid()) > 10


def test_not_offered_on_pocl():
    rt = get_runtime()
    if rt.device.is_nvidia:
        pytest.skip("an NVIDIA device: see the tests below")
    support = tensorcore_support(rt)
    assert support.available is False and support.reason
    assert tensorcore_available(rt) is False
    from clgemm.approx import contract

    assert contract.tensor_cores_serve(rt, 1e-2) is False
    with pytest.raises(Exception):
        tc_matmul(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), rt=rt)


def _emulated(rt, s, m, n, k, ta, tb, alpha=1.0, beta=0.0, pad=0, off=0, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)

    def store(X):
        r, c = X.shape
        ld = c + pad
        buf = np.zeros(off + r * ld + 4, np.float32)
        buf[off:off + r * ld].reshape(r, ld)[:, :c] = X
        return cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=buf), ld

    (ab, lda), (bb, ldb) = store(A), store(B)
    a, b = Operand(ab, off, lda, ta), Operand(bb, off, ldb, tb)
    init = C0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
    cb = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=init)
    kern = get_kernel(rt, s, layout_for(a, b), Dialect(emulate=True))
    kern.enqueue(m, n, k, alpha, beta, a, b, Operand(cb, 0, n, False)).wait()
    out = np.empty((m, n), np.float32)
    cl.enqueue_copy(rt.queue, out, cb)
    ref = alpha * ((A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64))
    ref += beta * C0.astype(np.float64)
    f32 = np.float32(alpha) * ((A.T if ta else A) @ (B.T if tb else B)) + np.float32(beta) * C0
    assert np.isfinite(out).all(), "unwritten outputs"
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    return err, np.linalg.norm(f32 - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("case", [
    dict(s=SMALL, m=37, n=45, k=29, ta=False, tb=False, alpha=0.5, beta=-2.0),
    dict(s=SMALL, m=33, n=18, k=40, ta=True, tb=True, pad=3, off=1),
    dict(s=replace(SMALL, mode="3xtf32", fold=1, stages=3), m=20, n=35, k=41, ta=False, tb=True),
    # several copy chunks per thread, a 96-row tile, register staging, per-tile fold
    dict(s=TcSchedule(block_m=96, block_n=32, block_k=16, warps_m=2, warps_n=1, stages=2,
                      mode="3xtf32", fold=2, async_copy=0, raster=2), m=101, n=40, k=21,
         ta=False, tb=False, beta=0.5),
    dict(s=TcSchedule(block_m=32, block_n=64, block_k=16, warps_m=1, warps_n=2, stages=3,
                      mode="tf32", fold=0, async_copy=1, raster=1), m=40, n=70, k=21,
         ta=True, tb=False, pad=1),
    dict(s=TcSchedule(block_m=32, block_n=16, block_k=16, warps_m=2, warps_n=1, stages=2,
                      mode="3xtf32", fold=3, async_copy=1, raster=1), m=37, n=22, k=45,
         ta=False, tb=True, alpha=-1.5),
    # integer-rounded split / raw TF32 bits, and the unbounded copy of interior tiles: shapes
    # with whole interior tiles, edge tiles on both sides and a partial last k-tile
    dict(s=replace(SMALL, mode="3xtf32", fold=3, convert=1, interior=1, stages=3), m=53, n=41,
         k=61, ta=False, tb=False, alpha=0.75, beta=0.5),
    dict(s=replace(SMALL, convert=1, interior=1), m=48, n=50, k=67, ta=True, tb=True),
    dict(s=TcSchedule(block_m=32, block_n=32, block_k=16, warps_m=2, warps_n=1, stages=2,
                      mode="3xtf32", fold=1, convert=1, interior=1), m=70, n=66, k=35,
         ta=False, tb=True, pad=2, off=1),
    # swizzled (unpadded) local tiles: every layout, k-tiles of 8, 16 and 32, register staging
    dict(s=TcSchedule(block_m=64, block_n=32, block_k=16, warps_m=2, warps_n=1, stages=2,
                      mode="tf32", fold=0, swizzle=1), m=70, n=45, k=53, ta=False, tb=False),
    dict(s=TcSchedule(block_m=32, block_n=64, block_k=8, warps_m=1, warps_n=2, stages=3,
                      mode="3xtf32", fold=1, swizzle=1, interior=1), m=45, n=70, k=37,
         ta=True, tb=True, beta=0.5),
    dict(s=TcSchedule(block_m=32, block_n=32, block_k=32, warps_m=1, warps_n=1, stages=2,
                      mode="3xtf32", fold=3, swizzle=1, convert=1), m=41, n=39, k=77,
         ta=True, tb=False, pad=1, off=1),
    dict(s=TcSchedule(block_m=32, block_n=32, block_k=16, warps_m=1, warps_n=2, stages=2,
                      mode="tf32", fold=0, async_copy=0, swizzle=1), m=36, n=50, k=40,
         ta=False, tb=True),
], ids=["tf32-NN-beta", "tf32-TT-unaligned", "3xtf32-NT-3stages", "3xtf32-96rows-regs-fold2",
        "tf32-TN-chunks", "3xtf32-fold3-per-tile-chains", "3xtf32-convert-interior",
        "tf32-raw-bits-interior-TT", "3xtf32-interior-unaligned", "swizzle-NN-k16",
        "swizzle-TT-k8-3stages", "swizzle-TN-k32-unaligned", "swizzle-NT-registers"])
def test_emulated_kernel_indexing(case):
    """The generated kernel with plain OpenCL C stand-ins for the PTX (same layouts, same
    copies and pipeline): edges, transposes, offsets, alpha/beta."""
    rt = get_runtime()
    if rt.device.type == "GPU":
        # The stand-ins copy synchronously where cp.async's wait and a barrier order the real
        # pipeline: right where a work-group's warps run one after another (the CPU devices),
        # not on a GPU's concurrent warps (5 of these 13 cases wrote NaN or wrong outputs in
        # one H100 run at 38a2859 and none in another at d2f845b; not investigated further).
        # There the PTX kernel itself is tested (the tensor-core lane's tests).
        pytest.skip("the PTX emulation is for CPU devices (synchronous copies)")
    case = dict(case)
    s = case.pop("s")
    err, np_err = _emulated(rt, s, **case)
    if s.mode == "tf32":
        assert err < (4e-3 if s.convert else 2e-3)  # raw bits: the tensor core truncates
    else:
        assert err <= 2.0 * np_err + 1e-7


def test_raw_tf32_bits_are_truncated_by_the_emulated_tensor_core():
    """convert=1 hands the mma float32 bits; the hardware (and the emulation) reads only the
    top 19: a truncation, biased towards zero, so its error clearly exceeds rna's. An
    emulation that used all 32 bits would show float32's error here instead."""
    rt = get_runtime()
    rna, _ = _emulated(rt, SMALL, 64, 48, 256, False, False, seed=3)
    raw, np_err = _emulated(rt, replace(SMALL, convert=1), 64, 48, 256, False, False, seed=3)
    assert 1e-4 < rna < 1e-3 and raw > 1.5 * rna and raw < 4e-3 and np_err < 1e-5


def test_estimate_error_tracks_the_true_error(rng):
    A = rng.standard_normal((60, 50)).astype(np.float32)
    B = rng.standard_normal((50, 40)).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    noisy = exact + 1e-3 * np.linalg.norm(exact) / np.sqrt(exact.size) * rng.standard_normal(exact.shape)
    est = estimate_error(A, B, noisy, probes=8, seed=1)
    true = np.linalg.norm(noisy - exact) / np.linalg.norm(exact)
    assert 0.3 * true < est < 3 * true


def test_card_is_valid():
    from clgemm.lab.cards import load_card

    card, errors = load_card(ROOT / "research/breakthrough_lab/t4_approximate_gemm/tensorcore/card.toml")
    assert errors == [] and card["track"] == "T4"


# ---- NVIDIA only ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["tf32", "3xtf32"])
@pytest.mark.parametrize("shape,ta,tb", [((1000, 1003, 777), False, False),
                                         ((999, 1001, 1003), False, True),
                                         ((1001, 999, 1003), True, False),
                                         ((3, 5, 7), True, True)])
def test_nvidia_accuracy_odd_shapes(mode, shape, ta, tb, rng):
    rt = nvidia_tc_runtime()
    m, n, k = shape
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    out, _ = tc_matmul(A, B, C=C0, alpha=1.5, beta=0.5, trans_a=ta, trans_b=tb, mode=mode, rt=rt)
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    ref = 1.5 * (opA.astype(np.float64) @ opB.astype(np.float64)) + 0.5 * C0
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    np_err = np.linalg.norm(np.float32(1.5) * (opA @ opB) + np.float32(0.5) * C0 - ref) / np.linalg.norm(ref)
    if mode == "tf32":
        assert err < 2e-3
    elif m * n >= 256:
        assert err <= 2.0 * np_err
    else:
        assert err < 1e-6


def test_nvidia_3xtf32_wide_exponents(rng):
    rt = nvidia_tc_runtime()
    n = 512
    A = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-20, 20, (n, n)))).astype(np.float32)
    B = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-20, 20, (n, n)))).astype(np.float32)
    out, _ = tc_matmul(A, B, mode="3xtf32", rt=rt)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    np_err = np.linalg.norm(A @ B - ref) / np.linalg.norm(ref)
    assert err <= 2.0 * np_err


@pytest.mark.parametrize("shape,ta,tb", [((1000, 1003, 777), False, False),
                                         ((2048, 1536, 3000), False, True)])
def test_nvidia_rel_tol_judged_on_the_device(shape, ta, tb, rng):
    """rel_tol=1e-2 on the card's TF32 (mma.sync, and wgmma where it routes) through the
    plan's judged path: device arrays reporting nothing (no wait), then a reported call;
    TF32's error, within the budget, and the verdict read back."""
    import clgemm

    rt = nvidia_tc_runtime()
    m, n, k = shape
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    ref = 0.5 * ((A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64))
    a, b, c = (clgemm.to_device(x, device=rt.device) for x in (A, B, C0))
    assert clgemm.plan(m, n, k, trans_a=ta, trans_b=tb, rel_tol=1e-2, device=rt.device).judged
    out = clgemm.matmul(a, b, C=c, alpha=0.5, beta=-1.0, trans_a=ta, trans_b=tb, rel_tol=1e-2)
    want = ref - C0.astype(np.float64)
    err = np.linalg.norm(out.get() - want) / np.linalg.norm(want)
    assert 1e-6 < err <= 1e-2
    got, info = clgemm.matmul(a, b, alpha=0.5, trans_a=ta, trans_b=tb, rel_tol=1e-2,
                              return_info=True)
    assert info.method == "tf32" and 0 < info.error_estimate <= 1e-2, info.extra
    err = np.linalg.norm(got.get() - ref) / np.linalg.norm(ref)
    assert err <= info.error_estimate  # the estimate carries its safety factor


@pytest.mark.parametrize("shape,tb", [((512, 2048, 2048), True), ((1000, 700, 3001), False)])
def test_nvidia_split_3xtf32_lane(shape, tb, rng):
    """The 3xTF32 split-K lane's real PTX: within 2x numpy float32's error, with alpha and
    beta; an Inf operand propagates as numpy's float32 does."""
    from clgemm.lanes.splitk import TcSplitKLane, tc_slices
    from clgemm.lanes.tc import schedule_for

    rt = nvidia_tc_runtime()
    m, n, k = shape
    s = schedule_for(rt, "3xtf32", m, n, k)
    lane = TcSplitKLane(rt, s, max(2, tc_slices(rt, s, m, n, k)))
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    for poisoned in (False, True):
        if poisoned:
            A[3, k - 5] = np.inf
        bufs = [cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                          hostbuf=x) for x in (A, B, C0)]
        ops = (Operand(bufs[0], 0, k, False), Operand(bufs[1], 0, k if tb else n, tb),
               Operand(bufs[2], 0, n, False))
        lane.enqueue(m, n, k, 1.5, 0.5, *ops, rt.queue).wait()
        out = np.empty((m, n), np.float32)
        cl.enqueue_copy(rt.queue, out, bufs[2], is_blocking=True)
        opB = B.T if tb else B
        with np.errstate(invalid="ignore", over="ignore"):
            ref32 = np.float32(1.5) * (A @ opB) + np.float32(0.5) * C0
        assert np.array_equal(np.isnan(out), np.isnan(ref32))
        assert np.array_equal(np.isinf(out), np.isinf(ref32))
        fin = np.isfinite(ref32)
        ref = 1.5 * (A.astype(np.float64) @ opB.astype(np.float64)) + 0.5 * C0
        err = np.linalg.norm(out[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        np_err = np.linalg.norm(ref32[fin] - ref[fin]) / np.linalg.norm(ref[fin])
        assert err <= 2.0 * np_err, (poisoned, err, np_err)


def test_nvidia_batched_3xtf32_lane(rng):
    """3xTF32's batched kernel (real PTX): a prefill attention-shaped batch, B stored
    transposed and broadcast, alpha and beta, within 2x numpy float32's error per product."""
    from clgemm.lanes.tc import schedule_for
    from clgemm.lanes.tc_batched import TcBatchedLane

    rt = nvidia_tc_runtime()
    batch, m, n, k = 6, 509, 511, 131
    lane = TcBatchedLane(rt, schedule_for(rt, "3xtf32", m, n, k))
    A = rng.standard_normal((batch, m, k)).astype(np.float32)
    B = rng.standard_normal((n, k)).astype(np.float32)  # one B^T for every product
    C0 = rng.standard_normal((batch, m, n)).astype(np.float32)
    bufs = [cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                      hostbuf=x) for x in (A, B, C0)]
    ops = (Operand(bufs[0], 0, k, False), Operand(bufs[1], 0, k, True),
           Operand(bufs[2], 0, n, False))
    lane.enqueue_batched(batch, m, n, k, -0.5, 2.0, *ops, (m * k, 0, m * n), rt.queue).wait()
    out = np.empty_like(C0)
    cl.enqueue_copy(rt.queue, out, bufs[2], is_blocking=True)
    for i in range(batch):
        ref = -0.5 * (A[i].astype(np.float64) @ B.T.astype(np.float64)) + 2.0 * C0[i]
        ref32 = np.float32(-0.5) * (A[i] @ B.T) + np.float32(2.0) * C0[i]
        err = np.linalg.norm(out[i] - ref) / np.linalg.norm(ref)
        assert err <= 2.0 * np.linalg.norm(ref32 - ref) / np.linalg.norm(ref), i


# ---- the exact lane through matmul (emulated on PoCL) ----------------------------------------
@pytest.fixture
def promoted_lane(monkeypatch):
    """A device table whose tensor-core lane the gate promoted (3xTF32 serves rel_tol=None),
    with the PTX emulated so that the whole road runs on any OpenCL device."""
    from clgemm.select import table as table_mod

    from clgemm import route

    from conftest import emulate_tensor_cores

    rt = get_runtime()
    # the tests' products are small and odd: the rules that keep a product whose tiles leave
    # most compute units idle, or are mostly padding, off the lane
    # (test_exact_lane_needs_tiles_for_the_units, test_exact_lane_needs_full_tiles), and the
    # one that keeps a short K off it (test_exact_lane_needs_a_k_for_its_pipeline), are off
    monkeypatch.setattr(route, "MIN_TILES_PER_UNIT", 0.0)
    monkeypatch.setattr(route, "MIN_TILE_FILL", 0.0)
    monkeypatch.setattr(route, "TC_MIN_K", 0)
    base = table_mod.load_table(rt.device)
    s = replace(SMALL, mode="3xtf32", fold=1)
    lane = table_mod.TcLane({}, {"3xtf32": s}, exact="3xtf32",
                            evidence={"gate": "test"})
    promoted = replace(base, tensorcore=lane)
    monkeypatch.setattr(table_mod, "load_table", lambda device, path=None: promoted)
    emulate_tensor_cores(monkeypatch, rt)
    yield s


def promoted_lane_table():
    from clgemm.select import table as table_mod

    return table_mod.load_table(get_runtime().device).tensorcore


def test_exact_lane_serves_matmul_when_promoted(promoted_lane, rng, monkeypatch):
    import clgemm

    m, n, k = 37, 29, 21
    A = rng.standard_normal((k, m)).astype(np.float32)  # trans_a
    B = rng.standard_normal((k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    out, info = clgemm.matmul(A, B, C=C, alpha=0.75, beta=-0.5, trans_a=True, return_info=True)
    assert info.extra.get("lane") == "3xtf32" and info.schedule == promoted_lane.key()
    ref = 0.75 * (A.T.astype(np.float64) @ B.astype(np.float64)) - 0.5 * C0.astype(np.float64)
    f32 = np.float32(0.75) * (A.T @ B) - np.float32(0.5) * C0
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err <= 2.0 * np.linalg.norm(f32 - ref) / np.linalg.norm(ref) + 1e-7
    # below the lane's min_flops the float32 family serves (routes decided anew: a plan
    # keeps what it decided)
    from conftest import fresh_routes

    monkeypatch.setattr(promoted_lane_table(), "min_flops", 2.0 * m * n * k + 1)
    fresh_routes(monkeypatch, get_runtime())
    _, info = clgemm.matmul(A, B, trans_a=True, return_info=True)
    assert "lane" not in info.extra and not info.schedule.startswith("tc-")
    monkeypatch.setattr(promoted_lane_table(), "min_flops", 0.0)
    # the switch back to the float32 family, and an explicit schedule, bypass the lane
    monkeypatch.setenv("CLGEMM_EXACT_LANE", "fp32")
    fresh_routes(monkeypatch, get_runtime())
    _, info = clgemm.matmul(A, B, trans_a=True, return_info=True)
    assert "lane" not in info.extra and not info.schedule.startswith("tc-")


def test_exact_lane_needs_tiles_for_the_units(promoted_lane, rng, monkeypatch):
    """A promoted lane serves only products whose output tiles number at least
    MIN_TILES_PER_UNIT x the compute units; fewer go to the float32 family."""
    import clgemm
    from clgemm import route

    from conftest import fresh_routes

    rt = get_runtime()
    monkeypatch.setattr(route, "_stackable", lambda *args: 0)  # (a GPU table stacks 29 rows)
    m, n, k = 37, 29, 21
    tiles = -(-m // promoted_lane.block_m) * -(-n // promoted_lane.block_n)
    assert clgemm.plan(m, n, k).lane.name == "3xtf32-mma"
    monkeypatch.setattr(route, "MIN_TILES_PER_UNIT", (tiles + 1) / rt.device.compute_units)
    fresh_routes(monkeypatch, rt)
    assert clgemm.plan(m, n, k).lane.name == "fp32"
    monkeypatch.setattr(route, "MIN_TILES_PER_UNIT", tiles / rt.device.compute_units)
    fresh_routes(monkeypatch, rt)
    assert clgemm.plan(m, n, k).lane.name == "3xtf32-mma"


def test_exact_lane_needs_full_tiles(monkeypatch):
    """route.exact_schedule on a 132-unit device that promoted 3xTF32 (128 x 128 tiles):
    outputs 64 wide (ResNet-50's early im2col products: half of each tile padding) go to the
    float32 family, outputs that fill the tiles (or 7/8 of them) take the lane."""
    from types import SimpleNamespace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = SimpleNamespace(device=SimpleNamespace(compute_units=132))
    monkeypatch.setattr(route, "_min_flops", lambda rt: 5e9)
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: SimpleNamespace(exact_kernel=""))
    monkeypatch.setattr(route, "schedule_for", lambda rt, mode, m, n, k: DEFAULT_SCHEDULES[mode])
    assert DEFAULT_SCHEDULES["3xtf32"].block_n == 128
    assert route.exact_schedule(rt, 401408, 64, 147) is None
    assert route.exact_schedule(rt, 100352, 64, 576) is None
    assert route.exact_schedule(rt, 25088, 128, 1152) is not None
    assert route.exact_schedule(rt, 512, 4096, 4096) is not None
    assert route.exact_schedule(rt, 1400, 1400, 1400) is not None  # 11 x 11 tiles, 99% full
    assert route.exact_schedule(rt, 25088, 112, 4096) is not None  # 7/8 of each tile


def test_exact_lane_needs_a_k_for_its_pipeline(monkeypatch):
    """route.exact_schedule on a 132-unit device whose table floor is 3 GFLOP: ResNet-50's
    100352 x 256 x 64 (tiles full, K = 64) goes to the float32 family, 25088 x 512 x 128 (the
    same flops, K = route.TC_MIN_K) and 6272 x 1024 x 256 take the lane; under the floor the
    float32 family serves whatever the tiles."""
    from types import SimpleNamespace

    from clgemm import route
    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    rt = SimpleNamespace(device=SimpleNamespace(compute_units=132))
    monkeypatch.setattr(route, "_min_flops", lambda rt: 3e9)
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: SimpleNamespace(exact_kernel=""))
    monkeypatch.setattr(route, "schedule_for", lambda rt, mode, m, n, k: DEFAULT_SCHEDULES[mode])
    assert route.TC_MIN_K == 128
    assert route.exact_schedule(rt, 100352, 256, 64) is None
    assert route.exact_schedule(rt, 25088, 512, 128) is not None
    assert route.exact_schedule(rt, 6272, 1024, 256) is not None
    assert route.exact_schedule(rt, 1024, 1024, 1024) is None  # 64 tiles: under half the units
    assert route.exact_schedule(rt, 2048, 1024, 512) is None  # 2.1 GFLOP: under the floor


@pytest.mark.parametrize("bad", ["inf", "nan-all-ones"])
@pytest.mark.parametrize("convert", [0, 1])
def test_exact_lane_keeps_ieee_propagation(promoted_lane, rng, monkeypatch, convert, bad):
    """An Inf operand: the split makes NaN (Inf - Inf); the flag sends the product to the
    float32 family, with beta's old C kept, so the result is the IEEE one. With the integer
    rounding of convert=1, a NaN whose payload is all ones wraps hi to -0: lo keeps it NaN."""
    import clgemm
    from clgemm.lanes.fp32 import SAFE_SCHEDULE
    from clgemm.select import table as table_mod

    if convert:
        lane = replace(promoted_lane, convert=1, interior=1)
        monkeypatch.setitem(promoted_lane_table().defaults, "3xtf32", lane)
        assert table_mod.load_table(get_runtime().device).tensorcore.defaults["3xtf32"] == lane
    m, n, k = 19, 23, 17
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = np.abs(rng.standard_normal((k, n))).astype(np.float32) + 0.5
    A[3, 5] = np.inf if bad == "inf" else np.array(0x7FFFFFFF, np.uint32).view(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    out, info = clgemm.matmul(A, B, C=C0.copy(), beta=2.0, return_info=True)
    assert "lane_fallback" in info.extra
    expect = clgemm.matmul(A, B, C=C0.copy(), beta=2.0, schedule=SAFE_SCHEDULE)
    if bad == "inf":
        assert np.isposinf(out[3]).all() and np.isposinf(expect[3]).all()
    else:
        assert np.isnan(out[3]).all() and np.isnan(expect[3]).all()
    rest = np.arange(m) != 3
    ref = A[rest].astype(np.float64) @ B.astype(np.float64) + 2.0 * C0[rest]
    assert np.allclose(out[rest], ref, rtol=1e-5, atol=1e-5)
    # the flag was cleared: a clean product right after stays on the lane
    _, info = clgemm.matmul(np.nan_to_num(A, nan=1.0, posinf=1.0), B, return_info=True)
    assert info.extra.get("lane") == "3xtf32" and "lane_fallback" not in info.extra


def test_lane_lookup_fills_waves():
    """The first candidate unless its last wave is mostly empty and another fills it."""
    from clgemm.select.table import TcChoice, TcLane, Table, wave_efficiency

    big = TcSchedule(128, 128, 16, 2, 2, 2, "3xtf32", 1, 1, 1)
    slim = replace(big, block_m=96)
    lane = TcLane({"3xtf32": {"m5n5k5": [TcChoice(big, 2), TcChoice(slim, 2)]}}, {})
    assert wave_efficiency(576, 264) < 0.75 and wave_efficiency(768, 264) > 0.95
    assert lane.lookup("3xtf32", 3072, 3072, 3072, compute_units=132) == slim
    assert lane.lookup("3xtf32", 4096, 4096, 4096, compute_units=132) == big
    assert lane.lookup("3xtf32", 1400, 1400, 1400, compute_units=132) == big  # under one wave
    assert lane.lookup("tf32", 3072, 3072, 3072, 132) is None
    t = Table("dev", {}, DEFAULT_SCHEDULES and __import__("clgemm.select.table", fromlist=["x"]).DEFAULT_GPU,
              "test", tensorcore=lane)
    again = Table.from_json(t.to_json(), "roundtrip").tensorcore
    assert again.modes == lane.modes and again.exact is None
