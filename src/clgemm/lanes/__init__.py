"""Kernel families behind one interface. A lane computes C = alpha op(A) op(B) + beta C on
operands already on the device (`Operand`: buffer, offset, leading dimension, stored
transposed or not), enqueued on the queue it is given:

    lane.enqueue(m, n, k, alpha, beta, a, b, c, queue, info=None) -> event

`info` (an `Info`) asks for the call to be reported: the lane then waits where it must to
say what ran (a fallback taken), and the plan reads the kernel's time from the event. Which
lane serves a product is decided in clgemm.route, once per plan.
"""

from __future__ import annotations

from typing import Protocol

import pyopencl as cl

from ..operands import Operand


class Lane(Protocol):
    name: str  # "fp32", "3xtf32-mma", "3xtf32-wgmma"
    schedule: object  # the kernel's schedule (Schedule, TcSchedule or WgSchedule)
    # whether a hot call's launches may be recorded and launched again on other operands of
    # the same geometry (lanes/recording.py): every command of its hot call a kernel enqueued
    # through recording.launch, no scratch shared with other calls; absent: False
    replayable: bool

    def enqueue(self, m: int, n: int, k: int, alpha: float, beta: float, a: Operand,
                b: Operand, c: Operand, queue: "cl.CommandQueue",
                info=None) -> "cl.Event": ...
