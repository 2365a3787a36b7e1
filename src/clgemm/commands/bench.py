"""`clgemm bench`, `roofline`, `report`, `gate` and `lab`: the harness, its reports and the
lab's promotion gate."""

from __future__ import annotations

import json
import sys

from . import args as a


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure clgemm and its peers; writes one JSON artifact")
    p.add_argument("--suite", default="kpi", choices=("kpi", "shapes", "model", "none"),
                   help="kpi (1400/2048/3072 square), shapes, model (a trace: --trace), or none")
    p.add_argument("--trace", type=a.trace_file,
                   help="--suite model: a JSON-lines trace of products "
                        "(traces/models/*.jsonl, traces/tiny/model_tiny.jsonl)")
    p.add_argument("--peers", default=("torch", "numpy"),
                   type=a.choices(("torch", "numpy"), extra=("none",), what="peer"),
                   help="--suite model: peers measured beside clgemm (torch, numpy, none)")
    p.add_argument("--shapes", type=a.shape_list,
                   help="extra shapes, e.g. 1024x512x256,2000 (MxNxK or N)")
    p.add_argument("--scale", type=a.positive, default=1.0,
                   help="scale the suite's dimensions (odd stay odd), e.g. 0.0625 on a CPU")
    p.add_argument("--device", help="index, fingerprint or name substring")
    p.add_argument("-o", "--out", type=a.output_file,
                   help="artifact path (default bench-<device>-<time>.json)")
    p.add_argument("--warmup", type=a.count, default=3)
    p.add_argument("--repeats", type=a.positive_int, default=20)
    p.add_argument("--input-sets", type=a.positive_int, default=3, help="rotated input sets")
    p.add_argument("--max-measure-s", type=a.positive, default=10.0,
                   help="stop repeating one measurement after this long (>= 3 repeats)")
    p.add_argument("--host-repeats", type=a.count, default=5, help="numpy-in/numpy-out calls timed")
    p.add_argument("--no-host-path", action="store_true", help="skip the end-to-end path")
    p.add_argument("--sustained-seconds", type=a.nonnegative, default=None,
                   help="continuous run length (default 60 on a GPU, 2 otherwise; 0 = none)")
    p.add_argument("--sustained-size", type=a.shape_text,
                   help="shape of the sustained run (default 2048 or largest)")
    p.add_argument("--window", type=a.positive, default=0.5, help="sustained series window (s)")
    p.add_argument("--sessions", type=a.positive_int, default=1,
                   help="N > 1: N separate processes, merged (CV across sessions)")
    p.add_argument("--baselines", default=("numpy", "clblast", "cublas"),
                   type=a.choices(("numpy", "clblast", "cublas"), extra=("none",),
                                  what="baseline"),
                   help="comma list of numpy, clblast, cublas; or none")
    p.add_argument("--clblast-tuned", action="append", default=[], metavar="FILE",
                   type=a.existing_path,
                   help="CLBlast tuner JSON (clblast_xgemm_*_32.json) or a folder of them")
    p.add_argument("--schedule", action="append", default=[], metavar="KEY", type=schedule_key,
                   help="also measure this clgemm schedule (Schedule.key()), as method clgemm:KEY")
    p.add_argument("--label", default="clgemm", help="method name of clgemm's chosen kernel")
    p.add_argument("--tc", default=(), type=a.choices(_tc_modes(), what="--tc mode"),
                   help="lab: also measure tensor-core modes: tf32, 3xtf32 "
                   "(mma.sync), wgmma-tf32, wgmma-3xtf32 (Hopper) (methods clgemm-<mode>; "
                   "recorded absent where not offered)")
    p.add_argument("--rank-schedules", type=a.count, default=None,
                   help="rank this many schedules per session for the reproducibility score "
                        "(default 4 with --sessions > 1, else 0)")
    p.add_argument("--load", action="store_true",
                   help="also measure while another process loads the device with GEMMs")
    p.add_argument("--no-build-cost", action="store_true", help="skip cold/warm build timing")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--session-index", type=int, default=None, help=argparse_hidden())
    p.set_defaults(func=_bench)

    p = sub.add_parser("roofline", help="measure FMA peak and bandwidth; place kernels on the roof")
    p.add_argument("--device")
    p.add_argument("-o", "--out", default="roofline.json", type=a.output_file)
    p.add_argument("--png", default=None, type=a.output_file,
                   help="plot path (default: beside --out, .png)")
    p.add_argument("--from", dest="artifacts", action="append", default=[],
                   type=a.bench_artifact(),
                   help="bench artifact whose clgemm kernels to place (measured GFLOPS)")
    p.add_argument("--k", type=a.positive_int, default=2048,
                   help="K used for the intensity of a tile")
    p.add_argument("--quick", action="store_true", help="short microbenchmarks (tests, CPU)")
    p.set_defaults(func=_roofline)

    p = sub.add_parser("report", help="Markdown + HTML report (with plots) from artifacts; "
                       "--paper: the technical report from records/")
    p.add_argument("artifacts", nargs="*", type=a.report_input,
                   help="bench, roofline and model artifacts (JSON)")
    p.add_argument("--paper", action="store_true",
                   help="the technical report (one self-contained report.html) from the records "
                        "and the lab's cards, instead of a report of given artifacts")
    p.add_argument("--migration", action="store_true",
                   help="the migration report (<name>.md and .html) from the implementations' "
                        "pipeline records (records/*/<date>-pipeline), e.g. -o docs --name migration")
    p.add_argument("--records", type=a.existing_dir, default=None,
                   help="with --paper or --migration: the records folder (default records)")
    p.add_argument("--lab", type=a.existing_dir, default=None,
                   help="with --paper: the cards (default research/breakthrough_lab)")
    p.add_argument("-o", "--out", default="report", type=a.output_dir, help="output folder")
    p.add_argument("--name", default="report", type=a.file_stem,
                   help="file stem (report.md, report.html)")
    p.add_argument("--embed", action="store_true",
                   help="images inline (base64) in the Markdown too: no PNG files written")
    p.set_defaults(func=_report)

    p = sub.add_parser("gate", help="promotion gate: candidate artifact vs baseline artifact")
    p.add_argument("candidate", type=a.bench_artifact())
    p.add_argument("--baseline", required=True, type=a.bench_artifact())
    p.add_argument("--candidate-method", default=None,
                   help="method in the candidate (default clgemm)")
    p.add_argument("--baseline-method", default=None, help="method in the baseline (default clgemm)")
    p.add_argument("--metric", choices=["peak", "sustained"], default="peak")
    p.add_argument("--sizes", default=None, type=a.shape_list,
                   help="target shapes (default: KPI sizes in both)")
    p.add_argument("--min-speedup", type=a.finite, default=0.10)
    p.add_argument("--speed-rule", choices=["all", "any"], default="all",
                   help="the speed-up must hold at all target sizes, or at any one")
    p.add_argument("--error-ratio", type=a.positive, default=2.0,
                   help="exact contract: rel. error <= this x numpy float32's on the same inputs")
    p.add_argument("--rel-budget", type=a.fraction, default=None,
                   help="approximate contract: rel. Frobenius error <= this (replaces the ratio)")
    p.add_argument("--max-cv", type=a.nonnegative, default=0.05, help="CV across sessions")
    p.add_argument("--allow-single-session", action="store_true",
                   help="use within-run CV when the candidate has no sessions")
    p.add_argument("--max-cold-build-s", type=a.positive, default=30.0)
    p.add_argument("--max-warm-build-s", type=a.positive, default=2.0)
    p.add_argument("--max-source-lines", type=a.positive_int, default=2000)
    p.add_argument("--max-lines-ratio", type=a.positive, default=2.0,
                   help="candidate kernel lines <= this x baseline's")
    p.add_argument("--card", type=a.existing_file,
                   help="write the decision into this card's [gate]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_gate)

    p = sub.add_parser("lab", help="list the lab's cards and their gate state")
    p.add_argument("--root", default="research/breakthrough_lab", type=a.existing_dir)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_lab)


