#!/usr/bin/env bash
# One device call of docs/gpu-campaigns.md, its stages in the order given, from the
# repository root on the lent machine:
#
#     source .carry/gpu-env.sh && bash scripts/gpu-call.sh suite plan
#
# Stages (each writes /tmp/gpu-call/<stage>/, packed into $OUT/<stage>.tgz after each of its
# steps, so that a call cut short by the device's 10 minutes still brings back what finished;
# a call brings back 8 files at most):
#   suite   the tests that compile and run the kernels changed since the last GPU run, on the
#           card (all of them, 48 s on the H100); a failure is reported, the stages after it run
#   plan    benchmarks/plan/campaign.py, its parts in this order (a cut call keeps the first):
#           floor, trace_lanes, tc_classes, trace_host, skinny, batched_lanes (the lanes' evidence:
#           read it with benchmarks/plan/lane_verdict.py; tc_classes with
#           benchmarks/plan/tc_classes.py, fp32_batch_search / fp32_batch_classes, asked for
#           by PLAN_PARTS, with batch_classes.py), approx (judged TF32, chained) and
#           approx_probe_nosplit (the same, the probe products unsplit), check (+ host
#           phases), check_profile, approx_profile, host_path, batched, exact_lanes, gemv
#           (issues 16, 17)
#   traces  the five model traces through matmul beside PyTorch (issues 16 and 17); LANES_OFF=1
#           with the promoted split-K and batched lanes off (files -off, in traces-off.tgz)
#   soak    clgemm soak, 8 minutes (issue 23); SOAK_RUN=2 names the second run's files
#   abft    clgemm abft-campaign, 2,000 clean products and 2,000 faults (issue 18)
#   tune    clgemm tune at 2048 without a prior (forest) and with the transfer prior (the
#           H100's 1400 and 3072 measurements of records/nvidia-h100/2026-11-25-tune-campaign),
#           then CLBlast's own tuner in the same session (issue 21's re-run of issue 5)
#   sass    the float32 family's PTX at 1400/2048/3072 through ptxas -v and cuobjdump (the
#           hottest loop's FFMA share), launched through CUDA beside cuBLAS, under ncu
#           (issue 18's "known only from the SASS"; benchmarks/kpi/fp32_sass.py)
#   accuracy  3xTF32 (mma.sync and wgmma) and the float32 family against float64 on every
#           data kind of the guard campaign at 1400 and 3072, as ratios to numpy float32's
#           error (issue 18; benchmarks/tc/accuracy_kinds.py)
# DEVICE (default NVIDIA) picks the device; QUICK=1 shrinks every stage (a dry run on a CPU
# device, 2 minutes on 2 cores: DEVICE=pthread QUICK=1 OUT=/tmp/out bash scripts/gpu-call.sh
# suite plan traces soak abft; its half-minute soak fails its verdict by design: one window
# judges no memory growth).
set -uo pipefail
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-NVIDIA}
QUICK=${QUICK:-0}
W=/tmp/gpu-call
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}  # this checkout's clgemm
export CLGEMM_DEVICE=$DEVICE
# the commit the artifacts name (clgemm.bench.env.code_version): the caller's, written before
# the call with `git rev-parse HEAD > commit.txt`; git's answer only where there is no file
if [ -s commit.txt ]; then
    export CLGEMM_CODE_COMMIT=$(cat commit.txt)
else
    export CLGEMM_CODE_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    echo "gpu-call: no commit.txt: the artifacts name git's HEAD ($CLGEMM_CODE_COMMIT)" >&2
fi
mkdir -p "$W" "$OUT"

header() {  # what ran where: the commit, the card, the driver
    {
        # the device's copy of the tree carries no git history of its own (a .git found there
        # was a stale one: bc14e7f in the 2026-12-07 call): commit.txt names it
        echo "commit ${CLGEMM_CODE_COMMIT:-unknown}"
        echo "date $(date -u +%FT%TZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
        python3 -c "from clgemm.runtime import get_runtime; d = get_runtime().device; print(d.name, '|', d.platform, '|', d.driver_version)"
    } > "$1/header.txt" 2>&1
}

pack() {  # stage: bring back what it wrote
    tar czf "$OUT/$1.tgz" -C "$W" "$1"
}

stage_suite() {
    # SUITE_TESTS: a subset of the test files (a short call re-checking what changed)
    local d=$W/suite tests=${SUITE_TESTS:-tests/test_matmul.py tests/test_plan.py \
        tests/test_tensorcore.py tests/test_wgmma.py tests/test_abft.py tests/test_guard_tiny.py \
        tests/test_batched.py tests/test_gemv.py tests/test_approx.py tests/test_splitk_lane.py \
        tests/test_check_deferred.py}
    # shellcheck disable=SC2086 # a list of files
    timeout $([ "$QUICK" = 1 ] && echo 600 || echo 300) python3 -m pytest -q -p no:cacheprovider \
        $tests > "$d/tests.txt" 2>&1
    local rc=$?
    tail -3 "$d/tests.txt"
    return $rc
}

