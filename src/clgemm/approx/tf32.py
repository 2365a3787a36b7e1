"""The host-side a-posteriori error estimate (tests and campaigns); the call's own, formed
and judged on the device, is approx/judged.py's."""

from __future__ import annotations

import numpy as np


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
