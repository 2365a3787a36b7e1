"""Confidence over seeds for search comparisons: Clopper-Pearson bounds on a success share
and a bootstrap interval on a median (standard library only)."""

from __future__ import annotations

import random
import statistics
from math import comb
from typing import Sequence


def cp_lower(successes: int, n: int, alpha: float = 0.05) -> float:
    """One-sided lower Clopper-Pearson bound at level 1 - alpha (the beta quantile, found by
    bisection on the binomial tail P[X >= successes])."""
    if successes <= 0 or n <= 0:
        return 0.0

    def tail(p: float) -> float:
        return sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(successes, n + 1))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if tail(mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def cp_upper(successes: int, n: int, alpha: float = 0.05) -> float:
    """One-sided upper Clopper-Pearson bound (one minus the failures' lower bound)."""
    return 1.0 - cp_lower(n - successes, n, alpha)


def median_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (seeded, so a record reproduces)."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    meds = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1.0 - level) / 2
    return meds[int(tail * (resamples - 1))], meds[int((1.0 - tail) * (resamples - 1))]
