"""Per-class 3xTF32 schedules from one plan campaign's `tc_classes` part: for each shape class
(select.table.shape_class) of the traces' products, the candidate schedule that serves the
class's products fastest in the form the route would give it (one launch where the route's
tile, fill, K and flops rules admit its tiles, split over K where its split rule would split
them, else the float32 family: the route's own time), judged against the route's lane as it
stands with the gate's bars (lane_verdict: a geometric-mean gain of at least 10% over the
class's products, none slower by more than 5%, errors within twice the route's). A class whose
best does not pass keeps the table's schedule, written as an entry of its own so that the
nearest-class lookup of unmeasured shapes does not move for it.

    python benchmarks/plan/tc_classes.py plan.json --table TABLE.json [--write] [--json out.json]

--table auto: the shipped table this machine's default device loads (scripts/gpu-call.sh's plan
stage reports the classes so on the card).

--write puts the classes into the table's tensorcore.modes["3xtf32"].entries, with `evidence`
naming the campaign (--evidence).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from clgemm.kernels.tensorcore import TcSchedule
from clgemm.lanes.mma import DEFAULT_SCHEDULES
from clgemm.route import (MIN_TILES_PER_UNIT, TC_SPLITK_MIN_FLOPS, TC_SPLITK_MIN_K,
                          one_launch_fits)
from clgemm.select.table import shape_class

GAIN = 1.10
WORST = 0.95
ERROR_FACTOR = 2.0
ERROR_FLOOR = 1e-7
# Work-groups of a candidate one compute unit holds, estimated from the fold=3 kernels'
# measured ~255 registers a thread (the table's evidence: 252-254 x 128 threads -> 2).
REGISTERS_PER_THREAD = 255


@dataclass
class ClassChoice:
    shape_class: str
    products: list = field(default_factory=list)  # (shape, route s, chosen s, speed)
    schedule: str = ""
    geomean: float = 1.0
    worst: float = 1.0
    decision: str = "keep"
    why: str = ""


def routed_seconds(row: dict, key: str, cand: dict, min_flops: float) -> tuple[float, float] | None:
    """(seconds, error) of the product in the form the route would give it with the candidate
    as its class's schedule; None where that form was not timed."""
    m, n, k = row["m"], row["n"], row["k"]
    if "s" not in cand:
        if "skipped" not in cand:
            return None
        # a layout it does not fit runs the mode's default (lanes.mma.fitting_schedule)
        cand = row["candidates"].get(DEFAULT_SCHEDULES["3xtf32"].key(), {})
        if "s" not in cand:
            return None
    # the route's rules judge the class's schedule (its tiles), whatever kernel then runs
    s = TcSchedule.from_key(key)
    tiles = -(-m // s.block_m) * -(-n // s.block_n)
    flops = 2.0 * m * n * k
    units = row["compute_units"]
    if one_launch_fits(m, n, k, s.block_m, s.block_n, units):
        if flops >= min_flops:
            return cand["s"], cand["rel_error"]
    elif (tiles < MIN_TILES_PER_UNIT * units and k >= TC_SPLITK_MIN_K
          and flops >= TC_SPLITK_MIN_FLOPS and "split_s" in cand):
        return cand["split_s"], cand["split_rel_error"]
    if row["route_lane"] in ("fp32", "fp32-splitk"):
        return row["route_s"], row["route_rel_error"]  # the float32 family serves it as now
    return None


def choose(rows: list[dict], min_flops: float) -> list[ClassChoice]:
    by_class: dict[str, list[dict]] = {}
    for r in rows:
        if isinstance(r, dict) and "candidates" in r:
            by_class.setdefault(shape_class(r["m"], r["n"], r["k"]), []).append(r)
    out = []
    for cls, members in sorted(by_class.items()):
        best: ClassChoice | None = None
        for key in members[0]["candidates"]:
            choice = ClassChoice(cls, schedule=key)
            speeds, ok = [], True
            for r in members:
                got = routed_seconds(r, key, r["candidates"][key], min_flops)
                if got is None:
                    ok = False
                    break
                sec, err = got
                if err > ERROR_FACTOR * r["route_rel_error"] + ERROR_FLOOR:
                    ok = False
                    break
                shape = f"{r['m']}x{r['n']}x{r['k']}{'T' if r['trans_a'] else 'N'}" \
                        f"{'T' if r['trans_b'] else 'N'}"
                speeds.append(r["route_s"] / sec)
                choice.products.append((shape, r["route_s"], sec, r["route_s"] / sec))
            if not ok or not speeds:
                continue
            choice.geomean = math.exp(sum(math.log(x) for x in speeds) / len(speeds))
            choice.worst = min(speeds)
            if best is None or choice.geomean > best.geomean:
                best = choice
        if best is None:
            out.append(ClassChoice(cls, why="no candidate timed in the route's form"))
            continue
        if best.geomean >= GAIN and best.worst >= WORST:
            best.decision = "adopt"
            best.why = (f"{best.geomean:.3f}x over {len(best.products)} product(s), "
                        f"worst {best.worst:.3f}x")
        else:
            best.why = (f"best {best.schedule} {best.geomean:.3f}x (worst {best.worst:.3f}x): "
                        "under the bars, the table's schedule stays")
        out.append(best)
    return out


def groups_per_cu(s: TcSchedule) -> int:
    return max(1, 65536 // (REGISTERS_PER_THREAD * s.threads))


def write_table(path: Path, choices: list[ClassChoice], evidence: str) -> None:
    data = json.loads(path.read_text())
    lane = data["tensorcore"]
    entries = lane["modes"]["3xtf32"].setdefault("entries", {})
    default = lane["modes"]["3xtf32"].get("default") or DEFAULT_SCHEDULES["3xtf32"].key()
    for c in choices:
        if c.decision == "adopt":
            s = TcSchedule.from_key(c.schedule)
        elif c.shape_class in entries:
            continue  # the table already names this class's schedule
        else:
            s = TcSchedule.from_key(default)
        entries[c.shape_class] = [{"schedule": s.key(), "groups_per_cu": groups_per_cu(s)}]
    lane["modes"]["3xtf32"]["entries"] = dict(sorted(entries.items()))
    lane["evidence"]["classes"] = evidence
    path.write_text(json.dumps(data, indent=1) + "\n")


def device_table() -> Path:
    """The shipped table file the default device loads (a fallback's too)."""
    from clgemm.runtime import get_runtime
    from clgemm.select.table import load_table

    source = load_table(get_runtime().device).source
    path = Path(str(resources.files("clgemm") / "data" / "tables" / source.split(" ")[0]))
    if not path.is_file():
        raise SystemExit(f"tc_classes: this device's table is {source!r}, not a shipped file: "
                         "give --table")
    return path


def table_arguments(description: str, argv=None) -> tuple[argparse.Namespace, dict]:
    """The command line of a distillation into a device table (this one, batch_classes.py):
    (arguments, the campaign's plan.json); --table auto resolved to this device's file."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("plan")
    ap.add_argument("--table", required=True,
                    help="the device table the campaign ran under (auto: this device's)")
    ap.add_argument("--write", action="store_true", help="write the classes into --table")
    ap.add_argument("--evidence", default="", help="what the table's evidence names")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.table == "auto":
        args.table = str(device_table())
    return args, json.loads(Path(args.plan).read_text())


def main(argv=None) -> int:
    args, plan = table_arguments(__doc__.splitlines()[0], argv)
    table = json.loads(Path(args.table).read_text())
    if not table.get("tensorcore"):
        print(f"{args.table} has no tensor-core lane: no class to judge")
        return 0
    min_flops = float(table["tensorcore"].get("min_flops", 0.0))
    choices = choose(plan.get("tc_classes") or [], min_flops)
    for c in choices:
        print(f"{c.shape_class}: {c.decision} {c.schedule} ({c.why})")
        for shape, cur, new, speed in c.products:
            print(f"    {shape:>22s} {cur * 1e6:8.1f} -> {new * 1e6:8.1f} us  {speed:.3f}x")
    return save_choices(args, choices, write_table)


def save_choices(args: argparse.Namespace, choices: list, write) -> int:
    """--json (the choices) and --write (`write(table path, choices, evidence)`)."""
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(c) for c in choices], indent=1) + "\n")
    if args.write:
        write(Path(args.table), choices, args.evidence or args.plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
