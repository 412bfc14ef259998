"""Opening an output for writing (new, resumed or overwritten), and overlapping its writes with the caller's work."""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from datagen.common.errors import DatagenError
from datagen.data.formats import output_format, read_output_manifest
from datagen.store.base import FORMATS, MANIFEST, Writer, jsonable, unwritable
from datagen.store.hdf5 import H5Writer
from datagen.store.imagefolder import FolderWriter
from datagen.store.webdataset import WebDatasetWriter


# Per format: its writer (create and reopen), and whether the output is a directory (an empty one is nothing yet).
_WRITERS: dict[str, tuple[Any, bool]] = {"hdf5": (H5Writer, False), "imagefolder": (FolderWriter, True),
                                          "webdataset": (WebDatasetWriter, True)}


def open_writer(path: Path, fmt: str, *, image_shape: tuple[int, int, int], class_names: list[str],
                provenance: dict, resume: bool = False, overwrite: bool = False, latent_dim: int | None = None,
                shard_size: int | None = None) -> Writer:
    """A new, resumed or replaced output; `latent_dim` adds a column for each row's latent code; `shard_size`
    (webdataset only) is the number of samples per tar shard."""
    if fmt not in FORMATS:
        raise DatagenError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    if shard_size is not None and fmt != "webdataset":
        raise DatagenError(f"--shard-size applies to --format webdataset only, not {fmt}: drop it or change --format")
    if resume and overwrite:
        raise DatagenError("--resume and --overwrite contradict each other: pass one of them")
    path = Path(path)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
        raise DatagenError(f"image shape {tuple(image_shape)} is not H×W×C with C 1 (grey) or 3 (RGB): "
                           "conform the images first")
    names = [str(name) for name in class_names]
    if not names:
        raise DatagenError("an output needs at least one class name: pass the source dataset's class names")
    prov = jsonable(provenance)
    writer, is_directory = _WRITERS[fmt]
    options = {} if shard_size is None else {"shard_size": shard_size}
    if _exists(path, is_directory):
        if resume:
            _check_format(path, fmt)
            return writer.reopen(path, shape, names, prov, latent_dim, **options)
        if not overwrite:
            raise DatagenError(f"{path} exists: pass --resume to continue it or --overwrite to replace it")
        _remove(path)
    return writer.create(path, shape, names, prov, latent_dim, **options)


def _exists(path: Path, is_directory: bool) -> bool:
    """Whether `path` holds something; an empty directory counts as nothing for a directory output."""
    if is_directory and path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _check_format(path: Path, fmt: str) -> None:
    # A directory output names its format: resuming it as another would fail on a detail, or mix two layouts.
    written = output_format(path) if path.is_dir() else None
    if written is not None and written != fmt:
        raise DatagenError(f"{path} was written with --format {written}, not {fmt}: "
                           f"pass --format {written} to resume it")


def _remove(path: Path) -> None:
    # --overwrite must never wipe a directory of the user's that merely shares the name: only our own kind.
    try:
        if path.is_dir() and not path.is_symlink():
            if read_output_manifest(path) is None and any(path.iterdir()):
                raise DatagenError(f"{path} is a directory that datagen did not write (no datagen {MANIFEST}); "
                                   "refusing to delete it: choose another --out")
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as error:
        raise unwritable(path, error) from None


class Overlapped:
    """A writer whose writes run on one background thread, one batch in flight.

    The caller computes the next batch (G's forward pass releases the GIL) while the last one is written.
    Batches are written in order, each durably as before; a write's error surfaces on the next call.
    `counts()`, `finish()` and `close()` first wait for the batch in flight, so nothing is lost or reordered.
    Packing (compression) stays in `finish()`: done on this thread while G ran, it slowed generation more than
    it costs at the end (docs/performance-notes.md).
    """

    def __init__(self, writer: Writer):
        self._writer = writer
        self.path = writer.path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datagen-writer")
        self._in_flight: Future | None = None

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        self._drain()
        self._in_flight = self._pool.submit(self._writer.write, images, labels, seed_index, real, details)

    def counts(self) -> list[int]:
        self._drain()
        return self._writer.counts()

    def finish(self) -> None:
        self._drain()
        self._writer.finish()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()

    def __enter__(self) -> Overlapped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()
