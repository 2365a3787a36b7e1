"""clgemm's own measurements: kernel time by OpenCL event profiling on device buffers (input
sets rotated), the call as a user makes it, the numpy-in/numpy-out path split in three, the
accuracy envelope, the build cost (cold and warm, separate processes), the sustained run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyopencl as cl

from ..api import matmul
from ..lanes.fp32 import choose_schedule, enqueue_product, get_kernel, lane_for, layout_for
from ..operands import Operand
from ..schedule import Schedule
from .protocol import cv, gflops, median, summarize_times
from .telemetry import ClockSampler, window_means


class DeviceProblem:
    """Rotated input sets of one shape in device buffers, and the kernel of one schedule,
    launched as the float32 lane launches it: a direct (CPU-shaped) schedule with its copies
    and slices (lanes/fp32.Fp32Lane), its kernel time their sum. Timed as one bare launch,
    the figure was of a product the call never runs (on PoCL, B read in place where the call
    packs it in panels)."""

    def __init__(self, rt, case, inputs, schedule: Schedule) -> None:
        m, n, k = case.shape
        self.rt, self.case, self.inputs = rt, case, inputs
        self.bufs = [(rt.buffer(a.nbytes, "A", hostbuf=a), rt.buffer(b.nbytes, "B", hostbuf=b))
                     for a, b in inputs.sets]
        self.c_buf = rt.buffer(4 * m * n, "C")
        self.c = Operand(self.c_buf, 0, n, False)
        a0 = Operand(self.bufs[0][0], 0, k, False)
        b0 = Operand(self.bufs[0][1], 0, n, False)
        self.lane = lane_for(rt, schedule) if schedule.direct else None
        t0 = time.perf_counter()
        if self.lane is None:
            self.kernel = get_kernel(rt, schedule, layout_for(schedule, a0, b0, self.c))
        else:
            self.kernel = self.lane.product_kernel(m, n, k, a0, b0, self.c)
        self.first_build_s = time.perf_counter() - t0
        self.schedule = schedule

    def enqueue(self, i: int) -> list:
        """One product on input set i; its kernels' events (the last last)."""
        m, n, k = self.case.shape
        a, b = self.bufs[i % len(self.bufs)]
        a, b = Operand(a, 0, k, False), Operand(b, 0, n, False)
        if self.lane is None:
            return [self.kernel.enqueue(m, n, k, 1.0, 0.0, a, b, self.c)]
        return enqueue_product(self.rt, self.schedule, m, n, k, 1.0, 0.0, a, b, self.c)

    def kernel_times(self, warmup: int, repeats: int, max_s: float) -> list[float]:
        for i in range(warmup):
            self.enqueue(i)
        self.rt.queue.finish()
        times, start = [], time.perf_counter()
        for r in range(repeats):
            # the kernel's event time; wall time where the device's clock is implausible
            times.append(max(self.rt.timed(lambda: self.enqueue(r)), 1e-9))
            if r >= 2 and time.perf_counter() - start > max_s:
                break
        return times

    def call_times(self, repeats: int, max_s: float) -> list[float]:
        times, start = [], time.perf_counter()
        for r in range(repeats):
            t0 = time.perf_counter()
            self.enqueue(r)
            self.rt.queue.finish()
            times.append(time.perf_counter() - t0)
            if r >= 2 and time.perf_counter() - start > max_s:
                break
        return times

    def checked_result(self) -> np.ndarray:
        """Set 0 into C poisoned with NaN (beta = 0 must not read C)."""
        m, n, _ = self.case.shape
        cl.enqueue_copy(self.rt.queue, self.c_buf, np.full((m, n), np.nan, np.float32),
                        is_blocking=True)
        got = self.enqueue(0)
        (got[-1] if isinstance(got, list) else got).wait()
        out = np.empty((m, n), np.float32)
        cl.enqueue_copy(self.rt.queue, out, self.c_buf, is_blocking=True)
        return out


