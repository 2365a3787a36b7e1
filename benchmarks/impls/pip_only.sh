#!/usr/bin/env bash
# "The README's main command works on any x86-64 host with the extra it names", without apt:
# a fresh venv installs the package with the [intel] extra (pip install '.[intel]', from a
# clean export of HEAD): Intel's CPU OpenCL runtime from PyPI, which compiles for any x86-64
# CPU, registered with the ICD loader by clgemm itself (src/clgemm/icd.py). No loader
# settings, no LD_LIBRARY_PATH, no CLGEMM_DEVICE, Rusticl off; the README's main command runs.
# Passes when it ends with a complete artifact measured on Intel's runtime.
#   OUT (default out/impls/pip-only); VENV (default /tmp/clgemm-pip-venv; REUSE_VENV=1 keeps it)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/impls/pip-only}; VENV=${VENV:-/tmp/clgemm-pip-venv}
mkdir -p "$OUT"
source benchmarks/impls/venv.sh
fresh_venv "$VENV" intel
cd "$OUT"  # not the repository root: the venv's installed package must be the one that runs
env -u CLGEMM_DEVICE -u PYTHONPATH -u OCL_ICD_VENDORS -u OPENCL_VENDOR_PATH -u LD_LIBRARY_PATH \
  -u RUSTICL_ENABLE CLGEMM_CACHE_DIR="$(mktemp -d)" \
  nice "$VENV/bin/clgemm" bench --suite kpi --scale 0.25 --sessions 1 --sustained-seconds 2 \
  -o readme-kpi.json > readme-kpi.stdout 2> readme-kpi.stderr
"$VENV/bin/python" - <<'PY'
import json, sys
art = json.load(open("readme-kpi.json"))
dev = art["env"]["device"]
ok = art["complete"] and dev["platform"] == "Intel(R) OpenCL"
result = {"complete": art["complete"], "device": f"{dev['platform']}: {dev['name']}",
          "results_ok": sum(e["status"] == "ok" for e in art["results"]),
          "results": len(art["results"]), "passed": ok}
json.dump(result, open("check.json", "w"), indent=1)
print(json.dumps(result, indent=1))
sys.exit(0 if ok else 1)
PY
