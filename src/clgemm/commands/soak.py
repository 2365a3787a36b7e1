"""`clgemm soak`: the long-run stability campaign (lab/soak.py)."""

from __future__ import annotations

import sys

from . import args as a


def register(sub) -> None:
    p = sub.add_parser("soak", help="a mixed, verified workload for a given time, with faults "
                                    "injected, telemetry per window, and a partial artifact "
                                    "at every window")
    p.add_argument("--minutes", type=a.positive, required=True, help="how long to run")
    p.add_argument("--out", "-o", type=a.output_file, required=True,
                   help="JSON artifact (schema clgemm.soak/1), rewritten at every window")
    p.add_argument("--device")
    p.add_argument("--fault-rate", type=a.share, default=0.2,
                   help="share of check=True calls given an injected fault (0 to 1)")
    p.add_argument("--window-seconds", type=a.positive, default=30.0,
                   help="telemetry and artifact window")
    p.add_argument("--seed", type=a.integer(), default=0)
    p.add_argument("--trace", type=a.trace_file, action="append", default=None,
                   help="a model trace (repeatable); default: traces/tiny/model_tiny.jsonl on "
                        "a CPU, every traces/models/*.jsonl on a GPU")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="judge the guard uncalibrated where the device has no stored "
                        "calibration (default: calibrate it at setup, as abft-calibrate)")
    p.add_argument("--quiet", action="store_true", help="no line per window on stderr")
    p.set_defaults(func=_soak)


def _soak(args) -> int:
    from ..errors import UsageError
    from ..lab.soak import Soak, SoakOptions

    if args.window_seconds > 60.0 * args.minutes:
        raise UsageError(f"--window-seconds {args.window_seconds:g} is longer than the run "
                         f"({60.0 * args.minutes:g} s): give a window of at most the run")
    opts = SoakOptions(minutes=args.minutes, out=args.out, device=args.device,
                       fault_rate=args.fault_rate, window_s=args.window_seconds, seed=args.seed,
                       traces=tuple(args.trace or ()), quiet=args.quiet,
                       calibrate=args.calibrate)
    data = Soak(opts, ["clgemm", *sys.argv[1:]]).run()
    v = data["verdict"]
    failed = [name for name, ok in v["bars"].items() if not ok]
    judged = "pass" if v["pass"] else "FAIL: " + (", ".join(failed) or "memory not judged")
    print(f"clgemm soak: {data['status']}: {len(data['windows'])} windows, faults "
          f"{data['faults']['found']}/{data['faults']['injected']} found, "
          f"{data['false_positives']['count']} false positives, "
          f"{data['wrong_results']['count']} wrong results, {data['errors']['count']} errors; "
          f"verdict {judged}; "
          f"wrote {args.out}", file=sys.stderr)
    if data["interrupted"]:
        return 130 if data["interrupted"] == "SIGINT" else 143
    return 0 if v["pass"] else 1
