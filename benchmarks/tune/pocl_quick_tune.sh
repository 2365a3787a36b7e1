#!/usr/bin/env bash
# PoCL campaign (issue 5): a quick model-guided tune at 1024 on the CPU OpenCL device, the
# distilled table, and ONE bench run comparing the table's choice with the untuned default.
#
# From the repository root (2-core shared box: ~30 min in all):
#     bash benchmarks/tune/pocl_quick_tune.sh            # all phases
#     PHASES="distill bench" bash benchmarks/tune/pocl_quick_tune.sh
# Re-running the tune phase resumes from the database (what is there is never re-measured).
set -eu -o pipefail
export PYTHONPATH=${PYTHONPATH:-src}
export CLGEMM_DEVICE=${CLGEMM_DEVICE:-"Portable Computing Language"}
# PoCL's CPU device reports a global memory size that follows the host's free memory, and
# clgemm's device fingerprint hashes it: without a fixed limit the fingerprint changes from
# one process to the next (tune rows then vanish from resume and distill). Fix it at 4 GiB.
export POCL_MEMORY_LIMIT=${POCL_MEMORY_LIMIT:-4}
DIR=${DIR:-out/pocl-tune}  # copy a record's tune.sqlite here to resume it
mkdir -p "$DIR"
BUDGET=${BUDGET:-60}      # evaluations at 1024 in the database
REPEATS=${REPEATS:-3}     # timed repeats per candidate (plus 1 check run and 1 warm-up)
LEARN_BUDGET=${LEARN_BUDGET:-480s}      # the 512 learning tune (same shape class as 1024)
LEARN_STRATEGY=${LEARN_STRATEGY:-annealing}
PHASES=${PHASES:-"learn tune distill bench"}
SLUG=$(python -c "import clgemm; print(clgemm.get_device().slug)")
DEFAULT_KEY=$(python -c "from clgemm.select.table import DEFAULT_CPU; print(DEFAULT_CPU.key())")
TABLE=src/clgemm/data/tables/$SLUG.json

for phase in $PHASES; do
  case $phase in
    learn)
      # Cheap evaluations at 512 (same table class as 1024); distill replays their top-k at
      # 1024 too, since it cross-measures the union of every tuned problem's top-k.
      python -m clgemm.cli tune --size 512 --strategy "$LEARN_STRATEGY" --budget "$LEARN_BUDGET" \
        --repeats "$REPEATS" --workers 1 --db $DIR/tune.sqlite --json $DIR/tune-512.json \
        2>&1 | tee -a $DIR/tune-512.log ;;
    tune)
      python -m clgemm.cli tune --size 1024 --strategy model --budget "$BUDGET" \
        --repeats "$REPEATS" --workers 1 --db $DIR/tune.sqlite --json $DIR/tune-1024.json \
        2>&1 | tee -a $DIR/tune-1024.log ;;
    distill)
      python -m clgemm.cli distill --db $DIR/tune.sqlite --sessions 3 --top-k 3 -o "$TABLE" \
        2>&1 | tee $DIR/distill.log ;;
    bench)
      # method `clgemm` = the new table's choice; `clgemm:<key>` = the untuned CPU default.
      python -m clgemm.cli bench --suite none --shapes 1024 --schedule "$DEFAULT_KEY" \
        --baselines numpy --sessions 1 --sustained-seconds 0 --no-host-path \
        -o $DIR/bench-1024.json 2>&1 | tee $DIR/bench-1024.log ;;
  esac
done
