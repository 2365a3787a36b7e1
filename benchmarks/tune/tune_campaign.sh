#!/usr/bin/env bash
# H100 campaign for the auto-scheduler: tune the KPI sizes with the model-guided strategy,
# distill the database into the device table (replayed in 3 separate sessions), then measure
# the 1 kHz telemetry overhead with the new table. From the repo root, .carry/ taken along.
set -o pipefail
source .carry/gpu-env.sh
export CLGEMM_DEVICE=NVIDIA CLGEMM_TUNE_DB=$OUT/tune.sqlite
STRATEGY=${STRATEGY:-model}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv | tee $OUT/log
t0=$EPOCHREALTIME
python3 -m clgemm.cli tune --size 2048 --strategy $STRATEGY --budget ${BUDGET_2048:-250} \
  --json $OUT/tune-2048.json 2>&1 | grep -v "^tune: [0-9]* evaluated" | tee -a $OUT/log
t1=$EPOCHREALTIME
python3 -c "print('tune 2048 wall: %.1f s' % ($t1 - $t0))" | tee -a $OUT/log
python3 -m clgemm.cli tune --size 1400 --size 3072 --strategy $STRATEGY --budget ${BUDGET_OTHER:-150} \
  --json $OUT/tune-other.json 2>&1 | grep -v "^tune: [0-9]* evaluated" | tee -a $OUT/log
python3 -m clgemm.cli distill --top-k 4 --sessions 3 -o $OUT/table.json 2>&1 | tee -a $OUT/log
cp $OUT/table.json src/clgemm/data/tables/nvidia-h100-80gb-hbm3.json
python3 benchmarks/engine/telemetry_overhead.py 2>&1 | tee -a $OUT/log
