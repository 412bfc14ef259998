"""The HDF5 output: one .h5 file, streamed uncompressed, packed (gzip + shuffle) by finish()."""

from __future__ import annotations

import errno
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from datagen.common.errors import DatagenError, WriteFailed
from datagen.common.files import atomic_path, leftover_temporaries
from datagen.data.formats import OUTPUT_MARK
from datagen.store.base import FORMAT_VERSION, H5_ERRORS, BaseWriter, check_resume, unwritable


_CHUNK_BYTES = 128 << 10  # images chunk target: a whole number of samples, ~64–256 KiB (h5py's sweet spot)
_COLUMN_CHUNK = 4096  # labels/seed_index/real: small chunks, since a partial chunk is rewritten on every flush
_GZIP_LEVEL = 1  # much faster to pack than 4 for slightly larger files (docs/performance-notes.md)
_PACK_CHUNKS = 64  # image chunks read, deflated in parallel and written per round of finish()
_MAX_ATTR_JSON = 32 << 10  # larger provenance goes into a dataset: HDF5 object headers cap attributes at 64 KiB
_METADATA_ROOM = 64 << 10  # claimed per batch beyond its chunks, for the metadata it adds: far more than a batch needs
_FAULTS = (OSError, RuntimeError)  # what h5py raises when a write or flush fails (RuntimeError: "Unable to flush")
COLUMNS = (("labels", np.int64), ("seed_index", np.int64), ("real", np.bool_), ("label_confidence", np.float32),
           ("noise", np.float32))
DATASETS = ("images", *dict(COLUMNS))  # and "latent" (N×M float32) when the output came from a G


