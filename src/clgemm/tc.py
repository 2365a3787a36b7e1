"""The tensor-core lane: TF32 and 3xTF32 GEMM kernels (kernels/tensorcore.py) launched like
plan.GemmKernel, the capability check, and the budgeted TF32 product that guard/contract.py calls.

Supported: any M, N, K >= 0; alpha, beta (C unread when beta == 0); A stored M x K or K x M
(trans_a), B stored K x N or N x K (trans_b), any leading dimensions and offsets (16-byte
copies where lda/ldb and the offsets are multiples of 4, element copies otherwise); C
row-major (a column-major C is mapped by swapping operands, as clgemm.operands.run_product does).

Offered only on NVIDIA devices of compute capability >= 8.0 whose OpenCL compiler runs the
PTX (a test compile + run of a small product); elsewhere `tensorcore_available` is False and
the float32 family serves unchanged.

On compute capability 9.0 (Hopper), TF32 products go to the warpgroup-MMA kernel of
kernels/wgmma.py where its own probe passes (sm_90a PTX built as a program binary) and the
operands allow it (leading dimensions and offsets of multiples of 4 floats): operands that are
not K-contiguous are transposed into scratch first. CLGEMM_WGMMA=0 keeps TF32 on mma.sync.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pyopencl as cl

from .errors import ClgemmError, ShapeError
from .kernels import wgmma
from .kernels.tensorcore import (KERNEL_NAME, Dialect, TcLayout, TcSchedule, TcSearchSpace,
                                 render_tc)
from .plan import Operand, cached_kernel, check_index_range
from .runtime import BuildInfo, Runtime


# Defaults until a device table says otherwise (H100 measurements: benchmarks/tc/).
DEFAULT_SCHEDULES = {
    "tf32": TcSchedule(block_m=128, block_n=128, block_k=16, warps_m=2, warps_n=2, stages=2,
                       mode="tf32", fold=0, async_copy=1, raster=1),
    "3xtf32": TcSchedule(block_m=128, block_n=128, block_k=16, warps_m=2, warps_n=2, stages=2,
                         mode="3xtf32", fold=3, async_copy=1, raster=1),
}


def default_dialect() -> Dialect:
    """PTX, or (CLGEMM_TC_EMULATE=1, for tests and dry runs) its plain OpenCL C stand-ins."""
    return Dialect(emulate=os.environ.get("CLGEMM_TC_EMULATE") == "1")


def search_space(rt: Runtime) -> TcSearchSpace:
    d = rt.device
    return TcSearchSpace(local_mem_bytes=d.local_mem_bytes, max_work_group_size=d.max_work_group_size)


def layout_for(a: Operand, b: Operand) -> TcLayout:
    return TcLayout(trans_a=a.transposed, trans_b=b.transposed,
                    aligned_a=a.ld % 4 == 0 and a.offset % 4 == 0,
                    aligned_b=b.ld % 4 == 0 and b.offset % 4 == 0)


class TcKernel:
    """One compiled tensor-core kernel (schedule + layout) for any M, N, K."""

    takes_flag = True  # the kernel's last argument: the non-finite output flag

    def __init__(self, rt: Runtime, schedule: TcSchedule, layout: TcLayout,
                 dialect: Dialect | None = None) -> None:
        dialect = dialect or default_dialect()
        space = search_space(rt) if not dialect.emulate else TcSearchSpace(
            rt.device.local_mem_bytes, rt.device.max_work_group_size)
        space.check(schedule, layout)
        self.rt, self.schedule, self.layout, self.dialect = rt, schedule, layout, dialect
        self.source = render_tc(schedule, layout, dialect)
        built = rt.build(self.source, options="-cl-mad-enable")
        self.build_info: BuildInfo = built.info
        self.program = built.program
        self._kernel = built.kernel(KERNEL_NAME)
        # Declared once so each launch packs plain Python numbers (set_args is per call).
        self._kernel.set_scalar_arg_dtypes(
            [np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
             None, np.int32, np.int32, None, np.int32, np.int32, None])
        self._lock = threading.Lock()

    def global_size(self, m: int, n: int) -> int:
        s = self.schedule
        return (-(-m // s.block_m)) * (-(-n // s.block_n)) * s.threads

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float,
                a: Operand, b: Operand, c: Operand, queue=None, wait_for=None,
                flag: "cl.Buffer | None" = None) -> "cl.Event":
        """`flag` (an int32 buffer, zero before) becomes nonzero when an output is not
        finite; without one, a scratch flag that nobody reads is used."""
        if a.transposed != self.layout.trans_a or b.transposed != self.layout.trans_b:
            raise ShapeError("operand layout does not match the kernel's; this is a clgemm bug")
        if c.transposed:
            raise ShapeError("the tensor-core kernel writes row-major C; map column-major C first")
        check_index_range(m, n, k)
        queue = queue or self.rt.queue
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset]
        if self.takes_flag:
            args.append(flag if flag is not None else nonfinite_flag(self.rt).scratch)
        gsize = max(self.global_size(m, n), self.schedule.threads)  # an empty C: one idle group
        with self._lock:
            self._kernel.set_args(*args)
            return cl.enqueue_nd_range_kernel(queue, self._kernel, (gsize,),
                                              (self.schedule.threads,), wait_for=wait_for)


class NonfiniteFlag:
    """One int32 device flag per runtime that the kernels raise on a non-finite output. It is
    zero between calls: only a call that finds it raised clears it (no write per call)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        zero = np.zeros(1, np.int32)
        mf = cl.mem_flags
        self.buffer = cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=zero)
        self.scratch = cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=zero)
        # The read lands in page-locked host memory (a mapped ALLOC_HOST_PTR buffer): a small
        # read into pageable memory goes through a staging copy that cost ~100 us per call on
        # NVIDIA's OpenCL.
        self._pinned_buffer = cl.Buffer(rt.context, mf.READ_WRITE | mf.ALLOC_HOST_PTR, size=4)
        self._pinned, _ = cl.enqueue_map_buffer(rt.queue, self._pinned_buffer,
                                                cl.map_flags.READ | cl.map_flags.WRITE, 0, (1,),
                                                np.int32, is_blocking=True)
        self.lock = threading.Lock()

    def raised(self, wait_for=None) -> bool:
        """Read the flag after the kernel (blocking) and clear it if it was raised."""
        got = self._pinned
        cl.enqueue_copy(self.rt.queue, got, self.buffer, wait_for=wait_for, is_blocking=True)
        if got[0]:
            cl.enqueue_copy(self.rt.queue, self.buffer, np.zeros(1, np.int32), is_blocking=True)
            return True
        return False


