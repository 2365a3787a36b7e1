"""The device table's rule for decode's few-row products on 3xTF32 (select.table.TcRows), from
one plan campaign's `tc_rows` part: each candidate schedule timed on 1-32-row products against
the route's lane (the small-rows lane) at the K slices the route would give it (tc_slices: the
smaller of the two counts the part times), each result within the exact contract (at most
twice numpy float32's error).

The rule takes a schedule, a least n k (the large operand's size) and a range of rows such
that every measured product it covers runs at least WORST of the route's speed and their
geometric mean at least GAIN (the gate's bars, as tc_classes.py); the row counts it covers
are those measured whose products above the size pass, and the rows between them. Of the
rules the schedules support, the one covering the most measured products, then the one with
the best geometric mean over them.

    python benchmarks/plan/tc_rows.py rows.json --table TABLE.json [--write] [--evidence E]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

GAIN = 1.10
WORST = 0.95
ERROR_VS_NUMPY = 2.0


@dataclass
class RowsRule:
    schedule: str
    min_rows: int
    max_rows: int
    min_weights: int
    geomean: float
    worst: float
    products: list = field(default_factory=list)  # (m, n, k, trans_b, route s, lane s, speed)


def base_times(rows: list[dict], key: str) -> list[tuple]:
    """(m, n, k, trans_b, route s, lane s) of each product the schedule ran within the
    contract, at the route's slice count (the smaller of the part's two)."""
    out = []
    for r in rows:
        cand = r.get("candidates", {}).get(key, {})
        timed = {int(sl): v for sl, v in cand.items()
                 if isinstance(v, dict) and "s" in v and v["error_vs_numpy"] <= ERROR_VS_NUMPY}
        if timed and min(int(sl) for sl in cand if sl.isdigit()) in timed:
            lane = timed[min(timed)]["s"]
            out.append((r["m"], r["n"], r["k"], r["trans_b"], r["route_s"], lane))
    return out


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else 0.0


def rule_for(key: str, times: list[tuple]) -> RowsRule | None:
    """The rule covering the most measured products (then the least size) that the
    schedule's times support, or None."""
    rules = []
    for weights in sorted({n * k for _, n, k, *_ in times}):
        above = [t for t in times if t[1] * t[2] >= weights]
        passing = []
        for m in sorted({t[0] for t in above}):
            speeds = [t[4] / t[5] for t in above if t[0] == m]
            if min(speeds) >= WORST and _geomean(speeds) >= GAIN:
                passing.append(m)
        if not passing:
            continue
        lo, hi = min(passing), max(passing)
        covered = [t for t in above if lo <= t[0] <= hi]
        speeds = [t[4] / t[5] for t in covered]
        if min(speeds) < WORST or _geomean(speeds) < GAIN:
            continue  # a row count between the passing ones lost
        rules.append(RowsRule(key, lo, hi, weights, _geomean(speeds), min(speeds),
                              [(*t, t[4] / t[5]) for t in covered]))
    return max(rules, key=lambda r: (len(r.products), -r.min_weights)) if rules else None


def distill(rows: list[dict]) -> RowsRule | None:
    """Of the schedules' rules, the one covering the most measured products, then the best
    geometric mean."""
    keys = sorted({key for r in rows for key in r.get("candidates", {})})
    rules = [r for r in (rule_for(key, base_times(rows, key)) for key in keys) if r]
    return max(rules, key=lambda r: (len(r.products), r.geomean)) if rules else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("campaign", help="a plan campaign's JSON holding the tc_rows part")
    ap.add_argument("--table", required=True, help="the device table to read (and write)")
    ap.add_argument("--write", action="store_true", help="put the rule into the table")
    ap.add_argument("--evidence", default="", help="the record naming the campaign")
    args = ap.parse_args(argv)
    rows = [r for r in json.loads(Path(args.campaign).read_text()).get("tc_rows", [])
            if "candidates" in r]
    rule = distill(rows)
    print(json.dumps(asdict(rule) if rule else None, indent=1))
    if rule is None:
        print("no schedule passes the gate's bars: the table keeps the small-rows lane",
              file=sys.stderr)
        return 1
    if args.write:
        path = Path(args.table)
        table = json.loads(path.read_text())
        if not table.get("tensorcore"):
            print(f"{path} has no tensor-core lane", file=sys.stderr)
            return 1
        table["tensorcore"]["rows"] = {
            "schedule": rule.schedule, "min_rows": rule.min_rows, "max_rows": rule.max_rows,
            "min_weights": rule.min_weights,
            "evidence": {"artifact": args.evidence, "method": "benchmarks/plan/tc_rows.py",
                         "gain": GAIN, "worst": WORST, "geomean": round(rule.geomean, 4),
                         "worst_speed": round(rule.worst, 4),
                         "products": [[m, n, k, tb, round(r * 1e6, 1), round(t * 1e6, 1),
                                       round(sp, 3)] for m, n, k, tb, r, t, sp in
                                      rule.products]}}
        path.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
