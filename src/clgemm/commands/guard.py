"""`clgemm abft-campaign`, `clgemm abft-calibrate`, `clgemm approx-campaign`."""

from __future__ import annotations

import json
import sys
from . import args as a


def register(sub) -> None:
    p = sub.add_parser("abft-campaign",
                       help="ABFT: clean products (false positives), fault injection, overhead")
    p.add_argument("--clean", type=a.count, default=1000, help="clean products (0: skip)")
    p.add_argument("--faults", type=a.count, default=550, help="fault-injected products (0: skip)")
    p.add_argument("--max-dim", type=a.positive_int, default=512,
                   help="largest m, n, k of clean products")
    p.add_argument("--fault-max-dim", type=a.positive_int, default=384)
    p.add_argument("--overhead-n", type=a.count, default=0, help="also time check=True at n^3")
    p.add_argument("--reps", type=a.positive_int, default=10)
    p.add_argument("--seed", type=a.integer(), default=0)
    p.add_argument("--device")
    p.add_argument("-o", "--out", type=a.output_file, help="JSON artifact (default: stdout)")
    p.set_defaults(func=_abft_campaign)

    p = sub.add_parser("abft-calibrate",
                       help="measure and store this device's ABFT statistical constant")
    p.add_argument("--count", type=a.positive_int, default=300)
    p.add_argument("--max-dim", type=a.positive_int, default=256)
    p.add_argument("--max-k", type=a.positive_int, default=4096,
                   help="calibrate K octaves from 512 up to this inner dimension")
    p.add_argument("--deep", type=a.count, default=16, help="products per K octave from 512 up")
    p.add_argument("--device")
    p.add_argument("--dry-run", action="store_true", help="measure, do not store")
    p.set_defaults(func=_abft_calibrate)

    p = sub.add_parser("approx-campaign",
                       help="rel_tol: true error vs budget, and approximate vs exact timings")
    p.add_argument("--sizes", default=(384, 512), type=a.number_list(a.positive_int),
                   help="comma-separated n for the error campaign")
    p.add_argument("--budgets", default=(1e-1, 1e-2, 1e-3, 1e-4),
                   type=a.number_list(a.fraction))
    p.add_argument("--reps", type=a.positive_int, default=3, help="inputs per (size, kind)")
    p.add_argument("--timing-n", type=a.count, default=0,
                   help="also time exact vs approx at n^3")
    p.add_argument("--timing-budget", type=a.fraction, default=1e-2)
    p.add_argument("--seed", type=a.integer(), default=2)
    p.add_argument("--device")
    p.add_argument("-o", "--out", type=a.output_file, help="JSON artifact (default: stdout)")
    p.set_defaults(func=_approx_campaign)


def _emit(data: dict, out: str | None) -> None:
    text = json.dumps(data, indent=2, default=str)
    if out:
        from ..atomic import write_text

        write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


def _env(device) -> dict:
    """The artifact's environment (device, driver, clocks, the code's commit, libraries, the
    command line), as every harness artifact has it."""
    import sys

    from ..bench.env import fingerprint
    from ..runtime import get_runtime

    return fingerprint(get_runtime(device).device, sys.argv)


def _device_summary(device) -> dict:
    from ..runtime import get_runtime

    d = get_runtime(device).device
    return {"name": d.name, "platform": d.platform, "fingerprint": d.fingerprint,
            "type": d.type, "driver": d.driver_version}


def _abft_campaign(args) -> int:
    from ..guard import abft
    from ..lab import guard_campaign as campaign
    from ..runtime import get_runtime

    rt = get_runtime(args.device)
    data = {"schema": "clgemm.abft-campaign/1", "device": _device_summary(args.device),
            "env": _env(args.device),
            "calibration": abft.calibration_entry(rt) or {"c": abft.DEFAULT_C}}
    if args.clean:
        data["clean"] = campaign.clean_campaign(args.clean, seed=args.seed,
                                                max_dim=args.max_dim, device=args.device)
    if args.faults:
        data["faults"] = campaign.fault_campaign(args.faults, seed=args.seed + 1,
                                                 max_dim=args.fault_max_dim, device=args.device)
    if args.overhead_n:
        data["overhead"] = campaign.abft_overhead(args.overhead_n, reps=args.reps,
                                                  device=args.device)
    _emit(data, args.out)
    clean_ok = data.get("clean", {}).get("false_positives", 0) == 0
    return 0 if clean_ok else 1


def _abft_calibrate(args) -> int:
    from ..lab import guard_campaign as campaign

    r = campaign.calibrate(args.count, max_dim=args.max_dim, device=args.device,
                           store=not args.dry_run, max_k=args.max_k, deep=args.deep)
    _emit(r, None)
    return 0


def _approx_campaign(args) -> int:
    from ..lab import guard_campaign as campaign

    data = {"schema": "clgemm.approx-campaign/1", "device": _device_summary(args.device),
            "env": _env(args.device)}
    sizes, budgets = args.sizes, args.budgets
    if sizes:
        data["errors"] = campaign.approx_campaign(sizes, budgets, reps=args.reps,
                                                  seed=args.seed, device=args.device)
    if args.timing_n:
        data["timing"] = campaign.approx_timing(args.timing_n, args.timing_budget,
                                                device=args.device)
    _emit(data, args.out)
    return 0