_FLAGS: dict[int, NonfiniteFlag] = {}
_FLAGS_LOCK = threading.Lock()


def nonfinite_flag(rt: Runtime) -> NonfiniteFlag:
    with _FLAGS_LOCK:
        if id(rt) not in _FLAGS:
            _FLAGS[id(rt)] = NonfiniteFlag(rt)
        return _FLAGS[id(rt)]


def get_kernel(rt: Runtime, schedule: TcSchedule, layout: TcLayout,
               dialect: Dialect | None = None) -> TcKernel:
    dialect = dialect or default_dialect()
    return cached_kernel(("tc", id(rt), schedule, layout, dialect),
                         lambda: TcKernel(rt, schedule, layout, dialect))


# ---- capability ------------------------------------------------------------------------
@dataclass
class TcSupport:
    available: bool
    reason: str
    async_copy: bool = False  # cp.async staging ran correctly (else register staging only)
    errors: dict = field(default_factory=dict)


_support: dict[int, TcSupport] = {}
_support_lock = threading.Lock()

PROBE_SCHEDULE = TcSchedule(block_m=32, block_n=32, block_k=8, warps_m=1, warps_n=1, stages=2,
                            mode="tf32", fold=0, async_copy=1, raster=1)


def _probe_product(rt: Runtime, schedule: TcSchedule, dialect: Dialect | None = None) -> float:
    """Relative error of a small odd-shaped product (37 x 45 x 29) through `schedule`."""
    rng = np.random.default_rng(1234)
    m, n, k = 37, 45, 29
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    mf = cl.mem_flags
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, k, False)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, n, False)
    out = np.full((m, n), np.nan, np.float32)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0, n, False)
    kernel = get_kernel(rt, schedule, layout_for(a, b), dialect)
    kernel.enqueue(m, n, k, 1.0, 0.0, a, b, c).wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def ptx_blocker(rt: Runtime, what: str) -> str | None:
    """Why inline-PTX mma lanes cannot run on this device (None: they may; a probe product
    decides): NVIDIA's OpenCL, compute capability 8.0 or newer, inline PTX compiled and run."""
    d = rt.device
    cc = d.capabilities.nv_compute_capability
    if not d.is_nvidia:
        return "not an NVIDIA device: no inline PTX"
    if cc is None or tuple(cc) < (8, 0):
        return f"compute capability {cc} < 8.0: no {what}"
    if not rt.probe_inline_ptx():
        return "the OpenCL compiler did not run inline PTX"
    return None


def tensorcore_support(rt: Runtime) -> TcSupport:
    """Whether the tensor-core lane is offered on this device (probed once per runtime)."""
    with _support_lock:
        known = _support.get(id(rt))
    if known is not None:
        return known
    blocker = ptx_blocker(rt, "TF32 mma.sync")
    if blocker:
        support = TcSupport(False, blocker)
    else:
        support = TcSupport(False, "probe failed")
        for async_copy in (1, 0):
            s = replace(PROBE_SCHEDULE, async_copy=async_copy)
            try:
                err = _probe_product(rt, s)
            except (ClgemmError, cl.Error) as exc:
                support.errors[s.key()] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            if err <= 1e-2:
                support = TcSupport(True, "ok", async_copy=bool(async_copy), errors=support.errors)
                break
            support.errors[s.key()] = f"wrong result: rel error {err:.3e}"
    with _support_lock:
        _support[id(rt)] = support
    return support


def tensorcore_available(rt: Runtime) -> bool:
    return tensorcore_support(rt).available


