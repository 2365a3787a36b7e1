#!/usr/bin/env bash
# Stage 3: the implementation's pipeline record, records/$REC/<today>-pipeline/, from the
# artifacts tune.sh and bench.sh left in $OUT, with its record.json (claim figures read from
# the artifacts); then records/INDEX.md. IMPL (see env.sh); OUT (default out/impls/$IMPL);
# NAME (default pipeline; pipeline-2 for a re-run of the same day), SUPERSEDES (record ids it
# replaces, marked superseded), NOTE (a sentence at the claim's end: why a bar is missed).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/impls/env.sh
OUT=${OUT:-out/impls/$IMPL}
python3 benchmarks/impls/record.py --impl "$IMPL" --out "$OUT" --table "$TABLE" \
  --records "records/$REC" --name "${NAME:-pipeline}" --note "${NOTE:-}" \
  ${SUPERSEDES:+--supersedes $SUPERSEDES}
python3 -m clgemm.cli records index
