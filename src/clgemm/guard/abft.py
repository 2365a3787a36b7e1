"""ABFT-lite: Huang-Abraham checksums of C = alpha op(A) op(B) + beta C_old, computed on the
device, with tolerances that follow the roundoff of the actual data.

Checks. Column sums of the result against alpha (1^T op(A)) op(B) + beta 1^T C_old, row sums
against alpha op(A) (op(B) 1) + beta C_old 1. Every vector is made by one-pass statistics
kernels (guard/kernels.py): B is read twice, A, C and C_old once; only vectors of length
m + n + k come to the host.

Tolerance of a row (columns alike, with m and n swapped). Let r_i be the residual, K the inner
dimension, u = 2^-24.
  * rigorous_i = (K + 2n + 8) u (|alpha| |op(A)| |op(B)| 1 + |beta| |C_old| 1)_i: no clean
    result can exceed it (worst-case float32 error of the product and of the checksums).
  * scale_i = u sqrt(K + n) (||C_i,:||_2 + abs_i / sqrt(n K)): the size of accumulated random
    roundoff (square-root growth), per row of the actual data.
  * tau_i = min(rigorous_i, T scale_i) + tiny, with T = max(c_dev, kappa * robust level of
    |r| / scale over all rows and columns); c_dev is calibrated per device (clean products,
    stored per device fingerprint), the robust level lifts T for data whose roundoff is
    systematic (constant matrices), where every row and column errs alike.
A row or column is suspect when |r| > tau or r is not finite while the expected sum is finite.
A fault shows as suspect rows and columns; their intersections are recomputed on the device
and checked again, then whole rows/columns, then the whole product with another schedule;
FaultError only when the fault persists.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from ..errors import FaultError, ShapeError
from ..plan import get_kernel, layout_for, search_space
from ..runtime import Runtime, get_runtime
from ..schedule import Schedule
from . import faults
from .device import S_ABS, S_SQ, S_SUM, GuardDevice, View, guard_device

U = 2.0**-24
TINY = 2.0**-126
KAPPA = 10.0  # robust-level multiplier (systematic roundoff)
DEFAULT_C = 8.0  # statistical multiplier used until a device is calibrated
MAX_REPAIR = 1 << 16  # elements recomputed one by one before a full recompute


# ---- verdict ---------------------------------------------------------------------------
@dataclass
class Verdict:
    """What the checksums say about one product."""

    ok: bool
    shape: tuple[int, int, int]
    rows: list[int] = field(default_factory=list)  # suspect rows of C
    cols: list[int] = field(default_factory=list)  # suspect columns of C
    nonfinite: bool = False  # a suspect row/column sum is NaN or Inf
    max_ratio: float = 0.0  # max |residual| / tolerance over rows and columns (< 1: clean)
    max_row_ratio: float = 0.0
    max_col_ratio: float = 0.0
    max_rigorous_ratio: float = 0.0  # max |residual| / worst-case roundoff bound
    threshold: float = 0.0  # T in tau = min(rigorous, T * scale)
    calibration: float = 0.0  # c_dev used
    unverifiable: int = 0  # rows + columns whose expected sum is not finite (non-finite input)
    delta_estimate: float | None = None  # single fault: its size from the checksums
    detected: bool = False  # a fault was seen (in this or an earlier check of the same call)
    corrected: bool = False  # repaired element-wise, verified after
    recomputed: bool = False  # recomputed whole, verified after
    repaired_elements: int = 0
    attempts: list[str] = field(default_factory=list)
    check_s: float = 0.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["rows"] = list(self.rows[:32])
        d["cols"] = list(self.cols[:32])
        d["attempts"] = list(self.attempts)
        d["shape"] = tuple(self.shape)
        d["n_rows"] = len(self.rows)
        d["n_cols"] = len(self.cols)
        return d


# ---- calibration ------------------------------------------------------------------------
def _state_dir() -> Path:
    env = os.environ.get("CLGEMM_STATE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_state_dir

    return Path(user_state_dir("clgemm"))


def calibration_path() -> Path:
    return _state_dir() / "abft_calibration.json"


def _load_calibrations() -> dict:
    try:
        return json.loads(calibration_path().read_text())
    except (OSError, ValueError):
        return {}


_cal_cache: dict = {}


def calibration_for(rt: Runtime) -> float:
    path = calibration_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(path), rt.device.fingerprint)
    hit = _cal_cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    c = _calibration_uncached(rt)
    _cal_cache[key] = (stamp, c)
    return c


def _calibration_uncached(rt: Runtime) -> float:
    entry = _load_calibrations().get(rt.device.fingerprint)
    if entry and isinstance(entry.get("c"), (int, float)) and entry["c"] > 0:
        return float(entry["c"])
    return DEFAULT_C


def store_calibration(rt: Runtime, c: float, evidence: dict) -> Path:
    data = _load_calibrations()
    data[rt.device.fingerprint] = {"c": float(c), "device": rt.device.name, **evidence}
    path = calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


# ---- checksum vectors ---------------------------------------------------------------------
@dataclass
class Checksums:
    """Host copies (float64) of the vectors that decide a verdict."""

    exp_row: np.ndarray  # alpha op(A) op(B) 1 + beta C_old 1
    abs_row: np.ndarray
    exp_col: np.ndarray
    abs_col: np.ndarray


def enqueue_operand_sums(gd: GuardDevice, sink, a: View, b: View, c_old: View | None,
                         beta: float):
    """Enqueue (no host wait) the operand vectors: rowside (s, a) of op(A)(op(B)1), colside
    (s, a) of (1^T op(A)) op(B), and C_old's row and column sums (s, a) when beta != 0.
    B is read twice, A and C_old once."""
    out = {"a_rows": None, "b_cols": None, "o_rows": None, "o_cols": None}
    if a.cols > 0:
        b_rows, _ = gd.view_stats(sink, b, row_stats=S_SUM | S_ABS)  # op(B) 1, |op(B)| 1
        a_rows, a_cols = gd.view_stats(sink, a, row_stats=S_SUM | S_ABS,
                                       col_stats=S_SUM | S_ABS, row_w=(b_rows[0], b_rows[1]))
        _, b_cols = gd.view_stats(sink, b, col_stats=S_SUM | S_ABS,
                                  col_w=(a_cols[0], a_cols[1]))
        out["a_rows"], out["b_cols"] = a_rows, b_cols
    if beta != 0.0 and c_old is not None:
        out["o_rows"], out["o_cols"] = gd.view_stats(sink, c_old, row_stats=S_SUM | S_ABS,
                                                     col_stats=S_SUM | S_ABS)
    return out


def sink_size(m: int, n: int, k: int) -> int:
    return 6 * (m + n + k) + 64


def collect_checksums(sink, vecs: dict, m: int, n: int, alpha: float, beta: float) -> Checksums:
    def g(x, stat, length):
        return np.zeros(length) if x is None else sink.get(x[stat], length)

    exp_row, abs_row = alpha * g(vecs["a_rows"], 0, m), abs(alpha) * g(vecs["a_rows"], 1, m)
    exp_col, abs_col = alpha * g(vecs["b_cols"], 0, n), abs(alpha) * g(vecs["b_cols"], 1, n)
    if vecs["o_rows"] is not None:
        exp_row = exp_row + beta * g(vecs["o_rows"], 0, m)
        abs_row = abs_row + abs(beta) * g(vecs["o_rows"], 1, m)
        exp_col = exp_col + beta * g(vecs["o_cols"], 0, n)
        abs_col = abs_col + abs(beta) * g(vecs["o_cols"], 1, n)
    return Checksums(exp_row, abs_row, exp_col, abs_col)


def enqueue_result_sums(gd: GuardDevice, sink, c: View):
    return gd.view_stats(sink, c, row_stats=S_SUM | S_SQ, col_stats=S_SUM | S_SQ)


def collect_result_sums(sink, vecs, m: int, n: int):
    rows, cols = vecs
    return (sink.get(rows[0], m), sink.get(rows[2], m), sink.get(cols[0], n),
            sink.get(cols[2], n))


def operand_checksums(gd: GuardDevice, a: View, b: View, alpha: float, beta: float,
                      c_old: View | None) -> Checksums:
    """Synchronous form (verify, calibration)."""
    from .device import Sink

    m, n = a.rows, b.cols
    _sum_term[0] = 0.0 if gd.fp64 else 1.0
    sink = Sink(gd, sink_size(m, n, a.cols))
    vecs = enqueue_operand_sums(gd, sink, a, b, c_old, beta)
    sink.read()
    return collect_checksums(sink, vecs, m, n, alpha, beta)


def result_sums(gd: GuardDevice, c: View):
    from .device import Sink

    sink = Sink(gd, sink_size(c.rows, c.cols, 0))
    vecs = enqueue_result_sums(gd, sink, c)
    sink.read()
    return collect_result_sums(sink, vecs, c.rows, c.cols)


# ---- judgement ----------------------------------------------------------------------------
SUM_TERM = {"fp64": 0.0, "fp32": 1.0}  # weight of the checksum's own length in the scale
_sum_term = [1.0]


def _side(sums, sq, exp, absb, length: int, k: int):
    """residual, rigorous bound, scale, expected-finite mask for rows (length = n) or cols.
    With double-precision checksums (the device has fp64) the scale is the product's own
    roundoff, u sqrt(K) ||C_i,:||; with float32 checksums their summation adds u sqrt(n)."""
    with np.errstate(all="ignore"):
        resid = sums - exp
        rig = (k + 2 * length + 8) * U * absb * 1.02 + (k + length + 4) * TINY
        scale = U * math.sqrt(k + _sum_term[0] * length + 4) * (np.sqrt(np.maximum(sq, 0.0))
                                            + absb / math.sqrt(max(length * k, 1)))
        checkable = np.isfinite(exp) & np.isfinite(absb) & np.isfinite(rig)
    return resid, rig, scale, checkable


MIN_SIDE = 8  # a side with fewer sums is checked against the rigorous bound only


def _threshold(resid, scale, ok, c_dev: float) -> float:
    """T of one side: the calibrated c_dev, lifted to KAPPA x the side's robust level of
    |r| / scale (its 75th percentile, which a few faulty sums cannot move)."""
    if len(resid) < MIN_SIDE:
        return math.inf
    with np.errstate(all="ignore"):
        z = np.abs(resid) / scale
    z = z[ok & np.isfinite(z)]
    if z.size < MIN_SIDE:
        return max(c_dev, math.inf)
    # 75th percentile (linear interpolation, as np.percentile) by two O(n) selections
    pos = 0.75 * (z.size - 1)
    lo = int(math.floor(pos))
    part = np.partition(z, (lo, min(lo + 1, z.size - 1)))
    level = float(part[lo] + (pos - lo) * (part[min(lo + 1, z.size - 1)] - part[lo]))
    return max(c_dev, KAPPA * level)


def judge(ck: Checksums, c_sums, k: int, c_dev: float) -> Verdict:
    row_s, row_q, col_s, col_q = c_sums
    m, n = len(row_s), len(col_s)
    rr, rig_r, sc_r, ok_r = _side(row_s, row_q, ck.exp_row, ck.abs_row, n, k)
    rc, rig_c, sc_c, ok_c = _side(col_s, col_q, ck.exp_col, ck.abs_col, m, k)
    T_r = _threshold(rr, sc_r, ok_r, c_dev)
    T_c = _threshold(rc, sc_c, ok_c, c_dev)

    def flags(resid, rig, sc, ok, T):
        with np.errstate(all="ignore"):
            tau = np.fmin(rig, T * sc) + TINY  # fmin: inf * 0 (no statistic) -> rigorous
            ratio = np.abs(resid) / tau
            bad = ok & ~(np.abs(resid) <= tau)  # NaN residual is bad
            ratio = np.where(ok, ratio, 0.0)
            rig_ratio = np.where(ok, np.abs(resid) / (rig + TINY), 0.0)
        return bad, ratio, rig_ratio

    bad_r, ratio_r, rig_ratio_r = flags(rr, rig_r, sc_r, ok_r, T_r)
    bad_c, ratio_c, rig_ratio_c = flags(rc, rig_c, sc_c, ok_c, T_c)
    rows = np.flatnonzero(bad_r).tolist()
    cols = np.flatnonzero(bad_c).tolist()

    def fmax(x):
        if not x.size:
            return 0.0
        v = float(x.max())
        return math.inf if math.isnan(v) else v

    nonfinite = bool((~np.isfinite(rr[bad_r])).any() or (~np.isfinite(rc[bad_c])).any())
    v = Verdict(
        ok=not rows and not cols, shape=(m, n, k), rows=rows, cols=cols, nonfinite=nonfinite,
        max_row_ratio=fmax(ratio_r), max_col_ratio=fmax(ratio_c),
        max_rigorous_ratio=max(fmax(rig_ratio_r), fmax(rig_ratio_c)), threshold=max(T_r, T_c),
        calibration=c_dev, unverifiable=int((~ok_r).sum() + (~ok_c).sum()),
    )
    v.max_ratio = max(v.max_row_ratio, v.max_col_ratio)
    v.detected = not v.ok
    if len(rows) == 1 and len(cols) == 1 and np.isfinite(rr[rows[0]]):
        v.delta_estimate = float(0.5 * (rr[rows[0]] + rc[cols[0]]))
    return v


def normalized_residuals(ck: Checksums, c_sums, k: int) -> np.ndarray:
    """|residual| / scale over rows and columns (calibration statistic)."""
    row_s, row_q, col_s, col_q = c_sums
    rr, _, sc_r, ok_r = _side(row_s, row_q, ck.exp_row, ck.abs_row, len(col_s), k)
    rc, _, sc_c, ok_c = _side(col_s, col_q, ck.exp_col, ck.abs_col, len(row_s), k)
    with np.errstate(all="ignore"):
        z = np.concatenate([np.abs(rr) / sc_r, np.abs(rc) / sc_c])
    return z[np.concatenate([ok_r, ok_c]) & np.isfinite(z)]


# ---- public verify ------------------------------------------------------------------------
def _as_view(rt: Runtime, name: str, x, trans: bool, keep: list) -> View:
    from ..operands import device_operand, logical_shape, upload

    rows, cols = logical_shape(x, trans)
    if isinstance(x, cla.Array):
        op = device_operand(rt, name, x, trans)
    else:
        x = np.asarray(x)
        if x.dtype != np.float32:
            from ..errors import DTypeError

            raise DTypeError(f"{name} has dtype {x.dtype}; verify checks float32 products")
        op, _ = upload(rt, name, x, trans)
    keep.append(op)
    return View.of(op, rows, cols)


def verify(A, B, C, *, alpha: float = 1.0, beta: float = 0.0, C_old=None,
           trans_a: bool = False, trans_b: bool = False, device=None) -> Verdict:
    """Check that C == alpha op(A) op(B) + beta C_old up to float32 roundoff.

    Works on any product (numpy arrays, or clgemm device arrays), including one computed
    elsewhere; nothing is repaired. C_old is needed when beta != 0."""
    if beta != 0.0 and C_old is None:
        raise ShapeError("beta != 0: pass C_old, the C before the product was accumulated")
    if isinstance(A, cla.Array):
        from ..api import _runtime_of

        rt = _runtime_of(A, device)
    else:
        rt = get_runtime(device)
    keep: list = []
    a = _as_view(rt, "A", A, trans_a, keep)
    b = _as_view(rt, "B", B, trans_b, keep)
    c = _as_view(rt, "C", C, False, keep)
    if a.cols != b.rows or (c.rows, c.cols) != (a.rows, b.cols):
        raise ShapeError(f"shapes do not chain: op(A) {a.rows}x{a.cols}, op(B) "
                         f"{b.rows}x{b.cols}, C {c.rows}x{c.cols}")
    o = _as_view(rt, "C_old", C_old, False, keep) if beta != 0.0 else None
    t0 = time.perf_counter()
    gd = guard_device(rt)
    ck = operand_checksums(gd, a, b, float(alpha), float(beta), o)
    v = judge(ck, result_sums(gd, c), a.cols, calibration_for(rt))
    v.check_s = time.perf_counter() - t0
    return v


# ---- checked product ----------------------------------------------------------------------
def _alternative_schedule(rt: Runtime, chosen: Schedule) -> Schedule:
    from ..api import SAFE_SCHEDULE
    from ..select.table import DEFAULT_CPU, DEFAULT_GPU, load_table

    space = search_space(rt)
    cands = list(load_table(rt.device).candidates()) + [DEFAULT_GPU, DEFAULT_CPU, SAFE_SCHEDULE]
    for s in cands:
        if s != chosen and space.is_valid(s):
            return s
    return chosen


def _launch(rt, schedule, m, n, k, alpha, beta, a: View, b: View, c: View, info,
            fault_at: int = -1, wait: bool = True):
    ao, bo, co = a.operand(), b.operand(), c.operand()
    kernel = get_kernel(rt, schedule, layout_for(schedule, ao, bo, co),
                        fault_injection=fault_at >= 0)
    event = kernel.enqueue(m, n, k, alpha, beta, ao, bo, co,
                           **({"fault_at": fault_at} if fault_at >= 0 else {}))
    if not wait:
        return event
    event.wait()
    return (event.profile.end - event.profile.start) * 1e-9


def _copy_span(rt: Runtime, dst: View, src: View) -> None:
    n = src.span_elems()
    if n:
        cl.enqueue_copy(rt.queue, dst.buffer, src.buffer, byte_count=4 * n,
                        src_offset=4 * src.offset, dst_offset=4 * dst.offset)


def checked_core(rt: Runtime, a: View, b: View, c: View, alpha: float, beta: float,
                 schedule: Schedule, info) -> Verdict:
    """Compute C = alpha op(A) op(B) + beta C into view c (not transposed), verify, repair."""
    from .device import Sink

    m, n, k = a.rows, b.cols, a.cols
    gd = guard_device(rt)
    _sum_term[0] = 0.0 if gd.fp64 else 1.0
    hooks = faults.active()
    t0 = time.perf_counter()
    saved = None
    sink = Sink(gd, sink_size(m, n, k))
    o_vecs = None
    if beta != 0.0:
        span = c.span_elems()
        buf = rt.buffer(4 * max(span, 1), what="C_old copy")
        saved = View(buf, 0, c.ld, False, m, n)
        _copy_span(rt, saved, c)
    # One queue, one wait: the product first (its host-side enqueue returns at once), then
    # every checksum pass behind it, then a single read of all the vectors.
    fault_at = hooks.accumulator_fault(0) if hooks else -1
    if beta != 0.0:
        o_vecs = enqueue_operand_sums(gd, sink, a, b, saved, beta)
    event = _launch(rt, schedule, m, n, k, alpha, beta, a, b, c, info, fault_at, wait=False)
    if hooks:
        event.wait()
        hooks.corrupt(gd, c, "gemm")
    if o_vecs is None:
        o_vecs = enqueue_operand_sums(gd, sink, a, b, saved, beta)
    r_vecs = enqueue_result_sums(gd, sink, c)
    sink.read()
    info.kernel_s = (event.profile.end - event.profile.start) * 1e-9
    ck = collect_checksums(sink, o_vecs, m, n, alpha, beta)
    c_dev = calibration_for(rt)
    v = judge(ck, collect_result_sums(sink, r_vecs, m, n), k, c_dev)
    attempts: list[str] = []
    detected = not v.ok
    first = v
    step = 0
    while not v.ok:
        step += 1
        rows, cols = np.asarray(v.rows, np.int64), np.asarray(v.cols, np.int64)
        # A whole-row (or column) pattern: many suspect sums on one side, few on the other.
        line_pattern = len(cols) > max(n // 4, 2) or len(rows) > max(m // 4, 2)
        if (step == 1 and len(rows) and len(cols) and not line_pattern
                and len(rows) * len(cols) <= MAX_REPAIR):
            ii, jj = np.meshgrid(rows, cols, indexing="ij")
            kind = "intersections"
        elif step <= 2 and len(rows) * n + len(cols) * m <= MAX_REPAIR and (len(rows) or len(cols)):
            parts_i, parts_j = [], []
            if len(rows):
                ii, jj = np.meshgrid(rows, np.arange(n), indexing="ij")
                parts_i.append(ii.ravel()); parts_j.append(jj.ravel())
            if len(cols):
                ii, jj = np.meshgrid(np.arange(m), cols, indexing="ij")
                parts_i.append(ii.ravel()); parts_j.append(jj.ravel())
            ii, jj = np.concatenate(parts_i), np.concatenate(parts_j)
            step = 2
            kind = "rows+cols"
        elif step <= 3:
            step = 3
            kind = "recompute"
        else:
            break
        if kind == "recompute":
            alt = _alternative_schedule(rt, schedule)
            if saved is not None:
                _copy_span(rt, c, saved)
            fault_at = hooks.accumulator_fault(len(attempts) + 1) if hooks else -1
            _launch(rt, alt, m, n, k, alpha, beta, a, b, c, info, fault_at)
            attempts.append(f"recompute:{alt.key()}")
        else:
            ii, jj = ii.ravel(), jj.ravel()
            gd.recompute(ii, jj, k, alpha, beta, a, b, c, saved)
            attempts.append(f"{kind}:{len(ii)}")
        if hooks:
            hooks.corrupt(gd, c, kind)
        v = judge(ck, result_sums(gd, c), k, c_dev)
        if v.ok:
            v.detected = True
            v.corrected = kind != "recompute"
            v.recomputed = kind == "recompute"
            v.repaired_elements = 0 if kind == "recompute" else len(ii)
    v.attempts = attempts
    v.detected = detected
    v.delta_estimate = first.delta_estimate
    v.check_s = max(time.perf_counter() - t0 - info.kernel_s, 0.0)  # wall, less the GEMM
    info.checked = True
    info.extra["abft"] = v.as_dict()
    if detected:
        info.extra["abft"]["first"] = {"rows": first.rows[:32], "cols": first.cols[:32],
                                       "max_ratio": first.max_ratio,
                                       "nonfinite": first.nonfinite}
    if not v.ok:
        raise FaultError(
            f"ABFT: the {m}x{n}x{k} product still fails its checksums after "
            f"{', '.join(attempts) or 'no repair'} (suspect rows {v.rows[:8]}, columns "
            f"{v.cols[:8]}, max residual/tolerance {v.max_ratio:.3g}); the device may be "
            "faulty: rerun elsewhere or report it")
    return v


def checked_matmul(rt: Runtime, A, B, *, C=None, alpha: float = 1.0, beta: float = 0.0,
                   trans_a: bool = False, trans_b: bool = False, schedule: Schedule,
                   info):
    """matmul(check=True): the product, verified by checksums (repaired when possible)."""
    from ..operands import run_product

    k = info.shape[2]

    def compute(a, b, c, m, n):
        checked_core(rt, View.of(a, m, k), View.of(b, k, n), View.of(c, m, n),
                     alpha, beta, schedule, info)

    return run_product(rt, A, B, C, beta, trans_a, trans_b, info, compute), info
