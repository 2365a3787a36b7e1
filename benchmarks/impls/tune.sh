#!/usr/bin/env bash
# Stage 1 of the per-implementation pipeline: a bounded tune at 1024, then distill into the
# implementation's shipped table. The search starts from what is known: every schedule of the
# shipped tables of the same device type (and the untuned default), timed in interleaved
# rounds (benchmarks/tune/explore_rounds.py) and imported into the database; a 180 s forest
# tune on Intel's runtime alone found a table 7.9x slower there than PoCL's table, and on
# Rusticl one slower than the default. The tune then searches around the best of what is known:
# a local search (greedy: every one-step neighbour of the best, moving on to any faster one),
# where a forest spent its budget on random first picks; and a candidate whose first run after
# its check is 3x the fastest so far is not timed further (--give-up). On Rusticl the forest
# made 4 evaluations in 129 s, none near the seeds; greedy made 19 in 194 s and found the best
# seed's neighbour out_m 16 (records/cpu-rusticl-llvmpipe/2026-12-06-pipeline-2). IMPL (see env.sh);
# SIZES tuned (default 1024); BUDGET per size (default 120s); STRATEGY (default greedy); OUT.
# PoCL resumes from its record's database (the direct-form exploration of 2026-11-25).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/impls/env.sh
OUT=${OUT:-out/impls/$IMPL}
mkdir -p "$OUT"
if [ "$IMPL" = pocl ] && [ ! -e "$OUT/tune.sqlite" ]; then
  cp records/cpu-pocl-amd-epyc/2026-11-25-direct-tune/tune.sqlite "$OUT/tune.sqlite"
fi
SEEDS=$(python3 - "$KIND" <<'PY'
import json, sys
from importlib import resources
from clgemm.device import get_device
from clgemm.lanes.fp32 import search_space
from clgemm.runtime import get_runtime
from clgemm.select.table import Table
space = search_space(get_runtime(get_device()))
keys = {}
for item in sorted((resources.files("clgemm") / "data" / "tables").iterdir(), key=lambda p: p.name):
    if item.name.endswith(".json"):
        table = Table.from_json(json.loads(item.read_text()), item.name)
        if table.device and table.device.type == sys.argv[1]:
            keys.update((s.key(), None) for s in table.candidates() if space.is_valid(s))
print(" ".join(keys))
PY
)
for size in ${SIZES:-1024}; do
  nice python3 benchmarks/tune/explore_rounds.py --size $size --rounds 2 --with-default $SEEDS \
    -o "$OUT/seed-$size.json" --space-out "$OUT/seed-$size.space.json" 2>&1 | tee "$OUT/seed-$size.log"
  python3 -m clgemm.cli tune-import "$OUT/seed-$size.space.json" --db "$OUT/tune.sqlite"
  nice python3 -m clgemm.cli tune --size $size --budget "${BUDGET:-120s}" --repeats 3 --workers 1 \
    --strategy "${STRATEGY:-greedy}" --give-up 3 --db "$OUT/tune.sqlite" --json "$OUT/tune-$size.json" \
    2>&1 | tee "$OUT/tune-$size.log"
done
nice python3 -m clgemm.cli distill --db "$OUT/tune.sqlite" --sessions 2 --top-k 3 \
  -o "src/clgemm/data/tables/$TABLE" 2>&1 | tee "$OUT/distill.log"
