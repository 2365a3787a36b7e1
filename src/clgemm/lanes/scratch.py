"""Scratch memory of the pre-passes (operands transposed, split or packed before a product):
per runtime and queue, grown on demand, reused by the next call."""

from __future__ import annotations

import threading

import pyopencl as cl

from ..runtime import Runtime


class Scratch:
    """One queue's scratch buffers, by name, grown on demand and reused by the next call (the
    queue is in order, so the next pre-pass runs after the product that read the last one),
    and the lock held from a pre-pass's enqueue to the enqueue of the product that reads its
    output, so that two threads' products on one queue cannot read each other's operands."""

    def __init__(self, rt: Runtime, label: str) -> None:
        self.rt = rt
        self.label = label
        self.lock = threading.RLock()
        self._buffers: dict[str, "cl.Buffer"] = {}

    def buffer(self, key: str, nbytes: int) -> "cl.Buffer":
        buf = self._buffers.get(key)
        if buf is None or buf.size < nbytes:
            self._buffers.pop(key, None)  # released before its larger successor is made
            buf = self._buffers[key] = self.rt.buffer(nbytes,
                                                      what=f"the {self.label} {key} scratch")
        return buf
