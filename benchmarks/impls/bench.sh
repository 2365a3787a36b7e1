#!/usr/bin/env bash
# Stage 2 of the per-implementation pipeline, after tune.sh has written every implementation's
# table: the KPI suite (scaled to the CPU there: --scale 0.5, 700, 1024, 1536) with, in the
# same run, the untuned default, numpy as the peer; at the middle size, the table's choice and
# the untuned default by the wall clock over chained launches, numpy beside, in interleaved
# rounds (chained.json: the KPI run times one launch at a time, its arms one after another,
# and on shared cores they meet different loads); at the middle size, the other
# implementations' tuned defaults on the same hardware beside this one's table (the cost of
# moving a table); the FMA peak (roofline --quick);
# the model suite on the tiny trace; the capability probe. IMPL (see env.sh); OUT folder
# (default out/impls/$IMPL); TRACE (default the tiny trace).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/impls/env.sh
OUT=${OUT:-out/impls/$IMPL}
mkdir -p "$OUT"
DEFAULT_KEY=$(python3 -c "from clgemm.select.table import DEFAULT_$KIND as d; print(d.key())")
# the other implementations' table defaults, as extra methods clgemm:<key>
# (each once, and not this implementation's own: two tables may share their default)
OTHERS=$(python3 - "$TABLE" $TRANSFER <<'PY'
import json, sys
from pathlib import Path
from clgemm.select.table import Table

def default(f):
    data = json.loads((Path("src/clgemm/data/tables") / f).read_text())
    return Table.from_json(data, f).default.key()

own = default(sys.argv[1])
print("\n".join(dict.fromkeys(k for k in map(default, sys.argv[2:]) if k != own)))
PY
)
uptime > "$OUT/load.txt"
[ "${ONLY:-}" = transfer ] || nice python3 -m clgemm.cli bench --suite kpi --scale $SCALE --schedule "$DEFAULT_KEY" \
  --baselines $BASELINES --repeats $REPEATS --warmup $WARMUP --host-repeats $HOST_REPEATS \
  --max-measure-s 6 --input-sets 2 ${SUSTAINED:+--sustained-seconds $SUSTAINED} \
  -o "$OUT/kpi.json" 2>&1 | tee "$OUT/kpi.log"
# (SUSTAINED: the continuous run's seconds, default the harness's: 60 on a GPU, 2 otherwise)
# (ONLY=transfer: this step alone, after another implementation's table changed)
[ "${ONLY:-}" = transfer ] || nice python3 benchmarks/impls/chained.py --size $MIDDLE \
  --rounds 5 --chain 3 -o "$OUT/chained.json" 2>&1 | tee "$OUT/chained.log"
# moving a table: the other implementations' tuned defaults beside this one's own table and
# the untuned default, in one run at the middle KPI size
ARGS=(--schedule "$DEFAULT_KEY")
for k in $OTHERS; do ARGS+=(--schedule "$k"); done
if [ -n "$OTHERS" ]; then
  nice python3 -m clgemm.cli bench --suite none --shapes $MIDDLE "${ARGS[@]}" --baselines none \
    --repeats $REPEATS --warmup $WARMUP --no-host-path --no-build-cost --sustained-seconds 0 \
    --input-sets 2 -o "$OUT/transfer.json" 2>&1 | tee "$OUT/transfer.log"
fi
[ "${ONLY:-}" != transfer ] || exit 0
nice python3 -m clgemm.cli roofline --quick --from "$OUT/kpi.json" -o "$OUT/roofline.json" \
  2>&1 | tee "$OUT/roofline.log"
TRACE=${TRACE:-traces/tiny/model_tiny.jsonl}
MODEL="$OUT/model-$(basename "$TRACE" .jsonl)"
nice python3 -m clgemm.cli bench --suite model --trace "$TRACE" --peers $PEERS --repeats 3 \
  --quiet -o "$MODEL.json" 2>&1 | tee "$MODEL.log"
nice python3 benchmarks/impls/capabilities.py -o "$OUT/capabilities.json" 2>&1 | tee "$OUT/capabilities.log"
uptime >> "$OUT/load.txt"
