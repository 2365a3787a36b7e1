"""ABFT at one size over checksum block heights: the guard's device time against the float32
GEMM's, and detection of injected faults at that size. Each height runs in its own process
(CLGEMM_ABFT_BLOCK); the calibration of the device is taken from CLGEMM_STATE_DIR (run
h100_guard.py first, or let the first child calibrate).

    python benchmarks/guard/block_sweep.py OUT [N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEIGHTS = (32, 64, 128, 256, 512)


def child(n: int) -> dict:
    from clgemm.lab import guard_campaign as campaign

    over = campaign.abft_overhead(n, reps=8)
    faults = campaign.fault_campaign(33, seed=11, max_dim=n, min_dim=n)
    clean = campaign.clean_large(n, 8)
    rel5 = faults["models"].get("rel_1e-5", {}).get("detection_rate_significant")
    return {"block_rows": over["block_rows"], "guard_device_s": over["guard_device_s"],
            "gemm_kernel_s": over["gemm_kernel_s"],
            "overhead_events_vs_gemm_kernel": over["overhead_events_vs_gemm_kernel"],
            "overhead_vs_plain_wall": over["overhead_vs_plain_wall"],
            "detection_rate_significant": faults["detection_rate_significant"],
            "rel_1e-5": rel5, "false_positives": clean["false_positives"]}


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    if os.environ.get("SWEEP_CHILD"):
        print("RESULT " + json.dumps(child(n)), flush=True)
        return
    from clgemm.lab import guard_campaign as campaign

    cal = campaign.calibrate(300, max_dim=256)
    rows = []
    for bs in HEIGHTS:
        env = dict(os.environ, SWEEP_CHILD="1", CLGEMM_ABFT_BLOCK=str(bs))
        p = subprocess.run([sys.executable, __file__, str(out), str(n)], env=env,
                           capture_output=True, text=True, timeout=300)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        row = json.loads(line[-1][7:]) if line else {"block_rows": bs, "error": p.stderr[-1500:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "block-sweep.json").write_text(json.dumps({"n": n, "calibration": cal, "rows": rows},
                                                     indent=1))


if __name__ == "__main__":
    main()
