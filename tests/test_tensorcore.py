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
from clgemm.plan import Operand
from clgemm.runtime import get_runtime
from clgemm import tc

ROOT = Path(__file__).resolve().parents[1]
NN = TcLayout(False, False, True, True)
SMALL = TcSchedule(block_m=16, block_n=16, block_k=8, warps_m=1, warps_n=1, stages=2,
                   mode="tf32", fold=0, async_copy=1, raster=1)


def test_generated_ptx_structure():
    s = tc.DEFAULT_SCHEDULES["3xtf32"]
    src = render_tc(s, NN)
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in src
    assert "cvt.rna.tf32.f32" in src
    assert "cp.async.cg.shared.global" in src and "cp.async.commit_group" in src
    assert "cp.async.wait_group" in src
    assert "reqd_work_group_size(NT, 1, 1)" in src and f"#define NT {s.threads}" in src
    # three mma per 16x8 tile per k8 step, small terms first, each chain folded in float32
    calls = re.findall(r"^\s+MMA\((.*)\);", src, re.M)
    assert len(calls) == s.mt * s.nt * (s.block_k // 8) * 3
    first = calls[0].split(", ")
    assert first[4].endswith("l") and first[8].endswith("h")  # a_lo * b_hi first
    assert "c0_0_0 += d0;" in src
    tf32 = render_tc(replace(s, mode="tf32", fold=0), NN)
    calls = re.findall(r"^\s+MMA\((.*)\);", tf32, re.M)
    assert len(calls) == s.mt * s.nt * (s.block_k // 8)
    assert "l, " not in calls[0]
    # unaligned storage copies elements (cp.async.ca, 4 bytes); register staging has no cp.async
    assert "CP4(As" in render_tc(s, TcLayout(True, True, False, False))
    reg = render_tc(replace(s, async_copy=0), NN)
    assert "CP16(As" not in reg and "float4 rA0" in reg


def test_schedule_key_and_space():
    space = TcSearchSpace(local_mem_bytes=49152, max_work_group_size=1024)
    for s in tc.DEFAULT_SCHEDULES.values():
        assert TcSchedule.from_key(s.key()) == s
        assert space.is_valid(s), space.violations(s)
    assert "warp tile is whole 16x8 mma tiles" in space.violations(replace(SMALL, block_m=24))
    assert "register staging has two stages" in space.violations(replace(SMALL, async_copy=0, stages=3))
    big = TcSchedule(block_m=128, block_n=128, block_k=32, warps_m=2, warps_n=2, stages=2)
    assert "local memory" in space.violations(big)
    assert "registers" in space.violations(replace(tc.DEFAULT_SCHEDULES["3xtf32"], fold=2))
    # local memory is checked per layout when one is given (pads differ by layout)
    wide = TcSchedule(block_m=128, block_n=256, block_k=8, warps_m=2, warps_n=4, stages=3)
    assert space.is_valid(wide, NN) and not space.is_valid(wide)
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
    support = tc.tensorcore_support(rt)
    assert support.available is False and support.reason
    assert tc.tensorcore_available(rt) is False
    assert tc.contract_method(rt, 1e-2) is None
    with pytest.raises(Exception):
        tc.tc_matmul(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), rt=rt)


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
    kern = tc.get_kernel(rt, s, tc.layout_for(a, b), Dialect(emulate=True))
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
], ids=["tf32-NN-beta", "tf32-TT-unaligned", "3xtf32-NT-3stages"])
def test_emulated_kernel_indexing(case):
    """The generated kernel with plain OpenCL C stand-ins for the PTX (same layouts, same
    copies and pipeline): edges, transposes, offsets, alpha/beta."""
    rt = get_runtime()
    case = dict(case)
    s = case.pop("s")
    err, np_err = _emulated(rt, s, **case)
    if s.mode == "tf32":
        assert err < 2e-3
    else:
        assert err <= 2.0 * np_err + 1e-7


def test_estimate_error_tracks_the_true_error(rng):
    A = rng.standard_normal((60, 50)).astype(np.float32)
    B = rng.standard_normal((50, 40)).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    noisy = exact + 1e-3 * np.linalg.norm(exact) / np.sqrt(exact.size) * rng.standard_normal(exact.shape)
    est = tc.estimate_error(A, B, noisy, probes=8, seed=1)
    true = np.linalg.norm(noisy - exact) / np.linalg.norm(exact)
    assert 0.3 * true < est < 3 * true


def test_card_is_valid():
    from clgemm.lab.cards import load_card

    card, errors = load_card(ROOT / "research/breakthrough_lab/t4_approximate_gemm/tensorcore/card.toml")
    assert errors == [] and card["track"] == "T4"


# ---- NVIDIA only ------------------------------------------------------------------------
def _nvidia_runtime():
    from clgemm.device import devices

    for d in devices():
        if d.is_nvidia:
            rt = get_runtime(d)
            if tc.tensorcore_available(rt):
                return rt
    pytest.skip("no NVIDIA device with the tensor-core lane")


@pytest.mark.parametrize("mode", ["tf32", "3xtf32"])
@pytest.mark.parametrize("shape,ta,tb", [((1000, 1003, 777), False, False),
                                         ((999, 1001, 1003), False, True),
                                         ((1001, 999, 1003), True, False),
                                         ((3, 5, 7), True, True)])
def test_nvidia_accuracy_odd_shapes(mode, shape, ta, tb, rng):
    rt = _nvidia_runtime()
    m, n, k = shape
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    out, _ = tc.tc_matmul(A, B, C=C0, alpha=1.5, beta=0.5, trans_a=ta, trans_b=tb, mode=mode, rt=rt)
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
    rt = _nvidia_runtime()
    n = 512
    A = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-20, 20, (n, n)))).astype(np.float32)
    B = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-20, 20, (n, n)))).astype(np.float32)
    out, _ = tc.tc_matmul(A, B, mode="3xtf32", rt=rt)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    np_err = np.linalg.norm(A @ B - ref) / np.linalg.norm(ref)
    assert err <= 2.0 * np_err
