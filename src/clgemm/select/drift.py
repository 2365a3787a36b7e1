"""Change detection for the online selector: a two-sided Page-Hinkley test.

The selector feeds it the *innovation* of each observation (observed log GFLOPS minus the
running estimate for that shape and arm before the update), per (shape class, arm). In a steady
state the innovations have mean ~0; a device that slows down (another process, throttling) or
speeds up shifts their mean, and the cumulative deviation crosses `threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PageHinkley:
    """Two-sided Page-Hinkley on a stream x_t.

    delta: tolerated drift of the mean (same units as x) before it counts as change.
    threshold: alarm when the cumulative deviation from the running mean exceeds this.
    min_samples: no alarm before this many samples (the running mean needs a few).
    """

    delta: float = 0.02
    threshold: float = 0.35
    min_samples: int = 4
    n: int = 0
    mean: float = 0.0
    up: float = 0.0  # cumulative sum for an increase, and its minimum
    up_min: float = 0.0
    down: float = 0.0  # cumulative sum for a decrease, and its maximum
    down_max: float = 0.0

    def update(self, x: float) -> int:
        """Feed one sample; returns +1 (mean went up), -1 (went down) or 0 (no change)."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.up += x - self.mean - self.delta
        self.up_min = min(self.up_min, self.up)
        self.down += x - self.mean + self.delta
        self.down_max = max(self.down_max, self.down)
        if self.n < self.min_samples:
            return 0
        if self.up - self.up_min > self.threshold:
            self.reset()
            return +1
        if self.down_max - self.down > self.threshold:
            self.reset()
            return -1
        return 0

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.up = self.up_min = self.down = self.down_max = 0.0
