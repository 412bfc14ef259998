"""The classifier nets: the small CNN (monitor, filter, downstream benchmark) and the reference judge's net.

The small CNN is deliberately cheap and size-agnostic. The reference net is a different architecture on
purpose (PyTorch's MNIST-example CNN, pooled early, with dropout), so that it judges independently.
"""

from __future__ import annotations

import torch
from torch import nn


def small_cnn(channels: int, n_classes: int) -> nn.Sequential:
    """Two conv blocks and a pooled head: works for any image side >= 4."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, n_classes),
    )


class ReferenceNet(nn.Module):
    """PyTorch's MNIST-example CNN, pooled early, any image size: `features` (128-d) is the space FID-style numbers use."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # pool early: far cheaper on a CPU
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Dropout(0.25), nn.AdaptiveMaxPool2d(6), nn.Flatten(),
            nn.Linear(64 * 36, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