# ---- a product on the device --------------------------------------------------------------
def schedule_for(rt: Runtime, mode: str, m: int, n: int, k: int) -> TcSchedule:
    """The device table's tensor-core schedule for this shape (tuned per shape class), else
    the built-in default; memoized per runtime and shape (matmul asks on every call)."""
    key = (id(rt), mode, m, n, k)
    s = _schedule_memo.get(key)
    if s is None:
        s = _schedule_memo.setdefault(key, _schedule_for(rt, mode, m, n, k))
    return s


_schedule_memo: dict[tuple, TcSchedule] = {}


def _schedule_for(rt: Runtime, mode: str, m: int, n: int, k: int) -> TcSchedule:
    from .select.table import load_table

    lane = load_table(rt.device).tensorcore
    s = ((lane.lookup(mode, m, n, k, rt.device.compute_units) if lane is not None else None)
         or DEFAULT_SCHEDULES[mode])
    if s.mode != mode:
        s = replace(s, mode=mode)
    if not tensorcore_support(rt).async_copy:
        s = replace(s, async_copy=0, stages=2)
    return s


def exact_schedule(rt: Runtime, m: int, n: int, k: int) -> "TcSchedule | wgmma.WgSchedule | None":
    """The 3xTF32 schedule that serves the exact contract (rel_tol=None) on this device, or
    None: the float32 family serves. 3xTF32 serves only where the device table says the gate
    promoted it (`tensorcore.exact`), for products of at least the table's `min_flops`, where
    the capability probe passes and CLGEMM_EXACT_LANE is not "fp32" (the switch back to the
    float32 family). The wgmma 3xTF32 kernel serves instead where the table names it
    (`exact_kernel`, set where the gate promoted it over mma.sync) and its own probe passes."""
    from .select.table import load_table

    if os.environ.get("CLGEMM_EXACT_LANE", "").lower() == "fp32":
        return None
    lane = load_table(rt.device).tensorcore
    if lane is None or lane.exact != "3xtf32" or min(m, n, k) == 0:
        return None
    if 2.0 * m * n * k < lane.min_flops:
        return None
    if not tensorcore_available(rt):
        return None
    wg = wgmma_exact_schedule(rt, m, n) if lane.exact_kernel == "wgmma" else None
    return wg or schedule_for(rt, "3xtf32", m, n, k)


def enqueue_product(rt: Runtime, mode: str, m: int, n: int, k: int, alpha: float, beta: float,
                    a: Operand, b: Operand, c: Operand,
                    schedule: "TcSchedule | wgmma.WgSchedule | None" = None,
                    flag: "cl.Buffer | None" = None) -> "cl.Event":
    """C = alpha op(A) op(B) + beta C through the tensor cores; returns the kernel's event.
    A wgmma schedule (of the product's mode) runs the wgmma kernel."""
    if c.transposed:
        # column-major C: C^T = op(B)^T op(A)^T into its row-major storage
        a, b = replace(b, transposed=not b.transposed), replace(a, transposed=not a.transposed)
        m, n = n, m
        c = replace(c, transposed=False)
    if isinstance(schedule, wgmma.WgSchedule):
        if schedule.mode != mode:
            raise ClgemmError(f"a {schedule.mode} schedule for a {mode} product; this is a clgemm bug")
        return enqueue_wgmma(rt, m, n, k, alpha, beta, a, b, c, flag=flag, schedule=schedule)
    if schedule is None and mode == "tf32" and wgmma_route(rt, a, b, m, n, k):
        return enqueue_wgmma(rt, m, n, k, alpha, beta, a, b, c, flag=flag)
    s = schedule or schedule_for(rt, mode, m, n, k)
    if s.mode != mode:
        s = replace(s, mode=mode)
    layout = layout_for(a, b)
    if not _valid_for(rt, s, layout):  # e.g. a transposed layout's pads overflow
        s = replace(DEFAULT_SCHEDULES[mode], async_copy=s.async_copy,
                    stages=s.stages if s.async_copy else 2)
    return get_kernel(rt, s, layout).enqueue(m, n, k, alpha, beta, a, b, c, flag=flag)


@functools.lru_cache(maxsize=4096)
def _valid_memo(local_mem: int, max_wg: int, s: TcSchedule, layout: TcLayout) -> bool:
    return TcSearchSpace(local_mem, max_wg).is_valid(s, layout)


def _valid_for(rt: Runtime, s: TcSchedule, layout: TcLayout) -> bool:
    """Validity of a schedule for a layout on this device, computed once per combination
    (every launch asks)."""
    d = rt.device
    return _valid_memo(d.local_mem_bytes, d.max_work_group_size, s, layout)


