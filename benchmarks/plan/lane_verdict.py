"""The verdict on the opt-in lanes from one plan campaign (benchmarks/plan/campaign.py): for
each, on the products where its route rule would send it, its chained wall per call against
what serves them now, with the promotion gate's bars (lab/gate.py's spirit, applied to a
route rule): a geometric-mean gain of at least 10% over those products, none slower by more
than 5%, and every result within twice the error of the lane it replaces (plus float32's
rounding of the output, 1e-7).

    python benchmarks/plan/lane_verdict.py plan.json [--json verdict.json]

Lanes judged: the float32 family split over K (`skinny`: splitk-model-s* against fp32), 3xTF32
split over K (`skinny` and `trace_lanes`: 3xtf32-splitk* against the faster of the two
one-launch lanes, the better the route could do today), 3xTF32's batched kernel
(`batched_lanes`: against the float32 family's batched kernel, launch against launch), and
the float32 family's batched kernel for batches of route.BATCH_ROWS_FP32 rows (`batched_lanes`:
against the small-rows lane). Each verdict names its shapes;
the switch (CLGEMM_SPLITK, CLGEMM_TC_SPLITK and CLGEMM_TC_BATCH, on by default: 0 switches
each off) is the default only where it says promote.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field

# the route's own rules, so that a verdict judges the products the route would send
from clgemm.route import (BATCH_ROWS_FP32, MIN_TILES_PER_UNIT, TC_BATCH_MIN_DIM,
                          TC_BATCH_MIN_FLOPS, TC_MIN_K, TC_SPLITK_MIN_FLOPS, TC_SPLITK_MIN_K,
                          one_launch_fits)
from clgemm.lanes.gemv import large_along_k

GAIN = 1.10  # geometric-mean speed over the products the rule sends to the lane
WORST = 0.95  # no product slower than this fraction of its current speed
ERROR_FACTOR = 2.0  # every result within this factor of the replaced lane's error
ERROR_FLOOR = 1e-7


@dataclass
class Verdict:
    lane: str
    shapes: list = field(default_factory=list)  # (shape, current s, lane s, speedup)
    geomean: float | None = None
    worst: float | None = None
    errors_ok: bool = True
    decision: str = "no data"
    why: str = ""


def _judge(v: Verdict, rows: list[tuple[str, float, float, float, float]]) -> Verdict:
    """rows: (shape, current seconds, lane seconds, current error, lane error)."""
    if not rows:
        v.why = "no product of the campaign takes this lane"
        return v
    speed = [cur / new for _, cur, new, _, _ in rows]
    v.shapes = [(s, cur, new, cur / new) for s, cur, new, _, _ in rows]
    v.geomean = math.exp(sum(math.log(x) for x in speed) / len(speed))
    v.worst = min(speed)
    bad = [s for s, _, _, e0, e1 in rows
           if not e1 <= ERROR_FACTOR * e0 + ERROR_FLOOR]
    v.errors_ok = not bad
    if bad:
        v.decision, v.why = "reject", f"error beyond {ERROR_FACTOR}x the replaced lane's on {bad}"
    elif v.geomean < GAIN:
        v.decision, v.why = "reject", f"geometric-mean speed {v.geomean:.3f}x < {GAIN}x"
    elif v.worst < WORST:
        v.decision, v.why = "reject", f"a product at {v.worst:.3f}x of its current speed"
    else:
        v.decision = "promote"
        v.why = f"{v.geomean:.3f}x over {len(rows)} products, worst {v.worst:.3f}x"
    return v


def _rows(part) -> list[dict]:
    return [r for r in part if isinstance(r, dict) and "skipped" not in r] \
        if isinstance(part, list) else []


def _skinny(plan: dict, prefix: str, takes) -> list[tuple]:
    """The `skinny` part's rows of the lane whose timing keys start with `prefix` (one
    slice count a row), against the float32 family's plain launch, where `takes(row, key)`
    says the route would send the product to it."""
    rows = []
    for r in _rows(plan.get("skinny")):
        key = next((k[:-2] for k in r if k.startswith(prefix) and k.endswith("_s")), None)
        if key is not None and takes(r, key):
            rows.append((f"{r['m']}x{r['n']}x{r['k']}", r["fp32_s"], r[key + "_s"],
                         r["fp32_rel_error"], r[key + "_rel_error"]))
    return rows


def fp32_splitk(plan: dict) -> Verdict:
    # the rule splits only an underfilled grid, into more than one slice
    rows = _skinny(plan, "splitk-model-s",
                   lambda r, key: r.get("underfilled") and not key.endswith("-s1"))
    return _judge(Verdict("fp32-splitk (CLGEMM_SPLITK)"), rows)


def tc_splitk(plan: dict) -> Verdict:
    rows = []
    for r in _rows(plan.get("trace_lanes")):
        if "3xtf32-splitk_s" not in r or r["tc_tiles"] >= MIN_TILES_PER_UNIT * r["compute_units"]:
            continue  # the route splits only what one launch leaves underfilled
        if r["k"] < TC_SPLITK_MIN_K:
            continue  # ... from this K on
        one = min(("fp32", "3xtf32"), key=lambda x: r[x + "_s"])
        rows.append((f"{r['m']}x{r['n']}x{r['k']}", r[one + "_s"], r["3xtf32-splitk_s"],
                     r[one + "_rel_error"], r["3xtf32-splitk_rel_error"]))
    rows += _skinny(plan, "3xtf32-splitk",
                    lambda r, key: (2.0 * r["m"] * r["n"] * r["k"] >= TC_SPLITK_MIN_FLOPS
                                    and r["k"] >= TC_SPLITK_MIN_K))
    return _judge(Verdict("3xtf32-splitk (CLGEMM_TC_SPLITK)"), rows)


# a campaign row from before trace_lanes named its schedule's tile: the table's default one
DEFAULT_TC_BLOCK = (128, 128)


def tc_one_launch(plan: dict, min_flops: float = 0.0) -> Verdict:
    """3xTF32's one launch against the float32 family on the traces' products the route's
    tile rules (MIN_TILES_PER_UNIT, MIN_TILE_FILL) and TC_MIN_K admit, from `min_flops` up:
    the evidence for the table's `tensorcore.min_flops` on shapes that are not squares."""
    rows = []
    for r in _rows(plan.get("trace_lanes")):
        if "3xtf32_s" not in r or 2.0 * r["m"] * r["n"] * r["k"] < min_flops:
            continue
        bm, bn = r.get("tc_block", DEFAULT_TC_BLOCK)
        if not one_launch_fits(r["m"], r["n"], r["k"], bm, bn, r["compute_units"]):
            continue
        rows.append((f"{r['m']}x{r['n']}x{r['k']}", r["fp32_s"], r["3xtf32_s"],
                     r["fp32_rel_error"], r["3xtf32_rel_error"]))
    return _judge(Verdict("3xtf32 one launch (table min_flops, route tile and K rules)"), rows)


