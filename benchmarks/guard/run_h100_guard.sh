#!/usr/bin/env bash
# The guard's H100 campaign (issue 7): ABFT overhead at 3072, false positives on clean
# products, fault-injection rates; approximate GEMM errors vs budget and timings at 3072.
# Assumes `source .carry/gpu-env.sh` and PYTHONPATH=src. Writes abft.json, approx.json,
# summary.json, profile.txt, skinny*.json under $OUT. GUARD_N overrides the size (3072).
# Whole run: a few minutes on an H100. `--quick` for a smoke run at small sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-src}"
# Calibration is stored per device fingerprint; keep it with the artifacts.
export CLGEMM_STATE_DIR="${CLGEMM_STATE_DIR:-$OUT/state}"
python -c "import clgemm, sys; [print(d.index, d.name, d.fingerprint) for d in clgemm.devices()]"
START=$SECONDS
python benchmarks/guard/h100_guard.py "$OUT" "$@"
case " $* " in *" --quick "*) SKINNY_N="${SKINNY_N:-256}" ;; esac
# Skinny-product plans of the low-rank path (schedule x K slices), model vs measured.
python benchmarks/guard/skinny_sweep.py "$OUT" "${SKINNY_N:-3072}"
echo "[guard] whole run $((SECONDS - START)) s"