def tc_matmul(A: np.ndarray, B: np.ndarray, *, C: np.ndarray | None = None, alpha: float = 1.0,
              beta: float = 0.0, trans_a: bool = False, trans_b: bool = False,
              mode: str = "3xtf32", rt: Runtime | None = None,
              schedule: "TcSchedule | wgmma.WgSchedule | None" = None) -> tuple[np.ndarray, float]:
    """Host arrays in, (result, kernel seconds) out. For tests and benchmarks; the public
    door stays clgemm.matmul (the exact lane, and `tf32_product` under rel_tol)."""
    from .runtime import get_runtime

    rt = rt or get_runtime()
    if not tensorcore_available(rt):
        raise ClgemmError(f"no tensor-core lane on {rt.device.name!r}: "
                          f"{tensorcore_support(rt).reason}")
    A = np.ascontiguousarray(A, np.float32)
    B = np.ascontiguousarray(B, np.float32)
    m, k = (A.shape[1], A.shape[0]) if trans_a else A.shape
    k2, n = (B.shape[1], B.shape[0]) if trans_b else B.shape
    if k != k2:
        raise ShapeError(f"inner dimensions differ: {k} and {k2}")
    mf = cl.mem_flags
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0,
                max(A.shape[1], 1), trans_a)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0,
                max(B.shape[1], 1), trans_b)
    out = (np.ascontiguousarray(C, np.float32).copy() if (C is not None and beta != 0.0)
           else np.empty((m, n), np.float32))
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0,
                max(n, 1), False)
    if m == 0 or n == 0:
        return out, 0.0
    ev = enqueue_product(rt, mode, m, n, k, alpha, beta, a, b, c, schedule)
    ev.wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    return out, (ev.profile.end - ev.profile.start) * 1e-9


# ---- a host-side a-posteriori error estimate --------------------------------------------------
def estimate_error(A, B, result, *, alpha=1.0, beta=0.0, C_old=None, trans_a=False,
                   trans_b=False, probes: int = 4, seed: int | None = None) -> float:
    """Relative Frobenius error of `result` against alpha op(A) op(B) + beta C, estimated with
    Gaussian probes in float64: ||(R - X) w|| / ||X w|| over `probes` vectors w (matrix-vector
    products only: O(probes (mk + kn + mn)))."""
    rng = np.random.default_rng(seed)
    opA = (A.T if trans_a else A)
    opB = (B.T if trans_b else B)
    w = rng.standard_normal((opB.shape[1], probes))
    exact = alpha * (opA.astype(np.float64) @ (opB.astype(np.float64) @ w))
    if beta != 0.0 and C_old is not None:
        exact = exact + beta * (C_old.astype(np.float64) @ w)
    got = np.asarray(result, np.float64) @ w
    denom = np.linalg.norm(exact)
    return float(np.linalg.norm(got - exact) / denom) if denom > 0 else float(np.linalg.norm(got))


# ---- TF32 under an error budget, on the device ----------------------------------------------
@dataclass
class BudgetedProduct:
    """A TF32 product and its a-posteriori estimate (before any safety factor)."""

    result: object  # numpy array or pyopencl array, as run_product returns it
    estimate: float
    kernel_s: float
    schedule: str


