#!/usr/bin/env bash
# H100 campaign B: distill the tuning database (tuner runs + the imported recorded space at 2048)
# into the device table, measure the telemetry overhead, then the guard campaign.
set -o pipefail
source .carry/gpu-env.sh
export CLGEMM_DEVICE=NVIDIA CLGEMM_TUNE_DB=$OUT/tune.sqlite CLGEMM_STATE_DIR=/tmp/clgemm-state
cp records/nvidia-h100/2026-11-25-tune-campaign/tune.sqlite $OUT/tune.sqlite
python3 -m clgemm.cli tune-import records/nvidia-h100/2026-11-25-space-2048/space-2048.json 2>&1 | tee $OUT/log
python3 -m clgemm.cli distill --top-k 4 --sessions 3 -o src/clgemm/data/tables/nvidia-h100-80gb-hbm3.json 2>&1 | tee -a $OUT/log
cp src/clgemm/data/tables/nvidia-h100-80gb-hbm3.json $OUT/table.json
python3 benchmarks/engine/telemetry_overhead.py 2>&1 | tee -a $OUT/log
timeout -k 10 300 bash benchmarks/guard/run_h100_guard.sh 2>&1 | tail -40 | tee -a $OUT/log
