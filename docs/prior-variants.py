"""Prior samples of trained runs under N(0, I) and under a Gaussian mixture fitted to E's codes afterwards,
beside the run's reconstructions of train images (README, "Sampling from the codes' density"). Each run keeps
its weights; the mixture is fitted the way training fits it (datagen.model.latent.Model.fit_prior: train
images, no labels, the run's seed). Images are measured against the dev split as `datagen evaluate --split
dev` measures prior samples.
Usage: python docs/prior-variants.py RUN [RUN ...]   (env: COMPONENTS, default "20")
"""
import dataclasses
import os
import sys
from pathlib import Path

import torch

from datagen.classify import reference
from datagen.data.pixels import to_uint8
from datagen.data.sources import load
from datagen.eval import quality
from datagen.model import checkpoint
from datagen.train import rundir

COMPONENTS = [int(c) for c in os.environ.get("COMPONENTS", "20").split(",")]
# "to train": the mean distance from an image to its nearest train image in the reference's features, as a multiple
# of the same for the dev images (real images the run never saw); well below 1 would mean copies of train images.
print("| run | latent | floor FID | images | FID | precision | recall | coverage | to train |")
print("|---|---|---|---|---|---|---|---|---|")
for run in map(Path, sys.argv[1:]):
    state = checkpoint.load(rundir.checkpoint_of(run))
    img = state["recipe"]["image"]
    how = dict(size=img["size"], channels=img["channels"], crop=img.get("crop"), square=state["dataset"].get("square"))
    train, dev = (load(state["dataset"]["source"], split, **how) for split in ("train", "dev"))
    ref = reference.load_or_fit(run, train, lambda: dev)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(dev)]  # as evaluate picks
    floor = quality.distribution_quality(ref, dev.images, train.images[pick], 0)["fid"]
    model = checkpoint.load_model(state)
    measured = {"N(0, I)": quality.prior_samples(model, len(dev), 0, gaussian=True),
                "reconstructions G(E(x)) of train images": to_uint8(model.decode_all(model.encode_all(train.images[pick])))}
    for k in COMPONENTS:
        latent = dataclasses.replace(model.recipe.latent, prior="mixture", mixture_components=k)
        model.recipe = dataclasses.replace(model.recipe, latent=latent)
        model.fit_prior(train.images, state["seed"])
        measured[f"mixture of {k}"] = quality.prior_samples(model, len(dev), 0)
    features = torch.inference_mode()(quality.ReferenceFeatures(ref.net))  # no autograd graph over every train image
    train_features = features(train.images)
    nearest_train = lambda images: torch.cdist(features(images), train_features).min(dim=1).values.mean().item()
    dev_nearest = nearest_train(dev.images)
    for prior, images in measured.items():
        q = quality.distribution_quality(ref, dev.images, images, 0)
        print(f"| {run.name} | {model.recipe.latent.dim} | {floor:.1f} | {prior} | {q['fid']:.1f} | {q['precision']:.2f} "
              f"| {q['recall']:.2f} | {q['coverage']:.2f} | {nearest_train(images) / dev_nearest:.2f} |", flush=True)
