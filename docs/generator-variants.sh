#!/usr/bin/env bash
# The generator variants of README "A generator that generates", measured side by side on the dev split.
# Per variant and training seed: `datagen train` with the variant's --set options, then
#   - `datagen evaluate --split dev --labels-per-class 10 --arms real+gan+classic`: prior-sample FID, precision,
#     recall and coverage, reconstruction label fidelity, latent 1-NN, and dev accuracy;
#   - `datagen bench noise`: distance to the seed and the reference's agreement at each noise scale.
# Then one table: a row per variant, the numbers averaged over its trainings.
# Usage: bash docs/generator-variants.sh OUT [name ...]   (env: DATASET, EPOCHS, SEEDS, REPEATS, SCALES, JOBS)
# With names, only those variants run (the table covers every variant found in OUT).
set -euo pipefail
OUT=${1:?give an output folder}; shift
DATASET=${DATASET:-mnist-5k}; EPOCHS=${EPOCHS:-10}; SEEDS=${SEEDS:-1}; REPEATS=${REPEATS:-3}
SCALES=${SCALES:-0,0.5,0.7,1.0}; JOBS=${JOBS:-2}
VARIANTS=(
  "thesis --recipe mnist-cpu-thesis"
  "recon50 --set train.latent_adversary_weight=0 --set train.latent_mmd_weight=0 --set train.ema_decay=0"
  "mmd10 --set train.latent_adversary_weight=0 --set train.latent_mmd_weight=10 --set train.ema_decay=0"
  "adv1 --set train.latent_adversary_weight=1 --set train.latent_mmd_weight=0 --set train.ema_decay=0"
)
mkdir -p "$OUT"
export OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))
wanted() { [ $# -eq 0 ] && return 0; local n=$1; shift; for w in "${WANT[@]}"; do [ "$w" = "$n" ] && return 0; done; return 1; }
WANT=("$@")
for variant in "${VARIANTS[@]}"; do
  set -- $variant; name=$1; shift
  if [ ${#WANT[@]} -gt 0 ] && ! wanted "$name" "${WANT[@]}"; then continue; fi
  for seed in $(seq 1 "$SEEDS"); do
    run=$OUT/$name-s$seed
    echo "datagen train $DATASET --epochs $EPOCHS --seed $seed --out $run $* > $run.train.log 2>&1 \
      && datagen evaluate --run $run --split dev --labels-per-class 10 --repeats $REPEATS --arms real+gan+classic \
         --json $run.dev.json > $run.eval.log 2>&1 \
      && datagen bench noise $run --scales $SCALES --per-class 100 --json $run.noise.json > $run.noise.log 2>&1"
  done
done | xargs -P "$JOBS" -I{} bash -c '{}' || echo "some variants failed: see their .log files in $OUT"

python - "$OUT" <<'PY'
import glob, json, os, re, sys
from collections import defaultdict
out = sys.argv[1]
rows = defaultdict(list)
for path in sorted(glob.glob(f"{out}/*-s*.dev.json")):
    name = re.sub(r"-s\d+\.dev\.json$", "", os.path.basename(path))
    dev = json.load(open(path))
    q = next(iter(dev["quality"]["runs"].values()))
    noise_path = path.replace(".dev.json", ".noise.json")
    noise = {(r["noise"], r["filter"]): r for r in json.load(open(noise_path))["rows"]} if os.path.exists(noise_path) else {}
    recon = noise.get((0.0, False), {}).get("distance_to_seed")
    row = {"floor FID": dev["quality"]["floor_real_train_vs_split"]["fid"],
           "prior FID": q["prior_samples"]["fid"], "precision": q["prior_samples"]["precision"],
           "recall": q["prior_samples"]["recall"], "coverage": q["prior_samples"]["coverage"],
           "recon fidelity": q["recon_label_fidelity"], "1-NN": q["latent_1nn_accuracy"],
           "neighbour fidelity": q["neighbours"]["generated_label_fidelity"],
           "dev acc": dev["results"][0]["mean"]}
    for (sigma, filtered), r in sorted(noise.items()):
        if not filtered and sigma > 0 and recon and r["distance_to_seed"] is not None:
            row[f"dist x{sigma}"] = r["distance_to_seed"] / recon
            row[f"agree {sigma}"] = r["agreement"]
    rows[name].append(row)
columns = sorted({c for runs in rows.values() for r in runs for c in r}, key=lambda c: list(next(iter(rows.values()))[0]).index(c)
                 if c in next(iter(rows.values()))[0] else 99)
print("| variant | runs | " + " | ".join(columns) + " |")
print("|---|---|" + "---|" * len(columns))
for name, runs in rows.items():
    cells = []
    for c in columns:
        values = [r[c] for r in runs if c in r]
        cells.append(f"{sum(values) / len(values):.3g}" if values else "")
    print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
PY
