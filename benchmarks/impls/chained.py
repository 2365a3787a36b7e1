"""The untuned default and the table's choice by the host's wall clock over chained launches,
numpy beside, in interleaved rounds (so that the load other work puts on shared cores falls
on all three alike); and, beside each chain, what the device's event clock says of the same
launches (Rusticl on llvmpipe: ~1 ns for any kernel).

    PYTHONPATH=src python3 benchmarks/impls/chained.py --size 1024 --rounds 5 --chain 3 -o chained.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import pyopencl as cl

from clgemm.lanes.fp32 import get_kernel
from clgemm.runtime import get_runtime
from clgemm.select.table import DEFAULT_CPU, DEFAULT_GPU, load_table
from clgemm.tune.measure import Bench, Problem


def chain_seconds(rt, kernel, bench: Bench, chain: int) -> tuple[float, float | None]:
    """Seconds a launch, wall clock over `chain` launches in a row (input sets rotated), and
    the mean profiling interval of the same launches (None where the device has none)."""
    p = bench.problem
    rt.queue.finish()
    t0 = time.perf_counter()
    events = []
    for i in range(chain):
        a, b = bench.operands[i % len(bench.operands)]
        events.append(kernel.enqueue(p.m, p.n, p.k, 1.0, 0.0, a, b, bench.c))
    rt.queue.finish()
    wall = (time.perf_counter() - t0) / chain
    try:
        event = sum((e.profile.end - e.profile.start) * 1e-9 for e in events) / chain
    except cl.Error:
        event = None
    return wall, event


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chain", type=int, default=3, help="launches timed together")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    rt = get_runtime()
    p = Problem(args.size, args.size, args.size)
    default = DEFAULT_CPU if rt.device.type == "CPU" else DEFAULT_GPU
    arms = {"default": default, "table": load_table(rt.device).lookup(p.m, p.n, p.k)}
    bench = Bench(rt, p, repeats=1, seed=0)
    kernels, errors = {}, {}
    for name, s in arms.items():
        kernels[name] = get_kernel(rt, s, p.layout(s))
        errors[name] = bench.check(kernels[name])  # also the warm-up run
    host = [(a, b) for a, b in bench.sets]
    samples: dict[str, list] = {name: [] for name in [*arms, "numpy"]}
    for r in range(args.rounds):
        for name, kernel in kernels.items():
            samples[name].append(chain_seconds(rt, kernel, bench, args.chain))
        t0 = time.perf_counter()
        for i in range(args.chain):
            np.matmul(*host[i % len(host)])
        samples["numpy"].append(((time.perf_counter() - t0) / args.chain, None))
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)

    def gflops(seconds: float) -> float:
        return p.flops / seconds / 1e9

    out = {"schema": "clgemm.chained/1", "device": {"name": rt.device.name,
                                                     "platform": rt.device.platform},
           "size": args.size, "rounds": args.rounds, "chain": args.chain,
           "timer": "host wall clock from the first enqueue to finish(), over the chain",
           "event_clock_plausible": rt.profiling_ok, "arms": {}}
    for name, rows in samples.items():
        walls = [w for w, _ in rows]
        events = [e for _, e in rows if e is not None]
        arm = {"wall_s": walls, "gflops_median": gflops(statistics.median(walls)),
               "gflops_best": gflops(min(walls))}
        if name in arms:
            arm.update(schedule=arms[name].key(), rel_error=errors[name], event_s=events,
                       event_over_wall=(statistics.median(events) / statistics.median(walls)
                                        if events else None))
        out["arms"][name] = arm
    # per round, so that a slow spell of the shared cores cancels in the ratio
    ratios = [d / t for (t, _), (d, _) in zip(samples["table"], samples["default"])]
    out["table_over_default"] = {"per_round": ratios, "median": statistics.median(ratios)}
    out["table_over_numpy"] = statistics.median(
        n / t for (t, _), (n, _) in zip(samples["table"], samples["numpy"]))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for name, arm in out["arms"].items():
        print(f"{name:8s} {arm['gflops_median']:7.2f} GFLOPS median (best {arm['gflops_best']:.2f})"
              f"  {arm.get('schedule', '')}")
    print(f"table / default: {out['table_over_default']['median']:.2f}x (median of per-round "
          f"ratios); table / numpy: {out['table_over_numpy']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
