"""Conforming images to a recipe: centre crop, antialiased resize, grey <-> RGB, in bounded-memory chunks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from datagen.common.errors import DatagenError


Progress = Callable[[int, int], None] | None
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601
_CHUNK_VALUES = 1 << 22  # native values per conform chunk: bounds the float working set to ~16 MiB
MAX_UPSCALE = 2.0  # beyond this, resizing invents detail the model never saw: refuse rather than guess


def check_safe_to_conform(spec: str, shape: tuple[int, int, int], size: int, channels: int, crop: int | None) -> None:
    """Refuse images a model of this size should not be fed after conversion (non-square, or far too small).

    Grey <-> RGB and dropping alpha are always safe; so is shrinking a square image or a crop. Non-square
    images without a recipe crop would lose their edges, and upscaling more than MAX_UPSCALE times would
    feed the model blur it never saw.
    """
    h, w, _ = shape
    if crop is None and h != w:
        raise DatagenError(f"{spec}: images are {h}x{w} but the recipe takes square {size}x{size} images; "
                           "crop or pad them to a square first")
    side = crop if crop is not None else min(h, w)
    if size > side * MAX_UPSCALE:
        raise DatagenError(f"{spec}: images are {h}x{w}, too small for the recipe's {size}x{size} "
                           f"(more than {MAX_UPSCALE:g}x upscaling); use images of at least "
                           f"{math.ceil(size / MAX_UPSCALE)}x{math.ceil(size / MAX_UPSCALE)}, or a run trained at their size")


def conform(images: torch.Tensor, size: int, channels: int, crop: int | None = None) -> torch.Tensor:
    """uint8 N×H×W×C -> uint8 N×size×size×channels (centre crop, antialiased bilinear resize, channel conversion)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DatagenError(f"images must be uint8 N×H×W×C, got {images.dtype} with shape {tuple(images.shape)}: "
                           "convert them to 8-bit images first")
    check_target(size, channels, crop)
    rows = rows_per_chunk(images.shape[1:])
    chunks = (images[start:start + rows] for start in range(0, len(images), rows))
    return gather(chunks, len(images), size, channels, crop, None)


def check_target(size: int, channels: int, crop: int | None) -> None:
    if size < 1:
        raise DatagenError(f"image size must be at least 1, got {size}: pick a positive size")
    if channels not in (1, 3):
        raise DatagenError(f"channels must be 1 (grey) or 3 (RGB), got {channels}: pick 1 or 3")
    if crop is not None and crop < 1:
        raise DatagenError(f"crop must be at least 1, got {crop}: pick a positive crop or leave it out")


def rows_per_chunk(shape: Iterable[int]) -> int:
    return max(1, _CHUNK_VALUES // int(np.prod(tuple(shape))))


def gather(chunks: Iterable[torch.Tensor], n: int, size: int, channels: int, crop: int | None,
            progress: Progress) -> torch.Tensor:
    """Conform native chunks one at a time into a preallocated output, so only the conformed set is held whole."""
    out = torch.empty((n, size, size, channels), dtype=torch.uint8)
    done = 0
    for chunk in chunks:
        out[done:done + len(chunk)] = _conform_chunk(chunk, size, channels, crop)
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    return out


def _conform_chunk(images: torch.Tensor, size: int, channels: int, crop: int | None) -> torch.Tensor:
    _, h, w, c = images.shape
    if c not in (1, 3, 4):
        raise DatagenError(f"images have {c} channels: only grey (1), RGB (3) or RGBA (4) images are supported")
    if crop is not None and crop > min(h, w):
        raise DatagenError(f"crop {crop} is larger than the {h}×{w} images: pick a crop of at most {min(h, w)}")
    side = crop if crop is not None else min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, top:top + side, left:left + side, :min(c, 3)]  # [:3] drops alpha
    c = images.shape[-1]
    if side == size and c == channels:
        return images
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    if c == 3 and channels == 1:  # luma before resizing: a third of the interpolation work
        x = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if c == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
