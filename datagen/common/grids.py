"""What a person looks at: image grids (torchvision), written atomically."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from datagen.common.files import atomic_path


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Save float images in [-1, 1] (N, C, H, W) as one PNG grid, atomically."""
    with atomic_path(path) as tmp:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2,
                   pad_value=1.0)
    return path


def pairs_grid(originals: torch.Tensor, others: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Rows of originals, each followed by a row of their counterparts (e.g. reconstructions)."""
    rows = []
    for i in range(0, originals.shape[0], nrow):
        a, b = originals[i:i + nrow], others[i:i + nrow]
        blank = torch.ones((nrow - a.shape[0], *a.shape[1:]), dtype=a.dtype, device=a.device)  # a short last row
        rows += [torch.cat([a, blank]), torch.cat([b, blank])]  # is padded, so pairs stay one above the other
    return save_grid(torch.cat(rows), path, nrow=nrow)
