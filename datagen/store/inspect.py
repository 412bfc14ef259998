"""What an output holds and what is wrong with it: counts per class, provenance, and every problem found."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.data.formats import OUTPUT_MARK, output_format
from datagen.store.base import H5_ERRORS, MANIFEST
from datagen.store.hdf5 import DATASETS, read_provenance
from datagen.data.shard_index import SHARDS_ATTR, shard_problems, shard_records
from datagen.store.shards import mismatch, missing_index_hint
from datagen.store.imagefolder import METADATA, PNG_DIGITS, check_folders, read_rows
from datagen.store.webdataset import KEY_DIGITS, MEMBERS, check_shards, sample_key


_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAX_PROBLEMS = 50
UNFINISHED = "incomplete: the writer never finished (interrupted?); continue it with `datagen augment --resume` or regenerate it"


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
            return _inspect_shards(path) if output_format(path) == "webdataset" else _inspect_folder(path)
        raise DatagenError(f"{path} is a directory without {MANIFEST}, not a datagen output: "
                           "give an .h5 file or an ImageFolder or webdataset directory written by `datagen augment`")
    if not path.is_file():
        raise DatagenError(missing_index_hint(path) or f"{path} does not exist: give the --out of a `datagen augment` run")
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
        if SHARDS_ATTR in attrs:
            return _inspect_index(path, f, attrs, s)
        s.complete = bool(attrs.get("complete", False))
        if not s.complete:
            s.problems.append(UNFINISHED)
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


def _inspect_index(path: Path, f: h5py.File, attrs: dict, s: Summary) -> Summary:
    """An index of shards: each shard's own checks, their counts against the index's record, and the index's
    virtual columns against the shards (a shard that cannot be read shows there as labels of -1)."""
    s.complete = bool(attrs.get("complete", False))
    s.class_names = _attr_json(attrs, "class_names", list, s.problems) or []
    try:
        s.provenance = read_provenance(f)
        records = shard_records(f) or []
    except (*H5_ERRORS, json.JSONDecodeError, DatagenError) as error:
        s.problems.append(f"the index's provenance or shard list is unreadable ({error})")
        return s
    s.format = f"hdf5, {len(records)} shards"
    s.problems += shard_problems(path, records)
    heads, shard_counts = [], [0] * len(s.class_names)
    for i, record in enumerate(records):
        shard = path.parent / record["file"]
        if not shard.is_file():
            continue
        try:
            sub = _inspect_h5(shard)
        except DatagenError as error:
            s.problems.append(f"shard {i}/{len(records)}: {error}")
            continue
        s.problems += [f"shard {i}/{len(records)} ({record['file']}): {problem}" for problem in sub.problems]
        if sub.class_names != s.class_names:
            s.problems.append(f"shard {i}/{len(records)} ({record['file']}) has classes {sub.class_names}, the index "
                              f"{s.class_names}")
        elif sub.counts:
            shard_counts = [a + b for a, b in zip(shard_counts, sub.counts)]
        heads.append({"provenance": sub.provenance, "class_names": sub.class_names, "image_shape": sub.image_shape,
                      "datasets": None})
    if len(heads) == len(records) > 1:
        problem = mismatch(heads, len(records))
        if problem:
            s.problems.append(problem)
    n = _h5_check_lengths(f, attrs, s)
    if n is not None:
        _h5_check_columns(f, n, s)  # the labels as the index reads them: s.counts
        _h5_check_images(f, 0, attrs, s)  # their layout; the pixels were decompressed in each shard's own check
        if s.counts and s.counts != shard_counts:
            s.problems.append(f"the index reads {s.counts} images per class, its shards hold {shard_counts}")
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
        m = _read_manifest(root, s)
        folders, recorded = list(m["folders"]), [int(c) for c in m["counts"]]
        if not len(folders) == len(recorded) == len(s.class_names):
            raise ValueError("class_names, folders and counts differ in length")
        check_folders(folders)
        real = _folder_real_flags(root, m, folders, s)
    except (OSError, ValueError, KeyError, TypeError) as error:
        s.problems.append(f"{MANIFEST} or {METADATA} is unreadable or damaged ({type(error).__name__}: {error})")
        return s
    if not s.complete:
        s.problems.append(UNFINISHED)
    s.counts = [len(flags) for flags in real]
    s.real_counts = [int(sum(flags)) for flags in real]
    if s.complete and s.counts != recorded:
        s.problems.append(f"{MANIFEST} counts {recorded} images per class but {METADATA} records {s.counts}")
    record = METADATA if "metadata" in m else MANIFEST
    for folder, count in zip(folders, s.counts):
        _check_folder(root, folder, count, record, s)
    s.problems = _capped(s.problems)
    return s


def _read_manifest(root: Path, s: Summary) -> dict:
    """A directory output's manifest.json, with what every format records filled into the summary."""
    m = json.loads((root / MANIFEST).read_text())
    s.complete = bool(m["complete"])
    s.image_shape = tuple(int(v) for v in m["image_shape"])
    s.class_names = [str(name) for name in m["class_names"]]
    s.provenance = m.get("provenance", {})
    return m


