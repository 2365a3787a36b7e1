"""Fault injection (tests and campaigns only): corrupt results on the device, or corrupt
the GEMM kernel's accumulators through the test-only build flag.

    with faults.inject(result=faults.flip_bits(i, j, bits=[30]), persistent=False):
        clgemm.matmul(A, B, check=True)

`inject` installs hooks that the checked path consults; nothing is installed otherwise.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyopencl as cl

_state = threading.local()


@dataclass
class Hooks:
    result: Callable | None = None  # f(values: np.ndarray (the corrupted cells), rng) -> new
    cells: list[tuple[int, int]] | None = None  # (i, j) cells the result hook corrupts
    accumulator_at: int = -1  # flat index (row-major in C) for the kernel flag
    persistent: bool = False  # re-apply after every repair (the fault never clears)
    applied: int = 0

    def accumulator_fault(self, attempt: int) -> int:
        if self.accumulator_at < 0:
            return -1
        return self.accumulator_at if (attempt == 0 or self.persistent) else -1

    def corrupt(self, gd, view, stage: str) -> None:
        if self.result is None or not self.cells:
            return
        if stage != "gemm" and not self.persistent:
            return
        corrupt_cells(gd.rt.queue, view, self.cells, self.result)
        self.applied += 1


def active() -> Hooks | None:
    return getattr(_state, "hooks", None)


@contextlib.contextmanager
def inject(*, result: Callable | None = None, cells=None, accumulator_at: int = -1,
           persistent: bool = False):
    """Install fault hooks for checked products run in this thread inside the block."""
    hooks = Hooks(result=result, cells=list(cells) if cells is not None else None,
                  accumulator_at=accumulator_at, persistent=persistent)
    prev = active()
    _state.hooks = hooks
    try:
        yield hooks
    finally:
        _state.hooks = prev


def corrupt_cells(queue, view, cells, fn) -> None:
    """Read the listed cells of a device view, apply fn to their values, write them back."""
    vals = np.empty(len(cells), np.float32)
    addrs = []
    for t, (i, j) in enumerate(cells):
        r, c = (j, i) if view.transposed else (i, j)
        addr = view.offset + r * view.ld + c
        addrs.append(addr)
        tmp = np.empty(1, np.float32)
        cl.enqueue_copy(queue, tmp, view.buffer, src_offset=4 * addr, is_blocking=True)
        vals[t] = tmp[0]
    new = np.asarray(fn(vals.copy()), np.float32)
    for addr, value in zip(addrs, new):
        cl.enqueue_copy(queue, view.buffer, np.array([value], np.float32),
                        dst_offset=4 * addr, is_blocking=True)


# ---- corruption models ------------------------------------------------------------------
def bit_flip(bits) -> Callable:
    """Flip the given bit positions (0 = mantissa LSB, 23-30 exponent, 31 sign)."""
    mask = 0
    for b in bits:
        mask |= 1 << int(b)

    def fn(v):
        u = v.view(np.uint32) ^ np.uint32(mask)
        return u.view(np.float32)
    return fn


def add(delta: float) -> Callable:
    return lambda v: (v.astype(np.float64) + delta).astype(np.float32)


def set_value(value: float) -> Callable:
    return lambda v: np.full_like(v, value)


def scale(factor: float) -> Callable:
    return lambda v: (v.astype(np.float64) * factor).astype(np.float32)


def corrupt_host(C: np.ndarray, cells, fn) -> np.ndarray:
    """The same corruption on a host matrix (returns a copy)."""
    out = C.copy()
    idx = tuple(np.array(cells).T)
    out[idx] = fn(out[idx].copy())
    return out
