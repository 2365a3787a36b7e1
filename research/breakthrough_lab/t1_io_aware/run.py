"""T1 (card.toml beside this file): rank the float32 family's valid schedules by the roofline
tile model, measure the model's top picks beside the production table's choice in one bench
run, and let the promotion gate judge the best of them.

    python3 research/breakthrough_lab/t1_io_aware/run.py --out DIR [--top 12] [--scale 1]
        [--sessions 2] [--sustained-seconds 3] [--device NAME]

Steps, each leaving its artifact in DIR:
  roofline.json   the device's FMA peak and copy bandwidth (clgemm roofline --quick);
  ranking.json    every valid schedule's modelled intensity (flops per byte of a work-group
                  tile over depth k) and roofline bound at each KPI size; the top ones;
  bench.json      clgemm bench: the table's choice (method "clgemm") and each pick
                  ("clgemm:KEY"), --sessions runs, sustained windows;
  t1.json         Kendall tau between the model's order and the measured one per size, the
                  best pick per size against the table's choice, the gate's verdict
                  (candidate: the pick fastest over the sizes; metric peak, the median over sessions of
                  each session's best: the bench's sustained run times the table's kernel only).
The model ranks by the roofline bound first and by intensity second: on a GPU whose ridge
point lies below most tiles' intensity every bound is the peak, and intensity alone orders.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from clgemm.bench.roofline import attainable_gflops, intensity
from clgemm.bench.suites import KPI_SIZES
from clgemm.engine import Space
from clgemm.lanes.fp32 import search_space
from clgemm.runtime import get_runtime
from clgemm.schedule import Schedule

CLI = [sys.executable, "-m", "clgemm.cli"]


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-a of two equally long sequences (ties count as neither)."""
    n = len(xs)
    if n < 2:
        return float("nan")
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            s += int(math.copysign(1, xs[i] - xs[j]) * math.copysign(1, ys[i] - ys[j])
                     if xs[i] != xs[j] and ys[i] != ys[j] else 0)
    return s / (n * (n - 1) / 2)


def rank(rt, peak: float, bw: float, sizes: list[int], top: int) -> dict:
    """Every valid schedule scored at each size; the `top` by (mean bound, mean intensity)."""
    space = Space.from_search_space(search_space(rt))
    scored = []
    for cand in space.valid():
        s = Schedule(**dict(zip(space.names, space.values(cand))))
        bounds = [attainable_gflops(s, peak, bw, k) for k in sizes]
        inten = [intensity(s, k) for k in sizes]
        scored.append((sum(bounds) / len(bounds), sum(inten) / len(inten), s.key()))
    scored.sort(reverse=True)
    return {"valid": len(scored), "top": [{"schedule": k, "bound_gflops": b, "intensity": i}
                                          for b, i, k in scored[:top]]}


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def measured(bench: dict) -> dict[str, dict[int, float]]:
    """GFLOPS (median of the kernel times) per method and size."""
    out: dict[str, dict[int, float]] = {}
    for e in bench.get("results", []):
        times = (e.get("timing") or {}).get("times_s")
        if e.get("status") == "ok" and times:
            m, n, k = e["shape"]
            out.setdefault(e["method"], {})[m] = 2.0 * m * n * k / median(times) / 1e9
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--sustained-seconds", type=float, default=3.0)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dev = ["--device", args.device] if args.device else []
    sizes = [max(16, int(round(s * args.scale))) for s in KPI_SIZES]

    roof = args.out / "roofline.json"
    subprocess.run(CLI + ["roofline", "--quick", "-o", str(roof)] + dev, check=True)
    r = json.loads(roof.read_text())["roofline"]
    peak, bw = float(r["peak_gflops"]), float(r["bandwidth_gbs"])
    rt = get_runtime(args.device)
    ranking = rank(rt, peak, bw, sizes, args.top)
    ranking.update(peak_gflops=peak, bandwidth_gbs=bw, sizes=sizes)
    (args.out / "ranking.json").write_text(json.dumps(ranking, indent=1))

    bench = args.out / "bench.json"
    picks = [t["schedule"] for t in ranking["top"]]
    cmd = CLI + ["bench", "--suite", "kpi", "--scale", str(args.scale), "--sessions",
                 str(args.sessions), "--sustained-seconds", str(args.sustained_seconds),
                 "--baselines", "none", "--quiet", "-o", str(bench)] + dev
    for key in picks:
        cmd += ["--schedule", key]
    subprocess.run(cmd, check=True)
    got = measured(json.loads(bench.read_text()))
    table = got.get("clgemm", {})
    result: dict = {"sizes": sizes, "picks": picks, "per_size": {}}
    for n in sizes:
        model = [t["bound_gflops"] * 1e6 + t["intensity"] for t in ranking["top"]]
        meas = [got.get(f"clgemm:{k}", {}).get(n, 0.0) for k in picks]
        best = max(range(len(picks)), key=lambda i: meas[i])
        result["per_size"][n] = {
            "kendall_tau": kendall_tau(model, meas), "best_pick": picks[best],
            "best_pick_gflops": meas[best], "table_gflops": table.get(n),
            "best_over_table": meas[best] / table[n] if table.get(n) else None}
    overall = max(picks, key=lambda k: sum(math.log(max(got.get(f"clgemm:{k}", {}).get(n, 1e-9),
                                                        1e-9)) for n in sizes))
    result["candidate"] = overall
    gate = subprocess.run(CLI + ["gate", str(bench), "--baseline", str(bench),
                                 "--candidate-method", f"clgemm:{overall}",
                                 "--baseline-method", "clgemm", "--metric", "peak"],
                          capture_output=True, text=True)
    result["gate"] = {"rc": gate.returncode, "output": gate.stdout[-3000:] + gate.stderr[-1000:]}
    (args.out / "t1.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({n: v for n, v in result["per_size"].items()}, indent=1))
    print(gate.stdout[-1500:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
