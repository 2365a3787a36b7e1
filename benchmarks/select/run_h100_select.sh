#!/usr/bin/env bash
# T3 (online selector) campaign on one GPU: replays the committed trace suite through the
# static table, the online selector and the oracle, and writes 3 JSON files under $OUT:
#   select_suite.json  mixed suite: KPI squares + NN layers + small batched (one selector,
#                      learning from scratch, carried across the three traces)
#   select_drift.json  drift trace with a second process loading the GPU in load phases
#   select_quiet.json  quiet trace of tuned shapes (1024/2048/4096 squares), fresh selector
# Assumes `source .carry/gpu-env.sh` was done and PYTHONPATH=src. Budget: < 5 minutes.
# Done-when figures: suite.regret.online <= 0.05; drift: online_vs_static < 0;
# quiet: online_vs_static <= 0.02 (see each file's "suite" and "traces[*]").
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-src}"
# Kernel build cache and selector state outside $OUT (only the 3 JSON files go there).
WORK="$(mktemp -d /tmp/clgemm-select-XXXXXX)"
export CLGEMM_CACHE_DIR="${CLGEMM_CACHE_DIR:-$WORK/kernels}"
export CLGEMM_STATE_DIR="$WORK/state"
CANDS=benchmarks/select/h100_candidates.txt
PY="${PYTHON:-python}"
CLOCK=none
"$PY" -c "import pynvml" 2>/dev/null && CLOCK=nvml
"$PY" -m clgemm.cli devices | head -n 3

run() {  # name, seconds, args...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$PY" -m clgemm.cli replay "$@" --candidates "$CANDS" --clock "$CLOCK" \
      --json "$OUT/select_$name.json" || echo "!! $name failed or timed out (rc=$?)"
  echo "== $name took $((SECONDS - t0)) s"
}

run suite 150 traces/kpi_square.jsonl traces/nn_layers.jsonl traces/small_batched.jsonl
run drift 80 traces/drift_load.jsonl --load --load-size 4096
run quiet 50 traces/quiet_tuned.jsonl --fresh-per-trace
rm -rf "$WORK"