stage_plan() {
    # PLAN_PARTS: a subset of the parts (a short call re-measuring what changed); PLAN_TIMEOUT:
    # its seconds (420), a call that runs other stages first leaves it what is left of 10 min
    local d=$W/plan quick=() parts=${PLAN_PARTS:-floor,trace_lanes,tc_classes,trace_host,skinny,batched_lanes,approx,approx_probe_nosplit,check,check_profile,approx_profile,host_path,batched,exact_lanes,gemv}
    [ "$QUICK" = 1 ] && { quick=(--quick); parts=floor,check,approx,batched,exact_lanes,skinny; }
    timeout "${PLAN_TIMEOUT:-420}" python3 benchmarks/plan/campaign.py --out "$d/plan.json" --parts "$parts" \
        "${quick[@]}" > "$d/plan.log" 2>&1
    echo "plan rc=$?"
    python3 benchmarks/plan/lane_verdict.py "$d/plan.json" --json "$d/verdict.json" \
        > "$d/verdict.txt" 2>&1
    head -3 "$d/verdict.txt"
    # the per-class 3xTF32 schedules tc_classes timed, judged against this card's table
    python3 benchmarks/plan/tc_classes.py "$d/plan.json" --table auto --json "$d/classes.json" \
        > "$d/classes.txt" 2>&1
    # the float32 schedules fp32_batch_search / fp32_batch_classes found for batched classes
    python3 benchmarks/plan/batch_classes.py "$d/plan.json" --table auto \
        --json "$d/batch-classes.json" > "$d/batch-classes.txt" 2>&1
}

stage_traces() {
    # LANES_OFF=1: with the lanes the lane verdicts promoted switched off (CLGEMM_SPLITK,
    # CLGEMM_TC_SPLITK, CLGEMM_TC_BATCH = 0), files named -off: the whole traces' answer to
    # what lane_verdict judges product by product
    local repeats=3 peers=(--peers torch) t file tag=""
    [ "$QUICK" = 1 ] && { repeats=1; peers=(); }
    [ "${LANES_OFF:-0}" = 1 ] && {
        export CLGEMM_SPLITK=0 CLGEMM_TC_SPLITK=0 CLGEMM_TC_BATCH=0; tag=-off; }
    local d=$W/traces$tag
    for t in llama-7b-decode bert-base-train tinyllama-1.1b llama-7b-prefill resnet50-im2col; do
        file=traces/models/$t.jsonl
        [ "$QUICK" = 1 ] && file=traces/tiny/model_tiny.jsonl
        timeout 150 python3 -m clgemm.cli bench --suite model --trace "$file" "${peers[@]}" \
            --repeats "$repeats" --quiet -o "$d/model-$t$tag.json" > "$d/model-$t$tag.log" 2>&1
        echo "model $t rc=$?"
        pack "traces$tag"
        [ "$QUICK" = 1 ] && break
    done
    return 0
}

stage_soak() {
    local d=$W/soak run=${SOAK_RUN:-1} minutes=8
    [ "$QUICK" = 1 ] && minutes=0.5
    export CLGEMM_STATE_DIR=$PWD/.soak-state
    timeout -s TERM $(python3 -c "print(int($minutes * 60 + 90))") python3 -m clgemm.cli soak \
        --device "$DEVICE" --minutes "$minutes" --window-seconds 30 --fault-rate 0.2 --seed 0 \
        --out "$d/soak-$run.json" 2> "$d/soak-$run.log"
    echo "soak rc=$? (0 passed, 1 failed, 143 stopped by the timeout: the artifact is valid)"
    cp "$CLGEMM_STATE_DIR/abft_calibration.json" "$d/" 2>/dev/null
    return 0
}

stage_accuracy() {
    local d=$W/accuracy sizes=(1400 3072)
    [ "$QUICK" = 1 ] && sizes=(96)
    PYTHONPATH=src:benchmarks/tc timeout 240 python3 benchmarks/tc/accuracy_kinds.py "$d" \
        "${sizes[@]}" > "$d/accuracy.log" 2>&1
    echo "accuracy rc=$?"
    return 0
}

stage_abft() {
    # ABFT_CLEAN, ABFT_FAULTS, ABFT_MAX_DIM, ABFT_FAULT_MAX_DIM (products large enough for the
    # tensor-core lane: 4096) and ABFT_TIMEOUT override the defaults
    local d=$W/abft clean=${ABFT_CLEAN:-2000} faults=${ABFT_FAULTS:-2000}
    [ "$QUICK" = 1 ] && { clean=40; faults=40; }
    timeout "${ABFT_TIMEOUT:-540}" python3 -m clgemm.cli abft-campaign --clean "$clean" \
        --faults "$faults" --max-dim "${ABFT_MAX_DIM:-512}" \
        --fault-max-dim "${ABFT_FAULT_MAX_DIM:-384}" \
        --device "$DEVICE" -o "$d/abft.json" > "$d/abft.log" 2>&1
    echo "abft rc=$?"
    return 0
}

