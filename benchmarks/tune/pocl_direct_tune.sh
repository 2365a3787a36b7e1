#!/usr/bin/env bash
# Third pass (direct kernel form, `direct=1`): interleaved exploration, import, quick tune,
# distill, bench. Replays the commands behind records/cpu-pocl-amd-epyc/2026-11-25-direct-tune/
# (see its record.json and ../tune-notes.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=src CLGEMM_DEVICE="Portable Computing Language" POCL_MEMORY_LIMIT=4
DIR=${DIR:-out/pocl-tune}  # copy a record's tune.sqlite here to resume it
mkdir -p "$DIR"
DEFAULT_KEY=wm8-wn8-om4-on8-tk16-va4-vb4-vc4-sa1-sb1-uk4-db0-st0-lp0-ac256
D=va1-vb1-vc1-sa0-sb0; E=db0-st0-lp0
python3 benchmarks/tune/explore_rounds.py --size 1024 --rounds 6 --with-default --with-table \
  wm32-wn4-om6-on16-tk16-$D-uk4-$E-ac256-dr1 wm8-wn4-om6-on16-tk16-$D-uk4-$E-ac256-dr1 \
  wm32-wn8-om6-on16-tk16-$D-uk4-$E-ac256-dr1 wm8-wn8-om6-on16-tk16-$D-uk4-$E-ac256-dr1 \
  wm16-wn4-om6-on16-tk16-$D-uk2-$E-ac256-dr1 wm16-wn4-om6-on16-tk16-$D-uk4-$E-ac256-dr1 \
  wm16-wn8-om6-on16-tk16-$D-uk4-$E-ac256-dr1 wm4-wn4-om6-on16-tk16-$D-uk4-$E-ac256-dr1 \
  wm32-wn4-om6-on16-tk32-$D-uk8-$E-ac256-dr1 wm32-wn4-om6-on16-tk16-$D-uk8-$E-ac256-dr1 \
  wm32-wn4-om6-on16-tk16-$D-uk4-$E-ac512-dr1 wm8-wn4-om6-on16-tk16-$D-uk2-$E-ac256-dr1 \
  -o $DIR/explore-direct-1024.json --space-out $DIR/explore-direct-1024.space.json
python3 -m clgemm.cli tune-import $DIR/explore-direct-1024.space.json --db $DIR/tune.sqlite
python3 -m clgemm.cli tune --size 1024 --strategy model --budget 240s --repeats 3 --workers 1 \
  --db $DIR/tune.sqlite --json $DIR/tune-1024-direct.json 2>&1 | tee $DIR/tune-1024-direct.log
python3 -m clgemm.cli distill --db $DIR/tune.sqlite --sessions 2 --top-k 3 \
  -o src/clgemm/data/tables/pthread-amd-epyc.json 2>&1 | tee $DIR/distill-direct.log
# method `clgemm` = the distilled table; `clgemm:<key>` = the untuned default (and the old table).
python3 -m clgemm.cli bench --suite none --shapes 1024 --schedule $DEFAULT_KEY \
  --schedule wm16-wn16-om4-on4-tk16-va2-vb4-vc1-sa1-sb1-uk2-db0-st0-lp0-ac512 \
  --baselines numpy --sessions 1 --sustained-seconds 0 --no-host-path \
  -o $DIR/bench-1024-direct.json 2>&1 | tee $DIR/bench-1024-direct.log
python3 -m clgemm.cli bench --suite none --shapes 1024 --schedule $DEFAULT_KEY \
  --baselines numpy --sessions 2 --sustained-seconds 0 --no-host-path \
  -o $DIR/bench-1024-direct-2sessions.json 2>&1 | tee $DIR/bench-1024-direct-2sessions.log
