"""The wgmma TF32 kernel (kernels/wgmma.py, tc.py): schedule rules, the generated source and
its PTX patch (on any host), the operand transpose into scratch (any OpenCL device), the
capability probe (not offered off sm_90) and, on an NVIDIA sm_90 device only, accuracy over
layouts, odd shapes, alpha/beta and the non-finite flag."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pyopencl as cl
import pytest

from clgemm.lanes.mma import nonfinite_flag

from clgemm.lanes.probe import WgSupport, wgmma_support

from clgemm.lanes import tc as lanes_tc
from clgemm.lanes.tc import WGMMA_TRANSPOSE_MIN_FLOPS, tc_matmul, tc_product, wgmma_3x_schedule, wgmma_route

from clgemm.lanes.wgmma import _k_major, _split_operands, scratch
from clgemm.errors import ScheduleError
from clgemm.kernels import wgmma
from clgemm.kernels.wgmma import patch_ptx, render_wgmma
from clgemm.operands import Operand
from clgemm.runtime import get_runtime


def test_schedule_rules():
    s = wgmma.DEFAULT
    assert s.violations() == [] and s.local_bytes() == 49152 and s.threads == 128
    assert s.accumulators == 128 and s.key() == "wg-tf32-m128n128k16-s3-w1-q1-z64"
    assert replace(s, warpgroups=2).accumulators == 64
    assert "local memory" in replace(s, stages=4).violations()
    assert any("swizzle" in v for v in replace(s, swizzle=128).violations())
    assert any("m64 blocks" in v for v in replace(s, block_m=96).violations())
    assert any("128 accumulators" in v for v in replace(s, block_n=256, stages=2, block_k=8,
                                                         swizzle=32).violations())
    assert replace(s, swizzle=0).violations() == []  # interleaved core matrices
    with pytest.raises(ScheduleError):
        render_wgmma(replace(s, block_n=96))


def _fake_ptx(source: str) -> str:
    """PTX as NVIDIA's OpenCL compiler prints inline-asm comments: operands replaced by
    register names (only the lines the patch looks at)."""
    lines = [".version 9.0", ".target sm_90, texmode_independent", ".address_size 64"]
    regs = ", ".join(f"%f{i}" for i in range(64))
    lines += [f"\t// CLGEMM_{m}" for m in re.findall(r'MARK\("([A-Z0-9_]+)"\)', source)]
    lines += [f"\t// CLGEMM_WGMMA_WAIT{n}" for n in re.findall(r"WAIT\(\w+, H, (\d)\)", source)]
    lines += [f"\t// {m} {{{regs}}}, %rd7, %rd8, %r9;"
              for m in re.findall(r'"// (CLGEMM_WGMMA_M64N\d+K8)', source)]
    return "\n".join(lines)


def test_source_markers_and_patch():
    src = render_wgmma(wgmma.DEFAULT)
    assert "CLGEMM_WGMMA_M64N128K8" in src and "cp.async.cg.shared.global" in src
    assert "#define STAGES 3" in src and "reqd_work_group_size(NT, 1, 1)" in src
    ptx = patch_ptx(_fake_ptx(src))
    assert "inner_mn && ((kt) + 1) * BK <= K" in src  # interior k-tiles copy without bounds
    mma = [line for line in ptx.splitlines() if "wgmma.mma_async" in line]
    assert mma and all("m64n128k8.f32.tf32.tf32 {%f0," in x and "%rd7, %rd8, p, 1, 1;" in x
                       and "setp.ne.b32 p, %r9, 0;" in x for x in mma)
    for instr in ("fence.proxy.async.shared::cta;", "wgmma.fence.sync.aligned;",
                  "wgmma.commit_group.sync.aligned;", "wgmma.wait_group.sync.aligned 1;",
                  "wgmma.wait_group.sync.aligned 0;"):
        assert instr in ptx, instr
    assert ".target sm_90a, texmode_independent" in ptx and "CLGEMM_" not in ptx
    with pytest.raises(ValueError, match="no wgmma marker"):
        patch_ptx(".target sm_90\n\t// nothing here")
    with pytest.raises(ValueError, match="does not target sm_90"):
        patch_ptx(_fake_ptx(src).replace("sm_90,", "sm_80,"))


def test_3xtf32_schedule_rules():
    s = wgmma.DEFAULT_3X
    for x in (s, wgmma.WIDE_3X, wgmma.DEFAULT):
        assert wgmma.WgSchedule.from_key(x.key()) == x
    with pytest.raises(ScheduleError):
        wgmma.WgSchedule.from_key("tc-3xtf32-b128x128x16")
    assert s.violations() == [] and s.mode == "3xtf32" and s.key().startswith("wg-3xtf32-")
    assert s.local_bytes() == 49152  # four tiles per stage
    assert s.registers() == 2 * s.accumulators == 128  # totals and one k-tile's chain
    assert wgmma.WIDE_3X.violations() == [] and wgmma.WIDE_3X.registers() == 64
    assert any("in_flight 0" in v for v in replace(s, in_flight=1).violations())
    assert any("128 accumulators" in v for v in replace(s, block_m=128).violations())
    assert any("local memory" in v for v in replace(s, stages=3).violations())
    assert any("splits" in v for v in replace(s, splits=2).violations())
    # Hopper: 3 work-groups of 128 threads x ~168 registers per SM; 2 of WIDE_3X's 256 x ~104
    assert wgmma.resident_groups(s) == 3 and wgmma.resident_groups(wgmma.WIDE_3X) == 2


@pytest.mark.parametrize("size,wide", [(1400, False), (2048, True), (3072, False),
                                       (4096, False), (1000, False)])
def test_3xtf32_schedule_by_waves(monkeypatch, size, wide):
    """DEFAULT_3X unless it needs more than one wave and leaves the last mostly empty while
    WIDE_3X fills its own: on 132 SMs that is 2048 (0.65 against 0.97)."""
    rt = get_runtime()
    monkeypatch.setattr(rt, "device", replace(rt.device, compute_units=132))
    got = wgmma_3x_schedule(rt, size, size)
    assert got == (wgmma.WIDE_3X if wide else wgmma.DEFAULT_3X)


def test_3xtf32_source_and_patch():
    """Three wgmma per k8 step into a fresh chain whose first starts from zero (scale-d off),
    waited for and folded into the totals after every k-tile; hi and lo tiles both copied."""
    s = wgmma.DEFAULT_3X
    src = render_wgmma(s)
    body = src[src.index("for (int kt = 0; kt < KT; kt++)"):]
    assert body.count("WGMMA(fr, H,") == 3 and "WGMMA(acc," not in body
    assert "WGMMA(fr, H, al, bh, s8 ? one : zero)" in body
    assert "acc[H][i] += fr[H][i]" in body and "WAIT(fr, H, 0)" in body
    assert "s_ + a_lo" in src and "s_ + b_lo" in src and "const long a_lo, const long b_lo" in src
    ptx = patch_ptx(_fake_ptx(src))
    assert "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32" in ptx
    assert "wgmma.wait_group.sync.aligned 0;" in ptx and "wait_group.sync.aligned 1" not in ptx
    tf32 = render_wgmma(wgmma.DEFAULT)
    assert "a_lo" not in tf32 and "fr[" not in tf32  # the TF32 kernel is unchanged by it


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True), (False, True), (True, False)])
def test_operands_split_for_3xtf32(rng, ta, tb):
    """Both operands in one launch, each layout back K-major with 16-byte rows as hi and lo:
    hi has TF32's 10 mantissa bits (round to nearest), hi + lo is x exactly, |lo| <= 2^-11
    |x|; wide exponents, signs and zeros included."""
    rt = get_runtime()
    m, n, k, ld, off = 45, 29, 37, 48, 3

    def operand(rows: int, k_major_stored: bool):
        stored = (rows, k) if k_major_stored else (k, rows)
        X = (rng.standard_normal(off + stored[0] * ld)
             * np.exp2(rng.uniform(-30, 30, off + stored[0] * ld))).astype(np.float32)
        X[off + 5] = 0.0
        M = X[off:off + stored[0] * ld].reshape(stored[0], ld)[:, :stored[1]]
        buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                        hostbuf=X)
        return buf, (M if k_major_stored else M.T)  # rows x K

    abuf, a_x = operand(m, not ta)
    bbuf, b_x = operand(n, tb)
    a_hi, a_lo, b_hi, b_lo, launch = _split_operands(
        rt, Operand(abuf, off, ld, ta), Operand(bbuf, off, ld, tb), m, n, k, rt.queue,
        scratch(rt, rt.queue))
    launch()
    assert (a_hi.ld, b_hi.ld, a_lo, b_lo) == (40, 40, m * 40, n * 40)
    assert not a_hi.transposed and b_hi.transposed and a_hi.offset == b_hi.offset == 0
    for op, lo, rows, x in ((a_hi, a_lo, m, a_x), (b_hi, b_lo, n, b_x)):
        Y = np.empty(2 * lo, np.float32)
        cl.enqueue_copy(rt.queue, Y, op.buffer)
        hi = Y[:lo].reshape(rows, 40)[:, :k]
        low = Y[lo:].reshape(rows, 40)[:, :k]
        assert np.all(hi.view(np.uint32) & 0x1FFF == 0)
        assert np.array_equal(hi.astype(np.float64) + low.astype(np.float64), x.astype(np.float64))
        assert np.all(np.abs(low) <= np.abs(x) * 2.0 ** -11)


def test_split_of_inf_is_flagged_not_hidden():
    rt = get_runtime()
    X = np.array([np.inf, -np.inf, 1.0, np.finfo(np.float32).max] * 4, np.float32)
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=X)
    x = Operand(buf, 0, 4, False)
    a_hi, lo, _, _, launch = _split_operands(rt, x, x.flipped(), 4, 4, 4, rt.queue,
                                             scratch(rt, rt.queue))
    launch()
    Y = np.empty(2 * lo, np.float32)
    cl.enqueue_copy(rt.queue, Y, a_hi.buffer)
    hi, low = Y[:lo], Y[lo:]
    assert np.isinf(hi[0]) and np.isnan(low[0]) and np.isnan(low[1])
    assert hi[2] == 1.0 and low[2] == 0.0
    # rounding float32's largest value up overflows hi to Inf: lo becomes -Inf and the
    # product non-finite (flagged: the exact lane recomputes it in float32)
    assert hi[3] == np.inf and low[3] == -np.inf


def test_not_offered_off_sm90():
    rt = get_runtime()
    cc = rt.device.capabilities.nv_compute_capability
    if rt.device.is_nvidia and cc is not None and tuple(cc) == (9, 0):
        pytest.skip("an sm_90 device: see the NVIDIA tests below")
    support = wgmma_support(rt)
    assert support.available is False and support.reason
    a = Operand(None, 0, 8, False)
    assert wgmma_route(rt, a, Operand(None, 0, 8, True), 8, 8, 8) is False


def test_route_rules(monkeypatch):
    """Where the probe passes: K-contiguous operands need 16-byte rows; a product that needs a
    transpose takes wgmma only from WGMMA_TRANSPOSE_MIN_FLOPS on."""
    rt = get_runtime()
    monkeypatch.setitem(rt._memo, ("wgmma support", 1), WgSupport(True, "test"))
    a, bt = Operand(None, 0, 64, False), Operand(None, 0, 64, True)
    assert wgmma_route(rt, a, bt, 64, 64, 64)  # no transpose: any size
    assert not wgmma_route(rt, Operand(None, 2, 64, False), bt, 64, 64, 64)  # misaligned A
    assert not wgmma_route(rt, a, Operand(None, 0, 66, True), 64, 64, 64)  # B rows of 66
    b = Operand(None, 0, 66, False)  # stored K x N: transposed into scratch, any ld
    big = round((WGMMA_TRANSPOSE_MIN_FLOPS / 2) ** (1 / 3)) + 1
    assert not wgmma_route(rt, a, b, 2048, 2048, 2048)
    assert wgmma_route(rt, a, b, big, big, big)
    assert wgmma_route(rt, Operand(None, 1, 63, True), b, big, big, big)  # A^T transposed too
    monkeypatch.setitem(rt._memo, ("wgmma support", 1), WgSupport(False, "test"))
    assert not wgmma_route(rt, a, bt, big, big, big)


@pytest.mark.parametrize("name,transposed", [("A", True), ("B", False), ("A", False)])
def test_operand_made_k_major(rng, name, transposed):
    """A stored K x M (or B stored K x N) comes back transposed into scratch with 16-byte
    rows; an operand already K-contiguous is returned as it is."""
    rt = get_runtime()
    k, rows, ld, off = 37, 45, 48, 2
    X = rng.standard_normal(off + k * ld).astype(np.float32)
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=X)
    x = Operand(buf, off, ld, transposed)
    got, launch = _k_major(rt, x, rows, k, name, rt.queue, scratch(rt, rt.queue))
    if (name == "A") != transposed:  # K-contiguous already
        assert got is x and launch is None
        return
    launch()
    assert got.ld == 40 and got.offset == 0 and got.transposed == (name == "B")
    Y = np.empty((rows, got.ld), np.float32)
    cl.enqueue_copy(rt.queue, Y, got.buffer)
    stored = X[off:off + k * ld].reshape(k, ld)[:, :rows]
    assert np.array_equal(Y[:, :k], stored.T)


def test_card_is_valid():
    from pathlib import Path

    from clgemm.lab.cards import load_card

    root = Path(__file__).resolve().parents[1] / "research/breakthrough_lab/t4_approximate_gemm"
    for name in ("wgmma", "wgmma_3xtf32", "tensorcore"):
        card, errors = load_card(root / name / "card.toml")
        assert errors == [] and card["track"] == "T4", (name, errors)


# ---- NVIDIA sm_90 only ------------------------------------------------------------------------
def _sm90():
    from clgemm.device import devices

    for d in devices():
        if d.is_nvidia:
            rt = get_runtime(d)
            if wgmma_support(rt).available:
                return rt
    pytest.skip("no sm_90 NVIDIA device with the wgmma kernel")


@pytest.mark.parametrize("mode", ["tf32", "3xtf32"])
@pytest.mark.parametrize("shape,ta,tb", [((1000, 1003, 776), False, True),
                                         ((999, 1001, 1003), False, False),
                                         ((1001, 999, 1002), True, True),
                                         ((257, 130, 7), True, False),
                                         ((3, 5, 2), False, False)])
def test_nvidia_wgmma_accuracy(mode, shape, ta, tb, rng, monkeypatch):
    """Every layout, odd shapes, alpha/beta: TF32 (truncated operands) under 2e-3; 3xTF32
    within twice numpy float32's error on the same inputs."""
    rt = _sm90()
    monkeypatch.setattr(lanes_tc, "WGMMA_TRANSPOSE_MIN_FLOPS", 0.0)  # every layout through wgmma
    if mode == "3xtf32" and not wgmma_support(rt, 3).available:
        pytest.fail("3xTF32 wgmma probe failed: " + wgmma_support(rt, 3).reason)
    m, n, k = shape
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    out, _ = tc_matmul(A, B, C=C0, alpha=1.5, beta=0.5, trans_a=ta, trans_b=tb, mode=mode,
                          rt=rt, schedule=wgmma.DEFAULT_3X if mode == "3xtf32" else None)
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    ref = 1.5 * (opA.astype(np.float64) @ opB.astype(np.float64)) + 0.5 * C0
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    np_out = np.float32(1.5) * (opA @ opB) + np.float32(0.5) * C0
    if mode == "tf32":
        assert err < 2e-3  # TF32 by truncation: ~8e-4 on normal data
    elif m * n >= 256:
        assert err <= 2.0 * np.linalg.norm(np_out - ref) / np.linalg.norm(ref)
    else:  # K of 2: numpy rounds once (3e-8); 3xTF32's 2^-22 operands still keep < 1 ulp
        assert err < 1e-6


