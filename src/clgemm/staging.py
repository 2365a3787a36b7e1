"""Host arrays to and from the device through page-locked staging memory (opt-in).

A copy from pageable numpy memory makes the driver stage it through page-locked memory of
its own. Here the staging memory is the runtime's: a few mapped ALLOC_HOST_PTR buffers, kept
for the next call, and a large array moves in chunks, the host copy of one chunk
overlapping the device copy of the one before. Off unless CLGEMM_STAGING=1: on the H100
(records/nvidia-h100/2026-12-06-plan-campaign-2) a device copy from page-locked memory runs 3.4x
faster than from pageable memory, but numpy's copy into the mapped memory runs at ~13 GB/s,
no faster than the driver's own staging, so the staged numpy call took 1.36x/1.42x the
pageable one at 1400/2048 and 0.92x/0.95x at 3072/4096.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyopencl as cl

MIN_BYTES = 1 << 20  # smaller copies go direct: one driver call is cheaper than the chunks
CHUNK_BYTES = 4 << 20
MAX_KEPT = 4  # staging buffers kept per runtime (the largest seen)


def pinned_host(rt, shape, dtype) -> tuple[np.ndarray, "cl.Buffer"]:
    """A host array in page-locked memory (a mapped ALLOC_HOST_PTR buffer, mapped for good)
    and its buffer, which the caller keeps as long as the array: NVIDIA's OpenCL stages a
    read into pageable memory through an extra copy, ~100 us per small read."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.ALLOC_HOST_PTR,
                    size=max(count, 1) * dtype.itemsize)
    host, _ = cl.enqueue_map_buffer(rt.queue, buf, cl.map_flags.READ | cl.map_flags.WRITE, 0,
                                    (max(count, 1),), dtype, is_blocking=True)
    return host[:count].reshape(shape), buf


class Staging:
    """The runtime's page-locked staging buffers (bytes), lent one call at a time."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self._free: list[tuple[np.ndarray, "cl.Buffer"]] = []
        self._lock = threading.Lock()

    def wanted(self, nbytes: int) -> bool:
        return os.environ.get("CLGEMM_STAGING", "") == "1" and nbytes >= MIN_BYTES

    def _take(self, nbytes: int) -> tuple[np.ndarray, "cl.Buffer"]:
        with self._lock:
            for i, (host, buf) in enumerate(self._free):
                if host.nbytes >= nbytes:
                    return self._free.pop(i)
        size = 1 << max(nbytes - 1, 1).bit_length()  # a power of two: reused by nearby sizes
        return pinned_host(self.rt, (size,), np.uint8)

    def _give(self, item) -> None:
        with self._lock:
            self._free.append(item)
            self._free.sort(key=lambda x: -x[0].nbytes)
            del self._free[MAX_KEPT:]

    def upload(self, queue, dst: "cl.Buffer", src: np.ndarray, dst_offset: int = 0) -> None:
        """Copy a contiguous host array into `dst` (at byte `dst_offset`), done on return."""
        raw = src.reshape(-1).view(np.uint8)
        item = self._take(raw.nbytes)
        pinned = item[0]
        events = []
        try:
            for start in range(0, raw.nbytes, CHUNK_BYTES):
                end = min(start + CHUNK_BYTES, raw.nbytes)
                np.copyto(pinned[start:end], raw[start:end])
                events.append(cl.enqueue_copy(queue, dst, pinned[start:end],
                                              dst_offset=dst_offset + start, is_blocking=False))
            cl.wait_for_events(events)
        finally:
            self._give(item)

    def download(self, queue, dst: np.ndarray, src: "cl.Buffer", src_offset: int = 0) -> None:
        """Copy `src` (from byte `src_offset`) into a contiguous host array, done on return."""
        raw = dst.reshape(-1).view(np.uint8)
        item = self._take(raw.nbytes)
        pinned = item[0]
        try:
            spans = [(s, min(s + CHUNK_BYTES, raw.nbytes))
                     for s in range(0, raw.nbytes, CHUNK_BYTES)]
            events = [cl.enqueue_copy(queue, pinned[s:e], src, src_offset=src_offset + s,
                                      is_blocking=False) for s, e in spans]
            for (s, e), event in zip(spans, events):
                event.wait()
                np.copyto(raw[s:e], pinned[s:e])
        finally:
            self._give(item)


def staging(rt) -> Staging:
    return rt.cached("host staging", lambda: Staging(rt))


def write(rt, queue, dst: "cl.Buffer", src: np.ndarray) -> None:
    """A contiguous host array into `dst`, done on return: staged where that pays."""
    if staging(rt).wanted(src.nbytes):
        staging(rt).upload(queue, dst, src)
    else:
        cl.enqueue_copy(queue, dst, src, is_blocking=True)


def read(rt, queue, dst: np.ndarray, src: "cl.Buffer") -> None:
    """`src` into a contiguous host array, done on return: staged where that pays."""
    if staging(rt).wanted(dst.nbytes):
        staging(rt).download(queue, dst, src)
    else:
        cl.enqueue_copy(queue, dst, src, is_blocking=True)