def host_path(rt, case, inputs, schedule, repeats: int) -> tuple[dict, bool]:
    """matmul(numpy, numpy) split into h2d, kernel, d2h; and whether every output was written."""
    m, n, _ = case.shape
    parts = {"h2d_s": [], "kernel_s": [], "d2h_s": [], "total_s": []}
    all_written = True
    matmul(*inputs.sets[0], device=rt.device, schedule=schedule)  # warm-up
    for r in range(max(1, repeats)):
        a, b = inputs.sets[r % len(inputs.sets)]
        out = np.full((m, n), np.nan, np.float32)
        _, info = matmul(a, b, C=out, device=rt.device, schedule=schedule, return_info=True)
        all_written &= bool(np.isfinite(out).all())
        for key in parts:
            parts[key].append(getattr(info, key))
    result = {key: median(v) for key, v in parts.items()}
    result["repeats"] = max(1, repeats)
    result["gflops_total"] = gflops(*case.shape, result["total_s"])
    result["note"] = "clgemm.matmul(numpy, numpy, return_info=True): Info.h2d_s/kernel_s/d2h_s/total_s"
    return result, all_written


def measured_entry(prob: "DeviceProblem", inputs, protocol) -> dict:
    """Kernel (event) and call (wall, drained) timings, accuracy and build facts of a problem."""
    from ..kernels.gemm import source_lines

    m, n, k = prob.case.shape
    times = prob.kernel_times(protocol.warmup, protocol.repeats, protocol.max_measure_s)
    calls = prob.call_times(len(times), protocol.max_measure_s)
    return {
        "status": "ok", "reason": None,
        "timing": summarize_times(times, m, n, k, "opencl-event"),
        "call": summarize_times(calls, m, n, k, "wall-drained"),
        "accuracy": inputs.accuracy(prob.checked_result()),
        "build": {"source_lines": source_lines(prob.kernel.source), "cold_s": None,
                  "warm_s": None, "in_run_s": prob.first_build_s,
                  "in_run_from_cache": prob.kernel.build_info.from_cache},
    }


def measure_clgemm(rt, case, inputs, protocol, schedule: Schedule | None, method: str,
                   with_host: bool = True) -> tuple[dict, "DeviceProblem | None"]:
    m, n, k = case.shape
    entry = {"method": method, "family": "clgemm", "shape": list(case.shape), "tag": case.tag}
    try:
        chosen = choose_schedule(rt, m, n, k, schedule)
        entry["schedule"] = chosen.key()
        prob = DeviceProblem(rt, case, inputs, chosen)
        entry.update(measured_entry(prob, inputs, protocol))
        if with_host:
            host, written = host_path(rt, case, inputs, chosen, protocol.host_repeats)
            entry["host_path"] = host
            entry["accuracy"]["host_path_all_written"] = written
        return entry, prob
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        entry.update({"status": "error", "reason": f"{type(exc).__name__}: {exc}"})
        return entry, None


# ---- build cost: separate processes, fresh cache for cold ------------------------------------

def _probe_main() -> None:
    """Child process: build one kernel, print its BuildInfo as JSON."""
    import argparse

    from ..kernels.gemm import Layout
    from ..runtime import get_runtime

    p = argparse.ArgumentParser()
    p.add_argument("--device", required=True)
    p.add_argument("--schedule", required=True)
    p.add_argument("--layout", required=True)
    args = p.parse_args()
    rt = get_runtime(args.device)
    t0 = time.perf_counter()
    if args.schedule.startswith("wg-"):  # the wgmma kernel (its layout is fixed)
        from ..kernels.tensorcore import source_lines
        from ..kernels.wgmma import WgSchedule
        from ..lanes.wgmma import get_wg_kernel

        kernel = get_wg_kernel(rt, WgSchedule.from_key(args.schedule))
        lines = source_lines(kernel.source)
    elif args.schedule.startswith("tc-"):  # the tensor-core family
        from ..kernels.tensorcore import TcLayout, TcSchedule, source_lines
        from ..lanes import mma

        kernel = mma.get_kernel(rt, TcSchedule.from_key(args.schedule),
                                TcLayout(**json.loads(args.layout)))
        lines = source_lines(kernel.source)
    else:
        kernel = get_kernel(rt, Schedule.from_key(args.schedule), Layout(**json.loads(args.layout)))
        lines = kernel.source_lines
    wall = time.perf_counter() - t0
    print(json.dumps({"seconds": kernel.build_info.seconds, "from_cache": kernel.build_info.from_cache,
                      "wall_s": wall, "source_lines": lines}))


