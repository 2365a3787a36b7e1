"""Measure schedules on a device: compile in parallel worker processes, check, then time.

Compilation runs in a pool of processes (one OpenCL context each) that fill the on-disk build
cache, so the measuring process only loads binaries while the device is kept busy. Every
candidate's result is compared with a float64 reference before its time counts.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from ..kernels.gemm import Layout
from ..schedule import Schedule


@dataclass(frozen=True)
class Problem:
    """One product shape, row-major and contiguous, as the tuner times it."""

    m: int
    n: int
    k: int
    trans_a: bool = False
    trans_b: bool = False

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    def layout(self, s: Schedule) -> Layout:
        lda = self.m if self.trans_a else self.k
        ldb = self.k if self.trans_b else self.n
        return Layout(trans_a=self.trans_a, trans_b=self.trans_b,
                      aligned_a=s.vec_a > 1 and lda % s.vec_a == 0,
                      aligned_b=s.vec_b > 1 and ldb % s.vec_b == 0,
                      aligned_c=s.vec_c > 1 and self.n % s.vec_c == 0)


@dataclass
class Measurement:
    schedule: Schedule
    time_s: float | None  # median kernel time; None when the candidate failed
    compile_s: float | None
    error: str | None = None  # "compile", "wrong", "launch", "timeout", with detail
    rel_error: float | None = None
    times_s: list[float] = field(default_factory=list)
    inaccurate_time_s: float | None = None  # time of a kernel whose error broke the contract

    @property
    def ok(self) -> bool:
        return self.time_s is not None


# ---- compile workers ---------------------------------------------------------------------
def _worker_init(device_spec: str | None, parent: int | None = None) -> None:
    if device_spec is not None:
        os.environ["CLGEMM_DEVICE"] = device_spec
    _die_with_parent(parent if parent is not None else os.getppid())


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive the tuner (kill -9 runs no cleanup in the tuner): on Linux
    the kernel kills it when its parent dies (PR_SET_PDEATHSIG); elsewhere a watchdog thread
    sees the reparenting and exits. `parent` is the tuner's pid as the tuner gave it: a tuner
    killed while this worker was still starting (before this ran) has already left it with
    another parent, which PR_SET_PDEATHSIG would never report (the kill -9 campaign met it)."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, name="clgemm-parent-watch", daemon=True).start()


def _compile_one(key: str, problem: Problem) -> tuple[str, float | None, str | None]:
    from ..lanes.fp32 import GemmKernel
    from ..runtime import get_runtime

    schedule = Schedule.from_key(key)
    start = time.perf_counter()
    try:
        GemmKernel(get_runtime(), schedule, problem.layout(schedule))
    except Exception as exc:  # any failure is a recorded result, never fatal
        return key, time.perf_counter() - start, f"compile: {type(exc).__name__}: {str(exc)[:300]}"
    return key, time.perf_counter() - start, None


class CompilePool:
    """Compiles schedules ahead of measurement in worker processes."""

    def __init__(self, workers: int, device_spec: str | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.workers = max(1, workers)
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx,
                                            initializer=_worker_init,
                                            initargs=(device_spec, os.getpid()))

    def compile(self, schedules: Iterable[Schedule], problem: Problem
                ) -> Iterator[tuple[Schedule, float | None, str | None]]:
        """Yields (schedule, compile seconds, error) as compilations finish, in order given."""
        futures = [self._pool.submit(_compile_one, s.key(), problem) for s in schedules]
        for fut in futures:
            key, seconds, error = fut.result()
            yield Schedule.from_key(key), seconds, error

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---- measuring -------------------------------------------------------------------------
WARMUP, INPUT_SETS = 1, 2  # Bench's defaults, as the tuner measures


def tune_protocol(repeats: int, warmup: int = WARMUP, input_sets: int = INPUT_SETS) -> dict:
    """How a tuning measurement was taken, stored beside it in the tuning database."""
    return {"repeats": repeats, "warmup": warmup, "statistic": "median",
            "timer": "OpenCL event profiling", "input_sets": input_sets,
            "check": "rel. Frobenius error <= 2 x numpy float32's vs float64"}


class Bench:
    """Device buffers, a float64 reference and the timing protocol for one problem."""

    def __init__(self, rt, problem: Problem, repeats: int = 5, warmup: int = WARMUP,
                 input_sets: int = INPUT_SETS, seed: int | None = None) -> None:
        import pyopencl as cl

        from ..operands import Operand

        self.rt, self.problem, self.repeats, self.warmup = rt, problem, repeats, warmup
        rng = np.random.default_rng(seed)
        p = problem
        a_shape = (p.k, p.m) if p.trans_a else (p.m, p.k)
        b_shape = (p.n, p.k) if p.trans_b else (p.k, p.n)
        self.sets = []
        for _ in range(max(1, input_sets)):
            A = rng.standard_normal(a_shape).astype(np.float32)
            B = rng.standard_normal(b_shape).astype(np.float32)
            self.sets.append((A, B))
        A, B = self.sets[0]
        a64 = (A.T if p.trans_a else A).astype(np.float64)
        b64 = (B.T if p.trans_b else B).astype(np.float64)
        self.ref = a64 @ b64
        f32 = (A.T if p.trans_a else A) @ (B.T if p.trans_b else B)
        self.numpy_error = float(np.linalg.norm(f32 - self.ref) / np.linalg.norm(self.ref))
        mf = cl.mem_flags
        self.operands = []
        for A, B in self.sets:
            a_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A)
            b_buf = cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B)
            self.operands.append((
                Operand(a_buf, 0, a_shape[1], p.trans_a),
                Operand(b_buf, 0, b_shape[1], p.trans_b),
            ))
        self.c_buf = cl.Buffer(rt.context, mf.READ_WRITE, size=4 * p.m * p.n)
        self.c = Operand(self.c_buf, 0, p.n, False)
        self.poison = np.full((p.m, p.n), np.nan, np.float32)
        # The first run after the check of each candidate timed in full: the fastest so far
        # is what `measure(give_up=...)` compares with.
        self.fastest_first_s: float | None = None
        self.first_s: float | None = None  # the last candidate's first run after its check

    def check(self, kernel) -> float:
        """Relative Frobenius error of the kernel's result on input set 0 (C poisoned first)."""
        import pyopencl as cl

        p = self.problem
        cl.enqueue_copy(self.rt.queue, self.c_buf, self.poison)
        a, b = self.operands[0]
        self.launches(kernel, a, b)[-1].wait()
        out = np.empty((p.m, p.n), np.float32)
        cl.enqueue_copy(self.rt.queue, out, self.c_buf)
        if not np.isfinite(out).all():
            return float("inf")
        return float(np.linalg.norm(out - self.ref) / np.linalg.norm(self.ref))

    def launches(self, kernel, a, b) -> list:
        """The kernel's launches as the float32 lane makes them, their events. A direct
        (CPU-shaped) schedule runs through the lane itself: a transposed A from a plain
        copy, B from panels, a wide N in blocks and a long K in slices, a transposed B with
        fewer rows than columns swapped (lanes/fp32.Fp32Lane). Timed as one bare launch, the
        tuner ranked schedules by a launch the call never makes (PoCL, 512 x 4096 x 4096 with
        B's rows 16 KiB apart: its pick, 90 GFLOPS bare, was the slowest of five through the
        call)."""
        p = self.problem
        if not kernel.schedule.direct:
            return [kernel.enqueue(p.m, p.n, p.k, 1.0, 0.0, a, b, self.c)]
        from ..lanes.fp32 import enqueue_product

        return enqueue_product(self.rt, kernel.schedule, p.m, p.n, p.k, 1.0, 0.0, a, b, self.c)

    def time(self, kernel, stop_above: float | None = None) -> list[float]:
        """The timed runs (after the warm-up ones); `stop_above`: when the first run (a
        warm-up run where there is one) takes longer, nothing more is run and [] is returned
        (the run's time is left in `first_s` either way)."""
        times = []
        for i in range(self.warmup + self.repeats):
            a, b = self.operands[i % len(self.operands)]
            t = self.rt.timed(lambda: self.launches(kernel, a, b))
            if i == 0:
                self.first_s = t
                if stop_above is not None and t > stop_above:
                    return []
            if i >= self.warmup:
                times.append(t)
        return times

    def measure(self, schedule: Schedule, compile_s: float | None = None,
                max_error_ratio: float = 2.0, give_up: float | None = None) -> Measurement:
        """Check, then time. `give_up`: a candidate whose first run after the check takes
        more than this many times the fastest such run so far is not timed further; that run
        is its time (the error field says so). On a slow device most of a tuning budget
        otherwise goes to repeating candidates several times slower than the best (llvmpipe:
        a 0.3 GFLOPS schedule costs 5 runs of 7 s at 1024). Not the checking run: on Rusticl
        it includes the driver's compile of the kernel (seconds for a large tile)."""
        from ..errors import ClgemmError
        from ..lanes.fp32 import get_kernel

        try:
            kernel = get_kernel(self.rt, schedule, self.problem.layout(schedule))
        except ClgemmError as exc:
            return Measurement(schedule, None, compile_s, f"compile: {str(exc)[:300]}")
        try:
            err = self.check(kernel)
            if not err <= 10 * self.numpy_error:
                return Measurement(schedule, None, compile_s,
                                   f"wrong: rel error {err:.3e} vs numpy {self.numpy_error:.3e}",
                                   rel_error=err)
            fastest = self.fastest_first_s
            limit = (give_up * fastest if give_up and fastest is not None
                     and err <= max_error_ratio * self.numpy_error else None)
            times = self.time(kernel, limit)
            if not times:
                return Measurement(schedule, self.first_s, compile_s,
                                   f"abandoned after one run: {self.first_s:.3g} s > {give_up:g}"
                                   f" x the fastest first run {fastest:.3g} s", err,
                                   [self.first_s])
            self.fastest_first_s = self.first_s if fastest is None else min(self.first_s, fastest)
        except Exception as exc:  # launch failures (out of resources, ...) are results
            return Measurement(schedule, None, compile_s, f"launch: {type(exc).__name__}: {exc}"[:300])
        median = float(np.median(times))
        if err > max_error_ratio * self.numpy_error:
            # Right answer, but outside the exact contract: its time is kept for study only.
            m = Measurement(schedule, None, compile_s,
                            f"inaccurate: rel error {err:.3e} > {max_error_ratio} x numpy "
                            f"{self.numpy_error:.3e}", err, times)
            m.inaccurate_time_s = median
            return m
        return Measurement(schedule, median, compile_s, None, err, times)