def test_nvidia_wgmma_serves_tf32_and_flags_nonfinite(rng):
    rt = _sm90()
    assert wgmma_route(rt, Operand(None, 0, 64, False), Operand(None, 0, 64, True), 64, 64, 64)
    assert not wgmma_route(rt, Operand(None, 1, 64, False), Operand(None, 0, 64, True), 64, 64, 64)
    A = rng.standard_normal((256, 256)).astype(np.float32)
    Bt = rng.standard_normal((256, 256)).astype(np.float32)  # stored N x K: no transpose
    A[7, 3] = np.inf
    assert _flag_raised(rt, "tf32", A, Bt, True, None)


def _flag_raised(rt, mode, A, B, b_stored_nk, schedule) -> bool:
    """Whether the product of A (M x K) and B (K x N, or N x K) raises the non-finite flag."""
    m, k = A.shape
    n = B.shape[0] if b_stored_nk else B.shape[1]
    flag = nonfinite_flag(rt)
    mf = cl.mem_flags
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, k, False)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0,
                B.shape[1], b_stored_nk)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE, 4 * m * n), 0, n, False)
    tc_product(rt, mode, m, n, k, 1.0, 0.0, a, b, c, schedule, flag=flag.buffer).wait()
    return flag.raised()


def _np_err(opA, opB, ref):
    return np.linalg.norm(opA @ opB - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("spread", [8, 20, 40])
def test_nvidia_wgmma_3xtf32_wide_exponents(rng, spread):
    rt = _sm90()
    n = 768
    A = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-spread, spread, (n, n)))).astype(np.float32)
    B = (rng.standard_normal((n, n)) * np.exp2(rng.uniform(-spread, spread, (n, n)))).astype(np.float32)
    out, _ = tc_matmul(A, B, mode="3xtf32", rt=rt, schedule=wgmma.DEFAULT_3X)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err <= 2.0 * _np_err(A, B, ref)


