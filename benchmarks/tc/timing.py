"""Timing shared by the tensor-core benchmark scripts: cuBLAS through PyTorch (CUDA events
around `a @ b`), an OpenCL call's device span between two markers, and one product's result
read back from a poisoned C."""

from __future__ import annotations

import numpy as np
import pyopencl as cl


def cublas_seconds(n: int, tf32: bool, reps: int = 20) -> float:
    """Median seconds of an n x n x n cuBLAS float32 GEMM (TF32 allowed or not), after 3
    warm-ups, on fresh normal operands."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        a @ b
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e-3)
    return float(np.median(ts))


def cublas_tflops(n: int, tf32: bool, reps: int = 20) -> float:
    return 2.0 * n ** 3 / cublas_seconds(n, tf32, reps) / 1e12


def device_span(queue, fn, reps: int = 20) -> float:
    """Median seconds between a marker before `fn()`'s commands and one after them (every
    command it enqueues and the host's gaps between them), after 3 warm-ups."""
    for _ in range(3):
        fn()
    queue.finish()
    ts = []
    for _ in range(reps):
        before = cl.enqueue_marker(queue)
        fn()
        after = cl.enqueue_marker(queue)
        after.wait()
        ts.append((after.profile.end - before.profile.end) * 1e-9)
    return float(np.median(ts))


def poisoned_result(queue, c_buffer, n: int, fn) -> np.ndarray:
    """C (n x n float32) after `fn()` (which enqueues one product into c_buffer and returns its
    event), with C set to NaN first: a kernel that writes nothing shows NaN, not the previous
    product's result."""
    cl.enqueue_copy(queue, c_buffer, np.full((n, n), np.nan, np.float32))
    fn().wait()
    got = np.empty((n, n), np.float32)
    cl.enqueue_copy(queue, got, c_buffer)
    return got