class H5Writer(BaseWriter):
    """One .h5 file; attr ``n_written`` is the only trusted length (rows past it are a write cut short).

    While streaming, the datasets are chunked but *uncompressed*; ``finish()`` packs them (gzip 1 + shuffle) into a
    new file that atomically replaces the streaming one. Why: a compressed chunk changes size when rewritten, HDF5
    then moves it (or grows it in place at the end of the file) and updates the chunk index only at the metadata
    flush, so a kill -9 inside ``flush()`` left earlier, already flushed rows undecodable in about one output in
    ten (measured). Uncompressed chunks keep their size and place: rewriting one rewrites the old rows' bytes
    unchanged, whatever the index says.

    A failed write (disk full, file size limit) must never reach HDF5, which has no undo: a flush cut short leaves
    its metadata half old, half new, and h5py then crashed (a segfault on `ulimit -f`, a file resume could not
    open). So each batch first claims the file space it can need (`_claim`): a full disk fails there, before HDF5
    changes anything. Should HDF5 fail anyway (an I/O error), the file is closed without HDF5 writing to it again
    (`_abandon`), which leaves what a kill -9 would.
    """

    def __init__(self, path: Path, f: h5py.File, image_shape: tuple, class_names: list[str], counts: list[int],
                 latent_dim: int | None = None):
        super().__init__(path, image_shape, class_names, counts, latent_dim)
        self._f: h5py.File | None = f
        self._n = sum(counts)

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> H5Writer:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _drop_packing_leftovers(path)
            # The default (oldest) file format on purpose: libver='latest' marks the file "open for writing" in
            # its superblock, and after a kill -9 HDF5 refuses to reopen it until `h5clear -s`.
            f = h5py.File(path, "w")
        except OSError as error:
            raise unwritable(path, error) from None
        try:
            _claim(f, _METADATA_ROOM + len(json.dumps(prov)))
            _h5_datasets(f, shape, 0, latent_dim, packed=False)
            write_provenance(f, prov)
            f.attrs.update({OUTPUT_MARK: FORMAT_VERSION}, complete=False, n_written=0, image_shape=list(shape),
                           class_names=json.dumps(names))  # a JSON list: what datagen.data.load reads
            f.flush()
        except _FAULTS as error:
            _abandon(f)
            path.unlink(missing_ok=True)  # it held nothing yet: a rerun (with or without --resume) starts it again
            raise unwritable(path, error) from None
        return cls(path, f, shape, names, [0] * len(names), latent_dim)

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None) -> H5Writer:
        if path.is_dir():
            raise DatagenError(f"{path} is a directory, not an HDF5 output: pass --format imagefolder to resume it")
        try:
            _drop_packing_leftovers(path)  # a finish() cut short; the streaming file is intact
            f = h5py.File(path, "a")
        except OSError as error:
            raise DatagenError(f"cannot reopen {path} to resume it ({error}): "
                               "pass --overwrite to start it again") from None
        try:
            if OUTPUT_MARK not in f.attrs:
                raise DatagenError(f"{path} is not an HDF5 file written by datagen: choose another --out")
            old_names, old_prov = json.loads(f.attrs["class_names"]), read_provenance(f)
            check_resume(path, shape, names, prov, f["images"].shape[1:], old_names, old_prov)
            names_here = _datasets(latent_dim)
            if any(name not in f for name in names_here):
                raise DatagenError(f"cannot resume {path}: it was written by an older datagen, without the columns "
                                   f"{', '.join(n for n in names_here if n not in f)}; pass --overwrite to start it again")
            n = min(int(f.attrs["n_written"]), *(len(f[name]) for name in names_here))
            if not (bool(f.attrs.get("complete", False)) and all(len(f[name]) == n for name in names_here)):
                _cut_to(f, path, names_here, n)  # a finished output is left byte for byte as it is
            counts = np.bincount(f["labels"][:n], minlength=len(names)).tolist()
        except WriteFailed:  # not damage: the file holds what it held; resume again once there is room
            f.close()
            raise
        except H5_ERRORS as error:
            f.close()
            raise DatagenError(f"cannot resume {path}: it is damaged ({type(error).__name__}: {error}); "
                               "pass --overwrite to start it again") from None
        except BaseException:
            f.close()
            raise
        return cls(path, f, shape, names, counts, latent_dim)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        # zip stops before the latent column when the output has none
        columns = dict(zip(_datasets(self.latent_dim), self._batch(images, labels, seed_index, real, details)))
        f = self._open()
        start, end = self._n, self._n + len(columns["labels"])
        try:
            _claim(f, _METADATA_ROOM + sum(_chunk_bytes(f[name], start, end) for name in columns))
        except OSError as error:  # nothing changed: the file holds every row written before, and stays usable
            raise unwritable(self.path, error) from None
        try:
            if f.attrs["complete"]:  # a finished (packed) output that grows is unfinished again (and not kill-safe)
                f.attrs["complete"] = False
            for name, values in columns.items():
                f[name].resize(end, axis=0)
                f[name][start:end] = values
            f.flush()  # the data first, then the count that vouches for it
            f.attrs["n_written"] = end
            f.flush()
        except _FAULTS as error:
            self._f = None
            _abandon(f)
            raise unwritable(self.path, error) from None
        self._n = end
        self._counts = (np.asarray(self._counts) + np.bincount(columns["labels"], minlength=len(self._counts))).tolist()

    def finish(self) -> None:
        """Pack the streamed rows into a compressed file that atomically replaces the streaming one."""
        f = self._open()
        if f.attrs["complete"]:  # resumed after finishing, and nothing added
            self.close()
            return
        try:  # packing needs about the output's size again; if that fails, the streamed file stays as it was
            with atomic_path(self.path) as tmp:
                out = h5py.File(tmp, "w")
                try:
                    _h5_datasets(out, self.image_shape, self._n, self.latent_dim, packed=True)
                    _pack_images(f["images"], out["images"], self._n)
                    for name in _datasets(self.latent_dim)[1:]:  # the columns: small, copied as they are
                        step = f[name].chunks[0] * 8
                        for start in range(0, self._n, step):
                            out[name][start:start + step] = f[name][start:min(self._n, start + step)]
                    if "provenance_json" in f:
                        f.copy("provenance_json", out)
                    out.attrs.update(dict(f.attrs))
                    out.attrs["complete"] = True
                    out.flush()
                except BaseException:
                    _abandon(out)  # a half-packed temporary file, deleted next
                    raise
                out.close()
                self.close()
        except _FAULTS as error:
            raise unwritable(self.path, error) from None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _open(self) -> h5py.File:
        if self._f is None:
            raise ValueError(f"the writer for {self.path} is closed")
        return self._f


def _cut_to(f: h5py.File, path: Path, names: tuple[str, ...], n: int) -> None:
    """Drop the rows of a batch that was cut short: every dataset n rows, n_written n."""
    try:
        _claim(f, _METADATA_ROOM)  # before the first change
    except OSError as error:
        raise unwritable(path, error) from None
    try:
        for name in names:
            f[name].resize(n, axis=0)
        f.attrs["n_written"] = n
        f.flush()
    except _FAULTS as error:
        _abandon(f)
        raise unwritable(path, error) from None


def _claim(f: h5py.File, nbytes: int) -> None:
    """Make the file `nbytes` longer than HDF5's own end of file, as allocated blocks, before HDF5 writes.

    HDF5 allocates new space only at its end of file; with the blocks already the file's, its writes cannot run
    out of space (ENOSPC, EDQUOT, EFBIG are raised here instead, before the file changes). HDF5 cuts the file back
    to its own length when it next flushes or closes, or ignores the extra zeros (measured: the same rows).
    """
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: HDF5 finds a full disk itself, as before
        return
    try:
        # From HDF5's end of file only: where a file system cannot allocate, glibc emulates this by touching every
        # block of the range, so claiming from byte 0 on every batch would cost time in the size of the file
        os.posix_fallocate(f.id.get_vfd_handle(), f.id.get_filesize(), nbytes)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # those: a file system that cannot
            raise


