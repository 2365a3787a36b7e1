"""The cost model of the model-guided strategy: ridge regression on schedule features, learned
as a correction to the roofline prior (T1), so it predicts sensibly before any measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..bench.roofline import intensity
from ..schedule import DOMAINS, Schedule


def _features(s: Schedule, local_mem: int) -> np.ndarray:
    onehot = [float(getattr(s, name) == v) for name, values in DOMAINS.items() for v in values]
    shape = [
        math.log2(s.threads), math.log2(s.tile_m * s.tile_n), s.accumulators() / 64.0,
        s.local_bytes() / max(local_mem, 1), math.log(intensity(s)),
    ]
    return np.array(onehot + shape, dtype=np.float64)


def prior_time(s: Schedule, k: int = 2048) -> float:
    """Relative time from the roofline: inversely proportional to arithmetic intensity
    (the compute roof is the same for every schedule, so only the memory side ranks them)."""
    return 1.0 / intensity(s, k)


@dataclass
class CostModel:
    """log(time) = log(prior) + w . features; fitted by ridge regression."""

    local_mem: int
    ridge: float = 10.0  # offline replay on the H100 space: 10 beat 1 (fewer runs stuck)
    weights: np.ndarray | None = None
    bias: float = 0.0
    samples: int = 0

    def features(self, schedules: list[Schedule]) -> tuple[np.ndarray, np.ndarray]:
        """(feature matrix, log prior) of schedules: compute once, fit and predict often."""
        x = np.stack([_features(s, self.local_mem) for s in schedules])
        return x, np.log([prior_time(s) for s in schedules])

    def fit(self, schedules: list[Schedule], times: list[float],
            cached: tuple[np.ndarray, np.ndarray] | None = None) -> "CostModel":
        if not schedules:
            return self
        x, log_prior = cached if cached is not None else self.features(schedules)
        y = np.log(np.asarray(times)) - log_prior
        self.bias = float(y.mean())
        y = y - self.bias
        a = x.T @ x + self.ridge * np.eye(x.shape[1])
        self.weights = np.linalg.solve(a, x.T @ y)
        self.samples = len(schedules)
        return self

    def predict(self, schedules: list[Schedule],
                cached: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        x, log_prior = cached if cached is not None else self.features(schedules)
        if self.weights is None:
            return np.exp(log_prior)
        return np.exp(log_prior + self.bias + x @ self.weights)
