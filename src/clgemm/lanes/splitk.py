"""Skinny products: the library's generated GEMM kernels, launched with split K (one launch,
a third grid dimension over K slices, partial products summed by one small kernel), and a
schedule chosen for the shape (small tiles where the output is thin). The guard's and the
low-rank path's products use them, and `SplitKLane` serves the exact contract where the
float32 family's grid would leave most compute units idle (on by default since the H200's
lane verdict; CLGEMM_SPLITK=0 switches it off).

The production table holds square-ish shape classes only; a 3072 x 64 x 3072 product with the
table's 128 x 128 tile runs 24 work-groups on a 132-unit GPU. Products of the low-rank path
(sketches, projections, Gram matrices) go through `plan` here instead. Candidate schedules are
those measured correct on the H100 in the tuning database (benchmarks/h100/campaign-b); a
guard-owned file (guard/data/skinny-<device>.json, written by benchmarks/guard) may pin the
choice per shape class on a device. The production table is never edited.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyopencl as cl

from ..kernels.gemm import KERNEL_NAME, render
from ..kernels.tensorcore import KERNEL_NAME as TC_NAME
from ..kernels.tensorcore import render_tc
from ..operands import Operand, transposed_c
from ..schedule import Schedule
from .fp32 import layout_for, search_space
from .mma import default_dialect, fitting_schedule, nonfinite_flag
from .mma import layout_for as tc_layout_for
from .recording import AllArgs, launch

# (schedule key, sustained TFLOP/s on 3072^3 on the H100) of validated schedules by tile.
CANDIDATES = (
    ("wm16-wn32-om8-on4-tk16-va4-vb4-vc1-sa1-sb1-uk4-db1-st0-lp4-ac512", 33.7),  # 128x128
    ("wm16-wn16-om8-on4-tk16-va4-vb4-vc4-sa1-sb1-uk4-db1-st0-lp1-ac64", 34.0),  # 128x64
    ("wm16-wn8-om8-on4-tk32-va4-vb4-vc4-sa1-sb1-uk2-db0-st0-lp1-ac512", 29.9),  # 128x32
    ("wm8-wn16-om8-on4-tk16-va4-vb4-vc1-sa1-sb1-uk4-db0-st1-lp4-ac512", 28.1),  # 64x64
    ("wm8-wn8-om8-on4-tk16-va1-vb4-vc1-sa1-sb1-uk8-db1-st1-lp4-ac512", 24.6),  # 64x32
)
LAUNCH_S = 8e-6  # host cost of one launch (enqueue), in the cost model
MIN_SLICE = 128  # K elements per slice at least


@dataclass(frozen=True)
class Plan:
    schedule: Schedule
    slices: int  # 1: a plain launch

    def key(self) -> str:
        return f"{self.schedule.key()}/s{self.slices}"


@functools.lru_cache(maxsize=None)
def _pinned(device_name: str) -> dict:
    """Pinned skinny schedules of a device (clgemm/data/skinny-<device>.json), if any."""
    slug = "".join(c if c.isalnum() else "-" for c in device_name.lower()).strip("-")
    path = Path(__file__).parent.parent / "data" / f"skinny-{slug}.json"
    try:
        data = json.loads(path.read_text())
        return {c: (Schedule.from_key(v["schedule"]), int(v["slices"]))
                for c, v in data.get("entries", {}).items()}
    except (OSError, ValueError, KeyError):
        return {}


def skinny_class(m: int, n: int, k: int) -> str:
    """A finer class than the table's: powers of two of m, n, k."""
    def b(x):
        return int(round(math.log2(max(x, 1))))
    return f"m{b(m)}n{b(n)}k{b(k)}"


def candidates(rt, table_schedule: Schedule | None = None) -> list[tuple[Schedule, float]]:
    space = search_space(rt)
    out = []
    if table_schedule is not None and space.is_valid(table_schedule):
        out.append((table_schedule, 34.0))
    for key, tf in CANDIDATES:
        s = Schedule.from_key(key)
        if space.is_valid(s) and all(s != o for o, _ in out):
            out.append((s, tf))
    return out


def model_time(rt, s: Schedule, tf: float, m: int, n: int, k: int, slices: int) -> float:
    cu = max(getattr(rt.device, "compute_units", 1), 1)
    tiles = -(-m // s.tile_m) * -(-n // s.tile_n)
    flops = 2.0 * tiles * s.tile_m * s.tile_n * k
    groups = tiles * slices
    util = min(1.0, groups / (2.0 * cu))  # two resident groups per unit to hide latency
    t = flops / (tf * 1e12 * util) + LAUNCH_S
    if slices > 1:
        t += 2.0 * 4 * slices * m * n / 1.5e12 + LAUNCH_S
    return t


def plan(rt, m: int, n: int, k: int, table_schedule: Schedule | None = None,
         allow_split: bool = True) -> Plan:
    pin = _pinned(rt.device.name).get(skinny_class(m, n, k))
    if pin is not None and search_space(rt).is_valid(pin[0]):
        return Plan(pin[0], pin[1] if allow_split else 1)
    best = None
    for s, tf in candidates(rt, table_schedule):
        max_s = max(1, k // MIN_SLICE) if allow_split else 1
        for sl in sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48}):
            if sl > max_s:
                continue
            t = model_time(rt, s, tf, m, n, k, sl)
            if best is None or t < best[0]:
                best = (t, Plan(s, sl))
    return best[1]


