"""Reading an index of HDF5 shards (`datagen augment --shard i/n`): the shards it reads, and whether they are all
there and finished. Below the writers (datagen.store.shards) because every reader of an HDF5 output must check
this: through the index's virtual datasets a missing shard reads as fill values, silently."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from datagen.common.errors import DatagenError


SHARDS_ATTR = "shards"  # on an index only: JSON list of {"file", "rows", "counts"}, in row order
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py raises on damaged files


def shard_records(f: h5py.File) -> list[dict] | None:
    """An index's record of its shards, in row order; None for an ordinary output."""
    if SHARDS_ATTR not in f.attrs:
        return None
    try:
        records = json.loads(f.attrs[SHARDS_ATTR])
        if isinstance(records, list) and all(isinstance(r["file"], str) and int(r["rows"]) >= 0 for r in records):
            return records
    except (ValueError, TypeError, KeyError):
        pass
    raise DatagenError(f"{f.filename}: attribute '{SHARDS_ATTR}' is damaged; rewrite the index by resuming any "
                       "finished shard (`datagen augment ... --shard i/n --resume`)")


def shard_problems(index: Path, records: list[dict]) -> list[str]:
    """What keeps the index from reading its shards: one missing, unfinished, or not the rows the index records."""
    problems = []
    for i, record in enumerate(records):
        where, path = f"shard {i}/{len(records)} ({record['file']})", Path(index).parent / record["file"]
        if not path.is_file():
            problems.append(f"{where} is missing beside the index: move the index and its shards together")
            continue
        head = finished_rows(path)
        if head is None:
            problems.append(f"{where} is unfinished or unreadable: finish it with `datagen augment ... "
                            f"--shard {i}/{len(records)} --resume`, or run `datagen inspect {path}`")
        elif head != (record["rows"], record["counts"]):
            problems.append(f"{where} holds {head[0]} rows, {head[1]} per class, but the index records "
                            f"{record['rows']}, {record['counts']}: it was rewritten; write the index again by "
                            f"resuming it (`datagen augment ... --shard {i}/{len(records)} --resume`)")
    return problems


def require_shards(index: Path, f: h5py.File) -> None:
    """For readers of an index: every shard there and complete, or one line naming the first that is not."""
    records = shard_records(f)
    if records:
        problems = shard_problems(index, records)
        if problems:
            raise DatagenError(f"{index} indexes {len(records)} shards, and {problems[0]}")


def finished_rows(path: Path) -> tuple[int, list[int]] | None:
    """A finished shard's rows and per-class counts; None if it is missing, unfinished or unreadable (a shard still
    streaming may be locked by its writer, or read half-written: it is simply not done)."""
    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)) or SHARDS_ATTR in f.attrs:
                return None
            rows = int(f.attrs["n_written"])
            names = json.loads(f.attrs["class_names"])
            return rows, np.bincount(f["labels"][:rows], minlength=len(names)).tolist()
    except (*_H5_ERRORS, json.JSONDecodeError):
        return None
