#!/usr/bin/env bash
# The dev comparison behind augment's --include-unlabeled default (README, "How the defaults were chosen"):
# the neighbours alone (real+gan+classic) against augment's whole output (real+pseudo+gan+classic), each at
# σ 0.5 and 0.7 and with 500 or 1,500 generated images per class, paired with real+pseudo+classic on the same
# 5 label draws of three trainings. Usage: bash docs/whole-output-on-dev.sh OUT RUN1,RUN2,RUN3
set -euo pipefail
OUT=${1:?usage: $0 OUT RUN1,RUN2,RUN3}
RUNS=${2:?usage: $0 OUT RUN1,RUN2,RUN3}
mkdir -p "$OUT"
common=(--runs "$RUNS" --split dev --labels-per-class 10 --repeats 5 --no-quality)
datagen evaluate "${common[@]}" --arms real+pseudo+classic,real+gan+classic,real+pseudo+gan+classic --json "$OUT/n0.5-g500.json"
for variant in "n0.7-g500 --noise 0.7" "n0.5-g1500 --noise 0.5 --gan-per-class 1500"; do
  set -- $variant
  datagen evaluate "${common[@]}" --arms real+pseudo+classic,real+gan+classic,real+pseudo+gan+classic "${@:2}" --json "$OUT/$1.json"
done
for f in "$OUT"/*.json; do echo "== $f"; sed -n '/^| labels/,/^$/p' "${f%.json}.md"; done
