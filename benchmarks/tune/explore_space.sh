#!/usr/bin/env bash
# The first H100 campaign: record the schedule space at 2048, check and time the best.
# From the repository root on the GPU machine, with .carry/ taken along.
set -o pipefail
source .carry/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee $OUT/log
python3 -m clgemm.cli devices --probe 2>&1 | tee -a $OUT/log
python3 benchmarks/tune/explore_space.py 2>&1 | tee -a $OUT/log
if [ -f $OUT/best.ptx ]; then ptxas -arch=sm_90 -v $OUT/best.ptx -o /tmp/best.cubin 2>&1 | tail -5 | tee -a $OUT/log; fi
