"""Quality numbers for a generator/encoder pair: label fidelity and reconstruction error."""

from __future__ import annotations

import torch
from torch import nn

from datagen.classifier import predict


def label_fidelity(classifier: nn.Module, x: torch.Tensor, x_rec: torch.Tensor) -> float:
    """Share of images whose reconstruction the classifier labels the same as the original."""
    return (predict(classifier, x) == predict(classifier, x_rec)).float().mean().item()


def reconstruction_error(x: torch.Tensor, x_rec: torch.Tensor) -> float:
    """Mean absolute pixel error on a [0, 1] scale (images are in [-1, 1], hence the /2)."""
    return ((x - x_rec).abs().mean() / 2).item()