def test_nvidia_wgmma_3xtf32_flags_nonfinite_and_serves_exact_lane(rng, monkeypatch):
    """An Inf operand raises the flag (the exact lane then recomputes in float32); where the
    table promotes 3xTF32, matmul's exact product runs on the wgmma kernel."""
    rt = _sm90()
    A = rng.standard_normal((256, 256)).astype(np.float32)
    B = rng.standard_normal((256, 256)).astype(np.float32)
    A[7, 3] = np.inf
    assert _flag_raised(rt, "3xtf32", A, B, False, wgmma.DEFAULT_3X)

    import clgemm
    from clgemm import route
    from clgemm.select import table as table_mod

    from conftest import fresh_routes

    # a small product: the rule that keeps products with few tiles per compute unit off the
    # lane is off, and the routes are decided anew after each change of the table
    monkeypatch.setattr(route, "MIN_TILES_PER_UNIT", 0.0)
    monkeypatch.setattr(route, "MIN_TILE_FILL", 0.0)
    monkeypatch.setattr(route, "TC_MIN_K", 0)
    base = table_mod.load_table(rt.device)
    lane = table_mod.TcLane({}, {}, exact="3xtf32", evidence={"gate": "test"},
                            exact_kernel="wgmma")
    monkeypatch.setattr(table_mod, "load_table",
                        lambda device, path=None: replace(base, tensorcore=lane))
    fresh_routes(monkeypatch, rt)
    A[7, 3] = 1.0
    out, info = clgemm.matmul(A, B, device=rt.device, return_info=True)
    assert info.schedule == wgmma.DEFAULT_3X.key() and info.extra["lane"] == "3xtf32"
    monkeypatch.setattr(table_mod, "load_table", lambda device, path=None: replace(
        base, tensorcore=replace(lane, exact_kernel="mma.sync")))  # the H100 table's choice
    fresh_routes(monkeypatch, rt)
    _, info = clgemm.matmul(A, B, device=rt.device, return_info=True)
    assert info.schedule.startswith("tc-3xtf32-")
    monkeypatch.setattr(table_mod, "load_table",
                        lambda device, path=None: replace(base, tensorcore=lane))
    fresh_routes(monkeypatch, rt)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    assert np.linalg.norm(out - ref) <= 2.0 * np.linalg.norm(A @ B - ref)
    A[7, 3] = np.inf  # the non-finite output goes back to the float32 family
    out, info = clgemm.matmul(A, B, device=rt.device, return_info=True)
    assert "lane_fallback" in info.extra and np.isinf(out[7]).all()