def tf32_product(rt: Runtime, A, B, C, alpha: float, beta: float, trans_a: bool, trans_b: bool,
                 info, probes: int, seed: int | None = None) -> BudgetedProduct:
    """C = alpha op(A) op(B) + beta C with TF32 operands, estimated on the device: with a
    Gaussian W (n x probes, drawn on the device), ||(R - X) W|| / ||X W|| where X W = alpha
    op(A) (op(B) W) + beta C_old W is formed by the float32 family's skinny products, split
    over K (guard.lowrank.Products; float32 is ~1e-7 exact, far below the >= 5e-3 budgets TF32
    serves). Only the m x probes blocks come back to the host, in one wait; host or device
    operands stay where they are (operands.run_product)."""
    from .guard.lowrank import Products
    from .operands import run_product

    rng = np.random.default_rng(seed)
    k = info.shape[2]
    box: dict = {}
    P = Products.of(rt)

    def compute(a: Operand, b: Operand, c: Operand, m: int, n: int) -> None:
        with P.lock:
            wt = P.ws("tf32 probes", (probes, n))  # W^T: rows are probes
            P.gd.randn(wt, int(rng.integers(1, 2**62)))
            w_op = Operand(wt.base_data, wt.offset // 4, n, True)

            def skinny(x: Operand, y: Operand, rows: int, inner: int, name: str):
                out = P.ws(name, (rows, probes))
                P.mm_operands(x, y, Operand(out.base_data, out.offset // 4, probes, False),
                              rows, probes, inner)
                return out

            c_old_w = skinny(c, w_op, m, n, "tf32 cw") if beta != 0.0 else None
            # The product first: the estimate's small launches are enqueued while it runs
            # (issued one by one from Python, they would otherwise keep the device waiting).
            s = (wgmma.DEFAULT if wgmma_route(rt, a, b, m, n, k)
                 else schedule_for(rt, "tf32", m, n, k))
            event = enqueue_product(rt, "tf32", m, n, k, alpha, beta, a, b, c,
                                    s if isinstance(s, TcSchedule) else None)
            P.queue.flush()
            bw = skinny(b, w_op, k, n, "tf32 bw")  # op(B) W
            abw = skinny(a, Operand(bw.base_data, bw.offset // 4, probes, False), m, k,
                         "tf32 abw")  # op(A) (op(B) W)
            rw = skinny(c, w_op, m, n, "tf32 rw")  # R W
            got = P.read_float32(*([abw, rw] + ([c_old_w] if c_old_w is not None else [])))
            # In float32 on the page-locked blocks themselves, norms by BLAS dot: every
            # float64 copy and elementwise pass over these 3072 x 16 blocks cost ~20-40 us on
            # the H100's host; float32's 1e-7 is far below the >= 5e-3 budgets judged here.
            exact = np.float32(alpha) * got[0]
            if len(got) > 2:
                exact += np.float32(beta) * got[2]
            x = exact.ravel()
            d = got[1].ravel() - x
            denom = math.sqrt(max(float(np.dot(x, x)), 0.0))
            diff = math.sqrt(max(float(np.dot(d, d)), 0.0))
        box["estimate"] = float(diff / denom) if denom > 0 else float(diff)
        box["kernel_s"] = (event.profile.end - event.profile.start) * 1e-9
        box["schedule"] = s.key()

    result = run_product(rt, A, B, C, beta, trans_a, trans_b, info, compute)
    return BudgetedProduct(result, box.get("estimate", 0.0), box.get("kernel_s", 0.0),
                           box.get("schedule", ""))


# ---- TF32 on the warpgroup MMA (Hopper, sm_90a) -----------------------------------------------
_TRANSPOSE_C = """
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void clgemm_transpose(const int R, const int Cn, __global const float* restrict X,
                      const int ldx, const int x_off, __global float* restrict Y, const int ldy)
{
  // Y (Cn x R, leading dimension ldy) = X^T for X (R x Cn): 32 x 32 tiles through local
  // memory, one padding column against bank conflicts
  __local float tile[32][33];
  X += x_off;
  const int bx = get_group_id(0) * 32, by = get_group_id(1) * 32;
  const int tx = get_local_id(0), ty = get_local_id(1);
  for (int j = ty; j < 32; j += 8)
    if (by + j < R && bx + tx < Cn) tile[j][tx] = X[(long)(by + j) * ldx + bx + tx];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = ty; j < 32; j += 8)
    if (bx + j < Cn && by + tx < R) Y[(long)(bx + j) * ldy + by + tx] = tile[tx][j];
}

// 3xTF32's operand split: hi = x rounded to TF32 on its bits (to nearest, ties away: the top
// 19 bits after adding half of the dropped part), lo = x - hi (exact in float32). An Inf x
// gives a NaN lo (Inf - Inf), so the product is flagged non-finite, never silently wrong.
#define TF32_HI(x) as_float((as_uint(x) + 0x1000u) & 0xffffe000u)

void split_tile(const int R, const int Cn, __global const float* restrict X, const int ldx,
                const int transpose, __global float* restrict Y, const int ldy, const long lo,
                __local float (*tile)[33])
{
  // X is R x Cn; Y = X (transpose 0) or X^T (transpose 1), hi at Y and lo at Y + lo.
  // transpose is the same for the whole work-group: the early return skips no barrier
  // that other work-items wait at
  const int bx = get_group_id(0) * 32, by = get_group_id(1) * 32;
  const int tx = get_local_id(0), ty = get_local_id(1);
  if (!transpose) {
    for (int j = ty; j < 32; j += 8)
      if (by + j < R && bx + tx < Cn) {
        const float x = X[(long)(by + j) * ldx + bx + tx], h = TF32_HI(x);
        const long at = (long)(by + j) * ldy + bx + tx;
        Y[at] = h;
        Y[lo + at] = x - h;
      }
    return;
  }
  for (int j = ty; j < 32; j += 8)
    if (by + j < R && bx + tx < Cn) tile[j][tx] = X[(long)(by + j) * ldx + bx + tx];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = ty; j < 32; j += 8)
    if (bx + j < Cn && by + tx < R) {
      const float x = tile[tx][j], h = TF32_HI(x);
      const long at = (long)(bx + j) * ldy + by + tx;
      Y[at] = h;
      Y[lo + at] = x - h;
    }
}

// Both operands of a product in one launch (one enqueue less of host time per call):
// work-groups of z = 0 split A, of z = 1 split B
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void clgemm_split_tf32(
    const int Ra, const int Ca, __global const float* restrict Xa, const int lda, const int a_off,
    const int ta, __global float* restrict Ya, const long a_lo,
    const int Rb, const int Cb, __global const float* restrict Xb, const int ldb, const int b_off,
    const int tb, __global float* restrict Yb, const long b_lo, const int ldy)
{
  __local float tile[32][33];
  if (get_group_id(2) == 0) split_tile(Ra, Ca, Xa + a_off, lda, ta, Ya, ldy, a_lo, tile);
  else split_tile(Rb, Cb, Xb + b_off, ldb, tb, Yb, ldy, b_lo, tile);
}
"""


@dataclass
class WgSupport:
    available: bool
    reason: str


_wg_support: dict[tuple[int, int], WgSupport] = {}

# The probe's bound per mode: TF32 errs ~8e-4 (truncated operands); 3xTF32 must stay at
# float32's level (numpy float32 errs ~3e-8 on the probe's product).
_WG_PROBE_BOUND = {1: 3e-3, 3: 1e-6}


def wgmma_support(rt: Runtime, splits: int = 1) -> WgSupport:
    """Whether TF32 (splits=1) or 3xTF32 (splits=3) products may take the wgmma kernel here
    (probed once per runtime and mode): an NVIDIA device of compute capability 9.0 exactly
    (sm_90a code runs on no other), the inline-PTX lane, CLGEMM_WGMMA not "0", and a probe
    product of odd shape within the mode's error."""
    key = (id(rt), splits)
    with _support_lock:
        known = _wg_support.get(key)
    if known is not None:
        return known
    cc = rt.device.capabilities.nv_compute_capability
    if os.environ.get("CLGEMM_WGMMA", "1") == "0":
        support = WgSupport(False, "switched off (CLGEMM_WGMMA=0)")
    elif not rt.device.is_nvidia or cc is None or tuple(cc) != (9, 0):
        support = WgSupport(False, f"not an sm_90 NVIDIA device (compute capability {cc})")
    elif not tensorcore_available(rt):
        support = WgSupport(False, "no tensor-core lane: " + tensorcore_support(rt).reason)
    else:
        try:
            err = _wg_probe(rt, wgmma.DEFAULT if splits == 1 else wgmma.DEFAULT_3X)
            support = (WgSupport(True, "ok") if err <= _WG_PROBE_BOUND[splits] else
                       WgSupport(False, f"probe product wrong: rel error {err:.3e}"))
        except (ClgemmError, cl.Error) as exc:
            support = WgSupport(False, f"{type(exc).__name__}: {str(exc)[:300]}")
    with _support_lock:
        _wg_support[key] = support
    return support


def _wg_probe(rt: Runtime, schedule: wgmma.WgSchedule) -> float:
    """Relative error of an odd-shaped product (200 x 264 x 70: edge tiles, a partial chunk
    of K) through the wgmma kernel (3xTF32: through its split too), against float64."""
    rng = np.random.default_rng(4321)
    m, n, k = 200, 264, 70
    A = rng.standard_normal((m, k)).astype(np.float32)
    Bt = rng.standard_normal((n, k)).astype(np.float32)
    mf = cl.mem_flags

    def padded(x: np.ndarray) -> "cl.Buffer":  # rows of k + 2 = 72 floats: 16-byte rows
        return cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR,
                         hostbuf=np.pad(x, ((0, 0), (0, 2))))

    a = Operand(padded(A), 0, k + 2, False)
    b = Operand(padded(Bt), 0, k + 2, True)
    out = np.full((m, n), np.nan, np.float32)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0, n, False)
    enqueue_wgmma(rt, m, n, k, 1.0, 0.0, a, b, c, schedule=schedule).wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    ref = A.astype(np.float64) @ Bt.T.astype(np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


# Below this many flops (2 m n k) a product whose operands must be transposed first stays on
# mma.sync: with B stored K x N the call's span (transpose, host gaps, product) lost to
# mma.sync at 1400 and 2048 and won at 3072 and 4096 on the H200 (benchmarks/tc/h200/wgmma,
# lane3: 34 vs 52, 91 vs 104, 126 vs 100, 163 vs 132 TFLOPS); without a transpose it won at
# every size (78, 140, 150, 182 TFLOPS).
WGMMA_TRANSPOSE_MIN_FLOPS = 3.0e10


def wgmma_route(rt: Runtime, a: Operand, b: Operand, m: int, n: int, k: int) -> bool:
    """Whether a TF32 product of these operands takes the wgmma kernel: the device passed its
    probe, the operands stored K-contiguous have 16-byte rows (the others are transposed into
    scratch, which has), and a product that needs a transpose is big enough to pay for it."""
    def fits(x: Operand, k_contiguous: bool) -> bool:
        return not k_contiguous or (x.ld % 4 == 0 and x.offset % 4 == 0)

    if not (fits(a, not a.transposed) and fits(b, b.transposed)):
        return False
    if (a.transposed or not b.transposed) and 2.0 * m * n * k < WGMMA_TRANSPOSE_MIN_FLOPS:
        return False
    return wgmma_support(rt).available


def _wave_efficiency(s: "wgmma.WgSchedule", m: int, n: int, compute_units: int) -> tuple[float, int, int]:
    """(efficiency, work-groups, slots of one wave) of `s` on an m x n output."""
    groups = (-(-m // s.block_m)) * (-(-n // s.block_n))
    slots = wgmma.resident_groups(s) * max(compute_units, 1)
    return groups / (-(-groups // slots) * slots), groups, slots


def wgmma_3x_schedule(rt: Runtime, m: int, n: int) -> "wgmma.WgSchedule":
    """The 3xTF32 wgmma schedule for an m x n output: DEFAULT_3X unless its work-groups need
    more than one wave and leave the last mostly empty (efficiency under the device tables'
    bar, 0.85) where WIDE_3X's fill theirs better (2048 on 132 SMs: 512 groups on 396 slots,
    0.65, against 0.97)."""
    from .select.table import TcLane

    cu = rt.device.compute_units
    eff, groups, slots = _wave_efficiency(wgmma.DEFAULT_3X, m, n, cu)
    if groups <= slots or eff >= TcLane.MIN_WAVE_EFFICIENCY:
        return wgmma.DEFAULT_3X
    wide, _, _ = _wave_efficiency(wgmma.WIDE_3X, m, n, cu)
    return wgmma.WIDE_3X if wide > eff else wgmma.DEFAULT_3X


def wgmma_exact_schedule(rt: Runtime, m: int, n: int) -> "wgmma.WgSchedule | None":
    """The 3xTF32 wgmma schedule for the exact lane on this device, or None (the mma.sync
    3xTF32 kernel serves): its probe passed. Any layout goes: both operands are split into
    K-major scratch anyway."""
    return wgmma_3x_schedule(rt, m, n) if wgmma_support(rt, 3).available else None


class WgKernel:
    """The wgmma kernel of one schedule: A stored M x K, B stored N x K (K-major); 3xTF32
    reads each as hi and lo arrays a fixed number of floats apart."""

    takes_flag = True

    def __init__(self, rt: Runtime, schedule: wgmma.WgSchedule) -> None:
        schedule.check(rt.device.local_mem_bytes)
        self.rt, self.schedule = rt, schedule
        self.source = wgmma.render_wgmma(schedule)
        built = rt.build_patched(self.source, "-cl-mad-enable",
                                 lambda ptx: wgmma.patch_ptx(ptx.decode()).encode(),
                                 tag="wgmma-sm90a/1")
        self.build_info: BuildInfo = built.info
        self.program = built.program
        self._kernel = built.kernel(wgmma.KERNEL_NAME)
        lo = [np.int64, np.int64] if schedule.splits == 3 else []
        self._kernel.set_scalar_arg_dtypes(
            [np.int32, np.int32, np.int32, np.float32, np.float32, None, np.int32, np.int32,
             None, np.int32, np.int32, None, np.int32, np.int32, None] + lo)
        self._lock = threading.Lock()

    def bind(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand, b: Operand,
             c: Operand, flag: "cl.Buffer | None" = None,
             lo: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        """Set the kernel's arguments (the caller holds `_lock` until `launch`); returns the
        global and local sizes. `lo`: (3xTF32) the floats from A's and B's hi elements to
        their lo ones."""
        if a.transposed or not b.transposed or c.transposed:
            raise ShapeError("the wgmma kernel takes A as M x K and B as N x K; "
                             "this is a clgemm bug")
        check_index_range(m, n, k)
        s = self.schedule
        groups = (-(-m // s.block_m)) * (-(-n // s.block_n))
        flag = flag if flag is not None else nonfinite_flag(self.rt).scratch
        args = [m, n, k, alpha, beta, a.buffer, a.ld, a.offset, b.buffer, b.ld, b.offset,
                c.buffer, c.ld, c.offset, flag]
        if s.splits == 3:
            args += list(lo)
        self._kernel.set_args(*args)
        return max(groups, 1) * s.threads, s.threads

    def launch(self, sizes: tuple[int, int], queue=None) -> "cl.Event":
        return cl.enqueue_nd_range_kernel(queue or self.rt.queue, self._kernel, (sizes[0],),
                                          (sizes[1],))

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue=None, flag: "cl.Buffer | None" = None,
                lo: tuple[int, int] = (0, 0)) -> "cl.Event":
        with self._lock:
            return self.launch(self.bind(m, n, k, alpha, beta, a, b, c, flag, lo), queue)


def get_wg_kernel(rt: Runtime, schedule: wgmma.WgSchedule) -> WgKernel:
    return cached_kernel(("wgmma", id(rt), schedule), lambda: WgKernel(rt, schedule))


_scratch: dict[tuple, "cl.Buffer"] = {}
# held from a transpose into scratch to the enqueue of the product that reads it, so that two
# threads' products cannot read each other's operand from the shared scratch
_wg_lock = threading.RLock()


def _helper_kernel(rt: Runtime, name: str, arg_types: list, slot: str = "") -> "cl.Kernel":
    """A kernel of _TRANSPOSE_C, one object per runtime and `slot` (two slots' arguments can
    be set before either is enqueued)."""
    def build() -> "cl.Kernel":
        kernel = rt.build(_TRANSPOSE_C).kernel(name)
        # typed once: set_args then packs plain ints (31 -> 5 us per call on this host's
        # Python; the whole NN route costs host time the device waits through)
        kernel.set_scalar_arg_dtypes(arg_types)
        return kernel

    return cached_kernel((name, slot, id(rt)), build)


def _scratch_buffer(rt: Runtime, key: str, nbytes: int) -> "cl.Buffer":
    """This runtime's scratch buffer `key`, grown to `nbytes` (reused by the next call: the
    queue is in order)."""
    buf = _scratch.get((id(rt), key))
    if buf is None or buf.size < nbytes:
        _scratch.pop((id(rt), key), None)  # released before its larger successor is made
        buf = _scratch[(id(rt), key)] = rt.buffer(nbytes, what=f"the wgmma {key} scratch")
    return buf


Launch = Callable[[], cl.Event]  # an enqueue whose kernel arguments are already set


def _k_major(rt: Runtime, x: Operand, rows: int, k: int,
             name: str) -> "tuple[Operand, Launch | None]":
    """x as a rows x K, K-contiguous operand: itself when it is stored so (no launch), else
    its transpose in a scratch buffer of this runtime, with the transpose's arguments set
    and its enqueue returned (the caller enqueues it before the product that reads it)."""
    stored_k_contiguous = (not x.transposed) if name == "A" else x.transposed
    if stored_k_contiguous:
        return x, None
    ld = -(-max(k, 1) // 4) * 4  # 16-byte rows
    buf = _scratch_buffer(rt, name, 4 * max(rows, 1) * ld)
    out = Operand(buf, 0, ld, name == "B")
    if not (rows and k):
        return out, None
    # x is stored K x rows: Y (rows x K) = X^T
    kern = _helper_kernel(rt, "clgemm_transpose",
                          [np.int32, np.int32, None, np.int32, np.int32, None, np.int32], name)
    kern.set_args(k, rows, x.buffer, x.ld, x.offset, buf, ld)
    sizes = (-(-rows // 32) * 32, -(-k // 32) * 8)
    return out, lambda: cl.enqueue_nd_range_kernel(rt.queue, kern, sizes, (32, 8))


def _split_operands(rt: Runtime, a: Operand, b: Operand, m: int, n: int,
                    k: int) -> "tuple[Operand, int, Operand, int, Launch | None]":
    """A and B split for 3xTF32 into hi and lo, each rows x K and K-contiguous with 16-byte
    rows, lo after hi in one scratch buffer per operand, by one launch whose arguments are
    set and whose enqueue is returned: (A's hi operand, the floats from its hi to its lo,
    B's hi operand, the same for B, the launch)."""
    ld = -(-max(k, 1) // 4) * 4
    a_lo, b_lo = max(m, 1) * ld, max(n, 1) * ld
    ya = _scratch_buffer(rt, "A hi/lo", 8 * a_lo)
    yb = _scratch_buffer(rt, "B hi/lo", 8 * b_lo)
    hi_a, hi_b = Operand(ya, 0, ld, False), Operand(yb, 0, ld, True)
    if not (m and n and k):
        return hi_a, a_lo, hi_b, b_lo, None
    ta, tb = a.transposed, not b.transposed  # 1: stored K x rows, transposed here
    ra, ca = (k, m) if ta else (m, k)  # the operands' stored rows and columns
    rb, cb = (k, n) if tb else (n, k)
    kern = _helper_kernel(rt, "clgemm_split_tf32",
                          [np.int32, np.int32, None, np.int32, np.int32, np.int32, None,
                           np.int64] * 2 + [np.int32])
    kern.set_args(ra, ca, a.buffer, a.ld, a.offset, int(ta), ya, a_lo,
                  rb, cb, b.buffer, b.ld, b.offset, int(tb), yb, b_lo, ld)
    sizes = (-(-max(ca, cb) // 32) * 32, -(-max(ra, rb) // 32) * 8, 2)
    return hi_a, a_lo, hi_b, b_lo, lambda: cl.enqueue_nd_range_kernel(rt.queue, kern, sizes,
                                                                       (32, 8, 1))


def enqueue_wgmma(rt: Runtime, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                  b: Operand, c: Operand, flag: "cl.Buffer | None" = None,
                  schedule: wgmma.WgSchedule | None = None,
                  events: list | None = None) -> "cl.Event":
    """C = alpha op(A) op(B) + beta C (row-major C) on the wgmma kernel, TF32 or (a 3xTF32
    schedule) 3xTF32: TF32 operands not stored K-contiguous are transposed into scratch
    first, 3xTF32 operands are always split into scratch. Returns the product's event;
    `events` (a list) receives every command's, in order (the harness times the span)."""
    s = schedule or wgmma.DEFAULT
    kernel = get_wg_kernel(rt, s)
    with _wg_lock:
        if s.splits == 3:
            a_k, a_lo, b_k, b_lo, pre = _split_operands(rt, a, b, m, n, k)
            launches, lo = [pre], (a_lo, b_lo)
        else:
            (a_k, pre_a), (b_k, pre_b) = _k_major(rt, a, m, k, "A"), _k_major(rt, b, n, k, "B")
            launches, lo = [pre_a, pre_b], (0, 0)
        with kernel._lock:
            # every argument is set before the first enqueue: on an idle device the product
            # then follows its pre-pass by one enqueue's host time, not by Python's set-up
            sizes = kernel.bind(m, n, k, alpha, beta, a_k, b_k, c, flag, lo)
            for go in launches:
                if go is not None:
                    ev = go()
                    if events is not None:
                        events.append(ev)
            ev = kernel.launch(sizes)
    if events is not None:
        events.append(ev)
    return ev
