"""The classifier nets: the small CNN (monitor, filter), the downstream benchmark's CNN and the reference judge's net.

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


def downstream_cnn(channels: int, n_classes: int, width: int = 16, dropout: float = 0.3) -> nn.Sequential:
    """The benchmark's classifier: three conv blocks with batch norm, global average pooling, dropout.

    What a competent user trains on a few labels (normalisation, regularisation), kept narrow so that the
    benchmark's many fits stay cheap on a CPU; any image side >= 4.
    """
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(*block(channels, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2),
                         *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(4 * width, n_classes))


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
