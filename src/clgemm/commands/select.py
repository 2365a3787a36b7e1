"""`clgemm replay`: replay workload traces through the static table, the online selector and
an oracle (see `clgemm.select.replay`)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from . import args as a


def register(sub) -> None:
    p = sub.add_parser(
        "replay", help="replay workload traces: static table vs online selector vs oracle")
    p.add_argument("traces", nargs="+", metavar="TRACE", type=a.trace_file,
                   help="JSON-lines trace file(s)")
    p.add_argument("--json", dest="json_out", type=a.output_file, help="write the full report here")
    p.add_argument("--device", help="index, fingerprint or name substring")
    p.add_argument("--candidates", type=a.candidates_file,
                   help="extra schedules (keys, one a line, or a JSON list); "
                   "each is checked against float64 on every shape before it may be an arm")
    p.add_argument("--table", type=a.table_file,
                   help="a table JSON instead of the device's shipped one")
    p.add_argument("--load", action="store_true",
                   help="run a second process loading the device during load_on/load_off phases")
    p.add_argument("--load-size", type=a.positive_int, default=None,
                   help="square size of the load process's GEMMs (default 2048 GPU, 256 CPU)")
    p.add_argument("--explore-share", type=a.share, default=0.10,
                   help="bound on the share of exploratory calls (default 0.10)")
    p.add_argument("--state-dir", type=a.output_dir,
                   help="keep the selector's state here (default: a fresh "
                   "temporary one, so the replay starts unlearned)")
    p.add_argument("--persist", action="store_true",
                   help="use the device's persistent selector state (CLGEMM_STATE_DIR)")
    p.add_argument("--fresh-per-trace", action="store_true",
                   help="a new, unlearned selector for each trace (default: one for all)")
    p.add_argument("--oracle-reps", type=a.positive_int, default=3)
    p.add_argument("--clock", choices=("none", "nvml"), default="none",
                   help="context clock proxy: nvml = SM clock / max SM clock (if pynvml exists)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_replay)


def _nvml_clock():
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        top = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
    except Exception:  # noqa: BLE001 - no NVML: the feature is absent (0, flagged)
        return None

    def clock() -> float | None:
        try:
            return pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) / top
        except Exception:  # noqa: BLE001
            return None
    return clock


def _replay(args) -> int:
    from ..lanes.fp32 import search_space
    from ..runtime import get_runtime
    from ..select.online import OnlineSelector
    from ..select.replay import (OpenCLBackend, format_report, read_candidates, read_trace,
                                 replay)
    from ..select.table import load_table

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    traces = [(Path(t).stem, read_trace(t)) for t in args.traces]
    rt = get_runtime(args.device)
    table = load_table(rt.device, args.table)
    space = search_space(rt)
    arms = list(dict.fromkeys(table.candidates()))
    if args.candidates:
        for s in read_candidates(args.candidates):
            if not space.is_valid(s):
                log(f"candidate {s.key()} dropped: {', '.join(space.violations(s))}")
            elif s not in arms:
                arms.append(s)
    arms = [a for a in arms if space.is_valid(a)]
    if len(arms) < 2:
        from ..errors import UsageError
        from ..select.table import shipped_devices

        why = (f"no shipped table matches {rt.device.name!r} (tables exist for "
               f"{', '.join(shipped_devices()) or 'no device'})" if table.source ==
               "builtin default" else f"the table {table.source} offers {len(arms)} valid arm(s)")
        raise UsageError(f"{why}: static, online and oracle would all run the same schedule. "
                         "Pass --table FILE (a table for this device) or --candidates FILE "
                         "(schedule keys) to give the replay arms to compare")
    log(f"device {rt.device.name} ({rt.device.fingerprint}); table {table.source}; "
        f"{len(arms)} arm(s)")
    clock = _nvml_clock() if args.clock == "nvml" else None
    load_size = args.load_size or (2048 if rt.device.type == "GPU" else 256)
    backend = OpenCLBackend(rt, load_size=load_size if args.load else None)
    tmp = None
    if args.persist:
        state_dir = None
    elif args.state_dir:
        state_dir = args.state_dir
    else:
        tmp = tempfile.TemporaryDirectory(prefix="clgemm-replay-state-")
        state_dir = tmp.name

    def new_selector(tag: str) -> OnlineSelector:
        sd = state_dir if state_dir is None else str(Path(state_dir) / tag)
        return OnlineSelector(rt.device.fingerprint, arms, table,
                              explore_share=args.explore_share, state_dir=sd,
                              clock_proxy=clock)

    reports = []
    oracle: dict = {}
    selector = None
    try:
        if args.load and any(getattr(e, "name", None) == "load_on" for _, es in traces for e in es):
            backend.start_load_process()
        for i, (name, events) in enumerate(traces):
            if selector is None or args.fresh_per_trace:
                if selector is not None:
                    selector.close()
                selector = new_selector(f"t{i}" if args.fresh_per_trace else "suite")
                if selector.note:
                    log(selector.note)
            log(f"replaying {name} ...")
            r = replay(events, backend, selector, arms, oracle=oracle,
                       oracle_reps=args.oracle_reps, name=name, log=log)
            reports.append(r)
            print(format_report(r), flush=True)
    finally:
        if selector is not None:
            selector.close()
        backend.close()
        if tmp is not None:
            tmp.cleanup()

    suite = _suite(reports)
    if len(reports) > 1:
        t, reg = suite["total_s"], suite["regret"]
        print(f"suite: {suite['calls']} calls; total static {t['static'] * 1e3:.2f} ms, online "
              f"{t['online'] * 1e3:.2f} ms, oracle {t['oracle'] * 1e3:.2f} ms; regret static "
              f"{reg['static'] * 100:+.2f} %, online {reg['online'] * 100:+.2f} %; quality "
              f"static {suite['decision_quality']['static'] * 100:.1f} %, online "
              f"{suite['decision_quality']['online'] * 100:.1f} %")
    if args.json_out:
        out = {
            "schema": "clgemm.replay/1",
            "device": rt.device.summary(),
            "table": table.source,
            "arms": [a.key() for a in arms],
            "config": {"explore_share": args.explore_share, "load": args.load,
                       "load_size": load_size if args.load else None,
                       "oracle_reps": args.oracle_reps, "fresh_per_trace": args.fresh_per_trace,
                       "clock": args.clock, "persist": args.persist or bool(args.state_dir)},
            "suite": suite,
            "traces": reports,
        }
        from ..atomic import write_text

        write_text(args.json_out, json.dumps(out, indent=1, default=str))
        log(f"wrote {args.json_out}")
    return 0


def _suite(reports: list[dict]) -> dict:
    totals = {p: sum(r["total_s"][p] for r in reports) for p in ("static", "online", "oracle")}
    calls = sum(r["calls"] for r in reports)
    o = totals["oracle"]
    return {
        "calls": calls,
        "total_s": totals,
        "regret": {p: (totals[p] - o) / o if o else 0.0 for p in ("static", "online")},
        "online_vs_static": totals["online"] / totals["static"] - 1.0 if totals["static"] else 0.0,
        "decision_quality": {p: sum(r["decision_quality"][p] * r["calls"] for r in reports)
                             / calls if calls else 0.0 for p in ("static", "online")},
        "explore_share": {r["trace"]: r["online"]["explore_share"] for r in reports},
    }
