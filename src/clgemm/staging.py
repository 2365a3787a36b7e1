"""Host arrays to and from the device through page-locked staging memory (a GPU's large
reads by default; every copy with CLGEMM_STAGING=1).

A copy from pageable numpy memory makes the driver stage it through page-locked memory of
its own. Here the staging memory is the runtime's: a few mapped ALLOC_HOST_PTR buffers, kept
for the next call, and a large array moves in chunks, the host copy of one chunk
overlapping the device copy of the one before. It was first opt-in: on the H100
(records/nvidia-h100/2026-12-06-plan-campaign-2) a device copy from page-locked memory runs 3.4x
faster than from pageable memory, but numpy's copy into the mapped memory runs at ~13 GB/s,
no faster than the driver's own staging, so the staged numpy call took 1.36x/1.42x the
pageable one at 1400/2048 and 0.92x/0.95x at 3072/4096.

Since then the host copies are split across a small thread pool of the Staging object
(COPY_THREADS, $CLGEMM_STAGING_THREADS overrides; numpy's copy releases the GIL): each chunk's
copy runs as pieces in parallel, the workers copy chunk i+1 into page-locked memory while
the device copies chunk i (upload), or copy chunk i out while later chunks' device reads run
(download); the threaded path flushes the queue after enqueueing, so a chunk's device copy
starts at once. With one thread the copies run in the calling thread, as before, and a
failed copy now waits for the device copies already enqueued before its buffer goes back
(either path).

On an H100 (records/nvidia-h100/2026-12-07-plan-traces-2 and -3, two runs of the plan
campaign's host_path) the threaded upload still lost to the driver's own pageable copy at
every size (1400-4096: 2.45-2.87 against 1.13-1.17 ms at 1400, 22.9-23.4 against 13.9-16.4 at
4096), and the download won from 3072 (4.6-4.7 against 10.8-11.6 ms, 7.0-7.7 against
16.3-17.1 at 4096) while it lost at 1400-2048. The likely cause, not measured apart: a result
of 32 MiB or more lands in fresh pages (glibc maps allocations past its largest mmap
threshold, 32 MiB, anew each time), which a pageable read faults in one by one inside the
driver's copy, and the staged read's threads fault in parallel. So by default a GPU's reads
of READ_STAGED_FROM bytes and more are staged, nothing else; CLGEMM_STAGING=1 stages every
copy from MIN_BYTES, CLGEMM_STAGING=0 none.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import numpy as np
import pyopencl as cl

MIN_BYTES = 1 << 20  # smaller copies go direct: one driver call is cheaper than the chunks
READ_STAGED_FROM = 32 << 20  # a GPU's reads from here on are staged by default (above)
# 4 MiB chunks: a 2048^2 float32 operand (16 MiB) moves in 4, so only a quarter of it (the
# first chunk's host copy, the last chunk's device copy) is not overlapped, while a chunk is
# still large against the per-chunk costs (an enqueue, an event, the pool's hand-offs).
CHUNK_BYTES = 4 << 20
MAX_KEPT = 4  # staging buffers kept per runtime (the largest seen)
# Host-copy threads per Staging object: 8 pieces of a 4 MiB chunk are 512 KiB each; beyond
# ~8 threads one socket's memory bandwidth, not the thread count, bounds a copy.
COPY_THREADS = min(8, os.cpu_count() or 1)
# A piece is at least 256 KiB: ~20 us of copying at a single thread's 13 GB/s, against a few
# us to hand it to a worker and collect it; smaller chunks get fewer pieces.
MIN_PIECE_BYTES = 256 << 10
PIECE_ALIGN = 64  # piece boundaries fall on cache lines (relative to the chunk's start)


def copy_threads() -> int:
    """Threads for host copies: $CLGEMM_STAGING_THREADS, else COPY_THREADS (at least 1)."""
    env = os.environ.get("CLGEMM_STAGING_THREADS")
    return max(1, int(env) if env else COPY_THREADS)


def pieces(start: int, end: int, threads: int) -> list[tuple[int, int]]:
    """[start, end) as up to `threads` pieces of about MIN_PIECE_BYTES or more (one piece
    where the span is small), inner boundaries rounded down to PIECE_ALIGN from `start`, the
    last piece taking the rest; they tile the span exactly, in order."""
    size = end - start
    n = max(1, min(threads, size // max(MIN_PIECE_BYTES, 1)))
    align = max(PIECE_ALIGN, 1)
    cuts = [start] + [start + (k * size // n) // align * align for k in range(1, n)] + [end]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """One piece of a host copy (a worker's task; the GIL is released while it copies)."""
    np.copyto(dst, src)


def _settle(futures: list[Future]) -> None:
    """Wait for every future, then raise the first failure among them, if any: no worker
    still touches the staging memory when this returns or raises."""
    wait_futures(futures)
    for f in futures:
        f.result()


def _quiet_settle(futures: list[Future], events: list) -> None:
    """On the way out of a failed copy: let every piece and device copy end, raising
    nothing (the first failure is already on its way)."""
    wait_futures(futures)
    for event in events:
        with contextlib.suppress(Exception):  # the failure being raised matters, not this
            event.wait()


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
    """The runtime's page-locked staging buffers (bytes), lent one call at a time, and the
    threads that copy into and out of them. Safe to use from several threads at once: each
    call has a buffer of its own, and the pool (made on first need) is shared."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self._free: list[tuple[np.ndarray, "cl.Buffer"]] = []
        self._lock = threading.Lock()
        self._threads: int | None = None  # fixed on the first copy
        self._pool: ThreadPoolExecutor | None = None

    def wanted(self, nbytes: int, reading: bool = False) -> bool:
        """Whether a copy of `nbytes` (a read from the device where `reading`) is staged."""
        switch = os.environ.get("CLGEMM_STAGING", "")
        if switch in ("0", "1"):
            return switch == "1" and nbytes >= MIN_BYTES
        # measured on GPUs only: a CPU runtime's "device" copy is itself a host memcpy
        return reading and nbytes >= READ_STAGED_FROM and self.rt.device.type != "CPU"

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

    def _workers(self) -> ThreadPoolExecutor | None:
        """The copy pool, None for one thread; made once (under the lock), shut down when
        this object goes."""
        with self._lock:
            if self._threads is None:
                self._threads = copy_threads()
                if self._threads > 1:
                    self._pool = ThreadPoolExecutor(self._threads,
                                                    thread_name_prefix="clgemm-staging")
                    weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool

    def _submit(self, pool: ThreadPoolExecutor, dst: np.ndarray, src: np.ndarray,
                start: int, end: int) -> list[Future]:
        return [pool.submit(_copy, dst[a:b], src[a:b])
                for a, b in pieces(start, end, self._threads or 1)]

    def upload(self, queue, dst: "cl.Buffer", src: np.ndarray, dst_offset: int = 0) -> None:
        """Copy a contiguous host array into `dst` (at byte `dst_offset`), done on return."""
        raw = src.reshape(-1).view(np.uint8)
        pool = self._workers()
        item = self._take(raw.nbytes)
        pinned = item[0]
        spans = [(s, min(s + CHUNK_BYTES, raw.nbytes))
                 for s in range(0, raw.nbytes, CHUNK_BYTES)]
        events: list = []
        futures: list[Future] = []
        ok = False
        try:
            if pool is None:
                for start, end in spans:
                    np.copyto(pinned[start:end], raw[start:end])
                    events.append(cl.enqueue_copy(queue, dst, pinned[start:end],
                                                  dst_offset=dst_offset + start,
                                                  is_blocking=False))
            else:
                futures = self._submit(pool, pinned, raw, *spans[0]) if spans else []
                for i, (start, end) in enumerate(spans):
                    _settle(futures)
                    # The workers start on chunk i+1 before chunk i is enqueued: the enqueue
                    # and the device copy of chunk i overlap its successor's host copy.
                    futures = (self._submit(pool, pinned, raw, *spans[i + 1])
                               if i + 1 < len(spans) else [])
                    events.append(cl.enqueue_copy(queue, dst, pinned[start:end],
                                                  dst_offset=dst_offset + start,
                                                  is_blocking=False))
                    queue.flush()  # the device copy starts now, not at the next wait
            if events:
                cl.wait_for_events(events)
            ok = True
        finally:
            if not ok:  # nothing may still read or write the buffer when it goes back
                _quiet_settle(futures, events)
            self._give(item)

    def download(self, queue, dst: np.ndarray, src: "cl.Buffer", src_offset: int = 0) -> None:
        """Copy `src` (from byte `src_offset`) into a contiguous host array, done on return."""
        raw = dst.reshape(-1).view(np.uint8)
        pool = self._workers()
        item = self._take(raw.nbytes)
        pinned = item[0]
        spans = [(s, min(s + CHUNK_BYTES, raw.nbytes))
                 for s in range(0, raw.nbytes, CHUNK_BYTES)]
        events: list = []
        futures: list[Future] = []
        ok = False
        try:
            for s, e in spans:  # one by one: a failed enqueue still waits for the earlier
                events.append(cl.enqueue_copy(queue, pinned[s:e], src,
                                              src_offset=src_offset + s, is_blocking=False))
            if pool is None:
                for (s, e), event in zip(spans, events):
                    event.wait()
                    np.copyto(raw[s:e], pinned[s:e])
            else:
                queue.flush()
                for (s, e), event in zip(spans, events):
                    event.wait()  # the workers copy earlier chunks out meanwhile
                    futures += self._submit(pool, raw, pinned, s, e)
                _settle(futures)
            ok = True
        finally:
            if not ok:
                _quiet_settle(futures, events)
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
    if staging(rt).wanted(dst.nbytes, reading=True):
        staging(rt).download(queue, dst, src)
    else:
        cl.enqueue_copy(queue, dst, src, is_blocking=True)