stage_tune() {
    local d=$W/tune budget=${TUNE_BUDGET:-254} size=2048 arm strategy db
    [ "$QUICK" = 1 ] && { budget=6; size=256; }
    # the prior: the H100's earlier measurements, its 2048 rows taken out (the target)
    python3 - "$d/prior.sqlite" <<'PY'
import shutil, sqlite3, sys
shutil.copy("records/nvidia-h100/2026-11-25-tune-campaign/tune.sqlite", sys.argv[1])
with sqlite3.connect(sys.argv[1]) as db:
    db.execute("DELETE FROM measurements WHERE m = 2048 AND n = 2048 AND k = 2048")
PY
    # the prior's card by name: on another card of the architecture the transfer arm borrows
    # it (--prior-device; without it an H200 found no rows of its own and ran prior-free)
    local prior_dev
    prior_dev=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT device_name FROM measurements LIMIT 1').fetchone()[0])" "$d/prior.sqlite")
    for arm in forest transfer; do
        db=$d/$arm.sqlite strategy=forest prior=()
        [ $arm = transfer ] && { cp "$d/prior.sqlite" "$db"; strategy=auto;
                                 prior=(--prior-device "$prior_dev"); }
        timeout 200 python3 -m clgemm.cli tune --size "$size" --strategy $strategy \
            --budget "$budget" --seed 0 --db "$db" "${prior[@]}" --json "$d/$arm.json" \
            > "$d/$arm.log" 2>&1
        echo "tune $arm rc=$? ($(tail -1 "$d/$arm.log"))"
        pack tune
    done
    [ "$QUICK" = 1 ] && return 0
    # CLBlast's own Xgemm tuner at 2048, built from source (.carry/clblast-src), its loader
    # made to see NVIDIA's driver alone (benchmarks/tune/vs_clblast_tuner.sh)
    mkdir -p "$d/clb"
    LD_LIBRARY_PATH=/tmp/oclroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
        OUT=$d/clb timeout 330 bash .carry/clblast-src/clblast-tune.sh 2048 "${CLB_SECONDS:-240}" \
        > "$d/clblast.log" 2>&1
    echo "clblast tuner rc=$?"
    return 0
}

stage_sass() {
    # the float32 family's machine code at the KPI sizes (issue 18): ptxas -v, the hottest
    # loop's instruction mix, the kernel through CUDA beside cuBLAS, and ncu's counters of both
    local d=$W/sass n sizes=(1400 2048 3072) tool=benchmarks/kpi/fp32_sass.py
    [ "$QUICK" = 1 ] && sizes=(96)
    timeout 120 python3 $tool dump "$d" "${sizes[@]}" > "$d/dump.log" 2>&1
    echo "dump rc=$?"
    [ "$QUICK" = 1 ] && return 0
    timeout 120 python3 $tool sass "$d" > "$d/sass.log" 2>&1
    echo "sass rc=$?"
    pack sass
    for n in "${sizes[@]}"; do
        timeout 60 python3 $tool launch "$d" "$n" >> "$d/launch.log" 2>&1
        echo "launch $n rc=$?"
    done
    pack sass
    timeout 240 ncu --clock-control none --csv --page raw --metrics "$(python3 $tool metrics)" \
        -k regex:"clgemm|gemm|nvjet" python3 $tool launch "$d" 2048 1 > "$d/ncu.csv" 2> "$d/ncu.err"
    echo "ncu rc=$?"
    return 0
}

for stage in "$@"; do
    case "$stage" in
        suite|plan|traces|soak|abft|tune|sass|accuracy) ;;
        *) echo "gpu-call: unknown stage '$stage' (suite, plan, traces, soak, abft, tune, sass, accuracy)" >&2; exit 2 ;;
    esac
    # the folder and archive of the stage: LANES_OFF=1's traces apart from the plain ones (one
    # call's plain traces.tgz was overwritten by its opt-in run on 2026-12-07)
    name=$stage
    [ "$stage" = traces ] && [ "${LANES_OFF:-0}" = 1 ] && name=traces-off
    mkdir -p "$W/$name"
    header "$W/$name"
    t0=$(date +%s)
    "stage_$stage"
    rc=$?
    echo "$stage: rc=$rc, $(( $(date +%s) - t0 )) s" | tee -a "$W/$name/header.txt"
    pack "$name"
    if [ "$stage" = suite ] && [ $rc -ne 0 ]; then
        # the later stages still run: a call is a third of a session's device time, and each
        # campaign part catches its own failure and checks its own products against float64
        echo "gpu-call: the suite failed on the card (suite/tests.txt); the stages after it run" >&2
    fi
done
