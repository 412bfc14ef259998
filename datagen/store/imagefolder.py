"""The ImageFolder output: OUT/<class folder>/<n>.png plus manifest.json, readable by torchvision's ImageFolder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.common.files import atomic_path, is_temporary, leftover_temporaries, safe_name, write_text
from datagen.data.formats import OUTPUT_MARK
from datagen.store.base import FORMAT_VERSION, MANIFEST, BaseWriter, check_resume, unwritable


PNG_DIGITS = 6  # 000000.png: sorts in write order up to a million images per class


def folder_names(class_names: list[str]) -> list[str]:
    """One safe, unique folder name per class, whose sorted order is the class order.

    torchvision's ImageFolder numbers classes by *sorted* folder name; when the sanitised names do not already sort
    in class order, a zero-padded index prefix (``0-T-shirt-top``) makes them. manifest.json keeps the real names.
    """
    taken = {MANIFEST.lower()}
    names = []
    for name in class_names:
        base = safe_name(name.replace("/", "-").replace(os.sep, "-"))  # 'T-shirt/top' -> 'T-shirt-top', not 'top'
        folder, n = base, 1
        while folder.lower() in taken:  # lower(): 'Cat' and 'cat' are one folder on macOS and Windows
            n += 1
            folder = f"{base}-{n}"
        taken.add(folder.lower())
        names.append(folder)
    if sorted(names) != names:
        width = len(str(len(names) - 1))
        names = [f"{i:0{width}d}-{name}" for i, name in enumerate(names)]
    return names


class FolderWriter(BaseWriter):
    """OUT/<folder>/<n>.png plus OUT/manifest.json, whose counts are the only trusted lengths."""

    def __init__(self, path: Path, manifest: dict):
        # self._counts *is* manifest["counts"]: counting a PNG updates the manifest that is written next
        super().__init__(path, tuple(manifest["image_shape"]), manifest["class_names"], manifest["counts"],
                         manifest.get("latent_dim"))
        self._manifest: dict | None = manifest
        self._folders = [path / name for name in manifest["folders"]]

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> FolderWriter:
        folders = folder_names(names)
        manifest = {OUTPUT_MARK: FORMAT_VERSION, "format": "imagefolder", "complete": False,
                    "image_shape": list(shape), "class_names": names, "folders": folders, "counts": [0] * len(names),
                    "provenance": prov, "latent_dim": latent_dim, **{key: [[] for _ in names] for key in _PER_IMAGE}}
        try:
            for folder in folders:
                (path / folder).mkdir(parents=True, exist_ok=True)
            _write_manifest(path, manifest)
        except OSError as error:
            raise unwritable(path, error) from None
        return cls(path, manifest)

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> FolderWriter:
        if not path.is_dir() or not (path / MANIFEST).is_file():
            raise DatagenError(f"{path} is not an ImageFolder output written by datagen (no {MANIFEST}): "
                               "choose another --out, or pass --format hdf5 if it is an HDF5 output")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            old = (manifest["image_shape"], manifest["class_names"], manifest["provenance"])
            _ = manifest["counts"], manifest["seed_index"], manifest["real"]
            check_folders(manifest["folders"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatagenError(f"cannot resume {path}: {MANIFEST} is unreadable ({error}); "
                               "pass --overwrite to start it again") from None
        check_resume(path, shape, names, prov, *old)  # first, as the HDF5 writer does: a changed setting is named
        if any(key not in manifest for key in _PER_IMAGE) or manifest.get("latent_dim") != latent_dim:
            raise DatagenError(f"cannot resume {path}: it was written by an older datagen, without each image's label "
                               "confidence and latent code; pass --overwrite to start it again")
        try:
            _drop_unrecorded(path, manifest)
            for folder in manifest["folders"]:
                (path / folder).mkdir(exist_ok=True)
        except OSError as error:
            raise unwritable(path, error) from None
        return cls(path, manifest)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        images, labels, *columns = self._batch(images, labels, seed_index, real, details)
        manifest = self._open()
        grey = self.image_shape[2] == 1
        per_image = dict(zip(_PER_IMAGE, (columns[0].tolist(), columns[1].astype(int).tolist(),
                                          *(np.round(c, 6).tolist() for c in columns[2:]))))
        if self.latent_dim is None:
            del per_image["latent"]
        try:
            for i, (image, label) in enumerate(zip(images, labels.tolist())):
                folder, n = self._folders[label], self._counts[label]
                final = folder / f"{n:0{PNG_DIGITS}d}.png"
                with atomic_path(final) as tmp:  # hidden: no reader ever sees a half-written PNG
                    Image.fromarray(image[..., 0] if grey else image).save(tmp, format="PNG")
                self._counts[label] += 1
                for key, values in per_image.items():
                    manifest[key][label].append(values[i])
            manifest["complete"] = False  # a resumed, finished output that grows is unfinished again
            _write_manifest(self.path, manifest)  # PNGs past the manifest's counts are dropped on resume
        except OSError as error:
            raise unwritable(self.path, error) from None

    def finish(self) -> None:
        manifest = self._open()
        manifest["complete"] = True
        _write_manifest(self.path, manifest)
        self.close()

    def close(self) -> None:
        self._manifest = None

    def _open(self) -> dict:
        if self._manifest is None:
            raise ValueError(f"the writer for {self.path} is closed")
        return self._manifest


_PER_IMAGE = ("seed_index", "real", "label_confidence", "noise", "latent")  # per class, one value per PNG


def check_folders(folders: list[str]) -> None:
    """Folder names from a manifest must be single safe path components: resume deletes files inside them."""
    bad = [folder for folder in folders if not isinstance(folder, str) or folder != safe_name(folder)]
    if bad:
        raise ValueError(f"unsafe class folder names {bad[:3]}")


def _write_manifest(root: Path, manifest: dict) -> None:
    """Atomically; one key per line with each value compact, so it stays readable and small."""
    lines = (f"  {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in manifest.items())
    write_text(root / MANIFEST, "{\n" + ",\n".join(lines) + "\n}\n")


def _drop_unrecorded(root: Path, manifest: dict) -> None:
    """Delete what a kill left behind: temp files, and PNGs written after the last manifest update."""
    for leftover in leftover_temporaries(root / MANIFEST):
        leftover.unlink()
    for folder, count in zip(manifest["folders"], manifest["counts"]):
        if not (root / folder).is_dir():
            continue
        for file in (root / folder).iterdir():
            number = _png_number(file.name)
            if is_temporary(file.name) or (number is not None and number >= count):
                file.unlink()
    for key in _PER_IMAGE:  # written together with counts, so already equal; cheap insurance
        manifest[key] = [values[:count] for values, count in zip(manifest[key], manifest["counts"])]


def _png_number(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "png" and stem.isdigit() else None
