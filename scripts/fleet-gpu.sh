#!/usr/bin/env bash
# Fleet tuning on a GPU machine with no registry, from the repository root, after
#     source .carry/gpu-env.sh
# with the Dask wheels carried in .carry-fleet-wheels/ (or FLEET_WHEELS=DIR). Writes under $OUT:
#   fleet.json/.log     clgemm fleet: the GPU worker(s) + compile workers, the worker KILL
#                       (WORKER@N, default compile-0@30) kill -9'd after N results (its nanny
#                       restarts it); DISTILL=1: then one table per device in tables/
#   serial.json/.log    clgemm fleet with no compile worker: the device worker builds and
#                       measures each schedule itself (the speed-up's baseline)
#   tune.json/.log      clgemm tune --workers BATCH: the one-process tuner, same seed (with the
#                       random strategy it measures the same schedules as the fleet)
#   walls.txt           wall seconds of each arm, cold kernel caches each (clgemm, NVIDIA, PoCL)
# Arms run in the order of ARMS (default: fleet serial tune). Issue 24 (several GPUs):
#   DEVICES=gpus ARMS=fleet KILL=ocl:1@40 ..., then OUT=.../one DEVICES=gpus:1 ARMS=fleet
#   for the one-GPU time (identical cards share one fingerprint: they split its searches).
set -uo pipefail
OUT=${OUT:?set OUT}
WHEELS=${FLEET_WHEELS:-.carry-fleet-wheels}
SIZES=${SIZES:-"1400 2048 3072"}
BUDGET=${BUDGET:-30} BATCH=${BATCH:-8} SEED=${SEED:-0} STRATEGY=${STRATEGY:-random}
DEVICES=${DEVICES:-gpus} COMPILE=${COMPILE:-$(( $(nproc) - 2 ))} KILL=${KILL:-compile-0@30}
LIMIT=${LIMIT:-120} ARMS=${ARMS:-"fleet serial tune"} DISTILL=${DISTILL:-0}
extra=(); grace=60  # seconds past LIMIT before an arm is cut (in-flight work, startup)
[ "$DISTILL" = 1 ] && { extra+=(--distill "$OUT/tables"); grace=240; }
python3 -m pip install -q --no-index --find-links "$WHEELS" distributed \
    || { echo "fleet-gpu: could not install distributed from $WHEELS" >&2; exit 1; }
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}  # this checkout's clgemm, not an installed one
sizes=(); for s in $SIZES; do sizes+=(--size "$s"); done
common=("${sizes[@]}" --budget "$BUDGET" --seed "$SEED" --strategy "$STRATEGY")
arm() {  # name, clgemm arguments...
    local name=$1; shift
    local cache; cache=$(mktemp -d)
    local t0; t0=$(date +%s.%N)
    CLGEMM_CACHE_DIR="$cache" CUDA_CACHE_PATH="$cache/nv" POCL_CACHE_DIR="$cache/pocl" timeout $(( ${LIMIT%.*} + grace )) \
        python3 -c "import sys; from clgemm.cli import main; sys.exit(main(sys.argv[1:]))" \
        "$@" > "$OUT/$name.out" 2> "$OUT/$name.log"
    local rc=$?
    echo "$name rc=$rc wall_s=$(python3 -c "import time; print(round(time.time() - $t0, 1))")" \
        | tee -a "$OUT/walls.txt"
    tail -n 4 "$OUT/$name.out"
    rm -rf "$cache"
}
for a in $ARMS; do
    case $a in
    fleet) arm fleet fleet "${common[@]}" --batch "$BATCH" --local-devices "$DEVICES" \
               --compile-workers "$COMPILE" --kill "$KILL" "${extra[@]}" \
               --time-limit "$LIMIT" --db "$OUT/fleet.sqlite" --json "$OUT/fleet.json" ;;
    serial) arm serial fleet "${common[@]}" --batch "$BATCH" --local-devices "$DEVICES" \
               --compile-workers 0 --time-limit "$LIMIT" --db "$OUT/serial.sqlite" \
               --json "$OUT/serial.json" ;;
    tune) arm tune tune "${common[@]}" --workers "$BATCH" --db "$OUT/tune.sqlite" \
               --json "$OUT/tune.json" ;;
    esac
done
