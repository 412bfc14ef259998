"""The table of docs/generator-variants.sh: one row per variant, its numbers averaged over its trainings.
Usage: python docs/variant-table.py OUT"""
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
        if sigma > 0 and recon and r["distance_to_seed"] is not None:
            tag = " filter" if filtered else ""  # with the filter: what augment writes at >= 10 seeds per class
            row[f"dist x{sigma}{tag}"] = r["distance_to_seed"] / recon
            row[f"agree {sigma}{tag}"] = r["agreement"]
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
