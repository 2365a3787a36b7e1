#!/usr/bin/env bash
# "A fresh venv on a host where PoCL cannot compile still runs the README's main command to
# the end on another implementation, with a one-line notice": a fresh venv installs the
# package as the README says (pip install '.[pocl]', from a clean export of HEAD), PoCL is
# made to fail every compile (POCL_EXTRA_BUILD_FLAGS names a CPU its LLVM refuses; the real
# failure on an unknown host CPU was "unknown target CPU 'generic'"), Rusticl (apt's
# mesa-opencl-icd, what the README names) is installed beside it, CLGEMM_DEVICE is unset, and
# the README's main command runs. (With Intel's CPU runtime installed too, the default goes to
# whichever of PoCL and Intel's shipped tables measured more; where that is Intel's, PoCL is
# never tried and no notice is due: IMPLS=intel checks that setup.)
# Passes when it ends with a complete artifact from another implementation and stderr carries
# exactly one notice naming the device used and why PoCL was passed over.
#   OUT (default out/impls/no-pocl); VENV (default /tmp/clgemm-fresh-venv; REUSE_VENV=1 keeps it)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/impls/no-pocl}; VENV=${VENV:-/tmp/clgemm-fresh-venv}
INTEL_OCL=${INTEL_OCL:-/tmp/clgemm-intel-ocl}
mkdir -p "$OUT"
source benchmarks/impls/venv.sh
fresh_venv "$VENV" pocl
cd "$OUT"  # not the repository root: the venv's installed package must be the one that runs
# the ICD loader reads one vendors folder: the system's (Rusticl, Clover), plus Intel's where asked
rm -rf vendors && mkdir vendors && cp /etc/OpenCL/vendors/*.icd vendors/
if [ "${IMPLS:-}" = intel ]; then cp "$INTEL_OCL"/vendors/*.icd vendors/; fi
env -u CLGEMM_DEVICE -u PYTHONPATH RUSTICL_ENABLE=llvmpipe OCL_ICD_VENDORS="$PWD/vendors" \
  POCL_EXTRA_BUILD_FLAGS=-mcpu=nosuchcpu POCL_KERNEL_CACHE=0 \
  CLGEMM_CACHE_DIR="$(mktemp -d)" \
  nice "$VENV/bin/clgemm" bench --suite kpi --scale 0.25 --sessions 1 --sustained-seconds 2 \
  -o readme-kpi.json > readme-kpi.stdout 2> readme-kpi.stderr
"$VENV/bin/python" - <<'PY'
import json, sys
art = json.load(open("readme-kpi.json"))
dev = art["env"]["device"]
notices = [l for l in open("readme-kpi.stderr") if l.startswith("clgemm: using")]
ok = (art["complete"] and "Portable Computing Language" not in dev["platform"]
      and len(notices) == 1 and "Portable Computing Language" in notices[0]
      and notices[0].rstrip().endswith("(CLGEMM_DEVICE chooses a device)")  # one line
      and dev["platform"] in notices[0])
result = {"complete": art["complete"], "device": f"{dev['platform']}: {dev['name']}",
          "notice": notices, "results_ok": sum(e["status"] == "ok" for e in art["results"]),
          "passed": ok}
json.dump(result, open("check.json", "w"), indent=1)
print(json.dumps(result, indent=1))
sys.exit(0 if ok else 1)
PY
