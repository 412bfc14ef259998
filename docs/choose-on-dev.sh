#!/usr/bin/env bash
# How the benchmark's defaults were chosen (README, "datagen evaluate"): on the dev split, never on test.
#   1. train N GAN runs (different seeds) of the default recipe;
#   2. the downstream classifier's recipe: candidates compared on dev with the real and real+classic arms only;
#   3. the gan arms' settings (noise, unlabeled images, filter) compared on dev with the chosen classifier;
#   4. the reported tables: every default arm on dev and, once, on test, pooled over the N runs.
# Runs several evaluations at once (one process per job); on a GPU machine the classifiers train on the GPU.
# Usage: bash docs/choose-on-dev.sh OUT   (env: DATASET, EPOCHS, RUNS, BUDGETS, REPEATS, SWEEP_REPEATS, FIXMATCH_BUDGETS, FIXMATCH_REPEATS, JOBS, TRAIN_ARGS, EXTRA,
#   CLASSIFIER_ARGS: skip step 2 and use these classifier options)
set -euo pipefail
OUT=${1:?give an output folder}
DATASET=${DATASET:-mnist-5k}; EPOCHS=${EPOCHS:-10}; RUNS=${RUNS:-3}; BUDGETS=${BUDGETS:-1,5,10,50}
REPEATS=${REPEATS:-10}; SWEEP_REPEATS=${SWEEP_REPEATS:-10}; JOBS=${JOBS:-8}; FIXMATCH_BUDGETS=${FIXMATCH_BUDGETS:-$BUDGETS}; FIXMATCH_REPEATS=${FIXMATCH_REPEATS:-$REPEATS}; TRAIN_ARGS=${TRAIN_ARGS:-}; EXTRA=${EXTRA:-}
mkdir -p "$OUT"/{runs,classifier,gan,final}
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/progress.log"; }
pool() { xargs -P "$JOBS" -I{} bash -c '{}' ; }  # one shell line per job on stdin

log "1. training $RUNS runs of $DATASET ($EPOCHS epochs)"
for i in $(seq 1 "$RUNS"); do
  echo "datagen train $DATASET --epochs $EPOCHS --seed $i --out $OUT/runs/run$i $TRAIN_ARGS > $OUT/runs/run$i.log 2>&1"
done | pool || log "   some jobs failed (a setting that cannot run): see the .log files beside their JSON"
RUN1=$OUT/runs/run1
RUNLIST=$(ls -d "$OUT"/runs/run*/ | sed 's:/$::' | paste -sd, -)

# sweep DIR PREFIX "name args" ...: one `PREFIX args` evaluation per setting (JSON in OUT/DIR), then the setting with
# the best dev mean over every (budget, arm) row is written to OUT/DIR/chosen.
sweep() {
  local dir=$1 prefix=$2; shift 2
  for setting in "$@"; do
    set -- $setting; local name=$1; shift
    echo "$prefix $* $EXTRA --json $OUT/$dir/$name.json > $OUT/$dir/$name.log 2>&1"
  done | pool || log "   some jobs failed (a setting that cannot run): see the .log files beside their JSON"
  python - "$OUT/$dir" <<'PY' | tee -a "$OUT/progress.log"
import glob, json, os, sys
folder = sys.argv[1]
scores = {}
for path in sorted(glob.glob(f"{folder}/*.json")):
    rows = {(r["labels_per_class"], r["arm"]): r["mean"] for r in json.load(open(path))["results"]}
    name = os.path.basename(path)[:-5]
    scores[name] = sum(rows.values()) / len(rows)
    print(f"{name:14s} dev mean {100 * scores[name]:.2f}%  " + "  ".join(f"{k}/{a}: {100 * v:.1f}" for (k, a), v in rows.items()))
best = max(scores, key=scores.get)
print("chosen", best)
open(f"{folder}/chosen", "w").write(best)
PY
}
args_of() {  # args_of NAME "name args" ...: the args of the setting called NAME
  local want=$1; shift
  for setting in "$@"; do set -- $setting; if [ "$1" = "$want" ]; then shift; echo "$*"; fi; done
}
choose() {  # choose DIR WHAT PREFIX "name args" ...: sweep, then CHOSEN = the args of the setting it chose
  local dir=$1 what=$2 prefix=$3; shift 3
  sweep "$dir" "$prefix" "$@"
  CHOSEN=$(args_of "$(cat "$OUT/$dir/chosen")" "$@")
  log "   chosen $what: $(cat "$OUT/$dir/chosen") ($CHOSEN)"
}

if [ -n "${CLASSIFIER_ARGS:-}" ]; then  # chosen before (issue 13: --lr 1e-2 --weight-decay 5e-4 --width 16 --steps 1000)
  CLF=$CLASSIFIER_ARGS
else
log "2. classifier candidates on dev (real, real+classic)"
CANDIDATES=(
  "c1 --lr 3e-3 --weight-decay 5e-4 --width 16 --steps 1000"
  "c2 --lr 1e-3 --weight-decay 5e-4 --width 16 --steps 1000"
  "c3 --lr 1e-2 --weight-decay 5e-4 --width 16 --steps 1000"
  "c4 --lr 3e-3 --weight-decay 5e-2 --width 16 --steps 1000"
  "c5 --lr 3e-3 --weight-decay 5e-4 --width 24 --steps 1000"
  "c6 --lr 3e-3 --weight-decay 5e-4 --width 16 --steps 1500"
)
choose classifier classifier "datagen evaluate --run $RUN1 --split dev --arms real,real+classic --labels-per-class $BUDGETS --repeats $SWEEP_REPEATS --no-quality" "${CANDIDATES[@]}"
CLF=$CHOSEN
fi

log "3. gan-arm settings on dev (chosen classifier)"
SETTINGS=(  # issue 14's candidates (issue 13 compared σ 0.25 / 0.5 / 1.0, --seeds-only and --filter: README)
  "g-noise0.5 --noise 0.5"
  "g-noise0.3 --noise 0.3"
  "g-mix-noise0.3 --noise 0.3 --mix 1"
  "g-mix-noise0.5 --noise 0.5 --mix 1"
  "g-conf0.5 --noise 0.5 --min-label-confidence 0.5"
  "g-filter --noise 0.5 --filter"
)
choose gan "gan settings" "datagen evaluate --runs $RUNLIST --split dev --arms real+gan,real+gan+classic --labels-per-class $BUDGETS --repeats $(( (SWEEP_REPEATS + 1) / 2 )) --no-quality $CLF" "${SETTINGS[@]}"
GAN_SETTINGS=$CHOSEN

log "4. the tables: every default arm, dev then test, pooled over $RUNS runs"
for split in dev test; do
  for k in ${BUDGETS//,/ }; do
    echo "datagen evaluate --runs $RUNLIST --split $split --labels-per-class $k --repeats $REPEATS $CLF $GAN_SETTINGS $EXTRA --json $OUT/final/$split-$k.json > $OUT/final/$split-$k.log 2>&1"
  done
  for k in ${FIXMATCH_BUDGETS//,/ }; do  # the SSL reference: independent of the GAN runs
    echo "datagen evaluate --run $RUN1 --split $split --arms fixmatch --labels-per-class $k --repeats $FIXMATCH_REPEATS --no-quality $CLF $EXTRA --json $OUT/final/fixmatch-$split-$k.json > $OUT/final/fixmatch-$split-$k.log 2>&1"
  done
done | pool || log "   some jobs failed (a setting that cannot run): see the .log files beside their JSON"
log "done"
