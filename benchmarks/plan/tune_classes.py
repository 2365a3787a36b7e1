"""Tune the float32 family on the shape classes of the model traces, distill, and merge the
result into the device's table (issue: shapes beyond the squares).

Every product of the traces that the float32 family serves (m and n above the small-rows
lane's 16; a batch counts as its one product) falls in a shape class of the table
(select.table.shape_class); each class is tuned at its representative, the product of the
class with the most flops in the traces. `clgemm tune` searches each (forest, no prior
unless the database has one), `distill` replays the union of the classes' best schedules in
separate sessions and picks a cover; the classes it tuned replace the table's entries for
them, everything else of the table (its other classes, its tensor-core section) is kept.

    python benchmarks/plan/tune_classes.py --out-dir $OUT --budget 20 --minutes 5

On PoCL (2 shared cores; records/cpu-pocl-amd-epyc/2026-12-06-model-traces-2) BERT's classes
were tuned in their plain layout, with the pipeline's database as the prior:

    python benchmarks/plan/tune_classes.py --out-dir $OUT --budget 3 --minutes 15 --top-k 2 \
        --sessions 1 --plain-layout --max-gflop 5 --traces traces/models/bert-base-train.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from clgemm.kernels.gemv import MAX_ROWS
from clgemm.select.replay import Call, read_trace
from clgemm.select.table import load_table, shape_class
from clgemm.tune.db import TuningDB
from clgemm.tune.distill import distill, write_table

TRACES = sorted(Path("traces/models").glob("*.jsonl"))


def representatives(paths) -> list[Call]:
    """One product per shape class: the one with the most flops over the traces."""
    weight: dict[tuple, float] = {}
    calls: dict[tuple, Call] = {}
    for path in paths:
        for c in read_trace(path):
            if not isinstance(c, Call) or min(c.m, c.n) <= MAX_ROWS:
                continue
            key = (c.m, c.n, c.k, c.trans_a, c.trans_b)
            weight[key] = weight.get(key, 0.0) + c.flops * c.repeat
            calls[key] = c
    best: dict[str, tuple] = {}
    for key, w in weight.items():
        cls = shape_class(*key[:3])
        if cls not in best or w > weight[best[cls]]:
            best[cls] = key
    return [calls[key] for key in sorted(best.values(), key=lambda k: -weight[k])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--budget", type=int, default=20, help="evaluations per class")
    ap.add_argument("--minutes", type=float, default=5.0, help="stop starting new classes after")
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--traces", nargs="*", default=[str(p) for p in TRACES])
    ap.add_argument("--install", action="store_true",
                    help="also write the merged table into the package's tables folder")
    ap.add_argument("--plain-layout", action="store_true",
                    help="tune every class with its operands stored plainly: the direct "
                         "(CPU-shaped) form runs a transposed operand from a plain copy "
                         "(lanes/pack.py), so its kernels only meet that layout")
    ap.add_argument("--max-gflop", type=float, default=None,
                    help="leave out classes whose representative product (one, not its "
                         "batch) is larger: a slow device's time goes to the many")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    db_path = out / "tune.sqlite"
    reps = representatives(args.traces)
    if args.max_gflop is not None:
        reps = [c for c in reps if 2.0 * c.m * c.n * c.k <= args.max_gflop * 1e9]
    print(f"{len(reps)} classes to tune", flush=True)
    t0 = time.perf_counter()
    tuned = []
    for c in reps:
        if time.perf_counter() - t0 > 60 * args.minutes:
            print(f"time is up: {len(reps) - len(tuned)} classes left untuned", flush=True)
            break
        cmd = [sys.executable, "-m", "clgemm.cli", "tune", "--size", f"{c.m}x{c.n}x{c.k}",
               "--budget", str(args.budget), "--db", str(db_path), "--seed", "1"]
        if not args.plain_layout:
            cmd += ["--trans-a"] * c.trans_a + ["--trans-b"] * c.trans_b
        t1 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        print(f"{shape_class(c.m, c.n, c.k)} {c.m}x{c.n}x{c.k} ta={int(c.trans_a)} "
              f"tb={int(c.trans_b)}: rc {done.returncode} in {time.perf_counter() - t1:.0f} s "
              f"{done.stdout.strip().splitlines()[-1:] if done.stdout else ''}", flush=True)
        if done.returncode == 0:
            tuned.append(c)
        else:
            print(done.stderr[-800:], flush=True)
    with TuningDB(str(db_path)) as db:
        fresh = distill(db, None, top_k=args.top_k, sessions=args.sessions)
    from clgemm.runtime import get_runtime

    device = get_runtime(None).device
    old = load_table(device)
    own_table = old.match == "exact" and old.source != "builtin default"  # not a fallback
    merged_entries = dict(old.entries) if own_table else {}
    merged_entries.update(fresh.entries)
    evidence = dict(old.evidence) if own_table else {}
    evidence["update_2026_12_06_classes"] = {
        "command": sys.argv, "classes": sorted(fresh.entries),
        "budget_per_class": args.budget, "replay_sessions": args.sessions,
        "plain_layout": args.plain_layout, "max_gflop": args.max_gflop,
        "top_k": args.top_k, "tuned": [f"{c.m}x{c.n}x{c.k}" for c in tuned],
        "distilled": fresh.evidence}
    alternates = tuple(dict.fromkeys((old.alternates if own_table else ()) + fresh.alternates))
    merged = type(old)(device_name=device.name, entries=merged_entries,
                       default=old.default if own_table else fresh.default,
                       source="distilled", evidence=evidence,
                       tensorcore=old.tensorcore if own_table else None,
                       alternates=alternates, device=fresh.device or old.device)
    write_table(merged, out / f"{device.slug}.json")
    if args.install:
        from importlib import resources

        write_table(merged, Path(str(resources.files("clgemm") / "data" / "tables"))
                    / f"{device.slug}.json")
    print(json.dumps({c: s.key() for c, s in sorted(fresh.entries.items())}, indent=1))
    print(f"tuned {len(tuned)} classes in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
