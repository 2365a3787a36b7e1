"""TF32 under an error budget: the product on the tensor cores with an a-posteriori
estimate of its error, formed on the device, and the host-side estimate used by tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels.tensorcore import TcSchedule
from ..lanes.tc import tc_product, tf32_schedule
from ..operands import Operand, run_product
from ..runtime import Runtime
from .lowrank import Products

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
            s = tf32_schedule(rt, a, b, m, n, k)
            event = tc_product(rt, "tf32", m, n, k, alpha, beta, a, b, c,
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
        box["kernel_s"] = rt.seconds(event)
        box["schedule"] = s.key()

    result = run_product(rt, A, B, C, beta, trans_a, trans_b, info, compute)
    return BudgetedProduct(result, box.get("estimate", 0.0), box.get("kernel_s", 0.0),
                           box.get("schedule", ""))

