#!/usr/bin/env bash
# Stage 1 of the per-implementation pipeline: a bounded tune at 1024 then distill into the
# implementation's shipped table. IMPL=pocl|rusticl|intel; BUDGET (default 180s); OUT folder.
# PoCL resumes from its record's database (the direct-form exploration of 2026-11-25).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/impls/env.sh
OUT=${OUT:-out/impls/$IMPL}
mkdir -p "$OUT"
if [ "$IMPL" = pocl ] && [ ! -e "$OUT/tune.sqlite" ]; then
  cp records/cpu-pocl-amd-epyc/2026-11-25-direct-tune/tune.sqlite "$OUT/tune.sqlite"
fi
nice python3 -m clgemm.cli tune --size 1024 --budget "${BUDGET:-180s}" --repeats 3 --workers 1 \
  --db "$OUT/tune.sqlite" --json "$OUT/tune-1024.json" 2>&1 | tee "$OUT/tune-1024.log"
nice python3 -m clgemm.cli distill --db "$OUT/tune.sqlite" --sessions 2 --top-k 3 \
  -o "src/clgemm/data/tables/$TABLE" 2>&1 | tee "$OUT/distill.log"
