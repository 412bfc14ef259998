"""A `torch.utils.data.Dataset` over an augment output (HDF5, ImageFolder or webdataset), for the user's own loop.

Rows come as (image, label): the image a uint8 C×H×W tensor (a torchvision `tv_tensors.Image`, which every
`torchvision.transforms.v2` transform takes), passed through `transform` when one is given. Per-row columns
(`targets`, `seed_index`, `real`, `label_confidence`, `noise`, `latent`) are read once, up front; images are read
on demand. Files (an HDF5 file, tar shards) are opened lazily in each process that reads from them, since open
handles do not survive pickling into DataLoader workers (nor, for h5py, a fork).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from datagen.common.errors import DatagenError
from datagen.data.formats import INCOMPLETE, OUTPUT_MANIFEST, OUTPUT_MARK, read_output_manifest
from datagen.data.hdf5 import h5_layout, open_h5
from datagen.store.hdf5 import read_provenance
from datagen.store.imagefolder import METADATA, check_folders, read_rows
from datagen.store.shards import missing_index_hint, part_lengths, source_chunks
from datagen.store.webdataset import check_shards


CACHE_LIMIT = 256 << 20  # bytes of decompressed image chunks each reading process may keep (h5py's default: 1 MiB)


class SyntheticDataset(torch.utils.data.Dataset):
    """An augment output as a Dataset: `SyntheticDataset("runs/latest/augmented.h5", transform=v2.Compose(...))`.

    Attributes (torchvision's ImageFolder names where it has one): `classes`, `class_to_idx`, `targets` (a list of
    ints), and per row as numpy arrays `seed_index`, `real` (a real seed written with --include-seeds),
    `label_confidence`, `noise` and `latent` (None when the output predates them), plus `image_shape` (H, W, C),
    `provenance` (how the output was made) and `format`. `in_memory=True` reads every image once, up front. `cache_bytes` caps the HDF5
    chunk cache of each reading process.
    """

    def __init__(self, path: str | Path, transform: Callable[[Any], Any] | None = None, in_memory: bool = False, *,
                 cache_bytes: int = CACHE_LIMIT):
        self.path = Path(path).expanduser()
        self.cache_bytes = cache_bytes
        self.transform = transform
        if self.path.is_dir():
            columns, self._pngs = _directory_columns(self.path)
        elif self.path.is_file():
            columns, self._pngs = _h5_columns(self.path), None
        else:
            raise DatagenError(missing_index_hint(self.path) or
                               f"{self.path} does not exist: give the --out of a `datagen augment` run "
                               "(an .h5 file, or an ImageFolder or webdataset directory)")
        self.format: str = columns["format"]
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
        self._images: torch.Tensor | None = None
        if in_memory:
            self._images = self._read_all()

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
        """Release the open files of this process (reading again reopens them)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5, self._h5_pid, self._h5_dataset = None, None, None
        if self._pngs is not None:
            self._pngs.close()

    def _image(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        if self._pngs is not None:
            return _decode(self._pngs.read(index), self._pngs.where(index), self.image_shape)
        return torch.from_numpy(self._h5_images()[index]).permute(2, 0, 1)

    def _h5_images(self) -> h5py.Dataset:
        if self._h5 is None or self._h5_pid != os.getpid():  # a handle inherited through fork is not ours to use
            self._h5, self._h5_pid = _open_cached(self.path, self.image_shape, self.cache_bytes), os.getpid()
            self._h5_dataset = self._h5["images"]  # looked up once: h5py builds a new Dataset object per lookup
        return self._h5_dataset

    def _read_all(self) -> torch.Tensor:
        if self._pngs is not None:
            out = torch.empty((len(self), self.image_shape[2], *self.image_shape[:2]), dtype=torch.uint8)
            for i in range(len(self)):
                out[i] = self._image(i)
            return out
        with open_h5(self.path) as f:
            return torch.from_numpy(f["images"][:len(self)]).permute(0, 3, 1, 2)


def _open_cached(path: Path, image_shape: tuple[int, int, int], limit: int) -> h5py.File:
    """The file with a chunk cache that holds the whole image set, up to `limit` bytes: random access then
    decompresses each chunk once per process instead of once per image.

    An index of shards reads them through virtual datasets, and HDF5 gives each shard file it opens a cache of
    the index's size (measured): the limit is shared out among the shards."""
    with open_h5(path) as f:
        images = f["images"]
        parts = part_lengths(f) or [len(images)]
        chunks = source_chunks(path, f) if images.is_virtual else images.chunks
    chunk_bytes = int(np.prod(chunks)) if chunks else 0
    total = max(parts) * int(np.prod(image_shape))
    limit //= len(parts)
    # limit 0: no cache, for comparison (bench read); an unchunked dataset has nothing to cache
    cache = min(total + chunk_bytes, limit) if limit > 0 and chunk_bytes else 0
    # HDF5's advice: about 100 hash slots per chunk the cache can hold, a prime number of them
    slots = _prime_at_least(100 * max(1, cache // max(1, chunk_bytes)))
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
        images, labels, class_names = h5_layout(f, path)
        columns: dict[str, Any] = {"format": "hdf5", "class_names": list(class_names), "labels": labels,
                                   "image_shape": tuple(int(v) for v in images.shape[1:]),
                                   "provenance": read_provenance(f),
                                   "seed_index": f["seed_index"][:len(labels)].astype(np.int64),
                                   "real": f["real"][:len(labels)].astype(bool)}
        for name in ("label_confidence", "noise", "latent"):
            if name in f:
                columns[name] = f[name][:len(labels)]
    return columns


def _directory_columns(root: Path) -> tuple[dict[str, Any], PngRows]:
    manifest = read_output_manifest(root)
    if manifest is None:
        raise DatagenError(f"{root} is not an output of `datagen augment` (no datagen {OUTPUT_MANIFEST}): give an "
                           "augment --out, or read a plain folder with torchvision.datasets.ImageFolder")
    if not manifest.get("complete", False):
        raise DatagenError(f"{root} is {INCOMPLETE}")
    webdataset = manifest.get("format") == "webdataset"
    try:
        names = [str(name) for name in manifest["class_names"]]
        (check_shards if webdataset else check_folders)(manifest["shards" if webdataset else "folders"])
        rows, pngs = _shard_rows(root, manifest) if webdataset else _folder_rows(root, manifest)
        labels = np.array([r["label"] for r in rows], dtype=np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)) or \
                np.bincount(labels, minlength=len(names)).tolist() != list(manifest["counts"]):
            raise ValueError(f"its per-image records do not add up to the counts of {OUTPUT_MANIFEST}")
        columns: dict[str, Any] = {
            "format": "webdataset" if webdataset else "imagefolder", "class_names": names, "labels": labels,
            "image_shape": tuple(int(v) for v in manifest["image_shape"]), "provenance": manifest.get("provenance", {}),
            "seed_index": np.array([r["seed_index"] for r in rows], dtype=np.int64),
            "real": np.array([bool(r["real"]) for r in rows], dtype=bool)}
        if rows and "label_confidence" in rows[0]:
            columns["label_confidence"] = np.array([r["label_confidence"] for r in rows], dtype=np.float32)
            columns["noise"] = np.array([r["noise"] for r in rows], dtype=np.float32)
        if rows and "latent" in rows[0]:
            columns["latent"] = np.array([r["latent"] for r in rows], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise DatagenError(f"{root} is damaged ({type(error).__name__}: {error}): run `datagen inspect {root}` to see "
                           "what is wrong") from None
    return columns, pngs


def _folder_rows(root: Path, manifest: dict) -> tuple[list[dict], PngRows]:
    folders = manifest["folders"]
    if manifest.get("metadata") == METADATA:
        rows, _ = read_rows(root, folders)
    else:  # written before metadata.jsonl: per-class lists in the manifest
        rows = [{"file_name": f"{folder}/{i:06d}.png", "label": label, "seed_index": manifest["seed_index"][label][i],
                 "real": manifest["real"][label][i]}
                for label, folder in enumerate(folders) for i in range(manifest["counts"][label])]
    return rows, PngRows([root / r["file_name"] for r in rows])


def _shard_rows(root: Path, manifest: dict) -> tuple[list[dict], PngRows]:
    """Each sample's JSON record, and where its PNG's bytes lie in its shard (tar members are stored as they are)."""
    rows: list[dict] = []
    shards = [root / shard["name"] for shard in manifest["shards"]]
    which, offsets, sizes = [], [], []
    for s, (path, shard) in enumerate(zip(shards, manifest["shards"])):
        try:
            with tarfile.open(path, mode="r:") as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                for member in members:
                    kind = member.name.split(".", 1)[-1]
                    if kind == "png":
                        which.append(s)
                        offsets.append(member.offset_data)
                        sizes.append(member.size)
                    elif kind == "json":
                        rows.append(json.loads(tar.extractfile(member).read()))
        except (OSError, tarfile.TarError, ValueError) as error:
            raise DatagenError(f"cannot read {path} ({error}): run `datagen inspect {root}` to see what is wrong") \
                from None
        if len(rows) != len(offsets) or len(rows) != sum(int(x["samples"]) for x in manifest["shards"][:s + 1]):
            raise DatagenError(f"{path} does not hold the {shard['samples']} png/json samples {OUTPUT_MANIFEST} "
                               f"records; run `datagen inspect {root}` to see what is wrong")
    return rows, PngRows(shards, np.array(which, dtype=np.int64), np.array(offsets, dtype=np.int64),
                         np.array(sizes, dtype=np.int64))


class PngRows:
    """Where each row's PNG lies: a whole file (ImageFolder), or a byte span of a tar shard (webdataset), whose
    handles are opened lazily, per reading process."""

    def __init__(self, files: list[Path], which: np.ndarray | None = None, offsets: np.ndarray | None = None,
                 sizes: np.ndarray | None = None):
        self.files, self.which, self.offsets, self.sizes = files, which, offsets, sizes
        self._handles: dict[int, Any] = {}
        self._pid: int | None = None

    def where(self, i: int) -> str:
        return str(self.files[i if self.which is None else self.which[i]])

    def read(self, i: int) -> bytes:
        if self.which is None:
            return self.files[i].read_bytes()
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        shard = int(self.which[i])
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = self.files[shard].open("rb")
        handle.seek(int(self.offsets[i]))
        return handle.read(int(self.sizes[i]))

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}, "_pid": None}


def _decode(png: bytes, where: str, shape: tuple[int, int, int]) -> torch.Tensor:
    h, w, c = shape
    try:
        with Image.open(io.BytesIO(png)) as img:
            pixels = np.asarray(img.convert("L" if c == 1 else "RGB"))
    except (OSError, ValueError) as error:
        raise DatagenError(f"cannot decode an image in {where} ({error}): run `datagen inspect` on the output") \
            from None
    if pixels.shape[:2] != (h, w):
        raise DatagenError(f"an image in {where} is {pixels.shape[1]}×{pixels.shape[0]}, not the output's {w}×{h}: "
                           "run `datagen inspect` on the output")
    return torch.from_numpy(pixels.reshape(h, w, c).copy()).permute(2, 0, 1)
