"""Pixels between storage and the nets: uint8 N×H×W×C <-> float N×C×H×W in [-1, 1], and the one pixel distance."""

from __future__ import annotations

import torch


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×C -> float32 N×C×H×W in [-1, 1]."""
    return images.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float N×C×H×W in [-1, 1] -> uint8 N×H×W×C."""
    pixels = ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous()


def pixel_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Per image, how far apart two batches of model input (float in [-1, 1]) are, on a 0..1 pixel scale.

    "l1": the mean absolute difference (reconstruction error, distance of a neighbour to its seed);
    "l2": the Euclidean norm of the difference (BiGAN's reconstruction ratio).
    """
    diff = (a - b).flatten(1) / 2
    return diff.abs().mean(1) if kind == "l1" else diff.norm(dim=1)