def tc_batched(plan: dict) -> Verdict:
    rows = []
    for r in _rows(plan.get("batched_lanes")):
        if "3xtf32-batched_s" not in r or r.get("route") == "gemv":
            continue  # the rule leaves the small-rows lane's batches alone
        flops = 2.0 * r["batch"] * r["m"] * r["n"] * r["k"]
        if flops < TC_BATCH_MIN_FLOPS or min(r["m"], r["n"], r["k"]) < TC_BATCH_MIN_DIM:
            continue
        # against the float32 family's batched kernel, launch against launch: what serves
        # the batch with the switch off (the route's own lane is this one once it is on)
        rows.append((f"{r['batch']}x{r['m']}x{r['n']}x{r['k']}", r["fp32-batched_s"],
                     r["3xtf32-batched_s"], r["fp32-batched_error"], r["3xtf32-batched_error"]))
    return _judge(Verdict("3xtf32-batched (CLGEMM_TC_BATCH)"), rows)


def batch_rows(plan: dict) -> Verdict:
    """Batches of BATCH_ROWS_FP32 rows or more whose large operand is stored along K (the
    rule's layout) on the float32 family's batched kernel against the small-rows lane
    (route.BATCH_ROWS_FP32), launch against launch."""
    rows = []
    for r in _rows(plan.get("batched_lanes")):
        if ("gemv_s" in r and min(r["m"], r["n"]) >= BATCH_ROWS_FP32
                and large_along_k(r["m"], r["n"], r["trans_a"], r["trans_b"])):
            rows.append((f"{r['batch']}x{r['m']}x{r['n']}x{r['k']}", r["gemv_s"],
                         r["fp32-batched_s"], r["gemv_error"], r["fp32-batched_error"]))
    return _judge(Verdict("fp32-batched over small rows (route.BATCH_ROWS_FP32)"), rows)


def verdicts(plan: dict) -> list[Verdict]:
    return [fp32_splitk(plan), tc_splitk(plan), tc_one_launch(plan), tc_batched(plan),
            batch_rows(plan)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    with open(args.plan) as fh:
        plan = json.load(fh)
    out = verdicts(plan)
    for v in out:
        print(f"{v.lane}: {v.decision} ({v.why})")
        for shape, cur, new, speed in v.shapes:
            print(f"    {shape:>20s} {cur * 1e6:9.1f} -> {new * 1e6:9.1f} us  {speed:.3f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(v) for v in out], fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
