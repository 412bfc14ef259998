"""Labels for the unlabeled images, from the labeled seeds' codes alone: what `augment --unlabeled` grows from,
and what evaluate's real+pseudo arms train on directly (no G), so that a gain can be credited to G alone.

Labels spread over a k-nearest-neighbour graph of E's codes (scikit-learn's LabelSpreading): an image far from
every seed takes the label of the chain of images that links it to one. Each unlabeled image also gets an
owner, the nearest seed of its label, so every output row names a labeled seed its label comes from.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.semi_supervised import LabelSpreading

from datagen.model.latent import Model

NEIGHBOURS = 10  # the graph's k (README, "Labels for the unlabeled images": chosen on dev)
ALPHA = 0.2  # how much of its own label a seed may give up to its neighbours (scikit-learn's default)


def _directions(model: Model, z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z - model.recipe.latent.center, dim=1)


@torch.inference_mode()
def nearest_seed(model: Model, z_seeds: torch.Tensor, z_rest: torch.Tensor) -> torch.Tensor:
    """For each code of z_rest, the position in z_seeds of its nearest seed code (cosine about the sphere's centre)."""
    return (_directions(model, z_rest) @ _directions(model, z_seeds).T).argmax(1).cpu()


def joins(confidence: torch.Tensor, min_label_confidence: float) -> torch.Tensor:
    """Which spread labels are kept: at least that sure, and reached at all (an image the graph never connects to a
    seed has no label mass, and its argmax label would be an arbitrary class)."""
    return (confidence >= min_label_confidence) & (confidence > 0)


@torch.inference_mode()
def spread_labels(model: Model, z_seeds: torch.Tensor, seed_labels: torch.Tensor, z_rest: torch.Tensor,
                  n_classes: int, neighbours: int = NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per code of z_rest: its label, the confidence of that label (its share of the spread label mass), and its
    owner (the position in z_seeds of the nearest seed of that label)."""
    seeds, rest = _directions(model, z_seeds).cpu(), _directions(model, z_rest).cpu()
    points = torch.cat([seeds, rest]).double().numpy()
    y = np.concatenate([seed_labels.cpu().numpy(), np.full(len(rest), -1)])
    spreading = LabelSpreading(kernel="knn", n_neighbors=min(neighbours, len(points) - 1), alpha=ALPHA, max_iter=100)
    with warnings.catch_warnings():  # a graph that has not settled in 100 rounds still gives usable labels
        warnings.simplefilter("ignore", ConvergenceWarning)
        spreading.fit(points, y)
    mass = torch.from_numpy(spreading.label_distributions_[len(seeds):]).float()
    mass = torch.nan_to_num(mass, nan=0.0)  # an image the graph never reaches: no label mass at all
    known = torch.from_numpy(spreading.classes_).long()  # the classes among the seeds, in label order
    confidence, which = mass.max(1)
    labels = known[which]
    similarity = rest @ seeds.T
    similarity[labels.unsqueeze(1) != seed_labels.cpu().unsqueeze(0)] = -2.0  # only seeds of the label may own it
    return labels, confidence, similarity.argmax(1)
