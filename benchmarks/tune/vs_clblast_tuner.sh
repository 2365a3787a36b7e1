#!/usr/bin/env bash
# Issue 5's head-to-head on one H100 session: CLBlast's own Xgemm tuner at 2048 (built from
# source by .carry/clblast-src/clblast-tune.sh), then `clgemm tune` at 2048 with a fifth of
# its evaluations (TRANSFER_DB=... CLGEMM_BUDGET=...: with the transfer prior). Leaves /tmp/clb/build/libclblast.so and /tmp/clblast-tuned/ for the KPI run.
set -o pipefail
source .carry/gpu-env.sh
export CLGEMM_DEVICE=NVIDIA
CLB_SECONDS=${CLB_SECONDS:-450}
mkdir -p $OUT/clb
t0=$EPOCHREALTIME
# The ocl-icd loader unpacked by the tune script honours OCL_ICD_VENDORS (only NVIDIA's driver);
# without it the system loader found PoCL alone and the tuner timed a CPU (first attempt).
export LD_LIBRARY_PATH=/tmp/oclroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=$OUT/clb bash .carry/clblast-src/clblast-tune.sh 2048 $CLB_SECONDS 2>&1 | tail -5 | tee $OUT/log
t1=$EPOCHREALTIME
unset LD_LIBRARY_PATH
grep -a "reference" $OUT/clb/clblast-tune-2048.log | head -2 | tee -a $OUT/log
mkdir -p /tmp/clblast-tuned && cp $OUT/clb/clblast_xgemm_*_32.json /tmp/clblast-tuned/
export CLGEMM_TUNE_DB=$OUT/tune-vs-clblast.sqlite
# TRANSFER_DB: start from this device's measurements of OTHER shapes (no 2048 rows) and let
# the model strategy pretrain on them (`--transfer`); the copy receives the new rows.
TRANSFER_ARGS=""
if [ -n "${TRANSFER_DB:-}" ]; then
  cp "$TRANSFER_DB" "$CLGEMM_TUNE_DB" && TRANSFER_ARGS="--transfer"
fi
t2=$EPOCHREALTIME
python3 -m clgemm.cli tune --size 2048 --strategy model --budget ${CLGEMM_BUDGET:-254} $TRANSFER_ARGS \
  --json $OUT/tune-vs-clblast.json 2>&1 | grep -v "^tune: [0-9]* evaluated" | tee -a $OUT/log
t3=$EPOCHREALTIME
python3 -c "print('walls: clblast tuner (build + tune) %.1f s, clgemm tune %.1f s' % ($t1 - $t0, $t3 - $t2))" | tee -a $OUT/log
tar czf $OUT/clblast-tuner.tgz -C $OUT clb && rm -rf $OUT/clb
