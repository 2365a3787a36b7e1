"""Fetch the evaluation set's public recorded spaces (MANIFEST) into an ignored folder,
checking each file's sha256. Source: a local git mirror of the repository (`--mirror
OWNER+NAME=DIR`, read with `git show COMMIT:PATH`) or raw.githubusercontent.com at the pinned
commit. The files are third-party data: they are never committed.

    python3 benchmarks/spaces/fetch.py --out /work/data-spaces/raw \\
        [--mirror AutoTuningAssociation+benchmark_hub=/path/to/repo.git ...]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The evaluation set: sources, pinned commits, sha256 (an artifact of its record).
MANIFEST = ROOT / "records/cpu-simulated/2026-12-06-public-spaces-2/manifest.json"


def _blob(entry: dict, mirrors: dict[str, str]) -> bytes:
    key = entry["repo"].replace("/", "+")
    if key in mirrors:
        return subprocess.run(["git", "--git-dir", mirrors[key], "show",
                               f"{entry['commit']}:{entry['path']}"],
                              check=True, capture_output=True).stdout
    url = (f"https://raw.githubusercontent.com/{entry['repo']}/{entry['commit']}/"
           + urllib.parse.quote(entry["path"]))
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "data-spaces"), help="folder for the JSON files (ignored by git)")
    ap.add_argument("--mirror", action="append", default=[], metavar="OWNER+NAME=GITDIR")
    args = ap.parse_args()
    mirrors = dict(m.split("=", 1) for m in args.mirror)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bad = 0
    for entry in json.loads(MANIFEST.read_text())["spaces"]:
        target = out / f"{entry['name']}.json"
        data = target.read_bytes() if target.exists() else None
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raw = _blob(entry, mirrors)
            data = gzip.decompress(raw) if entry["gzip"] else raw
            target.write_bytes(data)
        ok = hashlib.sha256(data).hexdigest() == entry["sha256"]
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {target} ({len(data):,} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
