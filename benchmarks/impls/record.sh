#!/usr/bin/env bash
# Stage 3: the implementation's pipeline record, records/$REC/<today>-pipeline/, from the
# artifacts tune.sh and bench.sh left in $OUT, with its record.json (claim figures read from
# the artifacts); then records/INDEX.md. IMPL (see env.sh); OUT (default out/impls/$IMPL).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/impls/env.sh
OUT=${OUT:-out/impls/$IMPL}
python3 benchmarks/impls/record.py --impl "$IMPL" --out "$OUT" --table "$TABLE" \
  --records "records/$REC"
python3 -m clgemm.cli records index
