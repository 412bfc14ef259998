"""A small CNN classifier: the label reference for fidelity monitoring (and, later, the filter).

It is deliberately cheap: a fixed number of optimiser steps, its own random generator (so
training it never disturbs the GAN's random stream), and one architecture for every image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datagen import speed


def small_cnn(channels: int, n_classes: int) -> nn.Sequential:
    """Two conv blocks and a pooled head: works for any image side >= 4."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, n_classes),
    )


def train_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, steps: int = 300,
                     batch_size: int = 128, seed: int = 0) -> nn.Sequential:
    """Train on float images in [-1, 1] (N, C, H, W) and int labels; returns the net in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    # Initialise under a private seed so the caller's global random stream is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = small_cnn(x.shape[1], n_classes).to(x.device)
    speed.prepare([net], speed.choose(x.device))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=gen).to(x.device)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.inference_mode()
def probabilities(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # in cache-sized chunks on CPU, where the first conv's full-resolution output then stays in cache
    return speed.chunked(lambda c: torch.softmax(net(c), 1), x)


@torch.inference_mode()
def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return speed.chunked(lambda c: net(c).argmax(1), x)
