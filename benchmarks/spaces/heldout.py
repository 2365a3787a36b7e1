"""Assemble the held-out check of issue 21: the CLBlast Xgemm spaces of six GPUs in
schoonhovenrichard/GPU_benchmarking_paper, as Kernel Tuner cache files in an ignored folder.

The repository's full caches (cache_files/GEMM_*.json) are too large for the stored snapshot;
its irace_tune/stochastic_cache_files hold the same spaces as 32 files per GPU, file k with
the k-th of the 32 timing runs of every configuration that ran (failures are left out there).
The mean of the 32 is the paper's deterministic fitness and Kernel Tuner's "time"; that is what
this writes. The data are third-party (no license file): never committed.

    python3 benchmarks/spaces/heldout.py \\
        --mirror /work/.mirror/schoonhovenrichard+GPU_benchmarking_paper/repo \\
        --out /work/data-spaces/heldout \\
        --manifest records/cpu-simulated/2026-12-06-heldout-xgemm/manifest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = "schoonhovenrichard/GPU_benchmarking_paper"
RUNS = 32
# name in the evaluation -> file stem in irace_tune/stochastic_cache_files
DEVICES = {
    "xgemm_A100": "GEMM_A100_processed",
    "xgemm_V100": "GEMM_V100_processed",
    "xgemm_TITAN_RTX": "GEMM_TITAN_RTX_processed",
    "xgemm_K20": "GEMM_K20_processed",
    "xgemm_GTX_1080Ti": "GEMM_GTX_1080Ti_processed",
    "xgemm_MI50": "MI50_GEMM_processed",
}


def _git(mirror: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", mirror, *args], check=True,
                          capture_output=True).stdout


def assemble(mirror: str, commit: str, stem: str) -> tuple[dict, list[str]]:
    """The mean-time cache of one GPU and the paths it was read from."""
    paths = [f"irace_tune/stochastic_cache_files/{stem}_run{k}.json" for k in range(1, RUNS + 1)]
    head, sums = None, {}
    for path in paths:
        doc = json.loads(_git(mirror, "show", f"{commit}:{path}"))
        cache = doc.pop("cache")
        if head is None:
            head, sums = doc, {key: 0.0 for key in cache}
        # every run file must hold the same configurations, or a mean would mix counts
        if doc != head or cache.keys() != sums.keys():
            raise SystemExit(f"{path}: header or configurations differ from run 1")
        for key, entry in cache.items():
            sums[key] += float(entry["time"])
    out = dict(head)
    out["cache"] = {key: {"time": total / RUNS} for key, total in sums.items()}
    return out, paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", required=True, help="git dir of a snapshot of " + REPO)
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", required=True, help="folder for the JSON files (outside git)")
    ap.add_argument("--manifest", required=True, help="where to write the sources and sha256")
    args = ap.parse_args()
    commit = _git(args.mirror, "rev-parse", args.commit).decode().strip()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spaces = []
    for name, stem in DEVICES.items():
        doc, paths = assemble(args.mirror, commit, stem)
        data = json.dumps(doc).encode()
        (out / f"{name}.json").write_bytes(data)
        spaces.append({"name": name, "kernel": "CLBlast Xgemm", "device": doc.get("device_name", ""),
                       "repo": REPO, "commit": commit, "path": paths[0].replace("_run1.", "_run{1..32}."),
                       "configurations": len(doc["cache"]), "sha256": hashlib.sha256(data).hexdigest()})
        print(f"{name}: {len(doc['cache'])} configurations from {RUNS} run files", flush=True)
    Path(args.manifest).parent.mkdir(parents=True, exist_ok=True)
    Path(args.manifest).write_text(json.dumps({
        "what": "Held-out check of issue 21: the CLBlast Xgemm spaces of six GPUs, never used to "
                "choose or tune anything. Not committed: benchmarks/spaces/heldout.py rebuilds "
                "them from a snapshot of the repository (sha256 of each rebuilt file below).",
        "assembled": "time = mean of the 32 recorded timing runs per configuration (the paper's "
                     "deterministic fitness), from irace_tune/stochastic_cache_files; the full "
                     "cache_files/GEMM_*.json are absent from the stored snapshot. Configurations "
                     "that failed have no timing runs and are absent.",
        "license": f"{REPO}: no license file: read only, never shipped",
        "spaces": spaces,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
