"""Conforming images to a recipe: squaring (centre crop or pad), antialiased resize, grey <-> RGB, in bounded-memory chunks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from datagen.common.errors import DatagenError


Progress = Callable[[int, int], None] | None
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601
_CHUNK_VALUES = 1 << 22  # values per conform chunk (once squared): bounds the float working set to ~16 MiB
MAX_UPSCALE = 2.0  # beyond this, resizing invents detail the model never saw: refuse rather than guess
SQUARE_MODES = ("crop", "pad")  # how a non-square image becomes square: its centre square, or padded (None: neither)
SQUARE_FLAGS = {"crop": "--crop center", "pad": "--pad"}  # the command-line option behind each mode
SQUARE_FIX = "pass --crop center (keep each image's centre square) or --pad (pad each to a square with black bars)"


def square_mode(crop: str | None, pad: bool) -> str | None:
    """The commands' --crop center / --pad as one choice: "crop", "pad" or None."""
    if crop is not None and crop != "center":
        raise DatagenError(f"--crop {crop}: --crop takes only 'center' (each image's largest centred square)")
    if crop is not None and pad:
        raise DatagenError("--crop center and --pad exclude each other: pick one way to square the images")
    return "crop" if crop is not None else "pad" if pad else None


def squared_side(h: int, w: int, square: str | None) -> int:
    """The side of an h×w image once squared: padding keeps the whole image, a centre crop (the default) the middle."""
    return max(h, w) if square == "pad" else min(h, w)


def check_safe_to_conform(spec: str, shape: tuple[int, int, int], size: int, channels: int, crop: int | None,
                          square: str | None = None, fix: str = SQUARE_FIX) -> None:
    """Refuse images a model of this size should not be fed after conversion (non-square, or far too small).

    Grey <-> RGB and dropping alpha are always safe; so is shrinking a square image or a crop. Non-square
    images without a recipe crop or an explicit `square` choice would lose their edges unasked, and
    upscaling the squared side more than MAX_UPSCALE times would feed the model blur it never saw. `fix` says
    how the caller's user chooses a way to square them.
    """
    h, w, _ = shape
    if crop is None and square is None and h != w:
        raise DatagenError(f"{spec}: images are {h}x{w} but the recipe takes square {size}x{size} images; "
                           f"{fix}, or make them square first")
    side = crop if crop is not None else squared_side(h, w, square)
    if size > side * MAX_UPSCALE:
        squared = f", {side}x{side} once squared" if crop is None and h != w else ""
        raise DatagenError(f"{spec}: images are {h}x{w}{squared}, too small for the recipe's {size}x{size} "
                           f"(more than {MAX_UPSCALE:g}x upscaling); use images of at least "
                           f"{math.ceil(size / MAX_UPSCALE)}x{math.ceil(size / MAX_UPSCALE)}, or a run trained at their size")


def conform(images: torch.Tensor, size: int, channels: int, crop: int | None = None,
            square: str | None = None) -> torch.Tensor:
    """uint8 N×H×W×C -> uint8 N×size×size×channels (squaring, antialiased bilinear resize, channel conversion)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DatagenError(f"images must be uint8 N×H×W×C, got {images.dtype} with shape {tuple(images.shape)}: "
                           "convert them to 8-bit images first")
    check_target(size, channels, crop, square)
    return gather(iter([images]), len(images), size, channels, crop, None, square)


def check_target(size: int, channels: int, crop: int | None, square: str | None = None) -> None:
    if size < 1:
        raise DatagenError(f"image size must be at least 1, got {size}: pick a positive size")
    if channels not in (1, 3):
        raise DatagenError(f"channels must be 1 (grey) or 3 (RGB), got {channels}: pick 1 or 3")
    if crop is not None and crop < 1:
        raise DatagenError(f"crop must be at least 1, got {crop}: pick a positive crop or leave it out")
    check_square(square)


def check_square(square: str | None) -> None:
    if square is not None and square not in SQUARE_MODES:
        raise DatagenError(f"square must be 'crop' or 'pad', got {square!r}: pick one, or None for neither")


def rows_per_chunk(shape: Iterable[int]) -> int:
    return max(1, _CHUNK_VALUES // int(np.prod(tuple(shape))))


def gather(chunks: Iterable[torch.Tensor], n: int, size: int, channels: int, crop: int | None,
            progress: Progress, square: str | None = None) -> torch.Tensor:
    """Conform native chunks one at a time into a preallocated output, so only the conformed set is held whole.

    Each chunk holds images of one size; padding grows them, so a chunk is conformed in pieces that stay
    within the working-set bound once squared.
    """
    out = torch.empty((n, size, size, channels), dtype=torch.uint8)
    done = 0
    for chunk in chunks:
        _, h, w, c = chunk.shape
        side = squared_side(h, w, square)
        rows = rows_per_chunk((side, side, c))
        for start in range(0, len(chunk), rows):
            piece = chunk[start:start + rows]
            out[done:done + len(piece)] = _conform_chunk(piece, size, channels, crop, square)
            done += len(piece)
        if progress is not None:
            progress(done, n)
    return out


def _pad_to_square(images: torch.Tensor) -> torch.Tensor:
    """N×H×W×C -> N×S×S×C with S = max(H, W), the image centred.

    The bars are black (zeros): one fixed value, the same in every image and plainly not content, so the
    model learns them as a border. Replicating or mirroring the edges would instead invent picture content
    the generator then reproduces as if it were real; a per-set mean colour would make the bars depend on the data.
    """
    n, h, w, c = images.shape
    if h == w:
        return images
    side = max(h, w)
    out = images.new_zeros((n, side, side, c))
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top:top + h, left:left + w] = images
    return out


def _conform_chunk(images: torch.Tensor, size: int, channels: int, crop: int | None,
                   square: str | None = None) -> torch.Tensor:
    if square == "pad":
        images = _pad_to_square(images)
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
