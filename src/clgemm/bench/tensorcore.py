"""The tensor-core lane (lab, T1/T4) measured by the one harness, beside the float32 family:
methods `clgemm-tf32` and `clgemm-3xtf32` (mma.sync), `clgemm-wgmma-tf32` and
`clgemm-wgmma-3xtf32` (Hopper's warpgroup MMA), same protocol, same inputs, same accuracy
block. A wgmma product's time is its span on the device: from the start of its first command
(the operand split or transpose into scratch) to the end of the product."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..kernels import wgmma
from ..lanes.mma import get_kernel, layout_for
from ..lanes.probe import tensorcore_support, wgmma_support
from ..lanes.tc import schedule_for, tc_product, wgmma_3x_schedule
from ..lanes.wgmma import enqueue_wgmma, get_wg_kernel
from ..operands import Operand
from ..schedule import Schedule
from .harness import DeviceProblem, measured_entry

MODES = ("tf32", "3xtf32", "wgmma-tf32", "wgmma-3xtf32")


@dataclass
class _Profile:
    start: int
    end: int


class CommandSpan:
    """The commands of one call as one event: waits for the last, profiles first start to
    last end (what Runtime.timed reads)."""

    def __init__(self, events: list) -> None:
        self.events = events

    def wait(self) -> None:
        self.events[-1].wait()

    @property
    def profile(self) -> _Profile:
        return _Profile(self.events[0].profile.start, self.events[-1].profile.end)


class TcProblem(DeviceProblem):
    """DeviceProblem whose kernel is the tensor-core family's for `mode`."""

    def __init__(self, rt, case, inputs, mode: str) -> None:
        m, n, k = case.shape
        self.mode = mode
        self.wgmma = mode.startswith("wgmma-")
        if self.wgmma:
            self.tc_schedule = (wgmma_3x_schedule(rt, m, n) if mode == "wgmma-3xtf32"
                                else wgmma.DEFAULT)
        else:
            self.tc_schedule = schedule_for(rt, mode, m, n, k)
        # The float32 parent sets up buffers; its own kernel is not used for timing.
        super().__init__(rt, case, inputs, Schedule())
        a0 = Operand(self.bufs[0][0], 0, k, False)
        b0 = Operand(self.bufs[0][1], 0, n, False)
        t0 = time.perf_counter()
        self.kernel = (get_wg_kernel(rt, self.tc_schedule) if self.wgmma
                       else get_kernel(rt, self.tc_schedule, layout_for(a0, b0)))
        self.first_build_s = time.perf_counter() - t0

    def enqueue(self, i: int):
        m, n, k = self.case.shape
        a, b = self.bufs[i % len(self.bufs)]
        a, b = Operand(a, 0, k, False), Operand(b, 0, n, False)
        if self.wgmma:
            events: list = []
            enqueue_wgmma(self.rt, m, n, k, 1.0, 0.0, a, b, self.c, schedule=self.tc_schedule,
                          events=events)
            return CommandSpan(events)
        return tc_product(self.rt, self.mode, m, n, k, 1.0, 0.0, a, b, self.c,
                          schedule=self.tc_schedule)


def measure_tc(rt, case, inputs, protocol, mode: str) -> dict:
    entry = {"method": f"clgemm-{mode}", "family": "clgemm-tensorcore", "shape": list(case.shape),
             "tag": case.tag}
    try:
        support = tensorcore_support(rt)
        if not support.available:
            entry.update({"status": "absent", "reason": f"tensor cores not offered: {support}"})
            return entry
        if mode.startswith("wgmma-"):
            wg = wgmma_support(rt, 3 if mode == "wgmma-3xtf32" else 1)
            if not wg.available:
                entry.update({"status": "absent", "reason": f"wgmma not offered: {wg.reason}"})
                return entry
        prob = TcProblem(rt, case, inputs, mode)
        entry["schedule"] = prob.tc_schedule.key()
        entry.update(measured_entry(prob, inputs, protocol))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        entry.update({"status": "error", "reason": f"{type(exc).__name__}: {exc}"})
    return entry