def _folder_real_flags(root: Path, m: dict, folders: list[str], s: Summary) -> list[list[bool]]:
    """Each class's `real` flags, one per recorded PNG: from metadata.jsonl, or from the per-image lists in the
    manifest of an output written before metadata.jsonl existed."""
    if "metadata" not in m:
        seeds, real = m["seed_index"], m["real"]
        for folder, count, seed_list, flags in zip(folders, m["counts"], seeds, real):
            if len(seed_list) != count or len(flags) != count:
                s.problems.append(f"{MANIFEST}: class folder '{folder}' counts {count} images but records "
                                  f"{len(seed_list)} seed indices and {len(flags)} real flags")
        return [[bool(flag) for flag in flags][:count] for flags, count in zip(real, m["counts"])]
    rows, trusted = read_rows(root, folders)
    if trusted != (root / METADATA).stat().st_size:
        s.problems.append(f"{METADATA}: line {len(rows) + 1} is cut short, unparsable or out of order "
                          "(a write that never completed)")
    real: list[list[bool]] = [[] for _ in folders]
    for row in rows:
        real[row["label"]].append(bool(row.get("real", False)))
    return real


def _check_folder(root: Path, folder: str, count: int, record: str, s: Summary) -> None:
    if not (root / folder).is_dir():
        s.problems.append(f"class folder {folder}/ is missing ({record} records {count} images in it)")
        return
    expected = {f"{k:0{PNG_DIGITS}d}.png" for k in range(count)}
    present = {p.name for p in (root / folder).iterdir()}
    for name in sorted(expected - present):
        s.problems.append(f"{folder}/{name} is missing ({record} records {count} images in {folder}/)")
    for name in sorted(present - expected):
        s.problems.append(f"{folder}/{name} is not recorded in {record} (it records {count} images in {folder}/)")
    for name in sorted(expected & present):
        _check_png(f"{folder}/{name}", root / folder / name, s)


def _check_png(where: str, png: bytes | Path, s: Summary) -> None:
    """A PNG (a file, or a tar member's bytes) decodes whole at the output's size and mode."""
    h, w, c = s.image_shape
    try:
        with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as img:
            img.load()  # decode fully: a truncated file often has an intact header
            size, mode = img.size, img.mode
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        s.problems.append(f"{where} is unreadable ({type(error).__name__}: {error})")
        return
    if size != (w, h) or mode != ("L" if c == 1 else "RGB"):
        s.problems.append(f"{where} is {size[0]}×{size[1]} {mode}, expected {w}×{h} {'L' if c == 1 else 'RGB'}")


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= _MAX_PROBLEMS:
        return problems
    return problems[:_MAX_PROBLEMS - 1] + [f"... and {len(problems) - _MAX_PROBLEMS + 1} more problems"]


# --- webdataset --------------------------------------------------------------------------------------------------


def _inspect_shards(root: Path) -> Summary:
    s = Summary(root, "webdataset", False, (0, 0, 0), [], [], [], {}, [])
    try:
        m = _read_manifest(root, s)
        recorded, shards = [int(c) for c in m["counts"]], list(m["shards"])
        if len(s.image_shape) != 3 or len(recorded) != len(s.class_names):
            raise ValueError("image_shape is not H×W×C, or counts and class_names differ in length")
        check_shards(shards)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        s.problems.append(f"{MANIFEST} is unreadable or damaged ({type(error).__name__}: {error})")
        return s
    if not s.complete:
        s.problems.append(UNFINISHED)
    s.counts, s.real_counts = [0] * len(s.class_names), [0] * len(s.class_names)
    first = 0
    for shard in shards:
        _check_shard(root, shard, first, s)
        first += shard["samples"]
    listed = {shard["name"] for shard in shards}
    for name in sorted(p.name for p in root.glob("*.tar") if p.name not in listed):
        s.problems.append(f"{name} is not recorded in {MANIFEST} (a write cut short, or a stray file)")
    if s.complete and s.counts != recorded:
        s.problems.append(f"{MANIFEST} counts {recorded} images per class but the shards hold {s.counts}")
    s.problems = _capped(s.problems)
    return s


