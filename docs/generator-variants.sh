#!/usr/bin/env bash
# The generator variants of README "A generator that generates", measured side by side on the dev split.
# Per variant and training seed: `datagen train` with the variant's --set options, then
#   - `datagen evaluate --split dev --labels-per-class 10 --arms real+gan+classic`: prior-sample FID, precision,
#     recall and coverage, reconstruction label fidelity, latent 1-NN, and dev accuracy;
#   - `datagen bench noise`: distance to the seed and the reference's agreement at each noise scale.
# Then one table: a row per variant, the numbers averaged over its trainings.
# Usage: bash docs/generator-variants.sh OUT [name ...]   (env: DATASET, EPOCHS, SEEDS, REPEATS, SCALES, JOBS)
# With names, only those variants run (the table covers every variant found in OUT); runs measured already are kept,
# a stopped one is resumed from its checkpoint.
set -euo pipefail
OUT=${1:?give an output folder}; shift
DATASET=${DATASET:-mnist-5k}; EPOCHS=${EPOCHS:-10}; SEEDS=${SEEDS:-1}; REPEATS=${REPEATS:-3}
SCALES=${SCALES:-0,0.3,0.5,0.7,1.0}; JOBS=${JOBS:-2}
mkdir -p "$OUT"
# issue 14's first mnist-cpu (mnist-cpu-aae16) at another latent size: the encoder's last layer follows latent.dim (a layer list cannot be --set)
for dim in 8 32 64; do
  sed -e "s/latent = { dim = 16 }/latent = { dim = $dim }/" -e "s/{ fc = 16, act = \"sigmoid\" }/{ fc = $dim, act = \"sigmoid\" }/" \
      -e "s/^name = \"mnist-cpu-aae16\"/name = \"mnist-cpu-dim$dim\"/" "$(dirname "$0")/../recipes/mnist-cpu-aae16.toml" > "$OUT/dim$dim.toml"
done
NO_ADV="--set train.latent_adversary_weight=0"
VARIANTS=(  # name, then `datagen train` options; README "A generator that generates" has the table
  "thesis --recipe mnist-cpu-thesis"
  "recon50 --recipe $OUT/dim64.toml $NO_ADV"
  "mmd10 --recipe $OUT/dim64.toml $NO_ADV --set train.latent_mmd_weight=10"
  "adv1 --recipe $OUT/dim64.toml"
  "m64p0 --recipe $OUT/dim64.toml $NO_ADV --set train.latent_mmd_weight=10 --set train.prior_sample_weight=0"
  "d32p0 --recipe $OUT/dim32.toml --set train.prior_sample_weight=0"
  "d32e20 --recipe $OUT/dim32.toml --epochs 20 --set train.ema_decay=0.995"
  "d16adv --recipe mnist-cpu-aae16"
  "d16p0 --recipe mnist-cpu-aae16 --set train.prior_sample_weight=0"
  "d16e20 --recipe mnist-cpu-aae16 --epochs 20 --set train.ema_decay=0.995"
  "d8adv --recipe $OUT/dim8.toml"
  "d8e20 --recipe $OUT/dim8.toml --epochs 20 --set train.ema_decay=0.995"
  "mix64 --recipe mnist-cpu"  # today's mnist-cpu: m64p0 sampled through a mixture fitted to its codes
  "feat10 --recipe mnist-cpu --set train.feature_recon_weight=10"  # + reconstruction in D1's features (VAE-GAN)
  "feat10r10 --recipe mnist-cpu --set train.feature_recon_weight=10 --set train.recon_weight=10"  # ... with less pixel L1
  "ema99 --recipe mnist-cpu --set train.ema_decay=0.99"  # G's weights averaged for sampling
  "ema995 --recipe mnist-cpu --set train.ema_decay=0.995"
  "mix64e20 --recipe mnist-cpu --epochs 20"  # today's mnist-cpu trained twice as long
)
export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))
wanted() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }  # a name asked for
WANT=("$@")
for variant in "${VARIANTS[@]}"; do
  set -- $variant; name=$1; shift
  if [ ${#WANT[@]} -gt 0 ] && ! wanted "$name"; then continue; fi
  for seed in $(seq 1 "$SEEDS"); do
    run=$OUT/$name-s$seed
    [ -e "$run.noise.json" ] && continue  # measured already: a rerun into the same OUT adds only what is missing
    epochs=$EPOCHS; prev=; for arg in "$@"; do [ "$prev" = --epochs ] && epochs=$arg; prev=$arg; done
    if [ -e "$run/checkpoints/last.pt" ]; then  # a stopped training goes on where it was; a finished one returns at once
      train="datagen train --resume --out $run --epochs $epochs"
    else  # nothing saved yet: start again in an empty folder
      train="rm -rf $run && datagen train $DATASET --epochs $EPOCHS --seed $seed --out $run $*"
    fi
    echo "$train > $run.train.log 2>&1 \
      && { [ -e $run.dev.json ] || datagen evaluate --run $run --split dev --labels-per-class 10 --repeats $REPEATS \
           --arms real+gan+classic --json $run.dev.json > $run.eval.log 2>&1; } \
      && datagen bench noise $run --scales $SCALES --per-class 100 --json $run.noise.json > $run.noise.log 2>&1"
  done
done | xargs -P "$JOBS" -I{} bash -c '{}' || echo "some variants failed: see their .log files in $OUT"

python "$(dirname "$0")/variant-table.py" "$OUT"
