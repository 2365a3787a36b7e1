"""The measurement protocol (recorded in every artifact) and the arithmetic on its samples."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Protocol:
    """How a figure was measured. Each timed call uses the next of `input_sets` fresh random
    input sets in turn, so that no cache holds the operands between consecutive calls."""

    warmup: int = 3  # untimed calls before timing each (method, shape)
    repeats: int = 20  # timed calls; peak = best, typical = median
    input_sets: int = 3  # rotated input sets
    max_measure_s: float = 10.0  # stop repeating a measurement after this long (>= 3 repeats)
    host_repeats: int = 5  # timed calls of the end-to-end (numpy in, numpy out) path
    sustained_seconds: float = 0.0  # continuous run length (0: none)
    window_s: float = 0.5  # sustained series window
    sessions: int = 1  # separate processes merged into this artifact
    seed: int | None = None  # input generator seed (None: fresh entropy, recorded)
    poison: str = "nan"  # C is filled with this before each checked call
    timing_kernel: str = ("OpenCL event profiling (end - start) of the product's kernels as "
                          "the call launches them, summed (a direct schedule's operand "
                          "copies and slices included; the work-group form's one kernel)")
    timing_call: str = "wall time per call, enqueue to queue drained (clFinish)"
    peak: str = "best of the timed repeats"
    typical: str = "median of the timed repeats"

    def as_dict(self) -> dict:
        return asdict(self)


def gflops(m: int, n: int, k: int, seconds: float) -> float:
    """GFLOPS of an m x n x k product (2mnk flops) taking `seconds`; 0 when seconds <= 0."""
    return 2.0 * m * n * k / seconds / 1e9 if seconds > 0 else 0.0


def median(values: Iterable[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def cv(values: Iterable[float]) -> float:
    """Coefficient of variation: sample standard deviation / mean (0 for fewer than 2 values)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    if mean == 0:
        return math.inf
    return statistics.stdev(values) / abs(mean)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired samples (ties handled); 1 = same order, -1 = reversed."""
    if len(x) != len(y):
        raise ValueError("kendall_tau needs paired samples of equal length")
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx = (x[i] > x[j]) - (x[i] < x[j])
        dy = (y[i] > y[j]) - (y[i] < y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else 1.0


def reproducibility(per_session: Sequence[Mapping[str, float]]) -> dict:
    """Agreement of the ranking of kernels across sessions: Kendall tau of each pair of
    sessions over the kernels measured in both, and their mean (the score)."""
    taus = []
    for a, b in combinations(per_session, 2):
        common = sorted(set(a) & set(b))
        if len(common) >= 2:
            taus.append(kendall_tau([a[c] for c in common], [b[c] for c in common]))
    return {
        "pairs": len(taus),
        "kendall_tau": taus,
        "score": statistics.fmean(taus) if taus else None,
    }


def summarize_times(times_s: Sequence[float], m: int, n: int, k: int, kind: str) -> dict:
    """The timing block of an artifact entry from raw per-call seconds."""
    times = [float(t) for t in times_s]
    best = min(times)
    mid = median(times)
    return {
        "kind": kind,
        "times_s": times,
        "repeats": len(times),
        "min_s": best,
        "median_s": mid,
        "cv": cv(times),
        "gflops_peak": gflops(m, n, k, best),
        "gflops_median": gflops(m, n, k, mid),
    }
