#!/usr/bin/env bash
# The fleet campaign on the CPU OpenCL device (PoCL), from the repository root:
#     bash records/cpu-pocl-amd-epyc/2026-12-06-fleet/run.sh OUTDIR
# Four arms at one shape and one seed, each with cold kernel caches (clgemm's and PoCL's):
#   tune      `clgemm tune --workers 4`: the one-process tuner (the reference best)
#   serial    `clgemm fleet`, one device worker, no compile worker: it builds and measures
#   compile2  one device worker + 2 compile workers (parallel compilation)
#   kill      two device workers on the SAME PoCL device (ocl:0@a, ocl:0@b) + 2 compile
#             workers, ocl:0@b kill -9'd after 4 results and restarted by its nanny
set -euo pipefail
OUT=${1:?output folder}
mkdir -p "$OUT"
SIZE=${SIZE:-256} BUDGET=${BUDGET:-12} SEED=${SEED:-0} STRATEGY=${STRATEGY:-random}
clgemm() { PYTHONPATH=$PWD/src python3 -c "import sys; from clgemm.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
arm() {  # name, command...
    local name=$1; shift
    rm -rf "$OUT/cache-$name"
    local t0=$(date +%s.%N)
    local rc=0
    CLGEMM_CACHE_DIR="$OUT/cache-$name/clgemm" POCL_CACHE_DIR="$OUT/cache-$name/pocl" \
        clgemm "$@" > "$OUT/$name.out" 2> "$OUT/$name.log" || rc=$?
    echo "$name rc=$rc wall_s=$(echo "$(date +%s.%N) - $t0" | bc)" | tee -a "$OUT/walls.txt"
    rm -rf "$OUT/cache-$name"
}
common=(--size "$SIZE" --budget "$BUDGET" --seed "$SEED" --strategy "$STRATEGY")
arm tune tune "${common[@]}" --workers 4 --db "$OUT/tune.sqlite" --json "$OUT/tune.json"
arm serial fleet "${common[@]}" --batch 4 --local-devices ocl:0 --compile-workers 0 \
    --db "$OUT/serial.sqlite" --json "$OUT/serial.json"
arm compile2 fleet "${common[@]}" --batch 4 --local-devices ocl:0 --compile-workers 2 \
    --db "$OUT/compile2.sqlite" --json "$OUT/compile2.json"
arm kill fleet "${common[@]}" --batch 4 --local-devices ocl:0@a,ocl:0@b --compile-workers 2 \
    --kill ocl:0@b@4 --db "$OUT/kill.sqlite" --json "$OUT/kill.json"
