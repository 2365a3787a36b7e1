"""`Info`: what one call did (returned with `return_info=True`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Info:
    """What happened in one call (returned with `return_info=True`)."""

    method: str  # "exact" (float32), or a method named by later contracts
    schedule: str  # Schedule.key() of the kernel that ran
    device: str
    shape: tuple[int, int, int]
    # device time of the product's kernels (OpenCL event profiling): where a lane runs several
    # (a plain copy of a transposed A and B's panels first, blocks and K slices, a split's
    # partial sums and their reduction) their intervals summed
    kernel_s: float = 0.0
    h2d_s: float = 0.0  # host-to-device copies (wall)
    # device-to-host copy (wall); on the exact path of numpy operands the read is enqueued
    # behind the kernels without a host wait of its own, so this includes their tail
    d2h_s: float = 0.0
    total_s: float = 0.0  # the whole call (wall)
    build_s: float = 0.0  # compile or cache load paid in this call (0 when already built)
    build_from_cache: bool | None = None
    error_estimate: float | None = None  # filled by approximate methods
    fell_back: bool = False  # an approximate method gave way to exact
    checked: bool = False  # ABFT verified the result
    extra: dict[str, Any] = field(default_factory=dict)
    # the events of the kernels a lane ran for this call (filled where a lane runs several;
    # kernel_s sums them)
    events: list = field(default_factory=list, repr=False, compare=False)

    @property
    def gflops(self) -> float:
        m, n, k = self.shape
        return 2.0 * m * n * k / self.kernel_s / 1e9 if self.kernel_s > 0 else 0.0