def build_cost(device, schedule, layout, timeout: float = 600) -> dict:
    """Cold build (a fresh CLGEMM_CACHE_DIR, driver caches off) then warm (a second process
    loading the binary from that cache), each in its own process. `schedule` is a Schedule
    (with a kernels.gemm Layout), a TcSchedule (with a TcLayout) or a WgSchedule (None)."""
    from dataclasses import asdict

    with tempfile.TemporaryDirectory(prefix="clgemm-cold-") as tmp:
        env = dict(os.environ, CLGEMM_CACHE_DIR=tmp, CUDA_CACHE_DISABLE="1",
                   POCL_KERNEL_CACHE="0", MESA_SHADER_CACHE_DISABLE="true")  # (Rusticl)
        cmd = [sys.executable, "-c", "from clgemm.bench.harness import _probe_main; _probe_main()",
               "--device", device.fingerprint, "--schedule", schedule.key(),
               "--layout", json.dumps(asdict(layout) if layout is not None else None)]
        runs = []
        for _ in range(2):
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                raise RuntimeError(f"build probe failed: {out.stderr.strip()[-500:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    return {"cold_s": cold["seconds"], "warm_s": warm["seconds"],
            "cold_from_cache": cold["from_cache"], "warm_from_cache": warm["from_cache"],
            "source_lines": cold["source_lines"],
            "note": ("cold: new process, empty CLGEMM_CACHE_DIR, CUDA_CACHE_DISABLE=1, "
                     "POCL_KERNEL_CACHE=0, MESA_SHADER_CACHE_DISABLE=true; warm: a second process loading the binary from that "
                     "cache; seconds = BuildInfo.seconds (compile or load + clBuildProgram)")}


# ---- sustained run ---------------------------------------------------------------------------

def sustained(prob: DeviceProblem, seconds: float, window_s: float, method: str) -> dict:
    """Kernels back to back for `seconds`; GFLOPS per window of wall time (queue drained at
    each window's end), with the device clock where a sensor can be read."""
    m, n, k = prob.case.shape
    flops = 2.0 * m * n * k
    sampler = ClockSampler(prob.rt.device)
    one = median(prob.kernel_times(1, 3, 5.0))
    batch = max(1, min(int(window_s / 8 / one), 4096))
    series = []
    sampler.start()
    start = time.monotonic()
    i = 0
    try:
        while time.monotonic() - start < seconds:
            w0 = time.monotonic()
            count = 0
            while True:
                for _ in range(batch):
                    prob.enqueue(i)
                    i += 1
                prob.rt.queue.finish()
                count += batch
                if time.monotonic() - w0 >= window_s:
                    break
            w1 = time.monotonic()
            series.append({"t_s": w0 - start, "dt_s": w1 - w0, "gflops": count * flops / (w1 - w0) / 1e9,
                           "kernels": count})
    finally:
        sampler.stop()
    rows = sampler.rows()
    for point in series:
        point.update(window_means(rows, start + point["t_s"], start + point["t_s"] + point["dt_s"]))
    values = [p["gflops"] for p in series]
    return {
        "method": method, "shape": list(prob.case.shape), "schedule": prob.schedule.key(),
        "seconds": seconds, "window_s": window_s, "series": series,
        "gflops_mean": sum(values) / len(values) if values else None,
        "gflops_median": median(values) if values else None,
        "gflops_min": min(values) if values else None,
        "gflops_max": max(values) if values else None,
        "cv": cv(values) if values else None,
        "clock_source": sampler.source, "clock_absent_reason": sampler.reason,
        "samples": len(rows),
        "note": "wall-time windows of back-to-back kernels (rotated input sets), queue drained per batch",
    }