def _chunk_bytes(dataset: h5py.Dataset, start: int, end: int) -> int:
    """Bytes of the chunks that rows start..end of `dataset` touch: the most file space writing them can take."""
    rows = dataset.chunks[0]
    return (-(-end // rows) - start // rows) * int(np.prod(dataset.chunks)) * dataset.dtype.itemsize


def _abandon(f: h5py.File) -> None:
    """Close an HDF5 file after a failed write without letting HDF5 write to it again.

    On close HDF5 flushes what it holds, and after a failed write that is metadata that no longer fits what is on
    disk: its file descriptor is pointed at /dev/null first, so the file keeps what its last good flush left.
    """
    try:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, f.id.get_vfd_handle())
        finally:
            os.close(null)
    except (*_FAULTS, ValueError):
        pass  # already closed
    try:
        f.close()
    except (*_FAULTS, ValueError):
        pass  # HDF5 reports the flush it could not do; there is nothing left to save


def _drop_packing_leftovers(path: Path) -> None:
    for leftover in leftover_temporaries(path):
        leftover.unlink()


def _datasets(latent_dim: int | None) -> tuple[str, ...]:
    return DATASETS if latent_dim is None else (*DATASETS, "latent")


def _h5_datasets(f: h5py.File, shape: tuple, n: int, latent_dim: int | None, *, packed: bool) -> None:
    """images N×H×W×C, the columns and the latent codes (N×M), resizable along N, chunked; compressed when `packed`."""
    h, w, c = shape
    rows = max(1, _CHUNK_BYTES // (h * w * c))  # a whole number of samples per chunk
    filters = {"compression": "gzip", "compression_opts": _GZIP_LEVEL, "shuffle": True} if packed else {}
    images = f.create_dataset("images", shape=(n, h, w, c), maxshape=(None, h, w, c), dtype=np.uint8,
                              chunks=(rows, h, w, c), **filters)
    for axis, label in enumerate(("sample", "height", "width", "channel")):
        images.dims[axis].label = label
    for name, dtype in COLUMNS:
        column = f.create_dataset(name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=(_COLUMN_CHUNK,),
                                  **filters)
        column.dims[0].label = "sample"
    if latent_dim is not None:
        latent = f.create_dataset("latent", shape=(n, latent_dim), maxshape=(None, latent_dim), dtype=np.float32,
                                  chunks=(max(1, _COLUMN_CHUNK // latent_dim), latent_dim), **filters)
        latent.dims[0].label = "sample"


def _pack_images(src: h5py.Dataset, dst: h5py.Dataset, n: int) -> None:
    """Copy n image rows into the gzip dataset `dst`, deflating its chunks on every core.

    h5py deflates chunk after chunk on one core; zlib releases the GIL, so the chunks are compressed in
    threads and stored as they are (write_direct_chunk): the same bytes in the file (tested), in about half
    the time on 2 cores (docs/performance-notes.md). Shuffle, also in the pipeline, leaves 1-byte values as they
    are, and an edge chunk is stored whole, zero-padded, as HDF5 itself stores it.
    """
    rows, zeros = dst.chunks[0], (0,) * (dst.ndim - 1)

    def deflate(block: np.ndarray) -> bytes:
        if len(block) < rows:
            block = np.concatenate([block, np.zeros((rows - len(block), *block.shape[1:]), block.dtype)])
        return zlib.compress(block.tobytes(), _GZIP_LEVEL)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for start in range(0, n, rows * _PACK_CHUNKS):
            block = src[start:min(n, start + rows * _PACK_CHUNKS)]
            offsets = range(0, len(block), rows)
            for offset, chunk in zip(offsets, pool.map(deflate, (block[o:o + rows] for o in offsets))):
                dst.id.write_direct_chunk((start + offset, *zeros), chunk)


def write_provenance(f: h5py.File, prov: dict) -> None:
    text = json.dumps(prov)
    if len(text.encode()) > _MAX_ATTR_JSON:
        f.create_dataset("provenance_json", data=text, dtype=h5py.string_dtype())
    else:
        f.attrs["provenance"] = text


def read_provenance(f: h5py.File) -> dict:
    if "provenance_json" in f:
        return json.loads(f["provenance_json"].asstr()[()])
    return json.loads(f.attrs.get("provenance", "{}"))
