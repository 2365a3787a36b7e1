#!/usr/bin/env bash
# The KPI run of record on the GPU machine (one NVIDIA H100): clgemm against CLBlast (shipped and
# tuned parameters), cuBLAS (fp32 and TF32, through PyTorch) and numpy, 3 sessions in separate
# processes, a sustained run, the roofline, and the report. About 5-8 minutes.
#
# From the repository root, with .carry/ (a copy of ../shared/device) taken along:
#     source .carry/gpu-env.sh && bash benchmarks/kpi/run_h100_kpi.sh
# Writes 6 files to $OUT: kpi.json roofline.json roofline.png report.md report.html log
#
# Variables (all optional):
#   OUT                where everything goes (default out/h100-kpi)
#   SESSIONS           separate bench processes, merged (default 3)
#   SUSTAINED_SECONDS  length of the continuous run (default 60)
#   SUSTAINED_SIZE     its shape (default 2048)
#   REPEATS            timed repeats per measurement (default 20)
#   CLBLAST_TUNED      CLBlast tuner JSON (clblast_xgemm_*_32.json) or a folder of them; default
#                      .carry/clblast-tuned/ if present, else the parameters recorded in
#                      ../shared/anchors.md (CLBlast's own tuner on this H100, 2026-11-25)
#   CLBLAST_LIB        libclblast.so to load (default: $CLGEMM_CLBLAST_LIB from gpu-env.sh, CLBlast
#                      1.5.3; /tmp/clb/build/libclblast.so is main-branch CLBlast if clblast-tune.sh ran)
#   BENCH_ARGS         what to measure (default "--suite kpi"; e.g. "--suite kpi --shapes 4096")
#   BENCH_TIMEOUT      seconds before the bench is interrupted (SIGINT: a valid partial artifact
#                      marked "complete": false is kept); default 400
set -u -o pipefail
OUT=${OUT:-out/h100-kpi}
mkdir -p "$OUT"
LOG="$OUT/log"
: > "$LOG"
if [ -z "${CLGEMM_CLBLAST_LIB:-}" ] && [ -f .carry/gpu-env.sh ]; then
  source .carry/gpu-env.sh >> "$LOG" 2>&1
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export CLGEMM_DEVICE=${CLGEMM_DEVICE:-NVIDIA}
export CLGEMM_CACHE_DIR=${CLGEMM_CACHE_DIR:-/tmp/clgemm-kpi-cache}
[ -n "${CLBLAST_LIB:-}" ] && export CLGEMM_CLBLAST_LIB=$CLBLAST_LIB
SESSIONS=${SESSIONS:-3}
SUSTAINED_SECONDS=${SUSTAINED_SECONDS:-60}
SUSTAINED_SIZE=${SUSTAINED_SIZE:-2048}
REPEATS=${REPEATS:-20}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-400}
BENCH_ARGS=${BENCH_ARGS:---suite kpi}

log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

TUNED=${CLBLAST_TUNED:-}
if [ -z "$TUNED" ] && [ -d .carry/clblast-tuned ]; then TUNED=.carry/clblast-tuned; fi
if [ -z "$TUNED" ]; then
  # CLBlast's Xgemm tuner on this H100 (anchors.md, 2026-11-25, random 235 of 120,800
  # configurations, best 37.8 TFLOPS at 2048): GEMMK=0 family; STRM and KREG not recorded there
  # (0 and 1 are the GEMMK=0 defaults).
  TUNED=/tmp/clblast_xgemm_anchors_32.json
  cat > "$TUNED" <<'JSON'
{
  "kernel_family": "xgemm_2", "precision": "32", "best_kernel": "Xgemm",
  "arg_m": "2048", "arg_n": "2048", "arg_k": "2048",
  "source": "anchors.md: CLBlast tuner on NVIDIA H100 80GB HBM3, 2026-11-25",
  "results": [
    {"kernel": "Xgemm", "time": 0.455,
     "parameters": {"GEMMK": 0, "KREG": 1, "KWG": 32, "KWI": 2, "MDIMA": 16, "MDIMC": 16,
                    "MWG": 128, "NDIMB": 8, "NDIMC": 16, "NWG": 128, "SA": 1, "SB": 1,
                    "STRM": 0, "STRN": 1, "VWM": 4, "VWN": 4, "PRECISION": 32}}
  ]
}
JSON
fi

log "machine"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
  python3 -m clgemm.cli devices
  git describe --always --dirty 2>/dev/null; git rev-parse HEAD 2>/dev/null
  echo "CLGEMM_DEVICE=$CLGEMM_DEVICE CLGEMM_CLBLAST_LIB=${CLGEMM_CLBLAST_LIB:-} CLBLAST_TUNED=$TUNED"
  echo "SESSIONS=$SESSIONS SUSTAINED_SECONDS=$SUSTAINED_SECONDS SUSTAINED_SIZE=$SUSTAINED_SIZE REPEATS=$REPEATS"
} >> "$LOG" 2>&1

log "bench $BENCH_ARGS (sessions=$SESSIONS, sustained ${SUSTAINED_SECONDS}s at $SUSTAINED_SIZE)"
timeout -s INT -k 30 "$BENCH_TIMEOUT" python3 -m clgemm.cli bench $BENCH_ARGS \
  --sessions "$SESSIONS" --repeats "$REPEATS" --warmup 5 --input-sets 3 --max-measure-s 5 \
  --sustained-seconds "$SUSTAINED_SECONDS" --sustained-size "$SUSTAINED_SIZE" \
  --baselines numpy,clblast,cublas --clblast-tuned "$TUNED" \
  -o "$OUT/kpi.json" >> "$LOG" 2>&1
log "bench exit $?"

log "roofline"
timeout -s INT 120 python3 -m clgemm.cli roofline -o "$OUT/roofline.json" --png "$OUT/roofline.png" \
  --from "$OUT/kpi.json" >> "$LOG" 2>&1
log "roofline exit $?"

log "report"
ARTS="$OUT/kpi.json"; [ -f "$OUT/roofline.json" ] && ARTS="$ARTS $OUT/roofline.json"
timeout 120 python3 -m clgemm.cli report $ARTS -o "$OUT" --embed \
  >> "$LOG" 2>&1
log "report exit $?"
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv >> "$LOG" 2>&1
ls -la "$OUT" | tee -a "$LOG"
