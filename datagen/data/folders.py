"""ImageFolder trees as a source: one sub-folder per class, decoded lazily in chunks of one image size each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.data.conform import SQUARE_FIX, rows_per_chunk, squared_side
from datagen.data.formats import INCOMPLETE, OUTPUT_RULE, output_format, read_output_manifest
from datagen.data.imageset import EVERY_FIFTH_RULE, Selection, every_fifth, whole


_IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def scan_folder(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image files (sorted by class, then name), their labels, and the sorted class names."""
    if output_format(root) == "webdataset":
        raise DatagenError(f"{root} is a webdataset output, which datagen reads only as datagen.SyntheticDataset: "
                           "to train on generated images or grow from them, write them with --format hdf5 or imagefolder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        members = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith(".")
                         and p.suffix.lower() in _IMAGE_EXTENSIONS)
        if not members:
            raise DatagenError(f"class folder {root / name} contains no images: add .png/.jpg files or remove it")
        files += members
        labels += [label] * len(members)
    if not files:
        raise DatagenError(f"{root} contains no images: expected one sub-folder per class holding .png/.jpg files")
    return files, np.array(labels, dtype=np.int64), tuple(classes)


def _unreadable(path: Path, root: Path, error: Exception) -> DatagenError:
    return DatagenError(f"cannot read image {path.relative_to(root)} in {root} ({type(error).__name__}: {error}): "
                        "remove or replace the file")


def read_header(path: Path, root: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode, from the header only (no pixel decoding)."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise _unreadable(path, root, error) from error


def decode(path: Path, root: Path, grey: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey: keep the high byte instead of clipping at 255
                return (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)[..., None]
            pixels = np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(path, root, error) from error
    return pixels[..., None] if grey else pixels


def probe_folder(root: Path, square: str | None) -> tuple[int, int, int]:
    """(H, W, C) a folder's images are conformed from: unsquared, the first image's (all must share it); squared,
    the smallest image's square, so the upscaling guard judges the image that needs it most."""
    files, _, _ = scan_folder(root)
    if square is None:
        (w, h), mode = read_header(files[0], root)
        return h, w, 1 if mode in GREY_MODES else 3
    headers = [read_header(path, root) for path in files]
    side = min(squared_side(h, w, square) for (w, h), _ in headers)
    return side, side, 1 if all(mode in GREY_MODES for _, mode in headers) else 3


def select_folder(root: Path, split: str, square: str | None = None) -> Selection:
    """One split of an ImageFolder tree; mixed image sizes only with a `square` choice (each image squared alone)."""
    files, labels, class_names = scan_folder(root)
    headers = [read_header(path, root) for path in files]
    if square is None:
        _check_one_size(root, files, headers)
    # One colour file makes the whole set RGB: grey -> RGB loses nothing, the reverse would.
    grey = all(mode in GREY_MODES for _, mode in headers)
    generated = _is_output(root)
    picked = whole(len(labels), split) if generated else every_fifth(labels, split)
    sizes = [headers[i][0] for i in picked]

    def chunks() -> Iterator[torch.Tensor]:
        # A chunk is one tensor, so one size: runs of consecutive same-size images, each within the memory bound.
        start = 0
        while start < len(picked):
            w, h = sizes[start]
            end = min(start + rows_per_chunk((h, w, 1 if grey else 3)), len(picked))
            end = next((i for i in range(start + 1, end) if sizes[i] != sizes[start]), end)
            yield torch.from_numpy(np.stack([decode(files[i], root, grey) for i in picked[start:end]]))
            start = end

    return Selection(chunks(), labels[picked], picked, class_names, OUTPUT_RULE if generated else EVERY_FIFTH_RULE)


def _check_one_size(root: Path, files: list[Path], headers: list[tuple[tuple[int, int], str]]) -> None:
    sizes: dict[tuple[int, int], Path] = {}
    for path, (size, _) in zip(files, headers):
        sizes.setdefault(size, path)
    if len(sizes) > 1:
        (a, a_path), (b, b_path) = list(sizes.items())[:2]
        raise DatagenError(f"mixed image sizes in {root}: {a_path.relative_to(root)} is {a[0]}×{a[1]}, "
                           f"{b_path.relative_to(root)} is {b[0]}×{b[1]}; {SQUARE_FIX} to square and resize each "
                           "image, or resize them to one size first")


def _is_output(root: Path) -> bool:
    """Whether the folder is a datagen ImageFolder output (its manifest says so); an unfinished one is refused."""
    manifest = read_output_manifest(root)
    if manifest is None:
        return False
    if not manifest.get("complete", False):
        raise DatagenError(f"{root} is {INCOMPLETE}")
    return True