def _tc_modes() -> tuple[str, ...]:
    from ..bench.tensorcore import MODES

    return tuple(MODES)


def schedule_key(text: str) -> str:
    """A schedule key (Schedule.key() or a tensor-core key), checked for its form."""
    from ..errors import ClgemmError
    from ..kernels.tensorcore import TcSchedule
    from ..kernels.wgmma import WgSchedule
    from ..schedule import Schedule

    for kind in (Schedule, TcSchedule, WgSchedule):
        try:
            kind.from_key(text)
            return text
        except (ClgemmError, KeyError, TypeError, ValueError):
            continue
    raise a.Bad(f"{text!r} is not a schedule key (see Schedule.key(), e.g. in a table)")


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def _command(args) -> list[str]:
    """The command line an artifact records."""
    argv = ["clgemm"] + sys.argv[1:] if sys.argv and "clgemm" in sys.argv[0] else list(sys.argv)
    return getattr(args, "_argv", None) or argv


def _schema_failure(out: str, errors: list[str]) -> int:
    print(f"clgemm bench: artifact {out} does not match its schema:", file=sys.stderr)
    for e in errors[:20]:
        print("  " + e, file=sys.stderr)
    return 3


def _model(args) -> int:
    from ..bench.model import ModelOptions, format_model, run_model_artifact
    from ..device import get_device

    if not args.trace:
        print("clgemm bench: --suite model needs --trace FILE (e.g. "
              "traces/models/bert-base-train.jsonl)", file=sys.stderr)
        return 2
    if args.out is None:
        import time

        args.out = f"model-{get_device(args.device).slug}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    peers = tuple(p for p in args.peers if p != "none")
    opts = ModelOptions(trace=args.trace, device=args.device, repeats=max(1, args.repeats),
                        peers=peers, seed=args.seed or 0, quiet=args.quiet)
    artifact, errors = run_model_artifact(opts, args.out, _command(args))
    if errors:
        return _schema_failure(args.out, errors)
    if not args.quiet:
        print(format_model(artifact["model"]))
        print(f"wrote {args.out}")
    return 0


