"""HDF5 files as a source: dataset 'images' (uint8 N×H×W×C) and 'labels', read in contiguous blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.common.errors import DatagenError
from datagen.data.conform import rows_per_chunk
from datagen.data.formats import INCOMPLETE, OUTPUT_MARK, OUTPUT_RULE
from datagen.data.imageset import EVERY_FIFTH_RULE, Selection, every_fifth, whole
from datagen.data.shard_index import require_shards


_LAYOUT = "expected dataset 'images' (uint8 N×H×W×C) and dataset 'labels' (integer N)"


def open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatagenError(f"cannot open {path} as HDF5 ({error}): give an .h5 file written by datagen "
                           f"({_LAYOUT})") from error


def h5_layout(f: h5py.File, path: Path) -> tuple[h5py.Dataset, np.ndarray, tuple[str, ...]]:
    """Validated images dataset (left on disk), labels and class names of an open HDF5 file."""
    if not bool(f.attrs.get("complete", True)):
        raise DatagenError(f"{path} is {INCOMPLETE}")
    require_shards(path, f)  # an index of shards: a missing one would read as fill values, silently
    for key in ("images", "labels"):
        if not isinstance(f.get(key), h5py.Dataset):
            raise DatagenError(f"{path} has no dataset '{key}': {_LAYOUT}")
    images = f["images"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatagenError(f"{path}: 'images' is {images.dtype} with shape {images.shape}: {_LAYOUT}")
    labels = np.asarray(f["labels"][()])
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise DatagenError(f"{path}: 'labels' is {labels.dtype} with shape {labels.shape} for {len(images)} "
                           f"images: {_LAYOUT}")
    labels = labels.astype(np.int64)
    class_names = _h5_class_names(f.attrs.get("class_names"), labels, path)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DatagenError(f"{path}: labels must lie in 0..{len(class_names) - 1} (one per class name): "
                           "fix the labels or the 'class_names' attribute")
    return images, labels, class_names


def _h5_class_names(attr: object, labels: np.ndarray, path: Path) -> tuple[str, ...]:
    if attr is None:
        return tuple(str(k) for k in range(int(labels.max(initial=-1)) + 1))
    if isinstance(attr, bytes):
        attr = attr.decode()
    try:
        names = json.loads(attr) if isinstance(attr, str) else list(attr)
    except (ValueError, TypeError):
        names = None
    if not isinstance(names, list):
        raise DatagenError(f"{path}: attribute 'class_names' is not a JSON list or an array of strings: "
                           'rewrite it, e.g. \'["cat", "dog"]\'')
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def select_h5(path: Path, split: str) -> Selection:
    with open_h5(path) as f:
        _, labels, class_names = h5_layout(f, path)
        generated = OUTPUT_MARK in f.attrs
    picked = whole(len(labels), split) if generated else every_fifth(labels, split)

    def chunks() -> Iterator[torch.Tensor]:
        # Contiguous block reads, then pick rows in memory: h5py fancy indexing is slow for long index lists.
        with open_h5(path) as f:
            images = f["images"]
            rows = rows_per_chunk(images.shape[1:])
            for start in range(0, len(images), rows):
                block = images[start:start + rows]
                wanted = picked[(picked >= start) & (picked < start + rows)] - start
                if len(wanted):
                    block = block[wanted]
                    yield torch.from_numpy(block[..., None] if block.ndim == 3 else block)

    return Selection(chunks(), labels[picked], picked, class_names, OUTPUT_RULE if generated else EVERY_FIFTH_RULE)
