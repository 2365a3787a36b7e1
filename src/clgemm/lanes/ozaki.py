"""Ozaki-scheme float32 GEMM on the integer tensor cores (lab lane; kernels/ozaki.py).

One product is three launches on the runtime's queue: scale (row/column max of op(A),
op(B)), split (int8 digit planes, zero-padded to whole tiles) and the int8 mma product
with its float64 recombination epilogue. K beyond the schedule's exact-int32 limit is cut
into chunks, each scaled and split on its own and summed into C (beta = 1 after the first).

Supported: any M, N, K >= 0; alpha, beta (C unread when beta == 0); A stored M x K or K x M
(trans_a), B stored K x N or N x K (trans_b), any leading dimensions and offsets; C row-major
(a column-major C is mapped by swapping operands). Needs an NVIDIA device of compute
capability >= 8.0 running inline PTX, and cl_khr_fp64; CLGEMM_TC_EMULATE=1 swaps the PTX
for plain OpenCL C (tests on PoCL).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl

from ..errors import ClgemmError, ShapeError
from ..kernels.ozaki import (KERNEL_PRODUCT, KERNEL_SCALE, KERNEL_SPLIT, SPLIT_TILE, OzDialect,
                            OzSchedule, check, render_product, render_split)
from ..operands import Operand, check_index_range, host_pair, transposed_c
from ..runtime import Runtime, get_runtime
from .probe import ptx_blocker


DEFAULT_SCHEDULE = OzSchedule(slices=4, levels=4, block_m=64, block_n=64, block_k=32,
                              warps_m=2, warps_n=2, stages=3, raster=1)


def default_dialect() -> OzDialect:
    return OzDialect(emulate=os.environ.get("CLGEMM_TC_EMULATE") == "1")


def _up(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclass
class Workspace:
    """Device scratch of one product shape: digit planes and row/column maxima."""

    mp: int
    np_: int
    kp: int
    a8: "cl.Buffer"
    b8: "cl.Buffer"
    amax: "cl.Buffer"
    bmax: "cl.Buffer"
    nslab: int = 1
    apart: "cl.Buffer | None" = None
    bpart: "cl.Buffer | None" = None

    def fits(self, mp: int, np_: int, kp: int, slices: int) -> bool:
        return (self.mp, self.np_, self.kp) == (mp, np_, kp) and \
            self.a8.size >= slices * mp * kp and self.b8.size >= slices * np_ * kp


@dataclass
class OzEvents:
    """Events of one product (every chunk): times from OpenCL profiling."""

    scale: list = field(default_factory=list)
    split: list = field(default_factory=list)
    product: list = field(default_factory=list)

    def all(self) -> list:
        return self.scale + self.split + self.product

    def wait(self) -> None:
        for e in self.all():
            e.wait()

    def seconds(self) -> dict:
        """total: first start to last end (gaps included); kernel: the product kernels;
        split: scale + split kernels."""
        def dur(evs):
            return sum((e.profile.end - e.profile.start) for e in evs) * 1e-9
        evs = self.all()
        if not evs:
            return {"total": 0.0, "kernel": 0.0, "split": 0.0}
        total = (max(e.profile.end for e in evs) - min(e.profile.start for e in evs)) * 1e-9
        return {"total": total, "kernel": dur(self.product),
                "split": dur(self.scale) + dur(self.split)}


_I32, _BUF = np.int32, None
# the kernels' arguments (kernels/ozaki.py), None for a buffer
_SCALE_TYPES = [_I32] * 4 + [_BUF] + [_I32] * 4 + [_BUF] + [_I32] * 4 + [_BUF] * 3
_SPLIT_TYPES = [_I32] * 6 + [_BUF] + [_I32] * 4 + [_BUF] + [_I32] * 4 + [_BUF] * 6
_PRODUCT_TYPES = ([_I32] * 3 + [np.float32] * 2 + [_BUF, np.int64, _BUF, np.int64]
                  + [_BUF] * 3 + [_I32] * 2 + [_BUF])


class OzKernel:
    """The three kernels of one schedule and operand layout, compiled as one program."""

    slab_min = 256  # K per scale-kernel slab at least (tests lower it to exercise slabs)

    def __init__(self, rt: Runtime, schedule: OzSchedule, trans_a: bool, trans_b: bool,
                 dialect: OzDialect | None = None) -> None:
        dialect = dialect or default_dialect()
        d = rt.device
        if dialect.emulate:
            check(schedule, local_mem_bytes=1 << 30, max_work_group_size=d.max_work_group_size)
        else:
            check(schedule, d.local_mem_bytes, d.max_work_group_size)
        self.rt, self.schedule, self.dialect = rt, schedule, dialect
        self.trans_a, self.trans_b = trans_a, trans_b
        self.source = (render_split(schedule.slices, kcont_a=not trans_a, kcont_b=trans_b)
                       + render_product(schedule, dialect))
        built = rt.build(self.source)
        self.build_info = built.info
        self.program = built.program
        self._scale = built.kernel(KERNEL_SCALE)
        self._split = built.kernel(KERNEL_SPLIT)
        self._product = built.kernel(KERNEL_PRODUCT)
        # the scalar types set once: set_args then packs the scalars, where without them
        # pyopencl's set_arg tries each kind of argument first (~10 us a scalar:
        # lanes/recording.set_arg), some 40 scalars a K chunk here
        for kernel, types in ((self._scale, _SCALE_TYPES), (self._split, _SPLIT_TYPES),
                              (self._product, _PRODUCT_TYPES)):
            kernel.set_scalar_arg_dtypes(types)
        self._lock = threading.Lock()
        self._ws: Workspace | None = None
        self._flag: cl.Buffer | None = None

    # ---- scratch ------------------------------------------------------------------------
    def workspace(self, m: int, n: int, k: int) -> Workspace:
        s = self.schedule
        mp, np_ = _up(max(m, 1), s.block_m), _up(max(n, 1), s.block_n)
        kp = _up(max(min(k, s.k_limit()), 1), s.block_k)
        if self._ws is None or not self._ws.fits(mp, np_, kp, s.slices):
            ctx, mf = self.rt.context, cl.mem_flags
            self.rt.check_alloc(s.slices * max(mp, np_) * kp, "the Ozaki digit planes")
            # K slabs of the scale kernel: enough groups to fill the device (4 per unit)
            tiles = (mp + np_) // SPLIT_TILE
            want = -(-4 * max(self.rt.device.compute_units, 1) // tiles)
            nslab = max(1, min(want, kp // self.slab_min))
            self._ws = Workspace(mp, np_, kp,
                                 cl.Buffer(ctx, mf.READ_WRITE, size=s.slices * mp * kp),
                                 cl.Buffer(ctx, mf.READ_WRITE, size=s.slices * np_ * kp),
                                 cl.Buffer(ctx, mf.READ_WRITE, size=4 * mp),
                                 cl.Buffer(ctx, mf.READ_WRITE, size=4 * np_), nslab,
                                 cl.Buffer(ctx, mf.READ_WRITE, size=4 * mp * nslab),
                                 cl.Buffer(ctx, mf.READ_WRITE, size=4 * np_ * nslab))
        return self._ws

    def scratch_flag(self) -> "cl.Buffer":
        if self._flag is None:
            self._flag = cl.Buffer(self.rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                                   hostbuf=np.zeros(1, np.int32))
        return self._flag

    # ---- one product ----------------------------------------------------------------------
    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, queue=None, flag=None,
                k_chunk: int | None = None) -> OzEvents:
        """C = alpha op(A) op(B) + beta C (row-major C). `flag` (int32, zero before) is raised
        when an operand or an output is not finite. `k_chunk` (tests) lowers the K chunk."""
        if a.transposed != self.trans_a or b.transposed != self.trans_b:
            raise ShapeError("operand layout does not match the kernel's; this is a clgemm bug")
        if c.transposed:
            raise ShapeError("the Ozaki kernel writes row-major C; map column-major C first")
        check_index_range(m, n, k)
        s = self.schedule
        queue = queue or self.rt.queue
        flag = flag if flag is not None else self.scratch_flag()
        evs = OzEvents()
        if m == 0 or n == 0:
            return evs
        step = s.k_limit() if k_chunk is None else min(_up(k_chunk, s.block_k), s.k_limit())
        ws = self.workspace(m, n, min(k, step))
        mp, np_ = ws.mp, ws.np_
        tiles = (mp // s.block_m) * (np_ // s.block_n)
        chunks = range(0, max(k, 1), step)
        with self._lock:
            for k0 in chunks:
                kc = min(step, k - k0) if k > 0 else 0
                kp = _up(max(kc, 1), s.block_k)
                a_off = a.offset + (k0 * a.ld if a.transposed else k0)
                b_off = b.offset + (k0 if b.transposed else k0 * b.ld)
                ga, gb = mp // SPLIT_TILE, np_ // SPLIT_TILE
                slab = _up(max(-(-kc // ws.nslab), 1), SPLIT_TILE)
                nslab = max(1, -(-kc // slab))
                self._scale.set_args(np.int32(kc), np.int32(ga), np.int32(nslab), np.int32(slab),
                                     a.buffer, np.int32(a.ld), np.int32(a_off), np.int32(m), np.int32(mp),
                                     b.buffer, np.int32(b.ld), np.int32(b_off), np.int32(n), np.int32(np_),
                                     ws.apart, ws.bpart, flag)
                evs.scale.append(cl.enqueue_nd_range_kernel(queue, self._scale,
                                                            ((ga + gb) * nslab * 256,), (256,)))
                gk = kp // SPLIT_TILE
                self._split.set_args(np.int32(kc), np.int32(kp), np.int32(ga * gk), np.int32(gk),
                                     np.int32(gk), np.int32(nslab),
                                     a.buffer, np.int32(a.ld), np.int32(a_off), np.int32(m), np.int32(mp),
                                     b.buffer, np.int32(b.ld), np.int32(b_off), np.int32(n), np.int32(np_),
                                     ws.apart, ws.bpart, ws.amax, ws.bmax, ws.a8, ws.b8)
                evs.split.append(cl.enqueue_nd_range_kernel(queue, self._split,
                                                            ((ga + gb) * gk * 256,), (256,)))
                self._product.set_args(np.int32(m), np.int32(n), np.int32(kp), np.float32(alpha),
                                       np.float32(beta if k0 == 0 else 1.0),
                                       ws.a8, np.int64(mp * kp // 4), ws.b8, np.int64(np_ * kp // 4),
                                       ws.amax, ws.bmax, c.buffer, np.int32(c.ld), np.int32(c.offset),
                                       flag)
                evs.product.append(cl.enqueue_nd_range_kernel(queue, self._product,
                                                              (tiles * s.threads,), (s.threads,)))
        return evs


def get_kernel(rt: Runtime, schedule: OzSchedule, trans_a: bool, trans_b: bool,
               dialect: OzDialect | None = None) -> OzKernel:
    dialect = dialect or default_dialect()
    return rt.cached(("ozaki", schedule, trans_a, trans_b, dialect),
                         lambda: OzKernel(rt, schedule, trans_a, trans_b, dialect))


def enqueue_product(rt: Runtime, m: int, n: int, k: int, alpha: float, beta: float,
                    a: Operand, b: Operand, c: Operand, schedule: OzSchedule | None = None,
                    flag=None, dialect: OzDialect | None = None,
                    k_chunk: int | None = None) -> OzEvents:
    """C = alpha op(A) op(B) + beta C through the Ozaki int8 lane; returns its events."""
    a, b, c, m, n = transposed_c(a, b, c, m, n)
    kern = get_kernel(rt, schedule or DEFAULT_SCHEDULE, a.transposed, b.transposed, dialect)
    return kern.enqueue(m, n, k, alpha, beta, a, b, c, flag=flag, k_chunk=k_chunk)


# ---- capability ---------------------------------------------------------------------------
@dataclass
class OzSupport:
    available: bool
    reason: str
    errors: dict = field(default_factory=dict)


PROBE_SCHEDULE = OzSchedule(slices=4, levels=4, block_m=32, block_n=32, block_k=32,
                            warps_m=1, warps_n=1, stages=2, raster=1)


def probe_error(rt: Runtime, schedule: OzSchedule = PROBE_SCHEDULE,
                dialect: OzDialect | None = None) -> float:
    """Relative error of a small odd-shaped product (37 x 45 x 29) through `schedule`."""
    rng = np.random.default_rng(1234)
    A = rng.standard_normal((37, 29)).astype(np.float32)
    B = rng.standard_normal((29, 45)).astype(np.float32)
    out, _ = ozaki_matmul(A, B, rt=rt, schedule=schedule, dialect=dialect, fallback=False,
                          check_support=False)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def ozaki_support(rt: Runtime) -> OzSupport:
    """Whether the int8 Ozaki lane runs here (probed once per runtime)."""
    return rt.cached("ozaki support", lambda: _ozaki_support(rt))


def _ozaki_support(rt: Runtime) -> OzSupport:
    blocker = ptx_blocker(rt, "m16n8k32 s8 mma.sync")
    if blocker:
        sup = OzSupport(False, blocker)
    else:
        try:
            err = probe_error(rt, PROBE_SCHEDULE, OzDialect())
            sup = (OzSupport(True, "ok") if err <= 1e-6 else
                   OzSupport(False, f"wrong result: rel error {err:.3e}"))
        except (ClgemmError, cl.Error) as exc:
            sup = OzSupport(False, "probe failed", {PROBE_SCHEDULE.key(): f"{type(exc).__name__}: "
                                                    f"{str(exc)[:300]} {getattr(exc, 'log', '')[:2000]}"})
    return sup


# ---- host arrays --------------------------------------------------------------------------
def ozaki_matmul(A: np.ndarray, B: np.ndarray, *, C: np.ndarray | None = None,
                 alpha: float = 1.0, beta: float = 0.0, trans_a: bool = False,
                 trans_b: bool = False, rt: Runtime | None = None,
                 schedule: OzSchedule | None = None, dialect: OzDialect | None = None,
                 k_chunk: int | None = None, fallback: bool = True,
                 check_support: bool = True) -> tuple[np.ndarray, dict]:
    """Host arrays in, (result, info) out, info = {"schedule", "seconds": {total, kernel,
    split}, "fallback"}. A non-finite operand or output (the flag) recomputes the product
    with the float32 family when `fallback` (IEEE propagation), else leaves the Ozaki result."""
    rt = rt or get_runtime()
    dialect = dialect or default_dialect()
    if check_support and not dialect.emulate and not ozaki_support(rt).available:
        raise ClgemmError(f"no Ozaki int8 lane on {rt.device.name!r}: {ozaki_support(rt).reason}")
    A, B, m, n, k = host_pair(A, B, trans_a, trans_b)
    s = schedule or DEFAULT_SCHEDULE
    C_old = None if (C is None or beta == 0.0) else np.ascontiguousarray(C, np.float32).copy()
    out = C_old.copy() if C_old is not None else np.empty((m, n), np.float32)
    info = {"schedule": s.key(), "seconds": {"total": 0.0, "kernel": 0.0, "split": 0.0},
            "fallback": False}
    if m == 0 or n == 0:
        return out, info
    mf = cl.mem_flags
    ctx = rt.context

    def buf(X):  # an empty operand (K == 0) still needs a buffer to pass
        return cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR,
                         hostbuf=X if X.size else np.zeros(1, np.float32))

    a = Operand(buf(A), 0, max(A.shape[1], 1), trans_a)
    b = Operand(buf(B), 0, max(B.shape[1], 1), trans_b)
    c = Operand(cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0, max(n, 1), False)
    flag = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(1, np.int32))
    evs = enqueue_product(rt, m, n, k, alpha, beta, a, b, c, s, flag=flag, dialect=dialect,
                          k_chunk=k_chunk)
    evs.wait()
    info["seconds"] = evs.seconds()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    raised = np.empty(1, np.int32)
    cl.enqueue_copy(rt.queue, raised, flag, is_blocking=True)
    if raised[0] and fallback:
        import clgemm

        opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
        out = clgemm.matmul(np.ascontiguousarray(opA), np.ascontiguousarray(opB),
                            C=None if C_old is None else C_old.copy(), alpha=alpha, beta=beta)
        info["fallback"] = True
    return out, info


# ---- host model of the split (tests, analysis) ------------------------------------------------
def split_reference(X: np.ndarray, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """The split kernel's result on host: X (outer x K, float32; rows are the scaled
    vectors) -> (digits int8 [slices, outer, K], exponents int [outer]) with
    X = 2^(e-6) sum_t d_t 2^(-7(t-1)) + remainder (|remainder| <= 2^(e-7S)), max |row| < 2^e."""
    X = np.asarray(X, np.float32)
    mx = np.abs(X).max(axis=1) if X.shape[1] else np.zeros(X.shape[0], np.float32)
    e = np.where(mx > 0, np.frexp(mx)[1], 0).astype(np.int64)
    r = np.ldexp(X, (6 - e)[:, None]).astype(np.float32)
    digits = np.empty((slices,) + X.shape, np.int8)
    for t in range(slices):
        d = np.rint(r)
        digits[t] = d.astype(np.int8)
        r = ((r - d) * np.float32(128)).astype(np.float32)
    return digits, e


def product_reference(A: np.ndarray, B: np.ndarray, schedule: OzSchedule) -> np.ndarray:
    """float64 value of what the product kernel computes for op(A) @ op(B) (one K chunk):
    the kept pairs of the host split, recombined with the scales (before rounding)."""
    da, ea = split_reference(A, schedule.slices)
    db, eb = split_reference(np.ascontiguousarray(B.T), schedule.slices)
    acc = np.zeros((A.shape[0], B.shape[1]))
    for w in range(schedule.levels + 1, 1, -1):
        P = np.zeros_like(acc)
        for t, u in schedule.pairs():
            if t + u == w:
                P += da[t - 1].astype(np.float64) @ db[u - 1].astype(np.float64).T
        acc = acc * 2.0**-7 + P
    return np.ldexp(acc, (ea[:, None] + eb[None, :] - 12).astype(np.int64))
