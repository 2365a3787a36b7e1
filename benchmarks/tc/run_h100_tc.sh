#!/usr/bin/env bash
# Tensor-core lane campaign on the H100, from the repository root, .carry/ taken along:
#   run(kind=nvidia-h100-x1, carry=[".carry"], command="bash benchmarks/tc/run_h100_tc.sh [args]")
# Writes $OUT/log and $OUT/tc-results.json (made into a record under records/ afterwards).
set -o pipefail
source .carry/gpu-env.sh
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1 | tee $OUT/log
python3 benchmarks/tc/run_tc.py "$@" 2>&1 | tee -a $OUT/log
