"""How often the unlabeled images' labels are right: nearest seed code against label spreading at several k.

The hidden labels of the train images outside the labels budget are read only to score; nothing is chosen on
dev or test. Usage: python docs/label-spreading.py RUN [DRAWS] (labels budget: 10 per class, draws 0..DRAWS-1).
"""
import sys
from pathlib import Path

import torch

from datagen.data.imageset import draw_per_class
from datagen.data.sources import load
from datagen.generate.pseudo import nearest_seed, spread_labels
from datagen.model import checkpoint
from datagen.train import rundir

run, draws = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3
state = checkpoint.load(rundir.checkpoint_of(run))
model = checkpoint.load_model(state)
img = model.recipe.image
train = load(state["dataset"]["source"], "train", size=img.size, channels=img.channels, crop=img.crop)
z = model.encode_all(train.images)
n_classes = len(train.class_names)
print("| draw | nearest seed | k=5 | k=10 | k=20 | k=40 | k=10, most sure half |")
print("|---|---|---|---|---|---|---|")
for draw in range(draws):
    seeds = torch.cat(draw_per_class(train.labels, n_classes, 10, draw))
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[seeds] = False
    truth = train.labels[rest]
    cells = [(train.labels[seeds][nearest_seed(model, z[seeds], z[rest])] == truth).float().mean().item()]
    for k in (5, 10, 20, 40):
        labels, confidence, _ = spread_labels(model, z[seeds], train.labels[seeds], z[rest], n_classes, k)
        cells.append((labels == truth).float().mean().item())
        if k == 10:
            sure = confidence >= confidence.median()
            half = (labels[sure] == truth[sure]).float().mean().item()
    print(f"| {draw} | " + " | ".join(f"{100 * c:.1f}" for c in cells) + f" | {100 * half:.1f} |")