def split_source(src: str, name: str, new_name: str, last_param: str, layout,
                 slice_dim: int) -> str:
    """A generated kernel's source made split-K: K becomes the slice of K_all that work-group
    dimension `slice_dim` selects (kc deep), the operands start at that slice and C at its
    slab. The generators keep these three lines stable (asserted)."""
    head = f"__kernel void {name}(const int M, const int N, const int K,"
    assert head in src, "generated kernel header changed"
    src = src.replace(head, f"__kernel void {new_name}(const int M, const int N, "
                            "const int K_all,", 1)
    assert last_param in src
    src = src.replace(last_param, last_param[:-1] + ", const int kc, const long slab)", 1)
    body = "  A += a_off; B += b_off; C += c_off;"
    assert body in src
    a_step = "(long)ks_ * kc * lda" if layout.trans_a else "(long)ks_ * kc"
    b_step = "(long)ks_ * kc" if layout.trans_b else "(long)ks_ * kc * ldb"
    return src.replace(body, (
        f"  const int ks_ = get_group_id({slice_dim});\n"
        "  const int K = min(kc, K_all - ks_ * kc);\n"
        f"  A += a_off + {a_step}; B += b_off + {b_step}; C += c_off + ks_ * slab;"), 1)


class SplitK:
    """The split-K variant of one generated kernel (schedule + layout)."""

    def __init__(self, rt, schedule: Schedule, layout) -> None:
        src = split_source(render(schedule, layout), KERNEL_NAME, "guard_splitk",
                           "__global float* C, const int ldc, const int c_off)", layout, 2)
        self.schedule = schedule
        self.layout = layout
        built = rt.build(src, options="-cl-mad-enable")
        self.kernel = built.kernel("guard_splitk")
        self.lock = threading.Lock()
        # recording.launch's form (the scalar types also set on the kernel)
        self.bound = AllArgs(self.kernel, [
            np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
            None, np.int32, np.int32, None, np.int32, np.int32, np.int32, np.int64])

    def enqueue(self, queue, m, n, k, alpha, a: Operand, b: Operand, part, slices: int):
        """alpha op(A)[:, slice] op(B)[slice, :] into slab s of `part` for each K slice:
        (slices used, K per slice, the launch's event)."""
        s = self.schedule
        kc = -(-k // slices)
        kc = -(-kc // 16) * 16  # keeps vector alignment of the slices' offsets
        slices = -(-k // kc)
        gx = -(-n // s.tile_n) * s.wg_n
        gy = -(-m // s.tile_m) * s.wg_m
        event = launch(self.bound, self.lock, queue,
                       (m, n, k, alpha, 0.0, a.buffer, a.ld, a.offset, b.buffer, b.ld,
                        b.offset, part, n, 0, kc, slab_stride(m, n)),
                       (gx, gy, slices), (s.wg_n, s.wg_m, 1))
        return slices, kc, event


class TcSplitK:
    """The split-K variant of one tensor-core kernel (tc.py): a second grid dimension over K
    slices, each writing alpha op(A)[:, slice] op(B)[slice, :] to its own slab. Skinny
    products (3072 x 128 x 3072) have 24 output tiles of 128 x 128: without slices they would
    occupy 24 of 132 units."""

    def __init__(self, rt, schedule, layout, dialect=None, ieee_fallback: bool = False) -> None:
        # ieee_fallback: a tile of a slab with a non-finite output is recomputed over that
        # slice of K in float32 dot products inside the kernel (render_tc), so the sum of
        # the slabs propagates Inf and NaN as the float32 family does (the exact lane's)
        src = split_source(render_tc(schedule, layout, dialect or default_dialect(),
                                     ieee_fallback=ieee_fallback), TC_NAME,
                           "guard_tc_splitk", "__global int* nonfinite)", layout, 1)
        self.schedule = schedule
        self.layout = layout
        built = rt.build(src, options="-cl-mad-enable")
        self.kernel = built.kernel("guard_tc_splitk")
        self.lock = threading.Lock()
        # recording.launch's form (the scalar types also set on the kernel)
        self.bound = AllArgs(self.kernel, [
            np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
            None, np.int32, np.int32, None, np.int32, np.int32, None, np.int32, np.int64])

    def enqueue(self, queue, m, n, k, alpha, a: Operand, b: Operand, part, slices: int,
                flag) -> tuple[int, int, "cl.Event"]:
        """alpha op(A)[:, slice] op(B)[slice, :] into slab s of `part` for each K slice:
        (slices used, K per slice, the launch's event)."""
        s = self.schedule
        kc = -(-k // slices)
        kc = -(-kc // s.block_k) * s.block_k  # slices start on k-tiles (16-byte aligned)
        slices = -(-k // kc)
        gx = -(-m // s.block_m) * -(-n // s.block_n) * s.threads
        event = launch(self.bound, self.lock, queue,
                       (m, n, k, alpha, 0.0, a.buffer, a.ld, a.offset, b.buffer, b.ld,
                        b.offset, part, n, 0, flag, kc, slab_stride(m, n)),
                       (gx, slices), (s.threads, 1))
        return slices, kc, event


def tc_slices(rt, schedule, m: int, n: int, k: int) -> int:
    """K slices that give about two work-groups per compute unit, each slice at least
    MIN_SLICE deep; 1: a plain launch."""
    cu = max(getattr(rt.device, "compute_units", 1), 1)
    tiles = -(-m // schedule.block_m) * -(-n // schedule.block_n)
    want = -(-2 * cu // tiles)
    return max(1, min(want, k // MIN_SLICE, 48))


def get_tc_splitk(rt, schedule, layout, ieee_fallback: bool = False) -> TcSplitK:
    dialect = default_dialect()
    return rt.cached(("tc splitk", schedule, layout, dialect, ieee_fallback),
                     lambda: TcSplitK(rt, schedule, layout, dialect, ieee_fallback))


def slab_stride(m: int, n: int) -> int:
    return -(-(m * n) // 4) * 4


def get_splitk(rt, schedule: Schedule, layout) -> SplitK:
    return rt.cached(("splitk", schedule, layout), lambda: SplitK(rt, schedule, layout))


# ---- the exact contract on products whose output has too few tiles ----------------------
SUM_SOURCE = r"""
// C = (the sum of NB slabs of M x N partial products, in order) + beta C, C row-major with
// leading dimension ldc; C is not read where beta = 0 (a NaN there stays out).
__kernel void clgemm_splitk_sum(const int M, const int N, const int NB, const long stride,
    __global const float* part, const float beta, __global float* C, const int ldc,
    const int c_off)
{
  const int j = get_global_id(0), i = get_global_id(1);
  if (i >= M || j >= N) return;
  const long t = (long)i * N + j;
  float s = 0.0f;
  for (int b = 0; b < NB; b++) s += part[(long)b * stride + t];
  __global float* c = C + c_off + (long)i * ldc + j;
  *c = beta == 0.0f ? s : s + beta * *c;
}
"""
SUM_TYPES = [np.int32, np.int32, np.int32, np.int64, None, np.float32, None, np.int32, np.int32]
UNDERFILLED = 0.5  # output tiles per compute unit below which a product may be split over K


def underfilled(rt, schedule: Schedule, m: int, n: int) -> bool:
    """Whether the float32 family's grid for this output leaves most compute units idle:
    fewer output tiles than UNDERFILLED per unit (a classifier's 32 x 1000 x 2048 on the
    H100's table schedule: 16 tiles of 32 x 64 for 132 units)."""
    tiles = -(-m // schedule.tile_m) * -(-n // schedule.tile_n)
    return tiles < UNDERFILLED * max(getattr(rt.device, "compute_units", 1), 1)


class _SumKernel:
    """clgemm_splitk_sum of one runtime, its arguments set under a lock."""

    def __init__(self, rt) -> None:
        self.kernel = rt.build(SUM_SOURCE).kernel("clgemm_splitk_sum")
        self.lock = threading.Lock()
        # recording.launch's form (the scalar types also set on the kernel)
        self.bound = AllArgs(self.kernel, SUM_TYPES)

    def enqueue(self, queue, m: int, n: int, slabs: int, stride: int, part, beta: float,
                c: Operand) -> "cl.Event":
        return launch(self.bound, self.lock, queue,
                      (m, n, slabs, stride, part, beta, c.buffer, c.ld, c.offset),
                      (-(-n // 64) * 64, m), (64, 1))


def sum_slabs(rt, queue, m: int, n: int, slabs: int, stride: int, part, beta: float,
              c: Operand) -> "cl.Event":
    """C = the sum of `slabs` split-K partial products in `part` (`stride` floats apart), in
    order, + beta C (C unread where beta = 0): the one reduction of every split-K product
    (this lane's, the low-rank path's)."""
    kern = rt.cached("splitk sum", lambda: _SumKernel(rt))
    return kern.enqueue(queue, m, n, slabs, stride, part, beta, c)


class _SlicedLane:
    """What the split-K lanes share (the interface of the float32 lane, Fp32Lane.enqueue):
    C row-major (a column-major C is mapped first), K in `slices` slices, their partial
    products in slabs of pooled scratch (`_slabs` launches the product over them), then
    one small kernel that sums the slabs in order into C (+ beta C)."""

    name = ""
    # pooled slabs, then their sum: recorded and launched again with the slabs kept
    # (lanes/recording.py)
    replayable = True

    def __init__(self, rt, schedule, slices: int) -> None:
        self.rt = rt
        self.schedule = schedule
        self.slices = slices

    def _slabs(self, queue, m: int, n: int, k: int, alpha: float, a: Operand, b: Operand,
               part, slices: int) -> tuple[int, "cl.Event"]:
        """Launch the product over the slices into `part`: (slices used, its event)."""
        raise NotImplementedError

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue", info=None) -> "cl.Event":
        a, b, c, m, n = transposed_c(a, b, c, m, n)
        stride = slab_stride(m, n)
        slices = max(1, min(self.slices, k // MIN_SLICE))
        part = self.rt.pooled(4 * stride * slices, "split-K partial products", queue)
        used, first = self._slabs(queue, m, n, k, alpha, a, b, part, slices)
        last = sum_slabs(self.rt, queue, m, n, used, stride, part, beta, c)
        if info is not None:
            info.extra["lane"] = self.name
            info.events += [first, last]
        return last


class SplitKLane(_SlicedLane):
    """The exact contract on a product whose output has too few tiles to fill the device:
    a generated float32 kernel over K slices, each into its own slab of pooled scratch
    (alpha applied), then one small kernel that sums the slabs in order into C (+ beta C).
    Same interface as the float32 lane (lanes/fp32.Fp32Lane.enqueue); the plan's float32
    lane backs the stations."""

    name = "fp32-splitk"

    def __init__(self, rt, chosen: Plan) -> None:
        super().__init__(rt, chosen.schedule, chosen.slices)

    def note(self, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> str:
        return f"K in {self.slices} slices over {self.schedule.key()}"

    def _slabs(self, queue, m, n, k, alpha, a, b, part, slices):
        layout = layout_for(self.schedule, a, b, Operand(part, 0, n, False))
        used, _, first = get_splitk(self.rt, self.schedule, layout).enqueue(
            queue, m, n, k, alpha, a, b, part, slices)
        return used, first


def splitk_plan(rt, schedule: Schedule, m: int, n: int, k: int) -> Plan | None:
    """The split-K plan for a product the float32 family's `schedule` would run underfilled
    (work-group form only: the direct CPU form slices K itself), or None. On by default
    since the plan campaign's lane verdict promoted it (records/nvidia-h200/2026-12-07-plan-
    traces: 2.0-4.7x the plain launch on the five `skinny` products, errors no larger);
    CLGEMM_SPLITK=0 switches it off."""
    if os.environ.get("CLGEMM_SPLITK", "") == "0" or schedule.direct:
        return None
    if min(m, n, k) == 0 or not underfilled(rt, schedule, m, n):
        return None
    chosen = plan(rt, m, n, k, schedule)
    return chosen if chosen.slices > 1 else None


class TcSplitKLane(_SlicedLane):
    """The exact contract on 3xTF32 (mma.sync) for a product whose output has too few of the
    lane's tiles to fill the device (BERT's 1024 x 768 outputs, a prefill's 512 x 2048: 48
    and 64 tiles of 128 x 128 for 132 units): the kernel over K slices, each slab's tile
    recomputed in float32 where its output is not finite, then the slabs summed in order into
    C (+ beta C). Same interface as the float32 lane; the plan's float32 lane backs the
    stations. The route sends it products with K from route.TC_SPLITK_MIN_K (2048) on: the
    H200's lane verdict timed it 0.75-0.99x the one-launch lanes where K was 768-1024 and
    1.16-6.25x on the ten products with K from 2048 (CLGEMM_TC_SPLITK=0 switches it off)."""

    name = "3xtf32-splitk"

    def note(self, m: int, n: int, k: int, trans_a: bool, trans_b: bool) -> str:
        return f"K in {self.slices} slices over 3xTF32 {self.schedule.key()}"

    def _slabs(self, queue, m, n, k, alpha, a, b, part, slices):
        layout = tc_layout_for(a, b)
        kernel = get_tc_splitk(self.rt, fitting_schedule(self.rt, self.schedule, layout),
                               layout, ieee_fallback=True)
        used, _, first = kernel.enqueue(queue, m, n, k, alpha, a, b, part, slices,
                                        nonfinite_flag(self.rt).scratch)
        return used, first
