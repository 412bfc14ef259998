"""What a person looks at: image grids (torchvision), rich progress bars and tables."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torchvision.utils import save_image

# Progress and messages go to stderr so stdout stays clean for machine-readable output.
console = Console(stderr=True, soft_wrap=True)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Save float images in [-1, 1] (N, C, H, W) as one PNG grid, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    save_image(images.detach().float().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2, pad_value=1.0)
    os.replace(tmp, path)
    return path


def pairs_grid(originals: torch.Tensor, others: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Rows of originals, each followed by a row of their counterparts (e.g. reconstructions)."""
    rows = []
    for i in range(0, originals.shape[0], nrow):
        a, b = originals[i:i + nrow], others[i:i + nrow]
        blank = torch.ones((nrow - a.shape[0], *a.shape[1:]), dtype=a.dtype, device=a.device)  # a short last row
        rows += [torch.cat([a, blank]), torch.cat([b, blank])]  # is padded, so pairs stay one above the other
    return save_grid(torch.cat(rows), path, nrow=nrow)


def progress() -> Progress:
    """The training/generation bar: description, bar, counts, free-form fields, elapsed, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
