"""The tensor-core lane (lab, T1/T4) measured by the one harness, beside the float32 family:
methods `clgemm-tf32` and `clgemm-3xtf32`, same protocol, same inputs, same accuracy block."""

from __future__ import annotations

import time

from ..plan import Operand
from ..schedule import Schedule
from .harness import DeviceProblem, measured_entry

MODES = ("tf32", "3xtf32")


class TcProblem(DeviceProblem):
    """DeviceProblem whose kernel is the tensor-core family's for `mode`."""

    def __init__(self, rt, case, inputs, mode: str) -> None:
        from .. import tc

        m, n, k = case.shape
        self.mode = mode
        self.tc_schedule = tc.schedule_for(rt, mode, m, n, k)
        # The float32 parent sets up buffers; its own kernel is not used for timing.
        super().__init__(rt, case, inputs, Schedule())
        a0 = Operand(self.bufs[0][0], 0, k, False)
        b0 = Operand(self.bufs[0][1], 0, n, False)
        t0 = time.perf_counter()
        self.kernel = tc.get_kernel(rt, self.tc_schedule, tc.layout_for(a0, b0))
        self.first_build_s = time.perf_counter() - t0

    def enqueue(self, i: int):
        from .. import tc

        m, n, k = self.case.shape
        a, b = self.bufs[i % len(self.bufs)]
        return tc.enqueue_product(self.rt, self.mode, m, n, k, 1.0, 0.0, Operand(a, 0, k, False),
                                  Operand(b, 0, n, False), self.c, schedule=self.tc_schedule)


def measure_tc(rt, case, inputs, protocol, mode: str) -> dict:
    from .. import tc

    entry = {"method": f"clgemm-{mode}", "family": "clgemm-tensorcore", "shape": list(case.shape),
             "tag": case.tag}
    try:
        support = tc.tensorcore_support(rt)
        if not support.available:
            entry.update({"status": "absent", "reason": f"tensor cores not offered: {support}"})
            return entry
        prob = TcProblem(rt, case, inputs, mode)
        entry["schedule"] = prob.tc_schedule.key()
        entry.update(measured_entry(prob, inputs, protocol))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        entry.update({"status": "error", "reason": f"{type(exc).__name__}: {exc}"})
    return entry
