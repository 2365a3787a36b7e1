"""Randomized low-rank products on the device, in one sketch: Y = op(A) (op(B) Omega) with
Omega = [Omega_basis | probes] (n x (l + q), Gaussian, drawn on the device), one Gram matrix
read back, then the projection C~ = Q (Q^T op(A) op(B)) with Q from a Cholesky of the
sketch's Gram matrix (re-orthogonalised through a second Gram, CholeskyQR2 style, whose
correction is applied to the small factor only), and an a-posteriori error estimate on the
q probe columns, which are fresh w.r.t. the basis.

Two host round-trips on the success path (the sketch's Gram; the small estimator matrices),
one when the product is turned away (full rank: the probes' residual against the sketch is
large). All big products go through clgemm's own kernels (splitk.py plans); intermediates
live in device buffers cached by shape. Sketch vectors are kept as rows (row-major,
transposed) so that slices of them are contiguous.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools

from ..guard.device import guard_device
from ..staging import pinned_host
from ..lanes import splitk
from ..lanes.fp32 import choose_schedule, enqueue_product, layout_for
from ..lanes.mma import DEFAULT_SCHEDULES, nonfinite_flag, valid_for
from ..lanes.mma import get_kernel as tc_kernel
from ..lanes.mma import layout_for as tc_layout_for
from ..lanes.probe import tensorcore_support
from ..operands import (Operand, device_operand, logical_shape, scale_empty_product,
                        transposed_c)
from ..select.table import shape_class

# Gaussian probes: the ratio estimate times a safety factor (safety_for(b)) under-states the
# true relative error with probability < 1% even when the error or the product is rank one
# (chi-square tails, see `confidence`); spread-out errors are estimated much more tightly.
TARGET_CONFIDENCE = 0.99


@functools.lru_cache(maxsize=None)
def confidence(b: int, safety: float) -> float:
    """Lower bound on P(true rel. error <= safety * estimate) for b Gaussian probes: the
    worst case is a rank-one error (numerator chi2_b / b below 1/safety) or a rank-one
    product (denominator chi2_b / b above safety)."""
    from math import exp, lgamma, log

    def chi2_cdf(x, k):  # regularized lower gamma P(k/2, x/2), series
        a, z = k / 2.0, x / 2.0
        if z <= 0:
            return 0.0
        term = exp(-z + a * log(z) - lgamma(a + 1))
        s, t, n = term, term, 0
        while t > 1e-16 * s and n < 10000:
            n += 1
            t *= z / (a + n)
            s += t
        return min(1.0, s)

    # estimate * safety < true needs num^2 / E num^2 < 1 / safety or den^2 / E den^2 > safety
    low = chi2_cdf(b / safety, b)
    high = 1.0 - chi2_cdf(b * safety, b)
    return max(0.0, 1.0 - low - high)


@functools.lru_cache(maxsize=None)
def safety_for(b: int, target: float = TARGET_CONFIDENCE) -> float:
    """Smallest safety factor (grid of 0.25) whose worst-case confidence reaches target."""
    f = 1.5
    while confidence(b, f) < target and f < 20:
        f += 0.25
    return f


import threading


class Products:
    """GEMMs on device arrays of one runtime with the library's own kernels, enqueued without
    waiting (the queue is in order; reading a result synchronises). Schedules are chosen once
    per shape class (choose_schedule is too slow to call per product)."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.queue = rt.queue
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self._schedules: dict = {}
        self._plans: dict = {}
        self._keep: list = []
        self._ws: dict = {}
        self._pin: dict = {}
        self._pin_used: dict = {}
        self.lock = threading.RLock()  # one low-rank call at a time uses the workspace
        self.launches = 0
        self.gd = guard_device(rt)

    def _schedule(self, m: int, n: int, k: int):
        key = shape_class(m, n, k)
        s = self._schedules.get(key)
        if s is None:
            s = self._schedules[key] = choose_schedule(self.rt, m, n, k)
        return s

    def _plan(self, m: int, n: int, k: int, split: bool):
        key = (m, n, k, split)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = splitk.plan(self.rt, m, n, k, self._schedule(m, n, k),
                                               allow_split=split)
        return p

    def mm(self, A, B, *, ta=False, tb=False, C=None, alpha=1.0, beta=0.0, lane=None):
        """alpha op(A) op(B) + beta C for device arrays; returns C (new if not given).
        lane "tf32" or "3xtf32": big products go to the tensor cores (split over K where the
        output has few tiles); None, or a small product: the float32 family."""
        m, k = logical_shape(A, ta)
        _, n = logical_shape(B, tb)
        out = C if C is not None else self.empty((m, n))
        if m == 0 or n == 0:
            return out
        if k == 0:  # C may be a user array, of another queue
            return scale_empty_product(out, beta, self.queue)
        a = device_operand(self.rt, "A", A, ta)
        b = device_operand(self.rt, "B", B, tb)
        c = device_operand(self.rt, "C", out, False)
        self.mm_operands(a, b, c, m, n, k, alpha, beta, lane)
        return out

    def mm_operands(self, a, b, c, m: int, n: int, k: int, alpha=1.0, beta=0.0,
                    lane=None) -> None:
        """mm on operands (m, n, k > 0): C = alpha op(A) op(B) + beta C."""
        a, b, c, m, n = transposed_c(a, b, c, m, n)
        if lane is not None and 2.0 * m * n * k >= TC_MIN_FLOPS and self._tc(
                lane, m, n, k, alpha, beta, a, b, c):
            return
        plan = self._plan(m, n, k, beta == 0.0 and c.ld == n)
        self.launches += 1
        if plan.slices <= 1:
            enqueue_product(self.rt, plan.schedule, m, n, k, alpha, beta, a, b, c, self.queue)
            return
        stride = splitk.slab_stride(m, n)
        part = self.gd.raw(4 * stride * plan.slices)
        po = Operand(part, 0, n, False)
        sk = splitk.get_splitk(self.rt, plan.schedule, layout_for(plan.schedule, a, b, po))
        used, _, _ = sk.enqueue(self.queue, m, n, k, alpha, a, b, part, plan.slices)
        splitk.sum_slabs(self.rt, self.queue, m, n, used, stride, part, 0.0, c)
        self.launches += 1

    def _tc(self, lane, m, n, k, alpha, beta, a, b, c) -> bool:
        """The product on the tensor cores; False where the lane cannot take it here."""
        s = DEFAULT_SCHEDULES[lane]
        if not tensorcore_support(self.rt).async_copy:
            s = replace(s, async_copy=0, stages=2)
        layout = tc_layout_for(a, b)
        if not valid_for(self.rt, s, layout):
            return False
        flag = nonfinite_flag(self.rt).scratch
        slices = splitk.tc_slices(self.rt, s, m, n, k) if beta == 0.0 and c.ld == n else 1
        self.launches += 1
        if slices <= 1:
            tc_kernel(self.rt, s, layout).enqueue(m, n, k, alpha, beta, a, b, c, flag=flag)
            return True
        stride = splitk.slab_stride(m, n)
        part = self.gd.raw(4 * stride * slices)
        sk = splitk.get_tc_splitk(self.rt, s, layout)
        used, _, _ = sk.enqueue(self.queue, m, n, k, alpha, a, b, part, slices, flag)
        splitk.sum_slabs(self.rt, self.queue, m, n, used, stride, part, 0.0, c)
        self.launches += 1
        return True

    def randn(self, shape, rng) -> cla.Array:
        """Standard normal probes drawn on the device (seeded from rng)."""
        x = self.empty(shape)
        self.gd.randn(x, int(rng.integers(1, 2**62)))
        return x

    @classmethod
    def of(cls, rt) -> "Products":
        """The one Products of a runtime (schedules and memory pool kept across calls)."""
        return rt.cached("lowrank products", lambda: cls(rt))

    def upload(self, x: np.ndarray) -> cla.Array:
        """Non-blocking upload (a blocking write would wait for the whole queue)."""
        host = np.ascontiguousarray(x, np.float32)
        out = self.empty(host.shape)
        cl.enqueue_copy(self.queue, out.base_data, host, dst_offset=out.offset,
                        is_blocking=False)
        self._keep.append(host)
        if len(self._keep) > 64:
            del self._keep[:32]
        return out

    def read(self, *arrays) -> list[np.ndarray]:
        """Host copies (float64) of device arrays with one wait (the queue is in order)."""
        return [h.astype(np.float64) for h in self.read_float32(*arrays)]

    def read_float32(self, *arrays) -> list[np.ndarray]:
        """The device arrays in page-locked host arrays, one wait; valid until the next read
        (callers hold self.lock)."""
        self._pin_used.clear()
        hosts = [self._pinned(a.shape) for a in arrays]
        for i, (h, a) in enumerate(zip(hosts, arrays)):
            cl.enqueue_copy(self.queue, h, a.base_data, src_offset=a.offset,
                            is_blocking=i == len(arrays) - 1)
        self._keep.clear()
        return hosts

    def _pinned(self, shape) -> np.ndarray:
        """Page-locked host arrays by shape, reused: a read into pageable memory costs an
        extra staging copy on NVIDIA's OpenCL. Two reads of one shape in one call get two
        arrays (a counter per shape, reset by read)."""
        key = tuple(shape)
        if key not in self._pin and len(self._pin) >= 32:
            self._pin.clear()  # many shapes seen: start over (the buffers go with them)
            self._pin_used.clear()
        used = self._pin_used.get(key, 0)
        pool = self._pin.setdefault(key, [])
        if used == len(pool):
            pool.append(pinned_host(self.rt, key, np.float32))
        self._pin_used[key] = used + 1
        return pool[used][0]

    def empty(self, shape) -> cla.Array:
        return cla.empty(self.queue, shape, np.float32, allocator=self.pool)

    def ws(self, name: str, shape) -> cla.Array:
        """A scratch device array cached by (name, shape): the queue is in order, so the
        next call's writes come after this call's reads; callers hold self.lock."""
        key = (name, tuple(shape))
        x = self._ws.get(key)
        if x is None:
            if len(self._ws) > 64:
                self._ws.clear()
            x = self._ws[key] = self.empty(shape)
        return x

    def copy_into(self, dst: cla.Array, src: cla.Array) -> None:
        cl.enqueue_copy(self.queue, dst.base_data, src.base_data, byte_count=4 * src.size,
                        src_offset=src.offset, dst_offset=dst.offset)




