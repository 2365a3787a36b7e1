#!/usr/bin/env bash
# Ozaki int8 lane on the H100, from the repository root, .carry/ taken along:
#   run(kind=nvidia-h100-x1, carry=[".carry"], command="bash benchmarks/tc/ozaki/run_h100_ozaki.sh")
# Writes $OUT/log and $OUT/ozaki-results.json (made into a record under records/ afterwards), plus
# $OUT/pytest.log (tests/test_ozaki.py on the GPU: the NVIDIA accuracy tests run there).
# Budget: under 3 minutes wall (compile ~1 min in 10 workers, timing ~1 min, pytest <1 min).
set -o pipefail
OUT=${OUT:-/tmp/ozaki-out}
mkdir -p "$OUT"
source .carry/gpu-env.sh
export PYTHONUNBUFFERED=1
export CLGEMM_CACHE_DIR=${CLGEMM_CACHE_DIR:-$(mktemp -d /tmp/oz-cache-XXXX)}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1 | tee "$OUT/log"
timeout 150 python3 benchmarks/tc/ozaki/run_ozaki.py "$@" 2>&1 | tee -a "$OUT/log"
echo "run_ozaki.py exit: $?" | tee -a "$OUT/log"
CLGEMM_DEVICE=NVIDIA timeout 60 python3 -m pytest -q tests/test_ozaki.py -k "nvidia or structure or key" 2>&1 | tail -15 > "$OUT/pytest.log"
cat "$OUT/pytest.log"
