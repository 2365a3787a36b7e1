"""Float32 schedules for the shape classes of the traces' batches, from one plan campaign's
`fp32_batch_search` and `fp32_batch_classes` parts: for each class, the candidate that serves
the class's batches fastest, judged against the table's entry with the gate's bars (a
geometric-mean gain of at least 10% over the class's batches, none slower by more than 5%).
A class that also holds unbatched products of the traces the float32 family serves is not
changed: the campaign timed only its batches, and the entry serves them all.

    python benchmarks/plan/batch_classes.py plan.json --table TABLE.json [--write] [--evidence E]

--table auto: the shipped table this machine's default device loads. --write puts the
adopted classes into the table's entries, with `evidence` naming the campaign.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

GAIN = 1.10
WORST = 0.95


@dataclass
class BatchChoice:
    shape_class: str
    entry: str
    schedule: str = ""
    speeds: list = field(default_factory=list)  # entry's seconds / the schedule's, per batch
    geomean: float = 1.0
    worst: float = 1.0
    decision: str = "keep"
    why: str = ""


def candidates(plan: dict) -> dict[str, dict]:
    """class -> {"entry": key, "products": [names], "times": {schedule: [s per product]}}
    from both parts (fp32_batch_classes's rows are per product; fp32_batch_search's per
    class)."""
    from clgemm.select.table import shape_class

    found: dict[str, dict] = {}
    for row in plan.get("fp32_batch_search") or []:
        if not isinstance(row, dict) or "per_product" not in row:
            continue
        c = found.setdefault(row["class"], {"entry": row["table_entry"], "times": {}})
        c["products"] = [p["name"] for p in row["products"]]
        for key, times in row["per_product"].items():
            if len(times) == len(row["products"]):
                c["times"][key] = times
        # the search's best and the entry timed again, in turns: these figures rule (the
        # search's one sample a candidate ranked launch-bound products by noise: a 1.54x
        # on an H200's decode scores was 0.80x in the next call)
        confirm = row.get("confirm") or {}
        if all(len(times) == len(row["products"]) for times in confirm.values()):
            c["times"].update(confirm)
    for row in plan.get("fp32_batch_classes") or []:
        if not isinstance(row, dict):
            continue
        cls = shape_class(row["m"], row["n"], row["k"])
        if cls in found and "from_classes" not in found[cls]:
            continue  # the search's figures, over all the class's batches, rule
        c = found.setdefault(cls, {"entry": row["table"], "times": {}, "products": [],
                                   "from_classes": True})
        c["products"].append(row["name"])
        for key, v in row["schedules"].items():
            if "s" in v and v.get("max_rel_error", 1.0) < 1e-5:
                c["times"].setdefault(key, []).append(v["s"])
    return found


def unbatched_members(cls: str) -> list[str]:
    """The traces' unbatched products of a class that the float32 family would serve."""
    import clgemm
    from clgemm.bench.model import trace_calls
    from clgemm.select.table import shape_class

    names = []
    for path in sorted(Path("traces/models").glob("*.jsonl")):
        for call in trace_calls(path):
            m, n, k, ta, tb = call.shape
            if call.batch == 1 and shape_class(m, n, k) == cls:
                lane = clgemm.plan(m, n, k, trans_a=ta, trans_b=tb).lane
                if lane.name == "fp32":
                    names.append(f"{path.stem}:{call.name}")
    return names


def choose(found: dict[str, dict], members=unbatched_members) -> list[BatchChoice]:
    out = []
    for cls, c in sorted(found.items()):
        choice = BatchChoice(cls, c["entry"])
        base = c["times"].get(c["entry"])
        count = len(c.get("products", []))
        if not base or len(base) != count:
            choice.why = "the table's entry was not timed on every batch of the class"
            out.append(choice)
            continue
        best = None
        for key, times in c["times"].items():
            if key == c["entry"] or len(times) != count:
                continue
            speeds = [b / t for b, t in zip(base, times)]
            geo = math.exp(sum(map(math.log, speeds)) / len(speeds))
            if best is None or geo > best[1]:
                best = (key, geo, min(speeds), speeds)
        if best is None:
            choice.why = "no other schedule timed on every batch"
        else:
            choice.schedule, choice.geomean, choice.worst, choice.speeds = best
            others = members(cls)
            if choice.geomean < GAIN or choice.worst < WORST:
                choice.why = (f"under the bars ({choice.geomean:.3f}x, worst "
                              f"{choice.worst:.3f}x)")
            elif others:
                choice.why = f"the class also serves unbatched products: {others[:3]}"
            else:
                choice.decision = "adopt"
                choice.why = f"{choice.geomean:.3f}x (worst {choice.worst:.3f}x)"
        out.append(choice)
    return out


def write_table(path: Path, choices: list[BatchChoice], evidence: str) -> None:
    from clgemm.schedule import Schedule

    data = json.loads(path.read_text())
    for c in choices:
        if c.decision == "adopt":
            data["entries"][c.shape_class] = Schedule.from_key(c.schedule).as_dict()
    data["entries"] = dict(sorted(data["entries"].items()))
    data.setdefault("evidence", {})["batch_classes"] = evidence
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    from tc_classes import save_choices, table_arguments  # this folder: run as a script

    args, plan = table_arguments(__doc__.splitlines()[0], argv)
    choices = choose(candidates(plan))
    for c in choices:
        print(f"{c.shape_class}: {c.decision} {c.schedule or c.entry} ({c.why})")
    return save_choices(args, choices, write_table)


if __name__ == "__main__":
    sys.exit(main())