def _bench(args) -> int:
    if args.suite == "model":
        return _model(args)
    from ..bench.protocol import Protocol
    from ..bench.runner import BenchOptions, run_bench
    from ..device import get_device

    if args.out is None:
        import time

        args.out = f"bench-{get_device(args.device).slug}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    baselines = tuple(b for b in args.baselines if b != "none")
    rank = args.rank_schedules if args.rank_schedules is not None else (4 if args.sessions > 1 else 0)
    tc_modes = tuple(args.tc)
    opts = BenchOptions(
        suite=None if args.suite in (None, "none", "") else args.suite,
        shapes=args.shapes, scale=args.scale, device=args.device, out=args.out,
        protocol=Protocol(warmup=args.warmup, repeats=args.repeats, input_sets=args.input_sets,
                          max_measure_s=args.max_measure_s, host_repeats=args.host_repeats,
                          window_s=args.window, sessions=max(1, args.sessions), seed=args.seed),
        baselines=baselines, clblast_tuned=tuple(args.clblast_tuned),
        schedules=tuple(args.schedule), label=args.label, rank_schedules=rank,
        tc_modes=tc_modes,
        sustained_seconds=args.sustained_seconds, sustained_size=args.sustained_size,
        load=args.load, build_cost=not args.no_build_cost, host_path=not args.no_host_path,
        quiet=args.quiet, session_index=args.session_index,
    )
    artifact, errors = run_bench(opts, _command(args))
    if errors:
        return _schema_failure(args.out, errors)
    if not args.quiet:
        print(f"wrote {args.out} (complete={artifact['complete']}"
              + (", schema validated" if errors is not None else ", jsonschema absent: not validated")
              + ")")
    return 0 if artifact["complete"] else 1


def _roofline(args) -> int:
    from ..bench.roofline import run_roofline

    data, png = run_roofline(args.device, args.out, args.png, args.artifacts, k=args.k,
                             quick=args.quick)
    r = data["roofline"]
    print(f"peak {r['peak_gflops']:.1f} GFLOPS, bandwidth {r['bandwidth_gbs']:.1f} GB/s, ridge "
          f"{r['ridge_flop_per_byte']:.2f} flop/byte -> {args.out}" + (f", {png}" if png else ""))
    return 0


def _report(args) -> int:
    if args.paper:
        if args.artifacts:
            print("clgemm report: --paper reads the records folder (--records), not artifacts: "
                  "drop the artifact arguments", file=sys.stderr)
            return 2
        from ..report.paper import write_paper

        records = args.records or a.require(a.existing_dir, "records", "--records")
        lab = args.lab or a.require(a.existing_dir, "research/breakthrough_lab", "--lab")
        print(f"wrote {write_paper(args.out, records, lab)}")
        return 0
    if args.migration:
        if args.artifacts or args.paper:
            print("clgemm report: --migration reads the records folder (--records): drop the "
                  "artifact arguments and --paper", file=sys.stderr)
            return 2
        from ..report.migration import write_migration

        records = args.records or a.require(a.existing_dir, "records", "--records")
        paths = write_migration(args.out, records, name=args.name)
        print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    if not args.artifacts:
        print("clgemm report: give bench or roofline artifacts to report on (or --paper)",
              file=sys.stderr)
        return 2
    from ..report import write_report

    paths = write_report(args.artifacts, args.out, name=args.name, embed=args.embed)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _gate(args) -> int:
    from ..lab.gate import GateConfig, decide, format_decision

    cfg = GateConfig(
        candidate_method=args.candidate_method, baseline_method=args.baseline_method,
        metric=args.metric, sizes=args.sizes, min_speedup=args.min_speedup,
        speed_rule=args.speed_rule, error_ratio=args.error_ratio, rel_budget=args.rel_budget,
        max_cv=args.max_cv, allow_single_session=args.allow_single_session,
        max_cold_build_s=args.max_cold_build_s, max_warm_build_s=args.max_warm_build_s,
        max_source_lines=args.max_source_lines, max_lines_ratio=args.max_lines_ratio,
    )
    decision = decide(args.candidate, args.baseline, cfg)
    if args.card:
        from ..lab.cards import write_gate

        write_gate(args.card, decision)
    if args.json:
        print(json.dumps(decision, indent=2))
    else:
        print(format_decision(decision))
    return 0 if decision["decision"] == "promoted" else 1


def _lab(args) -> int:
    from ..lab.cards import list_cards

    rows = list_cards(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if all(r["valid"] for r in rows) else 1
    if not rows:
        print(f"no cards under {args.root}")
        return 1
    for r in rows:
        gate = r.get("gate") or {}
        mark = "" if r["valid"] else "  INVALID: " + "; ".join(r["errors"][:3])
        print(f"{r.get('track', '?'):>3}  {r.get('id', '?'):<28} {r.get('status', '?'):<9} "
              f"gate={gate.get('decision', 'none'):<9} {r.get('title', '')}{mark}")
    return 0 if all(r["valid"] for r in rows) else 1
