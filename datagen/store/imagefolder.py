"""The ImageFolder output: OUT/<class folder>/<n>.png, metadata.jsonl and manifest.json.

Readable by torchvision's ImageFolder, by Hugging Face's `imagefolder` loader (metadata.jsonl) and by
datagen.SyntheticDataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from datagen.common.errors import DatagenError
from datagen.common.files import atomic_path, is_temporary, leftover_temporaries, safe_name
from datagen.data.formats import OUTPUT_MARK
from datagen.store.base import (FORMAT_VERSION, MANIFEST, ManifestWriter, check_resume, png_bytes, row_record,
                                unwritable, write_manifest)


PNG_DIGITS = 6  # 000000.png: sorts in write order up to a million images per class
METADATA = "metadata.jsonl"  # one JSON line per image: the layout Hugging Face's `imagefolder` loader reads


def folder_names(class_names: list[str]) -> list[str]:
    """One safe, unique folder name per class, whose sorted order is the class order.

    torchvision's ImageFolder numbers classes by *sorted* folder name; when the sanitised names do not already sort
    in class order, a zero-padded index prefix (``0-T-shirt-top``) makes them. manifest.json keeps the real names.
    """
    taken = {MANIFEST.lower(), METADATA.lower()}
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




class FolderWriter(ManifestWriter):
    """OUT/<folder>/<n>.png, OUT/metadata.jsonl (a line per PNG, appended) and a small OUT/manifest.json.

    metadata.jsonl is the only trusted record of what was written: a batch's PNGs are written first, then its lines
    are appended in one write, so a kill leaves at most PNGs without a line (deleted on resume) or a last line cut
    short (truncated on resume). manifest.json holds what is per output (class names, folders, provenance) and is
    rewritten only when the output's state changes, so writing N images costs O(N), not O(N²) as a manifest of
    per-image lists rewritten after every batch did.
    """

    def __init__(self, path: Path, manifest: dict, counts: list[int]):
        super().__init__(path, tuple(manifest["image_shape"]), manifest["class_names"], counts,
                         manifest.get("latent_dim"))
        self._manifest: dict | None = manifest
        self._folders = list(manifest["folders"])

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> FolderWriter:
        folders = folder_names(names)
        manifest = {OUTPUT_MARK: FORMAT_VERSION, "format": "imagefolder", "complete": False,
                    "image_shape": list(shape), "class_names": names, "folders": folders, "counts": [0] * len(names),
                    "metadata": METADATA, "latent_dim": latent_dim, "provenance": prov}
        try:
            for folder in folders:
                (path / folder).mkdir(parents=True, exist_ok=True)
            (path / METADATA).write_bytes(b"")
            write_manifest(path, manifest)
        except OSError as error:
            raise unwritable(path, error) from None
        return cls(path, manifest, [0] * len(names))

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> FolderWriter:
        if not path.is_dir() or not (path / MANIFEST).is_file():
            raise DatagenError(f"{path} is not an ImageFolder output written by datagen (no {MANIFEST}): "
                               "choose another --out, or pass --format hdf5 if it is an HDF5 output")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            old = (manifest["image_shape"], manifest["class_names"], manifest["provenance"])
            check_folders(manifest["folders"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatagenError(f"cannot resume {path}: {MANIFEST} is unreadable ({error}); "
                               "pass --overwrite to start it again") from None
        check_resume(path, shape, names, prov, *old)  # first, as the HDF5 writer does: a changed setting is named
        if manifest.get("metadata") != METADATA:
            raise DatagenError(f"cannot resume {path}: it was written by an older datagen (per-image records in "
                               f"{MANIFEST}, not {METADATA}); pass --overwrite to start it again")
        if manifest.get("latent_dim") != latent_dim:
            raise DatagenError(f"cannot resume {path}: its images have latent codes of {manifest.get('latent_dim')} "
                               f"values, this generator's have {latent_dim}; pass --overwrite to start it again")
        if not (path / METADATA).is_file():
            raise DatagenError(f"cannot resume {path}: {METADATA}, its record of the images, is missing; "
                               "pass --overwrite to start it again")
        try:
            rows, trusted_bytes = read_rows(path, manifest["folders"])
            with (path / METADATA).open("rb+") as fh:  # drop a last line a kill cut short
                fh.truncate(trusted_bytes)
            counts = np.bincount([row["label"] for row in rows], minlength=len(names)).tolist()
            _drop_unrecorded(path, manifest["folders"], counts)
            for folder in manifest["folders"]:
                (path / folder).mkdir(exist_ok=True)
        except OSError as error:
            raise unwritable(path, error) from None
        return cls(path, manifest, counts)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        images, labels, seed_index, real, confidence, noise, latent = self._batch(images, labels, seed_index, real,
                                                                                  details)
        manifest = self._open()
        counts, lines = self.counts(), []
        try:
            if manifest["complete"]:  # a resumed, finished output that grows is unfinished again
                manifest["complete"] = False
                write_manifest(self.path, manifest)
            for i, label in enumerate(labels.tolist()):
                name = f"{self._folders[label]}/{counts[label]:0{PNG_DIGITS}d}.png"
                with atomic_path(self.path / name) as tmp:  # hidden: no reader ever sees a half-written PNG
                    tmp.write_bytes(png_bytes(images[i]))
                counts[label] += 1
                row = row_record(self.class_names, label, seed_index[i], real[i], confidence[i], noise[i],
                                 latent[i] if self.latent_dim is not None else None)
                lines.append(json.dumps({"file_name": name, **row}, separators=(",", ":")) + "\n")
            with (self.path / METADATA).open("a", encoding="utf-8") as fh:  # the lines vouch for the PNGs before them
                fh.write("".join(lines))
        except OSError as error:
            raise unwritable(self.path, error) from None
        self._counts = counts

    def finish(self) -> None:
        manifest = self._open()
        manifest.update(complete=True, counts=self.counts())
        try:
            write_manifest(self.path, manifest)
        except OSError as error:
            raise unwritable(self.path, error) from None
        self.close()



def check_folders(folders: list[str]) -> None:
    """Folder names from a manifest must be single safe path components: resume deletes files inside them."""
    bad = [folder for folder in folders if not isinstance(folder, str) or folder != safe_name(folder)]
    if bad:
        raise ValueError(f"unsafe class folder names {bad[:3]}")


def read_rows(root: Path, folders: list[str]) -> tuple[list[dict], int]:
    """The rows of metadata.jsonl a reader can trust, and the bytes they span.

    Reading stops at the first line that is cut short, unparsable, or names another PNG than the next one of its
    class: everything after it is a write that never completed.
    """
    rows: list[dict] = []
    counts = [0] * len(folders)
    trusted = 0
    with (root / METADATA).open("rb") as fh:
        for line in fh:
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
                label = row["label"]
                if type(label) is not int or not 0 <= label < len(folders):
                    break
            except (ValueError, KeyError, TypeError):
                break
            if row.get("file_name") != f"{folders[label]}/{counts[label]:0{PNG_DIGITS}d}.png":
                break
            counts[label] += 1
            rows.append(row)
            trusted += len(line)
    return rows, trusted


def _drop_unrecorded(root: Path, folders: list[str], counts: list[int]) -> None:
    """Delete what a kill left behind: temp files, and PNGs that metadata.jsonl does not record."""
    for leftover in [*leftover_temporaries(root / MANIFEST), *leftover_temporaries(root / METADATA)]:
        leftover.unlink()
    for folder, count in zip(folders, counts):
        if not (root / folder).is_dir():
            continue
        for file in (root / folder).iterdir():
            number = _png_number(file.name)
            if is_temporary(file.name) or (number is not None and number >= count):
                file.unlink()


def _png_number(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "png" and stem.isdigit() else None
