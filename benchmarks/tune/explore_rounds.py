"""Interleaved A/B timing of schedules on the default OpenCL device (PoCL here).

    PYTHONPATH=src CLGEMM_DEVICE="Portable Computing Language" POCL_MEMORY_LIMIT=4 \
        python3 benchmarks/tune/explore_rounds.py --size 1024 --rounds 5 KEY [KEY ...] [-o out.json]

Every schedule is compiled and checked against float64 first, then timed once per round in
turn (round-robin), so slow drifts of the shared cores hit all candidates alike. Reports the
median and best GFLOPS over rounds (each round: median of --repeats runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from clgemm.lanes.fp32 import get_kernel
from clgemm.runtime import get_runtime
from clgemm.schedule import Schedule
from clgemm.select.table import DEFAULT_CPU, load_table
from clgemm.tune.measure import Bench, Problem


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("keys", nargs="*")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-default", action="store_true", help="add the untuned CPU default")
    ap.add_argument("--with-table", action="store_true", help="add the shipped table's choice")
    ap.add_argument("-o", "--out")
    ap.add_argument("--space-out", help="also write the rounds as a clgemm.space/1 recording "
                    "(median of rounds per schedule), for `clgemm tune-import`")
    args = ap.parse_args()
    rt = get_runtime()
    p = Problem(args.size, args.size, args.size)
    keys = list(args.keys)
    if args.with_default:
        keys.insert(0, DEFAULT_CPU.key())
    if args.with_table:
        keys.insert(0, load_table(rt.device).lookup(p.m, p.n, p.k).key())
    keys = list(dict.fromkeys(keys))
    bench = Bench(rt, p, repeats=args.repeats, seed=0)
    kernels, errors = {}, {}
    for key in keys:
        s = Schedule.from_key(key)
        t0 = time.monotonic()
        try:
            k = get_kernel(rt, s, p.layout(s))
            err = bench.check(k)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[key] = f"{type(exc).__name__}: {exc}"[:200]
            print(f"{key}: FAILED {errors[key]}", file=sys.stderr)
            continue
        if not err <= 2 * bench.numpy_error:
            errors[key] = f"rel error {err:.2e} > 2 x numpy {bench.numpy_error:.2e}"
            print(f"{key}: {errors[key]}", file=sys.stderr)
            continue
        kernels[key] = k
        print(f"{key}: built+checked in {time.monotonic() - t0:.1f}s, err {err:.2e}",
              file=sys.stderr, flush=True)
    per: dict[str, list[float]] = {k: [] for k in kernels}
    for r in range(args.rounds):
        for key, k in kernels.items():
            per[key].append(float(np.median(bench.time(k))))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rows = []
    for key, ts in per.items():
        rows.append({"schedule": key, "median_gflops": p.flops / statistics.median(ts) / 1e9,
                     "best_gflops": p.flops / min(ts) / 1e9, "round_times_s": ts})
    rows.sort(key=lambda r: -r["median_gflops"])
    for row in rows:
        print(f"{row['median_gflops']:7.1f} median {row['best_gflops']:7.1f} best  {row['schedule']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": rt.device.name, "size": args.size, "rounds": args.rounds,
                       "repeats": args.repeats, "command": " ".join(sys.argv),
                       "results": rows, "failed": errors}, f, indent=1)
    if args.space_out:
        from clgemm.lanes.fp32 import search_space
        from clgemm.tune.record import SPACE_SCHEMA

        space = search_space(rt)
        records = [{"schedule": Schedule.from_key(r["schedule"]).as_dict(),
                    "time_s": statistics.median(r["round_times_s"]), "compile_s": None,
                    "error": None} for r in rows]
        records += [{"schedule": Schedule.from_key(k).as_dict(), "time_s": None,
                     "compile_s": None, "error": e} for k, e in errors.items()]
        with open(args.space_out, "w") as f:
            json.dump({"schema": SPACE_SCHEMA, "device": rt.device.summary(),
                       "shape": [p.m, p.n, p.k],
                       "params": [[n, list(v)] for n, v in space.domains.items()],
                       "limits": space.limits.as_dict(), "numpy_error": bench.numpy_error,
                       "protocol": {"repeats": args.repeats, "rounds": args.rounds,
                                    "statistic": "median over interleaved rounds of the median "
                                                 "of repeats", "timer": "OpenCL event profiling",
                                    "command": " ".join(sys.argv)},
                       "complete": True, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