def test_bench_refuses_an_unknown_tc_mode(capsys, tmp_path):
    from clgemm.cli import main

    rc = main(["bench", "--suite", "none", "--shapes", "64", "--tc", "wgmma-4xtf32", "--quiet",
               "-o", str(tmp_path / "x.json")])
    assert rc == 2 and "unknown --tc mode wgmma-4xtf32" in capsys.readouterr().err


def test_harness_times_a_wgmma_call_as_its_span():
    """The wgmma methods' time runs from the first command (the split or transpose) to the
    product's end: the harness charges the pre-pass to the kernel."""
    from clgemm.bench.tensorcore import CommandSpan

    class Ev:
        def __init__(self, start, end):
            self.profile = type("P", (), {"start": start, "end": end})()
            self.waited = False

        def wait(self):
            self.waited = True

    split, product = Ev(100, 150), Ev(160, 400)
    span = CommandSpan([split, product])
    span.wait()
    assert product.waited and (span.profile.start, span.profile.end) == (100, 400)
    rt = get_runtime()
    if rt.profiling_ok:
        assert rt.timed(lambda: span) == pytest.approx(300e-9)


def test_wgmma_modes_absent_off_sm90(rng):
    rt = get_runtime()
    if wgmma_support(rt, 3).available:
        pytest.skip("an sm_90 device")
    from clgemm.bench.inputs import InputSets
    from clgemm.bench.protocol import Protocol
    from clgemm.bench.suites import Case
    from clgemm.bench.tensorcore import measure_tc

    case = Case(64, 64, 64, "test")
    for mode in ("wgmma-tf32", "wgmma-3xtf32"):
        entry = measure_tc(rt, case, InputSets(64, 64, 64, 1, rng), Protocol(), mode)
        assert entry["method"] == f"clgemm-{mode}" and entry["status"] == "absent"
        assert entry["reason"]


