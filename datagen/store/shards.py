"""Augment at scale: shard i of n writes its own complete HDF5 output; the last one to finish writes an index.

Shard i of n holds N // n images of every class, one more for the first N % n shards, so the shards together
hold exactly N per class. Beside the index OUT (e.g. augmented.h5) each shard is its own file,
OUT-shard-00001-of-00004.h5: a normal datagen output that streams, finishes atomically and resumes on its own.
The index is an HDF5 file of virtual datasets (HDF5's VDS) over the shards' columns, with the attributes of any
datagen output plus `shards` (each shard's file, rows and per-class counts). Its source paths are relative, and
HDF5 looks for a relative source beside the index, so the folder can be moved whole.

The index exists only once every shard is complete: each shard, once finished, looks at the others and writes
it (atomically) if they are all done; two shards finishing together both write the same file, which is harmless.
No coordination beyond the filesystem, so independent machines on a shared filesystem work as torchrun's ranks do.
A virtual dataset silently reads fill values where a source file is missing, so readers check the shards first.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from datagen.common.errors import DatagenError
from datagen.common.files import atomic_path, glob_escape
from datagen.data.formats import OUTPUT_MARK
from datagen.data.shard_index import SHARDS_ATTR, finished_rows, shard_records
from datagen.store.base import FORMAT_VERSION, H5_ERRORS, RESUME_MUST_MATCH, unwritable
from datagen.store.hdf5 import DATASETS, read_provenance, write_provenance

# What makes the shards one dataset; batch size and channels-last may differ between machines (GPU or CPU, memory).
MUST_MATCH = tuple(key for key in RESUME_MUST_MATCH if key not in ("batch_size", "channels_last", "shard", "real_rows"))
_NAME = re.compile(r"-shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`."""

    index: int
    count: int

    def share(self, per_class: int) -> int:
        """Images of each class this shard writes."""
        return per_class // self.count + (self.index < per_class % self.count)

    def offset(self, per_class: int) -> int:
        """This shard's first position in each class of the whole set (the shares of the shards before it)."""
        return self.index * (per_class // self.count) + min(self.index, per_class % self.count)

    def path(self, out: Path) -> Path:
        return shard_path(out, self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_path(out: Path, index: int, count: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-shard-{index:05d}-of-{count:05d}{out.suffix}")


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not int(match[1]) < int(match[2]):
        raise DatagenError(f"--shard {text!r}: give i/n with 0 <= i < n, e.g. --shard 0/4 for the first of four shards")
    return Shard(int(match[1]), int(match[2]))


def from_environment() -> Shard | None:
    """torchrun's rank as the shard (RANK of WORLD_SIZE); None outside torchrun or with a single process."""
    if "WORLD_SIZE" not in os.environ:
        return None
    world, rank = os.environ["WORLD_SIZE"], os.environ.get("RANK", "")
    if not (world.isdigit() and rank.isdigit() and int(rank) < int(world)):
        raise DatagenError(f"WORLD_SIZE={world!r} and RANK={rank!r} do not name a shard (0 <= RANK < WORLD_SIZE): "
                           "unset them, or pass --shard i/n")
    return Shard(int(rank), int(world)) if int(world) > 1 else None


# --- writing ------------------------------------------------------------------------------------------------------


def prepare(out: Path, shard: Shard, overwrite: bool) -> None:
    """Refuse (or, with --overwrite, remove) whatever at the index's path is not an index of this many shards."""
    if out.is_dir():
        raise DatagenError(f"--out {out} is a directory: give the index a file name, e.g. --out {out / 'augmented.h5'}")
    if not (out.exists() or out.is_symlink()):
        return
    count = _indexed_count(out)
    if count == shard.count:
        return
    if not overwrite:
        what = f"the index of {count} shards, not {shard.count}" if count else "an existing file, not a shard index"
        raise DatagenError(f"{out} is {what}: pass --overwrite to replace it, or choose another --out")
    drop_index(out)


def finished(path: Path) -> bool:
    """Whether `path` is a complete output (a finished shard)."""
    return _head(path) is not None


def drop_index(out: Path) -> None:
    """Remove the index: a shard is being (re)written, and the index must exist only while every shard is done."""
    try:
        out.unlink(missing_ok=True)
    except OSError as error:
        raise unwritable(out, error) from None


def write_index_if_complete(out: Path, count: int) -> bool:
    """Write the index over the `count` shards of `out` if every one is complete; whether it was written."""
    files = [shard_path(out, i, count) for i in range(count)]
    heads = [_head(path) for path in files]
    if any(head is None for head in heads):
        return False
    problem = mismatch(heads, count)
    if problem:
        raise DatagenError(f"cannot write the index {out}: {problem}")
    first = heads[0]
    records = [{"file": path.name, "rows": head["rows"], "counts": head["counts"]} for path, head in zip(files, heads)]
    total = sum(record["rows"] for record in records)
    provenance = {**first["provenance"], "shard": {"count": count, "files": [record["file"] for record in records]}}
    try:
        with atomic_path(out) as tmp:
            with h5py.File(tmp, "w") as f:
                for name, (shape, dtype) in first["datasets"].items():
                    layout = h5py.VirtualLayout(shape=(total, *shape), dtype=dtype)
                    start = 0
                    for record in records:
                        if record["rows"]:  # relative: found beside the index, wherever the folder goes
                            source = h5py.VirtualSource(record["file"], name, shape=(record["rows"], *shape))
                            layout[start:start + record["rows"]] = source
                        start += record["rows"]
                    # a label of -1 where a shard could not be read: visible, where 0 would pass for class 0
                    f.create_virtual_dataset(name, layout, fillvalue=-1 if name == "labels" else None)
                write_provenance(f, provenance)
                f.attrs.update({OUTPUT_MARK: FORMAT_VERSION}, complete=True, n_written=total,
                               image_shape=list(first["image_shape"]), class_names=json.dumps(first["class_names"]))
                f.attrs[SHARDS_ATTR] = json.dumps(records)
    except OSError as error:
        raise unwritable(out, error) from None
    return True


def mismatch(heads: list[dict], count: int) -> str | None:
    """Why these shards are not one dataset (their settings or layout differ), or None."""
    first = heads[0]
    for i, head in enumerate(heads[1:], 1):
        for key in ("class_names", "image_shape", "datasets"):
            if head[key] != first[key]:
                return f"shard {i}/{count} differs from shard 0/{count} in its {key.replace('_', ' ')}"
        for key in MUST_MATCH:
            old, new = first["provenance"].get(key), head["provenance"].get(key)
            if old != new:
                return (f"shard {i}/{count} was written with {key} = {_short(new)}, shard 0/{count} with {_short(old)}: "
                        f"rewrite one with the other's settings (--overwrite)")
    return None


# --- reading ------------------------------------------------------------------------------------------------------


def part_lengths(f: h5py.File) -> list[int] | None:
    """The rows of each shard an index reads (each one's own file), or None for an ordinary output."""
    records = shard_records(f)
    return [int(record["rows"]) for record in records] if records else None


def source_chunks(index: Path, f: h5py.File) -> tuple[int, ...] | None:
    """The image chunk shape of an index's shards (the index itself stores no chunks)."""
    for record in shard_records(f) or []:
        if record["rows"]:
            with h5py.File(Path(index).parent / record["file"], "r") as shard:
                return shard["images"].chunks
    return None


def missing_index_hint(out: Path) -> str | None:
    """For a path that does not exist but names shards beside it: which of them keep its index from being written."""
    out = Path(out)
    sets: dict[int, set[int]] = {}
    for path in out.parent.glob(f"{glob_escape(out.stem)}-shard-*-of-*{glob_escape(out.suffix)}"):
        match = _NAME.search(path.stem)
        if match and path.stem[:match.start()] == out.stem:
            sets.setdefault(int(match[2]), set()).add(int(match[1]))
    if not sets:
        return None
    count = max(sets)
    waiting = [i for i in range(count) if not finished(shard_path(out, i, count))]
    if not waiting:
        return (f"{out} is not written yet, though all {count} of its shards are finished: write it by resuming any "
                f"of them (`datagen augment ... --shard 0/{count} --resume`)")
    named = ", ".join(f"{i}/{count}" + ("" if shard_path(out, i, count).exists() else " (not started)")
                      for i in waiting[:8]) + (", …" if len(waiting) > 8 else "")
    return (f"{out} is not written yet: it is the index of {count} shards, written when the last one finishes, and "
            f"shards {named} are unfinished; run or resume each with `datagen augment ... --shard i/{count} --resume`")


def _indexed_count(path: Path) -> int | None:
    try:
        with h5py.File(path, "r") as f:
            records = shard_records(f) if OUTPUT_MARK in f.attrs else None
    except (*H5_ERRORS, DatagenError):
        return None
    return len(records) if records else None


def _head(path: Path) -> dict[str, Any] | None:
    """A finished shard's rows, per-class counts, layout and provenance; None if it is missing or unfinished."""
    done = finished_rows(path)
    if done is None:
        return None
    try:
        with h5py.File(path, "r") as f:
            return {"rows": done[0], "counts": done[1], "class_names": json.loads(f.attrs["class_names"]),
                    "image_shape": list(f["images"].shape[1:]), "provenance": read_provenance(f),
                    "datasets": {name: (f[name].shape[1:], f[name].dtype.str)
                                 for name in (*DATASETS, "latent") if name in f}}
    except (*H5_ERRORS, json.JSONDecodeError):
        return None


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
