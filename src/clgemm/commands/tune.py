"""`clgemm tune` and `clgemm distill`."""

from __future__ import annotations

import json

from . import args as a


def register(sub) -> None:
    from ..engine import STRATEGIES

    p = sub.add_parser("tune", help="search schedules for a shape; results go to the tuning DB")
    p.add_argument("--size", "--shape", dest="shapes", action="append", required=True,
                   type=a.shape,
                   help="N (square) or MxNxK; repeat for several shapes")
    p.add_argument("--strategy", default="auto", choices=["auto", *STRATEGIES],
                   help="auto (default): the model with the transfer prior when the database "
                        "holds this device's measurements of other shapes, else forest (an "
                        "online surrogate that learns only from what it measures); or one of "
                        + ", ".join(STRATEGIES))
    p.add_argument("--budget", default=(100, None), type=a.budget,
                   help="evaluations per shape in the database (e.g. 200), or seconds (300s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", type=a.database(),
                   help="tuning database (default: $CLGEMM_TUNE_DB or user data dir)")
    p.add_argument("--device")
    p.add_argument("--workers", type=a.positive_int, default=None,
                   help="compile processes (default: CPU cores - 1)")
    p.add_argument("--repeats", type=a.positive_int, default=5)
    p.add_argument("--give-up", type=a.real(1.0, open_low=True), default=None, metavar="F",
                   help="time no further a candidate whose first run after its check took "
                        "more than F times the fastest so far (that run is its time); for "
                        "slow devices")
    p.add_argument("--trans-a", action="store_true")
    p.add_argument("--trans-b", action="store_true")
    p.add_argument("--transfer", action="store_true",
                   help="model strategy: pretrain the cost model on this device's measurements of "
                        "other shapes in the database (no random warm-up)")
    p.add_argument("--prior-device", metavar="NAME", default=None,
                   help="the transfer prior (--transfer, or auto) from this device's "
                        "measurements instead, by name as the database records it: another "
                        "card of the same architecture, for a card the database does not know")
    p.add_argument("--json", type=a.output_file, help="write the run summary here")
    p.set_defaults(func=_tune)

    p = sub.add_parser("tune-import", help="add a recorded space (clgemm.space/1) to the tuning DB")
    p.add_argument("space", nargs="+", type=a.space_file)
    p.add_argument("--db", type=a.database())
    p.set_defaults(func=_tune_import)

    p = sub.add_parser("distill", help="replay the best schedules, write the device's table")
    p.add_argument("--db", type=a.database(must_exist=True))
    p.add_argument("--device")
    p.add_argument("--top-k", type=a.positive_int, default=5)
    p.add_argument("--sessions", type=a.positive_int, default=3,
                   help="replay sessions (separate processes)")
    p.add_argument("-o", "--out", type=a.output_file,
                   help="table path (default: the package's data/tables/<device>.json)")
    p.set_defaults(func=_distill)


def _tune(args) -> int:
    import dataclasses
    import os

    from ..tune.db import TuningDB
    from ..tune.loop import TuneConfig, tune

    from ..tune.measure import Problem

    evals, seconds = args.budget
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    summaries = []
    with TuningDB(args.db) as db:
        for shape in args.shapes:
            problem = dataclasses.replace(Problem(*shape), trans_a=args.trans_a,
                                          trans_b=args.trans_b)
            config = TuneConfig(problem, args.strategy, evals, seconds, args.seed, workers,
                                args.repeats, transfer=args.transfer,
                                give_up=args.give_up, prior_device=args.prior_device)
            r = tune(config, db, device=args.device)
            gf = f"{r.best_gflops:,.1f} GFLOPS" if r.best_gflops else "nothing valid"
            print(f"{problem.m}x{problem.n}x{problem.k} ({r.strategy}"
                  f"{' + transfer' if r.transfer else ''}): best {gf} "
                  f"({r.best.key() if r.best else '-'}), {r.evaluations} evaluated now "
                  f"({r.failures} failed), {r.resumed} resumed, {r.wall_s:.0f} s, {r.status}")
            summaries.append({
                "shape": [problem.m, problem.n, problem.k], "strategy": r.strategy,
                "run_id": r.run_id, "evaluations": r.evaluations, "resumed": r.resumed,
                "failures": r.failures, "best": r.best.key() if r.best else None,
                "best_time_s": r.best_time_s, "best_gflops": r.best_gflops,
                "wall_s": r.wall_s, "space_size": r.space_size, "valid_count": r.valid_count,
                "status": r.status, "db": str(db.path), "transfer": r.transfer,
            })
    if args.json:
        from ..atomic import write_text

        write_text(args.json, json.dumps(summaries, indent=1))
    return 0


def _tune_import(args) -> int:
    from ..tune.db import TuningDB
    from ..tune.record import import_space

    with TuningDB(args.db) as db:
        for path in args.space:
            print(f"{path}: {import_space(db, path)} measurements added to {db.path}")
    return 0


def _distill(args) -> int:
    from importlib import resources

    from ..tune.db import TuningDB
    from ..tune.distill import distill, write_table

    out = args.out
    if out is None:  # checked before the replay work, like an explicit -o
        from ..device import get_device

        out = str(resources.files("clgemm") / "data" / "tables"
                  / f"{get_device(args.device).slug}.json")
        a.require(a.output_file, out, "-o (the default table path)")
    with TuningDB(args.db) as db:
        table = distill(db, args.device, top_k=args.top_k, sessions=args.sessions)
    write_table(table, str(out))
    for cls, s in sorted(table.entries.items()):
        print(f"{cls}: {s.key()}")
    print(f"default: {table.default.key()} -> {out}")
    return 0
