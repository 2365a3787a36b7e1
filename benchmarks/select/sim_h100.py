"""Offline stand-in for the H100 select campaign: replays the committed traces through the
online selector on a *simulated* device whose quiet kernel times are the H100's measured
medians (the `quiet_s` of each shape in records/nvidia-h100/2026-11-25-select-replay-v1/select_*.json, i.e. the
first campaign's oracle measurements), with noise that grows as kernels get short (the H100
showed ~0.02 log-sd on ms kernels and ~0.15 on 10-40 us kernels) plus rare preemption
outliers, and a uniform-ish slowdown in load phases. For tuning the policy without a GPU;
the figures of record come from run_h100_select.sh.

    PYTHONPATH=src python benchmarks/select/sim_h100.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from clgemm.schedule import Schedule
from clgemm.select.online import OnlineSelector
from clgemm.select.replay import Call, SimulatedBackend, read_trace, replay

ROOT = Path(__file__).resolve().parents[2]
ART = Path(__file__).resolve().parent / "h100" / "v1"


def load_quiet() -> tuple[dict, list[str]]:
    quiet: dict[tuple, dict[str, float]] = {}
    arms: list[str] = []
    for name in ("suite", "drift", "quiet"):
        data = json.loads((ART / f"select_{name}.json").read_text())
        arms = arms or data["arms"]
        for tr in data["traces"]:
            for key, row in tr["shapes"].items():
                m, n, rest = key.split("x")
                shape = (int(m), int(n), int(rest[:-2]), rest[-2] == "T", rest[-1] == "T")
                quiet[shape] = row["quiet_s"]
    return quiet, arms


class H100Sim(SimulatedBackend):
    def __init__(self, quiet: dict, seed: int, load_factor: float = 1.5,
                 outlier_p: float = 0.02) -> None:
        super().__init__(self._cost, 0.0, seed)
        self.quiet, self.load_factor, self.outlier_p = quiet, load_factor, outlier_p
        self._arm_load = {}

    def _cost(self, key: str, call: Call, loaded: bool) -> float:
        t = self.quiet[call.shape][key]
        if loaded:  # big-tile arms lose more to a co-runner than small-tile ones
            t *= self.load_factor * (1.15 if "ac512" in key or "om8-on8" in key else 1.0)
        return t

    def run(self, schedule: Schedule, call: Call) -> float:
        self.runs += 1
        t = self.cost(schedule.key(), call, self.loaded)
        sd = 0.02 + 1.5e-6 / t
        t *= math.exp(sd * self.rng.standard_normal())
        if self.rng.random() < self.outlier_p:
            t *= 1.3 + 0.7 * self.rng.random()
        return float(t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    quiet, arm_keys = load_quiet()
    arms = [Schedule.from_key(k) for k in arm_keys]
    static = arms[0]  # the H100 table's choice on every trace shape of the campaign

    def static_fn(m, n, k):
        return static

    runs = {"suite": (["kpi_square", "nn_layers", "small_batched"], False, False),
            "drift": (["drift_load"], True, False), "quiet": (["quiet_tuned"], False, True)}
    agg: dict[str, list] = {}
    for seed in range(args.seeds):
        for run, (names, _load, fresh) in runs.items():
            backend = H100Sim(quiet, seed)
            sel = None
            tot = {"static": 0.0, "online": 0.0, "oracle": 0.0}
            oracle: dict = {}
            for name in names:
                if sel is None or fresh:
                    sel = OnlineSelector("sim", arms, static_fn, persist=False)
                events = read_trace(ROOT / "traces" / f"{name}.jsonl")
                r = replay(events, backend, sel, arms, oracle=oracle, name=name)
                for k in tot:
                    tot[k] += r["total_s"][k]
                o = r["online"]
                agg.setdefault(f"{run}/{name}", []).append(
                    (r["regret"]["online"]["relative"], r["online_vs_static"],
                     r["decision_quality"]["online"], o["explore_share"],
                     o["selector"]["drift_alarms"], o["selector"]["safety_trips"]))
                if args.verbose:
                    print(f"seed {seed} {name}: reasons {o['reasons']}", file=sys.stderr)
            agg.setdefault(run, []).append(
                (tot["online"] / tot["oracle"] - 1, tot["online"] / tot["static"] - 1))
    for key, rows in agg.items():
        a = np.array(rows)
        if a.shape[1] == 2:
            print(f"{key:28s} regret {a[:, 0].mean() * 100:+6.2f} %  vs static "
                  f"{a[:, 1].mean() * 100:+6.2f} %")
        else:
            print(f"  {key:26s} regret {a[:, 0].mean() * 100:+6.2f} %  vs static "
                  f"{a[:, 1].mean() * 100:+6.2f} %  quality {a[:, 2].mean() * 100:5.1f} %  "
                  f"explore max {a[:, 3].max() * 100:4.1f} %  alarms {a[:, 4].mean():5.1f}  "
                  f"trips {a[:, 5].mean():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