def _check_shard(root: Path, shard: dict, first: int, s: Summary) -> None:
    """One shard against its record: its length, its end-of-archive blocks, then each sample in it, in order."""
    name, path = shard["name"], root / shard["name"]
    if not path.is_file():
        s.problems.append(f"{name} is missing ({MANIFEST} records {shard['samples']} samples in it)")
        return
    size = path.stat().st_size
    expected, found = first, 0
    with path.open("rb") as fh:
        fh.seek(shard["data_bytes"])
        end_blocks = fh.read(shard["bytes"] - shard["data_bytes"])
        if size != shard["bytes"] or end_blocks.count(0) != len(end_blocks):
            s.problems.append(f"{name} is {size} bytes, not the {shard['bytes']} ending in end-of-archive blocks "
                              f"that {MANIFEST} records (damaged, or a write cut short)")
        try:  # only the recorded members: bytes past them are a write that never completed
            with tarfile.open(fileobj=_Prefix(fh, min(size, shard["data_bytes"])), mode="r:") as tar:
                for key, parts in _samples(name, tar, s):
                    _check_sample(name, key, parts, sample_key(expected), s)
                    expected, found = int(key) + 1, found + 1  # after a gap, go on from this key
        except (tarfile.TarError, OSError) as error:
            s.problems.append(f"{name} is unreadable after {found} samples ({type(error).__name__}: {error})")
    if found != shard["samples"]:
        s.problems.append(f"{name} holds {found} samples, {MANIFEST} records {shard['samples']}")


def _samples(shard: str, tar: tarfile.TarFile, s: Summary) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The shard's samples: runs of members sharing a key, as {extension: bytes}; other members are problems."""
    key, parts = None, {}
    for member in tar:
        stem, _, ext = member.name.partition(".")
        if not (member.isfile() and len(stem) == KEY_DIGITS and stem.isdigit() and ext in MEMBERS):
            s.problems.append(f"{shard}: unexpected member {member.name!r} "
                              f"(each sample is KEY.{', KEY.'.join(MEMBERS)})")
            continue
        if stem != key:
            if key is not None:
                yield key, parts
            key, parts = stem, {}
        if ext in parts:
            s.problems.append(f"{shard}: sample {key} holds {key}.{ext} twice")
        parts[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, parts


def _check_sample(shard: str, key: str, parts: dict[str, bytes], expected: str, s: Summary) -> None:
    """One sample's three members: they agree on a label in range, and the PNG decodes at the output's size."""
    where = f"{shard}: sample {key}"
    if key != expected:
        s.problems.append(f"{where} where {expected} was expected (samples missing or out of order)")
    missing = [ext for ext in MEMBERS if ext not in parts]
    if missing:
        s.problems.append(f"{where} lacks {', '.join(f'{key}.{ext}' for ext in missing)}")
    cls = meta = None
    if "cls" in parts:
        try:
            cls = int(parts["cls"].decode("ascii"))
        except ValueError:  # UnicodeDecodeError is a ValueError
            s.problems.append(f"{where}: {key}.cls is not a decimal label ({parts['cls'][:20]!r})")
    if "json" in parts:
        try:
            meta = json.loads(parts["json"])
            if not isinstance(meta, dict) or type(meta.get("label")) is not int:
                raise ValueError("no whole-number 'label'")
        except ValueError as error:
            s.problems.append(f"{where}: {key}.json is unreadable ({error})")
            meta = None
    label = meta["label"] if meta is not None else cls
    if cls is not None and meta is not None and cls != meta["label"]:
        s.problems.append(f"{where}: {key}.cls says {cls} but {key}.json says label {meta['label']}")
    elif label is not None and not 0 <= label < len(s.class_names):
        s.problems.append(f"{where}: label {label} lies outside 0..{len(s.class_names) - 1}")
    elif label is not None:
        s.counts[label] += 1
        s.real_counts[label] += bool(meta is not None and meta.get("real"))
    if "png" in parts:
        _check_png(f"{shard}: {key}.png", parts["png"], s)


class _Prefix(io.RawIOBase):
    """The first `size` bytes of an open file, as a file: the part of a shard that tarfile may read."""

    def __init__(self, fh: io.BufferedReader, size: int):
        super().__init__()
        self._fh, self._size, self._pos = fh, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = max(0, offset + {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence])
        return self._pos

    def readinto(self, buffer: Any) -> int:
        wanted = max(0, min(len(buffer), self._size - self._pos))
        self._fh.seek(self._pos)
        got = self._fh.readinto(memoryview(buffer)[:wanted]) or 0
        self._pos += got
        return got
