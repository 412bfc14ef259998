"""What the latent-space tools read and write: a run's E and G, IMAGE specs, datasets, and the PNG they draw.

An IMAGE is a path to an image file, or DATASET:INDEX for the image at position INDEX of a dataset's test
split. Pictures go to --out (a .png path or a folder), by default RUN/figures/<command>-<what>.png.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.common.files import safe_name
from datagen.data.conform import check_safe_to_conform, conform
from datagen.data.imageset import ImageSet
from datagen.data.pixels import to_model_input
from datagen.data.sources import dataset_names, load, probe
from datagen.model import checkpoint
from datagen.model.device import pick_device
from datagen.model.latent import Model
from datagen.train import rundir


_DATASET_SUFFIXES = {".h5", ".hdf5"}
# The tools square images as the run's training did; they have no --crop/--pad of their own.
_SQUARE_FIX = "a run trained with --crop center or --pad squares them the same way"


@dataclass
class Run:
    model: Model
    state: dict[str, Any]
    ckpt: Path
    device: torch.device
    _test_sets: dict[str, ImageSet] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.state["dataset"]["source"]

    @property
    def square(self) -> str | None:
        """How the run's training squared its images ("crop", "pad"; None also for runs from before it was recorded):
        the tools square every dataset and image file the same way."""
        return self.state["dataset"].get("square")

    @property
    def center(self) -> float:
        return self.model.recipe.latent.center


def open_run(run: str | Path, device: str) -> Run:
    ckpt = rundir.checkpoint_of(Path(run))
    state = checkpoint.load(ckpt)
    dev = pick_device(device)
    return Run(model=checkpoint.load_model(state, dev), state=state, ckpt=ckpt, device=dev)


def _is_own(r: Run, spec: str) -> bool:
    """The run's training data: conformed at training time already, so no safety check applies."""
    return spec == r.source or Path(spec).expanduser().resolve() == Path(r.source)


def load_split(r: Run, spec: str | None, split: str) -> ImageSet:
    spec = spec or r.source
    if split == "test" and spec in r._test_sets:
        return r._test_sets[spec]
    img = r.model.recipe.image
    if not _is_own(r, spec):  # other data must convert safely, as augment's --seeds must
        check_safe_to_conform(spec, probe(spec, square=r.square), img.size, img.channels, img.crop, r.square, _SQUARE_FIX)
    loaded = load(spec, split, size=img.size, channels=img.channels, crop=img.crop, square=r.square)
    if len(loaded) == 0:
        raise DatagenError(f"{spec} has no {split} images: give a dataset with at least five images per class")
    if split == "test":
        r._test_sets[spec] = loaded
    return loaded


def _read_file(path: Path) -> torch.Tensor:
    """One image file as uint8 H×W×C (grey stays grey, alpha is dropped)."""
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey: keep the high byte, as data.py does
                return torch.from_numpy((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)[..., None])
            grey = img.mode in ("1", "L", "LA", "I", "F")
            pixels = np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise DatagenError(f"cannot read image {path} ({type(error).__name__}): give a PNG, JPEG or other image file") from None
    return torch.from_numpy(np.array(pixels[..., None] if grey else pixels))  # a writable copy for torch


def _dataset_index(spec: str) -> tuple[str, int] | None:
    """('mnist-5k', 17) for 'mnist-5k:17'; None when spec is not of that form."""
    name, sep, index = spec.rpartition(":")
    return (name, int(index)) if sep and name and index.isdigit() else None


def image_of(r: Run, spec: str) -> torch.Tensor:
    """One IMAGE spec as uint8 H×W×C at the run's size and channels."""
    img = r.model.recipe.image
    if not spec.strip():
        raise DatagenError("an empty IMAGE: give an image file, or DATASET:INDEX for an image of a dataset's test split")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() not in _DATASET_SUFFIXES:
        pixels = _read_file(path)
        check_safe_to_conform(spec, tuple(pixels.shape), img.size, img.channels, img.crop, r.square, _SQUARE_FIX)
        return conform(pixels[None], img.size, img.channels, img.crop, r.square)[0]
    parsed = _dataset_index(spec)
    if parsed is None:
        if path.is_dir() or path.suffix.lower() in _DATASET_SUFFIXES or spec in dataset_names():
            raise DatagenError(f"{spec} is a dataset, not one image: pick one of its test images with {spec}:INDEX")
        raise DatagenError(f"no image file {spec}: give an image file, or DATASET:INDEX for an image of a "
                           f"dataset's test split (e.g. {r.source if '/' not in r.source else 'DATASET'}:0)")
    name, index = parsed
    test = load_split(r, name, "test")
    if index >= len(test):
        raise DatagenError(f"{spec}: the test split of {name} has {len(test)} images; use an INDEX from 0 to {len(test) - 1}")
    return test.images[index]


def images_of(r: Run, specs: Sequence[str]) -> torch.Tensor:
    """IMAGE specs as model input (float N×C×H×W in [-1, 1]) on the run's device."""
    if not specs:
        raise DatagenError("no IMAGE given: give an image file or DATASET:INDEX")
    return to_model_input(torch.stack([image_of(r, s) for s in specs])).to(r.device)


def names_a_dataset(spec: str) -> bool:
    path = Path(spec).expanduser()
    return spec in dataset_names() or path.is_dir() or (path.is_file() and path.suffix.lower() in _DATASET_SUFFIXES)


def target(r: Run, out: str | Path | None, name: str) -> Path:
    """--out as given (a .png file, or a folder to put the default name in), else RUN/figures/name."""
    if out is None:
        return rundir.folder_of(r.ckpt) / "figures" / name
    out = Path(out)
    if out.is_dir():
        return out / name
    if out.suffix.lower() != ".png":
        raise DatagenError(f"--out {out}: the picture is a PNG; give a path ending in .png, or a folder")
    return out


def write(save: Any, path: Path) -> Path:
    """Run a saver, turning an unwritable place into one line instead of a traceback."""
    try:
        return save(path)
    except OSError as exc:
        raise DatagenError(f"cannot write {path} ({exc.strerror or exc}); choose a writable --out") from None


def tag(spec: str) -> str:
    """A short file-name part for a user's IMAGE or dataset spec (sanitised; never a path)."""
    path = Path(spec).expanduser()
    return safe_name(path.stem if path.is_file() else spec)[:40]


def check_positive(value: int, option: str) -> None:
    if value < 1:
        raise DatagenError(f"{option} {value}: use at least 1")


def check_noise(scales: Sequence[float], option: str) -> None:
    if not scales or any(not math.isfinite(s) or s < 0 for s in scales):
        raise DatagenError(f"{option}: give one or more noise scales >= 0, e.g. {option} 0.1,0.3,1.0")