# ---- the one-sketch low-rank product -------------------------------------------------------
TC_MIN_FLOPS = 2.0**28  # products from here on may take the tensor cores (lane given)
PROBES = 16  # Gaussian probe columns of the a-posteriori estimate (safety_for(16) = 3)
SHIFT = 1e-6  # Cholesky shift of the sketch Gram, relative to its largest diagonal entry
GIVE_UP_FLOOR = 3e-2  # the Gram-based residual (shifted Cholesky) decides "full rank" above this


def sketch_cols(m: int, n: int, k: int, cap: int) -> int:
    """Basis columns l of the sketch: about min(m, n) / 24 (rank n/32 plus oversampling),
    at least 32, at most the affordable cap."""
    want = max(32, -(-int(math.ceil(min(m, n) / 24)) // 16) * 16)
    return max(1, min(cap, want, min(m, n, k)))


@dataclass
class Sketch:
    ok: bool
    reason: str
    l: int
    q: int
    rank: int = 0
    rho: float = float("nan")  # Gram-based residual of the probes against the sketch
    estimate: float = float("inf")  # a-posteriori estimate (safety included)
    raw: float = float("inf")
    safety: float = 0.0
    times: dict = field(default_factory=dict)


PR_GIVE_UP = 0.75  # a sketch Gram whose participation ratio exceeds this share of l: full rank


def participation_ratio(G: np.ndarray) -> float:
    """(sum of eigenvalues)^2 / sum of their squares for a symmetric PSD G, without an
    eigendecomposition: trace(G)^2 / ||G||_F^2. It never exceeds rank(G). For the Gram of an
    l-column Gaussian sketch of a product with r comparable singular values it is about
    r l / (r + l): below l / 2 whenever r <= l, near l for a full-rank product of a large
    size (the numpy on the host is O(l^2), no LAPACK call)."""
    tr = float(np.trace(G))
    ss = float(np.square(G).sum())
    return tr * tr / ss if ss > 0 else 0.0


def _chol(G: np.ndarray, s: float) -> np.ndarray:
    """Upper R with R^T R = G + s' I (s' = s, raised until the factorisation goes through)."""
    eye = np.eye(G.shape[0])
    for _ in range(6):
        try:
            return np.linalg.cholesky(G + s * eye).T
        except np.linalg.LinAlgError:
            s *= 10.0
    raise np.linalg.LinAlgError("sketch Gram not factorisable")


def sketch_product(P: Products, dA, dB, ta: bool, tb: bool, m: int, n: int, k: int,
                   budget: float, l: int, rng: np.random.Generator, alpha: float,
                   beta: float, dC, out, q: int = PROBES, lane: str | None = None) -> Sketch:
    """alpha op(A) op(B) + beta C into `out` by a rank <= l projection when the estimate meets
    budget; otherwise out is untouched when beta != 0 (ok False: the caller computes exact).
    `dC` is C's old content on the device (beta != 0) and may be `out` itself. `lane`
    ("tf32", "3xtf32" or None) is where the big products run (Products.mm)."""
    t0 = time.perf_counter()
    times = {}
    L = l + q
    # ---- phase A: the sketch and its Gram matrix (one read) ------------------------------
    OmT = P.ws("omega", (L, n))
    P.gd.randn(OmT, int(rng.integers(1, 2**62)))
    # The decision (full rank or not) needs only a TF32 sketch: the give-up thresholds below
    # sit far above TF32's ~3e-4 error. A budget that needs float32-level products sketches
    # again in 3xTF32 once the product is found worth it.
    decide = "tf32" if lane is not None else None

    def sketch(sketch_lane):
        Tt = P.mm(OmT, dB, tb=not tb, C=P.ws("t", (L, k)), lane=sketch_lane)  # L x k
        Yt = P.mm(Tt, dA, tb=not ta, C=P.ws("y", (L, m)), lane=sketch_lane)  # (C Omega)^T
        P.queue.flush()  # the device starts on the sketch while the Gram is enqueued
        (G,) = P.read(P.mm(Yt, Yt, tb=True, C=P.ws("g", (L, L))))
        return Yt, G

    Yt, G = sketch(decide)
    times["sketch_s"] = time.perf_counter() - t0
    res = Sketch(False, "", l, q)
    res.times = times
    gyy = np.diag(G)[:l]
    tz = float(np.trace(G[l:, l:]))
    if not np.all(np.isfinite(G)):
        res.reason = "non-finite sketch"
        return res
    if tz == 0.0 or float(gyy.max()) == 0.0:
        res.reason = "zero product"
        return res
    pr = participation_ratio(G[:l, :l])
    if pr > PR_GIVE_UP * l:
        res.reason = (f"full rank: the {l}-column sketch spreads over {pr:.0f} directions "
                      f"(participation ratio; a product of rank <= {l} stays near {l // 2})")
        return res
    s = SHIFT * float(max(gyy.max(), np.diag(G)[l:].max()))
    R = _chol(G, s)
    res.rho = rho = math.sqrt(float(np.sum(R[l:, l:] ** 2)) / tz)
    res.safety = safety = safety_for(q)
    if rho > GIVE_UP_FLOOR and rho * safety > 1.5 * budget:
        res.reason = (f"full rank for this budget: probe residual {rho:.3g} against the "
                      f"{l}-column sketch")
        return res
    if lane != decide:
        Yt, G = sketch(lane)
        times["resketch_s"] = time.perf_counter() - t0 - times["sketch_s"]
        tz = float(np.trace(G[l:, l:]))
        if not np.all(np.isfinite(G)) or tz == 0.0:
            res.reason = "non-finite or zero sketch"
            return res
    # The big projections need only the sketch: Y_l^T op(A) op(B) is enqueued now and runs
    # while the host takes the eigendecomposition (Q^T = W1^T Y_l^T, so Q^T op(A) op(B) =
    # W1^T (Y_l^T op(A) op(B)) afterwards, a small product).
    YA = P.mm(Yt[:l], dA, tb=ta, C=P.ws("ya", (l, k)), lane=lane)  # Y_l^T op(A): l x k
    YAB = P.mm(YA, dB, tb=tb, C=P.ws("yab", (l, n)), lane=lane)  # Y_l^T op(A) op(B): l x n
    P.queue.flush()
    gyy_m = G[:l, :l]
    lam, V = np.linalg.eigh(0.5 * (gyy_m + gyy_m.T))
    keep = lam > max(lam[-1] * 1e-6, 0.0)  # singular values above 1e-3 of the largest
    r = res.rank = int(keep.sum())
    if r == 0:
        res.reason = "no direction above the noise"
        return res
    W1 = (V[:, keep] / np.sqrt(lam[keep])).astype(np.float32)  # Q1 = Y W1
    times["host1_s"] = time.perf_counter() - t0 - times["sketch_s"]
    # ---- phase B: basis, projection, estimator pieces (one read) -----------------------
    dW1 = P.upload(W1)
    Qt = P.mm(dW1, Yt[:l], ta=True, C=P.ws("q", (r, m)))  # r x m
    G2 = P.mm(Qt, Qt, tb=True, C=P.ws("g2", (r, r)))
    Wp = P.mm(dW1, YAB, ta=True, C=P.ws("w", (r, n)))  # Q^T op(A) op(B): r x n
    probes = OmT[l:]
    Ww = P.mm(Wp, probes, tb=True, C=P.ws("ww", (r, q)))  # r x q
    Zt = Yt[l:]  # (C_exact / alpha - beta part) on the probes, transposed: q x m
    D = P.ws("d", (q, m))
    P.copy_into(D, Zt)
    P.mm(Ww, Qt, ta=True, C=D, alpha=-1.0, beta=1.0)  # Z - Q1 Q1^T C w (transposed)
    H = P.mm(Qt, D, tb=True, C=P.ws("h", (r, q)))
    DG = P.mm(D, D, tb=True, C=P.ws("dg", (q, q)))
    reads = [G2, Ww, H, DG]
    if dC is not None and beta != 0.0:
        T = P.ws("truth", (q, m))
        P.copy_into(T, Zt)
        P.mm(probes, dC, tb=True, C=T, alpha=beta, beta=alpha)  # (alpha Z + beta C_old w)^T
        reads.append(P.mm(T, T, tb=True, C=P.ws("tg", (q, q))))
    got = P.read(*reads)
    t1 = time.perf_counter()
    g2, ww, h_, dg = got[:4]
    den2 = float(np.trace(got[4])) if len(got) > 4 else alpha * alpha * tz
    try:
        g2inv = np.linalg.inv(0.5 * (g2 + g2.T))
    except np.linalg.LinAlgError:
        res.reason = "singular second Gram"
        return res
    # C~ w = Q1 G2^-1 Q1^T C w: D_true = D - Q1 h, h = (G2^-1 - I) Ww (all error-sized terms)
    h = g2inv @ ww - ww
    num2 = float(np.trace(dg)) - 2.0 * float(np.sum(h * h_)) + float(np.sum(h * (g2 @ h)))
    num = abs(alpha) * math.sqrt(max(num2, 0.0))
    den = math.sqrt(max(den2, 0.0))
    res.raw = num / den if den > 0 else (0.0 if num == 0 else math.inf)
    res.estimate = res.raw * safety
    times["host2_s"] = time.perf_counter() - t1
    if not (res.estimate <= budget):
        res.reason = f"estimate {res.estimate:.3g} > budget {budget:.3g}"
        return res
    # ---- the product: out = alpha Q1 (G2^-1 W) + beta C ---------------------------------
    Z = P.mm(P.upload(g2inv.astype(np.float32)), Wp, C=P.ws("z", (r, n)))
    P.mm(Qt, Z, ta=True, C=out, alpha=alpha, beta=beta, lane=lane)
    res.ok = True
    res.reason = "estimate met the budget"
    times["total_s"] = time.perf_counter() - t0
    return res
