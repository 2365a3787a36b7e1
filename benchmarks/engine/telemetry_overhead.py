"""GEMM throughput with and without the engine's 1 kHz telemetry sampler, interleaved.

Run on the GPU machine: python3 benchmarks/engine/telemetry_overhead.py  (writes $OUT/telemetry.json)
Each phase keeps the queue full with back-to-back 2048^3 GEMMs for a fixed wall time and counts
completed products; phases alternate off/on so drift affects both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from clgemm.engine import Telemetry
from clgemm.lanes.fp32 import get_kernel
from clgemm.runtime import get_runtime
from clgemm.select.table import load_table
from clgemm.tune.measure import Bench, Problem

PHASE_S = float(os.environ.get("PHASE_S", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "4"))


def throughput(bench: Bench, kernel, seconds: float) -> float:
    p = bench.problem
    a, b = bench.operands[0]
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            kernel.enqueue(p.m, p.n, p.k, 1.0, 0.0, a, b, bench.c)
        bench.rt.queue.finish()
        done += 10
    return done * p.flops / (time.perf_counter() - start) / 1e9


def main() -> int:
    rt = get_runtime()
    problem = Problem(2048, 2048, 2048)
    schedule = load_table(rt.device).lookup(2048, 2048, 2048)
    kernel = get_kernel(rt, schedule, problem.layout(schedule))
    bench = Bench(rt, problem)
    throughput(bench, kernel, 2.0)  # warm-up: clocks up
    off, on, samples, rates = [], [], [], []
    for _ in range(ROUNDS):
        off.append(throughput(bench, kernel, PHASE_S))
        tel = Telemetry("auto", rate_hz=1000.0)
        started = tel.start()
        t0 = time.monotonic()
        on.append(throughput(bench, kernel, PHASE_S))
        tel.stop()
        s = tel.samples()
        samples.append(len(s))
        rates.append(len(s) / (time.monotonic() - t0))
        source = tel.source if started else None
    overhead = 1.0 - statistics.median(on) / statistics.median(off)
    result = {
        "schedule": schedule.key(), "device": rt.device.summary(), "shape": [2048] * 3,
        "phase_s": PHASE_S, "rounds": ROUNDS, "telemetry_source": source,
        "gflops_off": off, "gflops_on": on, "samples_per_phase": samples,
        "achieved_rate_hz": rates, "overhead_fraction": overhead,
        "command": "python3 benchmarks/engine/telemetry_overhead.py",
        "sm_mhz_last": float(s.sm_mhz[-1]) if len(s) else None,
    }
    Path(os.environ.get("OUT", "."), "telemetry.json").write_text(json.dumps(result, indent=1))
    print(f"telemetry ({source}, {statistics.median(rates):.0f} Hz): off "
          f"{statistics.median(off):.0f} GFLOPS, on {statistics.median(on):.0f} GFLOPS, "
          f"overhead {overhead * 100:+.2f}%", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
