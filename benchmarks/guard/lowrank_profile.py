"""Where the time of one low-rank call goes: host phases (the sketch's `times`) and every
command it enqueues (profile_commands.recording), with the planner's memory cleared before
each call so that low rank is always tried. Rank n/32 and full-rank operands, per budget.

    python benchmarks/guard/lowrank_profile.py OUT [N] [BUDGETS]   (CLGEMM_DEVICE picks it)

Writes OUT/lowrank-profile.json and prints a summary per case.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl as cl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_commands import recording, summarise  # noqa: E402


def main() -> None:
    import clgemm
    from clgemm.approx import contract
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    budgets = [float(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "1e-2,1e-4").split(",")]
    rt = get_runtime()
    rng = np.random.default_rng(3)
    A_lr, B = campaign.lowrank_operands(rng, n, max(2, n // 32))
    A_fr = rng.standard_normal((n, n)).astype(np.float32)
    dB = clgemm.to_device(B, rt.device)
    dC = clgemm.to_device(np.zeros((n, n), np.float32), rt.device)
    report = {"n": n, "device": rt.device.name, "cases": {}}
    # exact, for scale
    dA = clgemm.to_device(A_lr, rt.device)
    for _ in range(3):
        clgemm.matmul(dA, dB, C=dC, device=rt.device)
    rt.finish()
    t = time.perf_counter()
    for _ in range(5):
        clgemm.matmul(dA, dB, C=dC, device=rt.device)
    rt.finish()
    report["exact_s"] = (time.perf_counter() - t) / 5
    print(f"exact {report['exact_s'] * 1e3:.3f} ms", flush=True)
    for name, A in (("rank_n_over_32", A_lr), ("fullrank", A_fr)):
        dA = clgemm.to_device(A, rt.device)
        for budget in budgets:
            runs = []
            for rep in range(4):  # the first compiles what it needs
                get_runtime().forget(contract.COSTS_MEMO)
                rt.finish()
                with recording() as got:
                    t = time.perf_counter()
                    before = cl.enqueue_marker(rt.queue)
                    _, info = clgemm.matmul(dA, dB, C=dC, rel_tol=budget, device=rt.device,
                                            return_info=True)
                    rt.finish()
                    after = cl.enqueue_marker(rt.queue)
                    wall = time.perf_counter() - t
                after.wait()
                s = summarise(got, wall, (before, after))
                x = info.extra.get("approx", {})
                s.update(method=info.method, fell_back=info.fell_back, stop=x.get("stop"),
                         rank=x.get("rank"), phases=x.get("phases"), lane=x.get("lane"),
                         estimate=info.error_estimate, first=rep == 0)
                runs.append(s)
            key = f"{name}@{budget:g}"
            report["cases"][key] = runs
            last = runs[-1]
            print(f"{key}: method {last['method']} wall {last['wall_s'] * 1e3:.3f} ms "
                  f"(first {runs[0]['wall_s'] * 1e3:.3f}) span {last.get('span_s', 0) * 1e3:.3f} "
                  f"busy {last.get('busy_s', 0) * 1e3:.3f} phases "
                  + json.dumps({k: round(v * 1e3, 3) for k, v in (last['phases'] or {}).items()})
                  + f" rank {last['rank']} stop {last['stop']}", flush=True)
            for nm, d in list(last.get("by_name", {}).items())[:8]:
                print(f"    {nm:28s} x{d['count']:3d} {d['device_s'] * 1e6:9.1f} us", flush=True)
    (out / "lowrank-profile.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