def test_harness_resolves_wgmma_keys_for_build_cost():
    from clgemm.bench.runner import _schedule_and_layout

    s, layout = _schedule_and_layout(get_runtime(), wgmma.DEFAULT_3X.key(), 64, 64, 64)
    assert s == wgmma.DEFAULT_3X and layout is None


def test_table_names_the_exact_kernel():
    """The tensor-core lane's exact_kernel round-trips through the table's JSON, defaults to
    mma.sync (the shipped H100 table) and refuses anything else."""
    from clgemm.errors import ScheduleError as TableError
    from clgemm.select.table import TcLane

    lane = TcLane({}, {}, exact="3xtf32", exact_kernel="wgmma")
    assert TcLane.from_json(lane.to_json(), "t").exact_kernel == "wgmma"
    assert TcLane.from_json({"exact": "3xtf32"}, "t").exact_kernel == "mma.sync"
    with pytest.raises(TableError, match="exact_kernel"):
        TcLane.from_json({"exact": "3xtf32", "exact_kernel": "hgmma"}, "t")


def test_shipped_exact_lanes_cite_a_promoting_gate():
    """Every shipped table whose tensor-core lane serves the exact contract cites a gate
    artifact that promoted it, and names its kernel."""
    import json
    from pathlib import Path

    from clgemm.select import table as table_mod

    root = Path(__file__).resolve().parents[1]
    seen = {}
    for name, data in table_mod._shipped_tables():
        lane = table_mod.Table.from_json(data, name).tensorcore
        if lane is None or lane.exact is None:
            continue
        gate = json.loads((root / lane.evidence["promotion"]["gate"]).read_text())
        assert gate["decision"] == "promoted", name
        seen[data["device"]["name"]] = lane.exact_kernel
    assert seen.get("NVIDIA H100 80GB HBM3") == "mma.sync"
