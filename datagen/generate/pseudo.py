"""Unlabeled images labelled by their nearest seed code: what `augment --unlabeled` grows from, and what
evaluate's real+pseudo arms train on directly (no G), so that a gain can be credited to G alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datagen.model.latent import Model


@torch.inference_mode()
def nearest_seed(model: Model, z_seeds: torch.Tensor, z_rest: torch.Tensor) -> torch.Tensor:
    """For each code of z_rest, the position in z_seeds of its nearest seed code (cosine about the sphere's centre)."""
    center = model.recipe.latent.center
    return (F.normalize(z_rest - center, dim=1) @ F.normalize(z_seeds - center, dim=1).T).argmax(1).cpu()
