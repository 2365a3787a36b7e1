"""`clgemm strategies`: replay search strategies over a recorded space (engine simulator)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import args as a


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "strategies",
        help="replay search strategies over a recorded space (clgemm.space/1 or Kernel Tuner cache)",
        description=(
            "Replays strategies over measured schedules for many seeds in parallel and reports "
            "how many evaluations (and compile+run seconds) each needs to reach 95% and 99% of "
            "the best recorded schedule's speed. 'all' compares the strategies that learn only "
            "from what they measure; 'oracle' (the model ranked by the recorded times plus "
            "noise: it reads the answer) runs only when named, as a reference."
        ),
    )
    p.add_argument("--space", required=True, type=a.json_file("a recorded space"),
                   help="recorded space JSON (clgemm.space/1 or Kernel Tuner cache)")
    p.add_argument("--strategy", default=("all",),
                   type=a.choices((*_strategies(), "oracle", "all"), what="strategy"),
                   help="random, greedy, genetic, annealing, sqa, forest, 'all' (default: those "
                        "six), or 'oracle' (a reference, never ranked); comma-separated for several")
    p.add_argument("--seeds", type=a.positive_int, default=30,
                   help="runs, seeds 0..N-1 (default 30)")
    p.add_argument("--budget", type=a.positive_int, default=200,
                   help="evaluations per run (default 200)")
    p.add_argument("--threads", type=a.count, default=0, help="cores to use (default: all)")
    p.add_argument("--batch", type=a.positive_int, default=1, help="candidates per ask (default 1)")
    p.add_argument("--stop-at", type=a.real(0.0, 1.0, open_low=True), default=None,
                   metavar="FRACTION",
                   help="end each run once it reaches this fraction of the best speed (e.g. 0.95)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   type=a.option_pair,
                   help="strategy option, e.g. t0=0.5 or population=30 (repeatable)")
    p.add_argument("--oracle-noise", type=a.nonnegative, default=0.3,
                   help="oracle only: ranking = recorded time x exp(noise*N(0,1)) (default 0.3)")
    p.add_argument("--transfer-db", action="append", default=[], metavar="DB",
                   type=a.database(must_exist=True),
                   help="also replay 'model+transfer': the tuner's cost model with the pairwise "
                        "rank fit pretrained on this tuning database's measurements of OTHER "
                        "shapes on the space's device (the space's own shape is excluded); "
                        "repeatable")
    p.add_argument("--json", dest="json_out", type=a.output_file,
                   help="write the summaries and per-run figures here")
    p.add_argument("--curves", type=a.count, default=0, metavar="POINTS",
                   help="with --json: also each run's best-so-far curve, thinned to about POINTS "
                        "log-spaced evaluations (default 0: none)")
    p.set_defaults(func=_run)


def _strategies() -> tuple[str, ...]:
    from ..engine import STRATEGIES

    return tuple(STRATEGIES)


def _names(items: tuple[str, ...]) -> list[str]:
    from ..engine import ORACLE, PRIOR_FREE

    names: list[str] = []
    for part in items:
        names.extend(PRIOR_FREE if part == "all" else [part])
    # The oracle reads the recorded times: it is printed last, as a reference.
    return sorted(dict.fromkeys(names), key=lambda n: n == ORACLE)


def _run(args: argparse.Namespace) -> int:
    from ..engine import ORACLE, RecordedSpace, simulate

    space = RecordedSpace.load(args.space)
    options = dict(args.option)  # (name, value) pairs, checked by args.option_pair
    best = space.best()
    print(f"{args.space}: {len(space)} recorded schedules ({space.format}), "
          f"best {best[1] * 1e3:.4g} ms" if best else f"{args.space}: no successful record")
    results, references = {}, {}
    for name in _names(args.strategy):
        t0 = time.perf_counter()
        res = simulate(space, name, args.seeds, args.budget, args.threads, dict(options),
                       oracle_noise=args.oracle_noise if name == ORACLE else None,
                       batch=args.batch, stop_at=args.stop_at, curves=args.curves > 0)
        wall = time.perf_counter() - t0
        s = res.summary(len(space))
        label = f"{name} (reads the recorded times)" if name == ORACLE else name
        print(f"  {label:10s} reached95 {s['reached_95']:.0%} median evals {s['median_evals_to_95']}"
              f" | within 1% of the space {s['share_95_within_1pct']:.0%}"
              f" | reached99 {s['reached_99']:.0%} median evals {s['median_evals_to_99']}"
              f" | {wall:.2f} s")
        out = res.to_json(len(space), args.curves)
        out["wall_s"] = wall
        (references if name == ORACLE else results)[name] = out
    if args.transfer_db:
        results["model+transfer"] = _transfer_run(args, space)
    if args.json_out:
        doc = {
            "command": "clgemm " + " ".join(sys.argv[1:]),
            "space": str(args.space),
            "format": space.format,
            "records": len(space),
            "seeds": args.seeds,
            "budget": args.budget,
            "stop_at": args.stop_at,
            "results": results,
        }
        if references:
            doc["references"] = references
            doc["references_note"] = "the oracle reads the recorded times: not a strategy"
        from ..atomic import write_text

        write_text(args.json_out, json.dumps(doc, indent=1))
        print(f"wrote {args.json_out}")
    return 0


def _transfer_run(args: argparse.Namespace, space) -> dict:
    import statistics

    from ..errors import UsageError
    from ..tune.measure import Problem
    from ..tune.offline import replay_model, transfer_groups

    doc = json.loads(Path(args.space).read_text())
    device = (doc.get("device") or {}).get("name")
    if not device or not doc.get("shape"):
        raise UsageError("--transfer-db needs a clgemm.space/1 file with its device and shape")
    prior = transfer_groups(args.transfer_db, device, exclude=Problem(*doc["shape"]))
    t0 = time.perf_counter()
    runs, best = replay_model(args.space, list(range(args.seeds)), args.budget, transfer=prior)
    wall = time.perf_counter() - t0
    out: dict = {"strategy": "model+transfer", "budget": args.budget, "best_known": best,
                 "transfer": {"databases": args.transfer_db, "measurements": prior.samples,
                              "shapes": [[p.m, p.n, p.k] for p in prior.problems]},
                 "runs": [], "wall_s": wall}
    def reach(curve, goal):
        return next((i + 1 for i, b in enumerate(curve) if b is not None and b <= best / goal),
                    None)

    from ..engine import thin_curve

    for r in runs:
        row = {"seed": r.seed, "evals_to_95": reach(r.curve, 0.95),
               "evals_to_99": reach(r.curve, 0.99)}
        if args.curves > 0:
            row["curve"] = thin_curve(r.curve, args.curves)
        out["runs"].append(row)
    for goal in ("95", "99"):
        evals = [r[f"evals_to_{goal}"] for r in out["runs"]]
        out[f"reached_{goal}"] = sum(e is not None for e in evals) / len(evals)
        out[f"median_evals_to_{goal}"] = statistics.median(
            [e if e is not None else args.budget + 1 for e in evals])
    print(f"  {'model+transfer':10s} reached95 {out['reached_95']:.0%} median evals "
          f"{out['median_evals_to_95']} | reached99 {out['reached_99']:.0%} median evals "
          f"{out['median_evals_to_99']} | {wall:.2f} s ({prior.samples} prior measurements "
          f"of {len(prior.problems)} other shapes)")
    return out
