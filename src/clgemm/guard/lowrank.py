"""Randomized low-rank products on the device: an adaptive range finder for op(A) op(B)
(Y = A (B Omega) in blocks, orthonormalised against what is kept), and a-posteriori error
estimates on fresh Gaussian probes.

All big products go through clgemm's own GEMM on device arrays; only b x b Gram matrices and
m x b probe blocks come to the host (eigendecompositions and norms in float64).
Q is kept transposed (p x m, row-major) so that its first p columns are a contiguous view.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

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


@dataclass
class RangeResult:
    rank: int  # columns of Q kept
    sketch_cols: int  # probe columns drawn (all blocks, the estimator block included)
    Qt: cla.Array | None  # p x m (rows: orthonormal basis vectors), None when rank 0
    Z: cla.Array | None  # last block A (B Omega') (m x b), fresh w.r.t. Q
    omega: cla.Array | None  # its probes (n x b)
    rho: float  # relative residual of the last block against Q (the error estimate)
    history: list = field(default_factory=list)  # (rank, rho) per block
    reason: str = ""  # why the loop stopped
    seconds: float = 0.0


import threading

_products: dict = {}
_products_lock = threading.Lock()


class Products:
    """GEMMs on device arrays of one runtime with the library's own kernels, enqueued without
    waiting (the queue is in order; reading a result synchronises). Schedules are chosen once
    per shape class (api.choose_schedule is too slow to call per product)."""

    def __init__(self, rt) -> None:
        import pyopencl.tools as cltools

        self.rt = rt
        self.queue = rt.queue
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self._schedules: dict = {}
        self._plans: dict = {}
        self._keep: list = []
        self.launches = 0
        from .device import guard_device

        self.gd = guard_device(rt)

    def _schedule(self, m: int, n: int, k: int):
        from ..api import choose_schedule
        from ..select.table import shape_class

        key = shape_class(m, n, k)
        s = self._schedules.get(key)
        if s is None:
            s = self._schedules[key] = choose_schedule(self.rt, m, n, k)
        return s

    def _plan(self, m: int, n: int, k: int, split: bool):
        from . import splitk

        key = (m, n, k, split)
        p = self._plans.get(key)
        if p is None:
            p = self._plans[key] = splitk.plan(self.rt, m, n, k, self._schedule(m, n, k),
                                               allow_split=split)
        return p

    def mm(self, A, B, *, ta=False, tb=False, C=None, alpha=1.0, beta=0.0):
        """alpha op(A) op(B) + beta C for device arrays; returns C (new if not given)."""
        from dataclasses import replace

        from ..operands import device_operand, logical_shape
        from ..plan import Operand, layout_for
        from . import splitk

        m, k = logical_shape(A, ta)
        _, n = logical_shape(B, tb)
        out = C if C is not None else self.empty((m, n))
        if m == 0 or n == 0:
            return out
        if k == 0:
            if beta == 0.0:
                out.fill(np.float32(0))
            else:
                out *= np.float32(beta)
            return out
        a = device_operand(self.rt, "A", A, ta)
        b = device_operand(self.rt, "B", B, tb)
        c = device_operand(self.rt, "C", out, False)
        if c.transposed:
            a, b = replace(b, transposed=not b.transposed), replace(a, transposed=not a.transposed)
            m, n = n, m
            c = replace(c, transposed=False)
        plan = self._plan(m, n, k, beta == 0.0 and c.ld == n)
        self.launches += 1
        if plan.slices <= 1:
            splitk.launch_plain(self.rt, plan.schedule, m, n, k, alpha, beta, a, b, c)
            return out
        stride = splitk.slab_stride(m, n)
        part = self.gd.raw(4 * stride * plan.slices)
        po = Operand(part, 0, n, False)
        sk = splitk.get_splitk(self.rt, plan.schedule, layout_for(plan.schedule, a, b, po))
        used, _ = sk.enqueue(self.queue, m, n, k, alpha, a, b, part, plan.slices)
        self.gd.sum_slabs(part, m * n, used, stride, c.buffer, c.offset)
        self.launches += 1
        return out

    def randn(self, shape, rng) -> cla.Array:
        """Standard normal probes drawn on the device (seeded from rng)."""
        x = self.empty(shape)
        self.gd.randn(x, int(rng.integers(1, 2**62)))
        return x

    @classmethod
    def of(cls, rt) -> "Products":
        """The one Products of a runtime (schedules and memory pool kept across calls)."""
        with _products_lock:
            p = _products.get(id(rt))
            if p is None:
                p = _products[id(rt)] = cls(rt)
            return p

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
        hosts = [np.empty(a.shape, np.float32) for a in arrays]
        for i, (h, a) in enumerate(zip(hosts, arrays)):
            cl.enqueue_copy(self.queue, h, a.base_data, src_offset=a.offset,
                            is_blocking=i == len(arrays) - 1)
        self._keep.clear()
        return [h.astype(np.float64) for h in hosts]

    def empty(self, shape) -> cla.Array:
        return cla.empty(self.queue, shape, np.float32, allocator=self.pool)


def _orth_block(P: Products, R: cla.Array, ref_norm2: float, rel_cut: float = 1e-3):
    """An orthonormal basis (transposed, r x m) of the columns of R (m x b) that stand out of
    float32 noise, by two passes of Gram-eigen orthonormalisation; None when R is noise."""
    G = P.mm(R, R, ta=True).get().astype(np.float64)
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    keep = lam > max(lam[-1] * rel_cut**2, ref_norm2 * 1e-12, 1e-300)
    if not keep.any():
        return None
    W = (V[:, keep] / np.sqrt(lam[keep])).astype(np.float32)  # b x r
    Xt = P.mm(P.upload(W), R, ta=True, tb=True)  # (R W)^T: r x m
    (G2,) = P.read(P.mm(Xt, Xt, tb=True))
    lam2, V2 = np.linalg.eigh(0.5 * (G2 + G2.T))
    keep2 = lam2 > lam2[-1] * 1e-6
    W2 = (V2[:, keep2] / np.sqrt(lam2[keep2])).astype(np.float32)
    return P.mm(P.upload(W2), Xt, ta=True)  # (X W2)^T


def _gram_eig(G: np.ndarray, floor: float, rel_cut: float = 1e-3):
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    keep = lam > max(lam[-1] * rel_cut**2, floor, 1e-300)
    return lam[keep], V[:, keep]


@functools.lru_cache(maxsize=None)
def _safety(b: int) -> float:
    return safety_for(b)


def _orth(P: Products, R: cla.Array, G: np.ndarray, ref_norm2: float, rel_cut: float = 1e-3):
    """An orthonormal basis (transposed, r x m) of the columns of R (m x b) that stand out of
    float32 noise, from its Gram matrix G (already on the host): one Gram-eigen pass, and a
    second one (one more small read) unless the first was well conditioned."""
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    keep = lam > max(lam[-1] * rel_cut**2, ref_norm2 * 1e-12, 1e-300)
    if not keep.any():
        return None
    W = (V[:, keep] / np.sqrt(lam[keep])).astype(np.float32)  # b x r
    if lam[keep].max() / lam[keep].min() <= 30.0:
        # orthogonality error ~ u * cond^2 < 1e-6: no second pass
        return P.mm(P.upload(W), R, ta=True, tb=True)  # (R W)^T: r x m
    Xt = P.mm(P.upload(W), R, ta=True, tb=True)  # r x m
    (G2,) = P.read(P.mm(Xt, Xt, tb=True))
    lam2, V2 = np.linalg.eigh(0.5 * (G2 + G2.T))
    keep2 = lam2 > lam2[-1] * 1e-6
    W2 = (V2[:, keep2] / np.sqrt(lam2[keep2])).astype(np.float32)
    return P.mm(P.upload(W2), Xt, ta=True)  # (X W2)^T


def range_finder(P: Products, dA, dB, ta: bool, tb: bool, m: int, n: int, k: int,
                 budget: float, p_cap: int, block: int, rng: np.random.Generator) -> RangeResult:
    """Grow Q until a fresh block's residual meets budget / SAFETY, the rank would exceed
    p_cap, or the residual says the product is (numerically) full rank.

    Step 1 is a rank test on a small sketch: two blocks of block/2 probes, decided on the host
    from their Gram matrix alone (a full-rank product is turned away after one small sketch,
    one Gram product and one small read). Otherwise both blocks join the basis and the next
    block is sized from the step's rank estimate (p / captured energy), so a rank-r product
    takes about three sketch rounds whatever r; every block is first a fresh estimator of the
    basis so far. Probes are drawn on the device; each round reads back only small matrices.
    """
    t0 = time.perf_counter()
    Qt = P.empty((max(p_cap, 1), m))
    history = []
    b0 = max(4, block // 2)

    def done(p, drawn, Z, omega, rho, reason, ok=True):
        return RangeResult(p, drawn, Qt if (ok and p > 0) else None, Z if ok else None,
                           omega if ok else None, rho if ok else float("inf"), history,
                           reason, time.perf_counter() - t0)

    def gives_up(p, rho, prev_rho):
        if p == 0:
            return ""
        captured = max(1.0 - rho * rho, 1e-12)
        if p / captured > 2 * p_cap:
            return f"full rank (needs ~{min(p / captured, 1e9):.0f} columns > 2x cap {p_cap})"
        if prev_rho is not None and rho > 0.8 * prev_rho:
            return "residual stagnates"
        return ""

    # ---- step 1: two small blocks, decided on the host from their Gram matrix ----------
    omega2 = P.randn((n, 2 * b0), rng)
    Y2 = P.mm(dA, P.mm(dB, omega2, ta=tb), ta=ta)  # m x 2b0
    (G,) = P.read(P.mm(Y2, Y2, ta=True))
    G11, G12, G22 = G[:b0, :b0], G[:b0, b0:], G[b0:, b0:]
    ny2 = float(np.trace(G22))
    if float(np.trace(G)) == 0.0:
        history.append((0, 0.0))
        return done(0, 2 * b0, Y2, omega2, 0.0, "zero product")
    lam, V = _gram_eig(G11, float(np.trace(G11)) * 1e-12 / b0)
    proj = (V / np.sqrt(lam)).T @ G12  # Q1^T Y2 (r x b0)
    res = max(ny2 - float(np.sum(proj * proj)), 0.0)
    rho = math.sqrt(res / ny2) if ny2 > 0 else 0.0
    history.append((len(lam), rho))
    why = gives_up(len(lam), rho, None)
    if why:
        return done(0, 2 * b0, None, None, rho, why, ok=False)
    r_hat = len(lam) / max(1.0 - rho * rho, 1e-12)
    basis_t = _orth(P, Y2, G, float(np.trace(G)) / (2 * b0))
    p = 0
    if basis_t is not None:
        _copy_rows(P, Qt, 0, basis_t)
        p = basis_t.shape[0]
    drawn = 2 * b0
    prev_rho = None
    while True:
        want = int(math.ceil(1.1 * r_hat)) - p + 8
        b = block if want <= block else min(-(-want // 16) * 16, max(p_cap - p, block))
        omega = P.randn((n, b), rng)
        drawn += b
        Y = P.mm(dA, P.mm(dB, omega, ta=tb), ta=ta)  # m x b, fresh w.r.t. Q
        if p > 0:
            Qp = Qt[:p]
            R = Y.copy()
            for _ in range(2):  # block Gram-Schmidt with re-orthogonalisation
                T = P.mm(Qp, R)  # p x b
                P.mm(Qp, T, ta=True, C=R, alpha=-1.0, beta=1.0)
        else:
            R = Y
        GY = P.mm(Y, Y, ta=True)
        GR = P.mm(R, R, ta=True) if p > 0 else GY
        GY, GR = P.read(GY, GR)
        ny2 = float(np.trace(GY))
        rho = math.sqrt(max(float(np.trace(GR)), 0.0) / ny2) if ny2 > 0 else 0.0
        history.append((p, rho))
        if rho * _safety(b) <= budget:
            return done(p, drawn, Y, omega, rho, "budget met")
        why = gives_up(p, rho, prev_rho)
        if why:
            return done(p, drawn, None, None, rho, why, ok=False)
        prev_rho = rho if p > 0 else None
        if p > 0:
            r_hat = max(r_hat, p / max(1.0 - rho * rho, 1e-12))
        basis_t = _orth(P, R, GR, ny2 / max(b, 1))
        if basis_t is None:
            return done(p, drawn, None, None, rho, "no new direction", ok=False)
        r = basis_t.shape[0]
        if p + r > p_cap:
            return done(p, drawn, None, None, rho, f"rank cap {p_cap} reached", ok=False)
        _copy_rows(P, Qt, p, basis_t)
        p += r


def _columns(P: Products, X: cla.Array, c0: int, c1: int) -> cla.Array:
    """Columns c0:c1 of a row-major device matrix, as a new contiguous array."""
    rows, cols = X.shape
    sel = np.zeros((cols, c1 - c0), np.float32)
    sel[np.arange(c0, c1), np.arange(c1 - c0)] = 1.0
    return P.mm(X, P.upload(sel))


def _copy_rows(P: Products, Qt: cla.Array, p: int, rows: cla.Array) -> None:
    import pyopencl as cl

    r, m = rows.shape
    cl.enqueue_copy(P.queue, Qt.base_data, rows.base_data, byte_count=4 * r * m,
                    src_offset=rows.offset, dst_offset=Qt.offset + 4 * p * m)


def estimate(P: Products, rr: RangeResult, W: cla.Array, alpha: float, beta: float,
             c_old_omega: np.ndarray | None) -> tuple[float, float, float]:
    """(estimate, raw ratio) of ||C_exact - C_approx||_F / ||C_exact||_F on the fresh probes
    of the last block: C_exact Omega' = alpha Z + beta C_old Omega', C_approx Omega' =
    alpha Q (W Omega') + beta C_old Omega'. The estimate carries the SAFETY factor."""
    if rr.rank > 0 and W is not None:
        WO = P.mm(W, rr.omega)  # p x b
        Z, approx = P.read(rr.Z, P.mm(rr.Qt[:rr.rank], WO, ta=True))
    else:
        (Z,) = P.read(rr.Z)
        approx = np.zeros_like(Z)
    truth = alpha * Z + (beta * c_old_omega if c_old_omega is not None else 0.0)
    num = abs(alpha) * np.linalg.norm(Z - approx)
    den = np.linalg.norm(truth)
    ratio = num / den if den > 0 else (0.0 if num == 0 else math.inf)
    safety = _safety(Z.shape[1])
    return ratio * safety, ratio, safety
