"""What an output holds and what is wrong with it: counts per class, provenance, and every problem found."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.data.formats import OUTPUT_MARK
from datagen.store.base import H5_ERRORS, MANIFEST
from datagen.store.hdf5 import DATASETS, read_provenance
from datagen.store.imagefolder import PNG_DIGITS, check_folders


_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAX_PROBLEMS = 50


@dataclass
class Summary:
    path: Path
    format: str
    complete: bool
    image_shape: tuple[int, int, int]
    class_names: list[str]
    counts: list[int]
    real_counts: list[int]
    provenance: dict
    problems: list[str] = field(default_factory=list)  # empty == valid


def inspect(path: Path) -> Summary:
    """What an output holds and what is wrong with it; raises only if `path` is not a datagen output at all."""
    path = Path(path)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return _inspect_folder(path)
        raise DatagenError(f"{path} is a directory without {MANIFEST}, not a datagen output: "
                           "give an .h5 file or an ImageFolder directory written by `datagen augment`")
    if not path.is_file():
        raise DatagenError(f"{path} does not exist: give the --out of a `datagen augment` run")
    with path.open("rb") as fh:
        if fh.read(len(_H5_SIGNATURE)) != _H5_SIGNATURE:
            raise DatagenError(f"{path} is not an HDF5 file: give an .h5 file or an ImageFolder directory written "
                               "by `datagen augment`")
    return _inspect_h5(path)


def _inspect_h5(path: Path) -> Summary:
    s = Summary(path, "hdf5", False, (0, 0, 0), [], [], [], {}, [])
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        s.problems.append(f"cannot open the file as HDF5 ({error})")
        return s
    with f:
        try:
            attrs = dict(f.attrs)
        except H5_ERRORS as error:
            s.problems.append(f"file attributes are unreadable ({error})")
            return s
        if OUTPUT_MARK not in attrs and "n_written" not in attrs:
            raise DatagenError(f"{path} is an HDF5 file that datagen did not write (no format_version): "
                               "give an output of `datagen augment`")
        s.complete = bool(attrs.get("complete", False))
        if not s.complete:
            s.problems.append("incomplete: the writer never finished (interrupted?); continue it with "
                              "`datagen augment --resume` or regenerate it")
        s.class_names = _attr_json(attrs, "class_names", list, s.problems) or []
        try:
            s.provenance = read_provenance(f)
        except (*H5_ERRORS, json.JSONDecodeError) as error:
            s.problems.append(f"provenance is unreadable ({error})")
        n = _h5_check_lengths(f, attrs, s)
        if n is not None:
            _h5_check_columns(f, n, s)
            _h5_check_images(f, n, attrs, s)
    s.problems = _capped(s.problems)
    return s


def _attr_json(attrs: dict, key: str, kind: type, problems: list[str]) -> Any:
    try:
        value = json.loads(attrs[key])
        if isinstance(value, kind):
            return value
    except (KeyError, ValueError, TypeError):
        pass
    problems.append(f"attribute '{key}' is missing or not a JSON {kind.__name__}")
    return None


OPTIONAL = ("label_confidence", "noise", "latent")  # outputs written before issue 14 lack them; still whole


def _h5_check_lengths(f: h5py.File, attrs: dict, s: Summary) -> int | None:
    """The number of rows to trust (n_written, capped by the data), or None if the layout is unusable."""
    lengths = {}
    for name in (*DATASETS, "latent"):
        if isinstance(f.get(name), h5py.Dataset):
            lengths[name] = len(f[name])
        elif name not in OPTIONAL:
            s.problems.append(f"dataset '{name}' is missing")
    if "images" not in lengths or "labels" not in lengths:
        return None
    try:
        n = int(attrs["n_written"])
    except (KeyError, TypeError, ValueError):
        s.problems.append("attribute 'n_written' is missing: the number of valid samples is unknown")
        n = lengths["images"]
    for name, length in lengths.items():
        if length < n:
            s.problems.append(f"n_written is {n} but '{name}' holds only {length} rows: the data was cut short")
        elif length > n and s.complete:
            s.problems.append(f"'{name}' holds {length - n} rows beyond n_written = {n} "
                              "(datagen.data.load would read them)")
    return min(n, *lengths.values())


def _h5_check_columns(f: h5py.File, n: int, s: Summary) -> None:
    k = len(s.class_names)
    try:
        labels = f["labels"][:n].astype(np.int64)
    except H5_ERRORS as error:
        s.problems.append(f"'labels' is unreadable ({error})")
        return
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        s.problems.append(f"{int(bad.sum())} labels lie outside 0..{k - 1} (first at row {int(np.argmax(bad))})")
    s.counts = np.bincount(labels[~bad], minlength=k).tolist()
    s.real_counts = [0] * k
    if "real" in f:
        try:
            real = f["real"][:n]
            if f["real"].dtype != np.bool_:
                s.problems.append(f"'real' is {f['real'].dtype}, expected bool")
            good = ~bad[:len(real)]
            s.real_counts = np.bincount(labels[:len(real)][good & real.astype(bool)], minlength=k).tolist()
        except H5_ERRORS as error:
            s.problems.append(f"'real' is unreadable ({error})")


def _h5_check_images(f: h5py.File, n: int, attrs: dict, s: Summary) -> None:
    images = f["images"]
    if images.dtype != np.uint8 or images.ndim != 4:
        s.problems.append(f"'images' is {images.dtype} with shape {images.shape}, expected uint8 N×H×W×C")
        return
    s.image_shape = tuple(int(v) for v in images.shape[1:])
    stored = attrs.get("image_shape")
    if stored is not None and tuple(int(v) for v in stored) != s.image_shape:
        s.problems.append(f"images are {s.image_shape}, but attribute image_shape says {tuple(stored)}")
    rows = images.chunks[0] if images.chunks else 256
    for start in range(0, n, rows * 16):  # decompress everything: a damaged chunk only shows when read
        try:
            images[start:min(n, start + rows * 16)]
        except H5_ERRORS as error:
            s.problems.append(f"images rows {start}..{min(n, start + rows * 16) - 1} are unreadable ({error})")


def _inspect_folder(root: Path) -> Summary:
    s = Summary(root, "imagefolder", False, (0, 0, 0), [], [], [], {}, [])
    try:
        m = json.loads((root / MANIFEST).read_text())
        s.complete = bool(m["complete"])
        s.image_shape = tuple(int(v) for v in m["image_shape"])
        s.class_names = [str(name) for name in m["class_names"]]
        s.provenance = m.get("provenance", {})
        folders, s.counts = list(m["folders"]), [int(c) for c in m["counts"]]
        seeds, real = m["seed_index"], m["real"]
        if not len(folders) == len(s.counts) == len(seeds) == len(real) == len(s.class_names):
            raise ValueError("class_names, folders, counts, seed_index and real differ in length")
        check_folders(folders)
    except (OSError, ValueError, KeyError, TypeError) as error:
        s.problems.append(f"{MANIFEST} is unreadable or damaged ({type(error).__name__}: {error})")
        return s
    if not s.complete:
        s.problems.append("incomplete: the writer never finished (interrupted?); continue it with "
                          "`datagen augment --resume` or regenerate it")
    s.real_counts = [int(sum(flags)) for flags in real]
    for folder, count, seed_list, flags in zip(folders, s.counts, seeds, real):
        if len(seed_list) != count or len(flags) != count:
            s.problems.append(f"{MANIFEST}: class folder '{folder}' counts {count} images but records "
                              f"{len(seed_list)} seed indices and {len(flags)} real flags")
        _check_folder(root, folder, count, s)
    s.problems = _capped(s.problems)
    return s


def _check_folder(root: Path, folder: str, count: int, s: Summary) -> None:
    if not (root / folder).is_dir():
        s.problems.append(f"class folder {folder}/ is missing ({MANIFEST} counts {count} images in it)")
        return
    expected = {f"{k:0{PNG_DIGITS}d}.png" for k in range(count)}
    present = {p.name for p in (root / folder).iterdir()}
    for name in sorted(expected - present):
        s.problems.append(f"{folder}/{name} is missing ({MANIFEST} counts {count} images in {folder}/)")
    for name in sorted(present - expected):
        s.problems.append(f"{folder}/{name} is not recorded in {MANIFEST} (it counts {count} images in {folder}/)")
    h, w, c = s.image_shape
    for name in sorted(expected & present):
        try:
            with Image.open(root / folder / name) as img:
                img.load()  # decode fully: a truncated file often has an intact header
                size, mode = img.size, img.mode
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            s.problems.append(f"{folder}/{name} is unreadable ({type(error).__name__}: {error})")
            continue
        if size != (w, h) or mode != ("L" if c == 1 else "RGB"):
            s.problems.append(f"{folder}/{name} is {size[0]}×{size[1]} {mode}, expected {w}×{h} "
                              f"{'L' if c == 1 else 'RGB'}")


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= _MAX_PROBLEMS:
        return problems
    return problems[:_MAX_PROBLEMS - 1] + [f"... and {len(problems) - _MAX_PROBLEMS + 1} more problems"]
