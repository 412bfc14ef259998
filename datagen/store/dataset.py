"""A `torch.utils.data.Dataset` over an augment output (HDF5 or ImageFolder), for the user's own training loop.

Rows come as (image, label): the image a uint8 C×H×W tensor (a torchvision `tv_tensors.Image`, which every
`torchvision.transforms.v2` transform takes), passed through `transform` when one is given. Per-row columns
(`targets`, `seed_index`, `real`, `label_confidence`, `noise`, `latent`) are read once, up front; images are read
on demand. An HDF5 file is opened lazily in each process that reads from it, since h5py handles do not survive
pickling into DataLoader workers (nor a fork).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from datagen.common.errors import DatagenError
from datagen.data.formats import OUTPUT_MANIFEST, OUTPUT_MARK
from datagen.data.hdf5 import h5_layout, open_h5
from datagen.store.hdf5 import read_provenance
from datagen.store.imagefolder import METADATA, check_folders, read_rows


CACHE_LIMIT = 256 << 20  # bytes of decompressed image chunks each reading process may keep (h5py's default: 1 MiB)
_INCOMPLETE = "finish it with `datagen augment --resume` or regenerate it"


class SyntheticDataset(torch.utils.data.Dataset):
    """An augment output as a Dataset: `SyntheticDataset("runs/latest/augmented.h5", transform=v2.Compose(...))`.

    Attributes (torchvision's ImageFolder names where it has one): `classes`, `class_to_idx`, `targets` (a list of
    ints), and per row as numpy arrays `seed_index`, `real` (a real seed written with --include-seeds),
    `label_confidence`, `noise` and `latent` (None when the output predates them), plus `provenance` (how the
    output was made) and `format`. `in_memory=True` reads every image once, up front. `cache_bytes` caps the HDF5
    chunk cache of each reading process.
    """

    def __init__(self, path: str | Path, transform: Callable[[Any], Any] | None = None, in_memory: bool = False, *,
                 cache_bytes: int = CACHE_LIMIT):
        self.path = Path(path).expanduser()
        self.cache_bytes = cache_bytes
        self.transform = transform
        if self.path.is_dir():
            columns, self._files = _folder_columns(self.path)
            self.format = "imagefolder"
        elif self.path.is_file():
            columns, self._files = _h5_columns(self.path), None
            self.format = "hdf5"
        else:
            raise DatagenError(f"{self.path} does not exist: give the --out of a `datagen augment` run "
                               "(an .h5 file or an ImageFolder directory)")
        self.classes: list[str] = columns["class_names"]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        labels = columns["labels"]
        self.targets: list[int] = labels.tolist()
        self.seed_index: np.ndarray = columns["seed_index"]
        self.real: np.ndarray = columns["real"]
        self.label_confidence: np.ndarray | None = columns.get("label_confidence")
        self.noise: np.ndarray | None = columns.get("noise")
        self.latent: np.ndarray | None = columns.get("latent")
        self.provenance: dict = columns["provenance"]
        self.image_shape: tuple[int, int, int] = columns["image_shape"]
        self._h5: h5py.File | None = None
        self._h5_dataset: h5py.Dataset | None = None
        self._h5_pid: int | None = None
        self._images: torch.Tensor | None = self._read_all() if in_memory else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} images")
        index %= len(self)
        image = tv_tensors.Image(self._image(index))
        return (self.transform(image) if self.transform is not None else image), self.targets[index]

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        return np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes)).tolist()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_h5_pid"], state["_h5_dataset"] = None, None, None  # each worker opens its own
        return state

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5, self._h5_pid, self._h5_dataset = None, None, None

    def _image(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        if self._files is not None:
            return _decode(self._files[index], self.image_shape[2])
        return torch.from_numpy(self._h5_images()[index]).permute(2, 0, 1)

    def _h5_images(self) -> h5py.Dataset:
        if self._h5 is None or self._h5_pid != os.getpid():  # a handle inherited through fork is not ours to use
            self._h5, self._h5_pid = _open_cached(self.path, self.image_shape, self.cache_bytes), os.getpid()
            self._h5_dataset = self._h5["images"]  # looked up once: h5py builds a new Dataset object per lookup
        return self._h5_dataset

    def _read_all(self) -> torch.Tensor:
        if self._files is not None:
            return torch.stack([_decode(file, self.image_shape[2]) for file in self._files]) if self._files else \
                torch.zeros((0, self.image_shape[2], *self.image_shape[:2]), dtype=torch.uint8)
        with open_h5(self.path) as f:
            return torch.from_numpy(f["images"][:len(self)]).permute(0, 3, 1, 2)


def _open_cached(path: Path, image_shape: tuple[int, int, int], limit: int) -> h5py.File:
    """The file with a chunk cache that holds the whole image set, up to `limit` bytes: random access then
    decompresses each chunk once per process instead of once per image."""
    with open_h5(path) as f:
        images = f["images"]
        chunk_bytes = int(np.prod(images.chunks)) if images.chunks else 1
        total = len(images) * int(np.prod(image_shape))
    cache = min(total + chunk_bytes, limit) if limit > 0 else 0  # 0: no cache, for comparison (bench read)
    # HDF5's advice: about 100 hash slots per chunk the cache can hold, a prime number of them
    slots = _prime_at_least(100 * max(1, cache // chunk_bytes))
    return h5py.File(path, "r", rdcc_nbytes=cache, rdcc_nslots=slots, rdcc_w0=1.0)


def _prime_at_least(n: int) -> int:
    n |= 1
    while any(n % d == 0 for d in range(3, int(n ** 0.5) + 1, 2)):
        n += 2
    return n


def _h5_columns(path: Path) -> dict[str, Any]:
    with open_h5(path) as f:
        if OUTPUT_MARK not in f.attrs:
            raise DatagenError(f"{path} is an HDF5 file that datagen did not write: give an output of "
                               "`datagen augment` (or read it with datagen.data.load)")
        if not bool(f.attrs.get("complete", False)):
            raise DatagenError(f"{path} is incomplete (an interrupted write); {_INCOMPLETE}")
        images, labels, class_names = h5_layout(f, path)
        columns: dict[str, Any] = {"class_names": list(class_names), "labels": labels,
                                   "image_shape": tuple(int(v) for v in images.shape[1:]),
                                   "provenance": read_provenance(f),
                                   "seed_index": f["seed_index"][:len(labels)].astype(np.int64),
                                   "real": f["real"][:len(labels)].astype(bool)}
        for name in ("label_confidence", "noise", "latent"):
            if name in f:
                columns[name] = f[name][:len(labels)]
    return columns


def _folder_columns(root: Path) -> tuple[dict[str, Any], list[Path]]:
    try:
        manifest = json.loads((root / OUTPUT_MANIFEST).read_text())
        if not isinstance(manifest, dict) or OUTPUT_MARK not in manifest:
            raise KeyError(OUTPUT_MARK)
        folders, names = manifest["folders"], [str(name) for name in manifest["class_names"]]
        check_folders(folders)
    except (OSError, ValueError, KeyError, TypeError):
        raise DatagenError(f"{root} is not an ImageFolder output of `datagen augment` (no readable "
                           f"{OUTPUT_MANIFEST}): give an augment --out, or read a plain folder with "
                           "torchvision.datasets.ImageFolder") from None
    if not manifest.get("complete", False):
        raise DatagenError(f"{root} is incomplete (an interrupted write); {_INCOMPLETE}")
    if manifest.get("metadata") == METADATA:
        rows, _ = read_rows(root, folders)
    else:  # written before metadata.jsonl: per-class lists in the manifest
        rows = [{"file_name": f"{folder}/{i:06d}.png", "label": label, "seed_index": manifest["seed_index"][label][i],
                 "real": manifest["real"][label][i]}
                for label, folder in enumerate(folders) for i in range(manifest["counts"][label])]
    if [sum(1 for r in rows if r["label"] == k) for k in range(len(names))] != manifest["counts"]:
        raise DatagenError(f"{root}: {METADATA} does not record the {sum(manifest['counts'])} images "
                           f"{OUTPUT_MANIFEST} counts; run `datagen inspect {root}` to see what is wrong")
    columns: dict[str, Any] = {
        "class_names": names, "labels": np.array([r["label"] for r in rows], dtype=np.int64),
        "image_shape": tuple(int(v) for v in manifest["image_shape"]), "provenance": manifest.get("provenance", {}),
        "seed_index": np.array([r["seed_index"] for r in rows], dtype=np.int64),
        "real": np.array([bool(r["real"]) for r in rows], dtype=bool)}
    if rows and "label_confidence" in rows[0]:
        columns["label_confidence"] = np.array([r["label_confidence"] for r in rows], dtype=np.float32)
        columns["noise"] = np.array([r["noise"] for r in rows], dtype=np.float32)
    if rows and "latent" in rows[0]:
        columns["latent"] = np.array([r["latent"] for r in rows], dtype=np.float32)
    return columns, [root / r["file_name"] for r in rows]


def _decode(file: Path, channels: int) -> torch.Tensor:
    try:
        with Image.open(file) as img:
            pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError) as error:
        raise DatagenError(f"cannot decode {file} ({error}): run `datagen inspect` on the output") from None
    return torch.from_numpy(pixels.reshape(*pixels.shape[:2], channels).copy()).permute(2, 0, 1)
