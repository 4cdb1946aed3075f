#!/usr/bin/env bash
# The evaluations behind models/MODEL_CARD.md: every JSON here is one of these commands.
# Usage: models/eval/run.sh [checkpoint]   (two at a time: a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
ckpt=${1:-models/invispose-space.pt}
out=models/eval
ev() { .venv/bin/invispose eval --checkpoint "$ckpt" --seed 7 --threads 1 --json "$@"; }
for s in same-layout cross-layout cross-hardware; do
  ev --split $s --windows 600 > $out/$s.json &
  [ "$s" = cross-layout ] && wait
done
wait
for r in 1 2 3; do
  ev --split cross-layout --windows 300 --routers $r --hardware intel5300 > $out/cross-layout-intel-$r.json &
  [ "$r" = 2 ] && wait
done
ev --split cross-layout --windows 300 --routers 2 --hardware esp32 > $out/cross-layout-esp32-2.json &
wait
ev --split cross-layout --windows 1200 --persons 1 > $out/cross-layout-1person.json
# routers whose chain phases were measured (`invispose calibrate`; 0.15 rad of error)
for r in 1 2 3; do
  ev --split cross-layout --windows 300 --routers $r --hardware intel5300 --calibrated 0.15 \
    > $out/cross-layout-intel-$r-calibrated.json &
  [ "$r" = 2 ] && wait
done
ev --split cross-layout --windows 300 --persons 1 --routers 2 --hardware intel5300 \
  --calibrated 0.15 > $out/cross-layout-intel-2-1person-calibrated.json
wait
