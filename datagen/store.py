"""Output datasets (HDF5 or an ImageFolder tree): streamed in batches, resumable after a crash, finished explicitly.

Both writers append durably: once ``write()`` returns, a ``kill -9`` loses nothing written so far, and ``resume``
continues from exactly there. Only ``finish()`` makes an output look complete (``complete`` = true), so a reader
can always tell an interrupted output from a finished one. :func:`inspect` reads and checks either format.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import h5py
import numpy as np
from PIL import Image

from datagen.errors import DatagenError
from datagen.rundir import safe_name

if TYPE_CHECKING:  # torch is slow to import; writers only ever need .detach().cpu().numpy() on a tensor
    import torch

FORMATS = ("hdf5", "imagefolder")
FORMAT_VERSION = 1
RESUME_MUST_MATCH = ("checkpoint_sha256", "noise", "seed", "seeds_per_class", "per_class", "filter", "min_confidence",
                     "source", "seed_indices", "mix", "unlabeled")
MANIFEST = "manifest.json"

_CHUNK_BYTES = 128 << 10  # images chunk target: a whole number of samples, ~64–256 KiB (h5py's sweet spot)
_COLUMN_CHUNK = 4096  # labels/seed_index/real: small chunks, since a partial chunk is rewritten on every flush
_GZIP_LEVEL = 1  # 30% less packing time than level 4 for 6% more bytes (50,000 MNIST-sized images, 2 CPU cores)
_PACK_CHUNKS = 64  # image chunks read, deflated in parallel and written per round of finish()
_MAX_ATTR_JSON = 32 << 10  # larger provenance goes into a dataset: HDF5 object headers cap attributes at 64 KiB
_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PNG_DIGITS = 6  # 000000.png: sorts in write order up to a million images per class
_MAX_PROBLEMS = 50
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py raises on damaged files


class Writer(Protocol):
    path: Path

    def counts(self) -> list[int]: ...
    def write(self, images: torch.Tensor | np.ndarray, labels: Any, seed_index: Any, real: Any) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Writer: ...
    def __exit__(self, *exc: object) -> None: ...


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


# --- opening -------------------------------------------------------------------------------------------------------


def open_writer(path: Path, fmt: str, *, image_shape: tuple[int, int, int], class_names: list[str],
                provenance: dict, resume: bool = False, overwrite: bool = False) -> Writer:
    if fmt not in FORMATS:
        raise DatagenError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
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
    prov = _jsonable(provenance)
    if _exists(path, fmt):
        if resume:
            opener = _H5Writer.reopen if fmt == "hdf5" else _FolderWriter.reopen
            return opener(path, shape, names, prov)
        if not overwrite:
            raise DatagenError(f"{path} exists: pass --resume to continue it or --overwrite to replace it")
        _remove(path)
    create = _H5Writer.create if fmt == "hdf5" else _FolderWriter.create
    return create(path, shape, names, prov)


def _exists(path: Path, fmt: str) -> bool:
    """Whether `path` holds something; an empty directory counts as nothing for an ImageFolder output."""
    if fmt == "imagefolder" and path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    # --overwrite must never wipe a directory of the user's that merely shares the name: only our own kind.
    try:
        if path.is_dir() and not path.is_symlink():
            if not (path / MANIFEST).is_file() and any(path.iterdir()):
                raise DatagenError(f"{path} is a directory that datagen did not write (no {MANIFEST}); "
                                   "refusing to delete it: choose another --out")
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as error:
        raise _unwritable(path, error) from None


def _unwritable(path: Path, error: OSError) -> DatagenError:
    reason = error.strerror or str(error)
    return DatagenError(f"cannot write {path} ({reason}); choose a writable --out")


def _jsonable(provenance: dict) -> dict:
    """Provenance as it reads back from JSON (tuples become lists), so resume compares like with like."""
    return json.loads(json.dumps(provenance, default=str))


def _check_resume(path: Path, shape: tuple, names: list[str], prov: dict,
                  old_shape: tuple, old_names: list[str], old_prov: dict) -> None:
    pairs = [("image_shape", list(old_shape), list(shape)), ("class_names", list(old_names), names)]
    pairs += [(key, old_prov[key], prov[key]) for key in RESUME_MUST_MATCH if key in old_prov and key in prov]
    for key, old, new in pairs:
        if old != new:
            raise DatagenError(f"cannot resume {path}: it was written with {key} = {_short(old)}, not {_short(new)}; "
                               f"resume with the same {key} or pass --overwrite to replace it")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


# --- overlapping writes with the caller's work -------------------------------------------------------------------


class Overlapped:
    """A writer whose writes run on one background thread, one batch in flight.

    The caller computes the next batch (G's forward pass releases the GIL) while the last one is written.
    Batches are written in order, each durably as before; a write's error surfaces on the next call.
    `counts()`, `finish()` and `close()` first wait for the batch in flight, so nothing is lost or reordered.
    Packing (compression) stays in `finish()`: done on this thread while G ran, it slowed generation on 2 CPU
    cores by 1.8 s per 50,000 images, more than the 1.0 s it takes at the end (docs/performance-notes.md).
    """

    def __init__(self, writer: Writer):
        self._writer = writer
        self.path = writer.path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datagen-writer")
        self._in_flight: Future | None = None

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any) -> None:
        self._drain()
        self._in_flight = self._pool.submit(self._writer.write, images, labels, seed_index, real)

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


# --- the shared part of both writers -----------------------------------------------------------------------------


class _Writer:
    path: Path

    def __init__(self, path: Path, image_shape: tuple, class_names: list[str], counts: list[int]):
        self.path = path
        self.image_shape = image_shape
        self.class_names = class_names
        self._counts = counts

    def counts(self) -> list[int]:
        return list(self._counts)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batch(self, images: Any, labels: Any, seed_index: Any, real: Any) -> tuple[np.ndarray, ...]:
        """The four columns as numpy arrays, checked: a wrong batch is a bug in the caller, hence ValueError."""
        images, labels, seed_index, real = (_numpy(x) for x in (images, labels, seed_index, real))
        n = len(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images must be uint8 N×{'×'.join(map(str, self.image_shape))}, "
                             f"got {images.dtype} {images.shape}")
        if any(np.shape(x) != (n,) for x in (labels, seed_index, real)):
            raise ValueError(f"labels, seed_index and real must each hold {n} values")
        labels, seed_index = labels.astype(np.int64), seed_index.astype(np.int64)
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1}")
        return np.ascontiguousarray(images), labels, seed_index, real.astype(bool)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# --- HDF5 ----------------------------------------------------------------------------------------------------------

_COLUMNS = (("labels", np.int64), ("seed_index", np.int64), ("real", np.bool_))
_DATASETS = ("images", *dict(_COLUMNS))


class _H5Writer(_Writer):
    """One .h5 file; attr ``n_written`` is the only trusted length (rows past it are a write cut short).

    While streaming, the datasets are chunked but *uncompressed*; ``finish()`` packs them (gzip 1 + shuffle) into a
    new file that atomically replaces the streaming one. Why: a compressed chunk changes size when rewritten, HDF5
    then moves it (or grows it in place at the end of the file) and updates the chunk index only at the metadata
    flush, so a kill -9 inside ``flush()`` left earlier, already flushed rows undecodable in about one output in
    ten (measured). Uncompressed chunks keep their size and place: rewriting one rewrites the old rows' bytes
    unchanged, whatever the index says.
    """

    def __init__(self, path: Path, f: h5py.File, image_shape: tuple, class_names: list[str], counts: list[int]):
        super().__init__(path, image_shape, class_names, counts)
        self._f: h5py.File | None = f
        self._n = sum(counts)

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict) -> _H5Writer:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _packing_file(path).unlink(missing_ok=True)
            # The default (oldest) file format on purpose: libver='latest' marks the file "open for writing" in
            # its superblock, and after a kill -9 HDF5 refuses to reopen it until `h5clear -s`.
            f = h5py.File(path, "w")
        except OSError as error:
            raise _unwritable(path, error) from None
        _h5_datasets(f, shape, 0, packed=False)
        text = json.dumps(prov)
        if len(text.encode()) > _MAX_ATTR_JSON:
            f.create_dataset("provenance_json", data=text, dtype=h5py.string_dtype())
        else:
            f.attrs["provenance"] = text
        f.attrs.update(format_version=FORMAT_VERSION, complete=False, n_written=0, image_shape=list(shape),
                       class_names=json.dumps(names))  # a JSON list: what datagen.data.load reads
        f.flush()
        return cls(path, f, shape, names, [0] * len(names))

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict) -> _H5Writer:
        if path.is_dir():
            raise DatagenError(f"{path} is a directory, not an HDF5 output: pass --format imagefolder to resume it")
        try:
            _packing_file(path).unlink(missing_ok=True)  # a finish() cut short; the streaming file is intact
            f = h5py.File(path, "a")
        except OSError as error:
            raise DatagenError(f"cannot reopen {path} to resume it ({error}): "
                               "pass --overwrite to start it again") from None
        try:
            if "format_version" not in f.attrs:
                raise DatagenError(f"{path} is not an HDF5 file written by datagen: choose another --out")
            old_names, old_prov = json.loads(f.attrs["class_names"]), _h5_provenance(f)
            _check_resume(path, shape, names, prov, f["images"].shape[1:], old_names, old_prov)
            n = min(int(f.attrs["n_written"]), *(len(f[name]) for name in _DATASETS))
            for name in _DATASETS:  # drop rows of a batch that was cut short
                f[name].resize(n, axis=0)
            f.attrs["n_written"] = n
            f.flush()
            counts = np.bincount(f["labels"][:n], minlength=len(names)).tolist()
        except _H5_ERRORS as error:
            f.close()
            raise DatagenError(f"cannot resume {path}: it is damaged ({type(error).__name__}: {error}); "
                               "pass --overwrite to start it again") from None
        except BaseException:
            f.close()
            raise
        return cls(path, f, shape, names, counts)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any) -> None:
        columns = dict(zip(_DATASETS, self._batch(images, labels, seed_index, real)))
        f = self._open()
        start, end = self._n, self._n + len(columns["labels"])
        try:
            if f.attrs["complete"]:  # a finished (packed) output that grows is unfinished again (and not kill-safe)
                f.attrs["complete"] = False
            for name, values in columns.items():
                f[name].resize(end, axis=0)
                f[name][start:end] = values
            f.flush()  # the data first, then the count that vouches for it
            f.attrs["n_written"] = end
            f.flush()
        except OSError as error:
            raise _unwritable(self.path, error) from None
        self._n = end
        self._counts = (np.asarray(self._counts) + np.bincount(columns["labels"], minlength=len(self._counts))).tolist()

    def finish(self) -> None:
        """Pack the streamed rows into a compressed file and os.replace the streaming one with it."""
        f = self._open()
        if f.attrs["complete"]:  # resumed after finishing, and nothing added
            self.close()
            return
        tmp = _packing_file(self.path)
        try:
            with h5py.File(tmp, "w") as out:
                _h5_datasets(out, self.image_shape, self._n, packed=True)
                _pack_images(f["images"], out["images"], self._n)
                for name in dict(_COLUMNS):  # labels, seed_index, real: small, copied as they are
                    step = f[name].chunks[0] * 8
                    for start in range(0, self._n, step):
                        out[name][start:start + step] = f[name][start:min(self._n, start + step)]
                if "provenance_json" in f:
                    f.copy("provenance_json", out)
                out.attrs.update(dict(f.attrs))
                out.attrs["complete"] = True
            self.close()
            os.replace(tmp, self.path)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise _unwritable(self.path, error) from None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _open(self) -> h5py.File:
        if self._f is None:
            raise ValueError(f"the writer for {self.path} is closed")
        return self._f


def _packing_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.packing")


def _h5_datasets(f: h5py.File, shape: tuple, n: int, *, packed: bool) -> None:
    """images N×H×W×C and the three columns, resizable along N, chunked; compressed when `packed`."""
    h, w, c = shape
    rows = max(1, _CHUNK_BYTES // (h * w * c))  # a whole number of samples per chunk
    filters = {"compression": "gzip", "compression_opts": _GZIP_LEVEL, "shuffle": True} if packed else {}
    images = f.create_dataset("images", shape=(n, h, w, c), maxshape=(None, h, w, c), dtype=np.uint8,
                              chunks=(rows, h, w, c), **filters)
    for axis, label in enumerate(("sample", "height", "width", "channel")):
        images.dims[axis].label = label
    for name, dtype in _COLUMNS:
        column = f.create_dataset(name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=(_COLUMN_CHUNK,),
                                  **filters)
        column.dims[0].label = "sample"


def _pack_images(src: h5py.Dataset, dst: h5py.Dataset, n: int) -> None:
    """Copy n image rows into the gzip dataset `dst`, deflating its chunks on every core.

    h5py deflates chunk after chunk on one core; zlib releases the GIL, so the chunks are compressed in
    threads and stored as they are (write_direct_chunk): 0.72 -> 0.37 s per 50,000 32x32 images on 2
    cores, the same bytes in the file (tested). Shuffle, also in the pipeline, leaves 1-byte values as they
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


def _h5_provenance(f: h5py.File) -> dict:
    if "provenance_json" in f:
        return json.loads(f["provenance_json"].asstr()[()])
    return json.loads(f.attrs.get("provenance", "{}"))


# --- ImageFolder ---------------------------------------------------------------------------------------------------


class _FolderWriter(_Writer):
    """OUT/<folder>/<n>.png plus OUT/manifest.json, whose counts are the only trusted lengths."""

    def __init__(self, path: Path, manifest: dict):
        # self._counts *is* manifest["counts"]: counting a PNG updates the manifest that is written next
        super().__init__(path, tuple(manifest["image_shape"]), manifest["class_names"], manifest["counts"])
        self._manifest: dict | None = manifest
        self._folders = [path / name for name in manifest["folders"]]

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict) -> _FolderWriter:
        folders = folder_names(names)
        manifest = {"format_version": FORMAT_VERSION, "format": "imagefolder", "complete": False,
                    "image_shape": list(shape), "class_names": names, "folders": folders, "counts": [0] * len(names),
                    "provenance": prov, "seed_index": [[] for _ in names], "real": [[] for _ in names]}
        try:
            for folder in folders:
                (path / folder).mkdir(parents=True, exist_ok=True)
            _write_manifest(path, manifest)
        except OSError as error:
            raise _unwritable(path, error) from None
        return cls(path, manifest)

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict) -> _FolderWriter:
        if not path.is_dir() or not (path / MANIFEST).is_file():
            raise DatagenError(f"{path} is not an ImageFolder output written by datagen (no {MANIFEST}): "
                               "choose another --out, or pass --format hdf5 if it is an HDF5 output")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            old = (manifest["image_shape"], manifest["class_names"], manifest["provenance"])
            _ = manifest["counts"], manifest["seed_index"], manifest["real"]
            _check_folders(manifest["folders"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatagenError(f"cannot resume {path}: {MANIFEST} is unreadable ({error}); "
                               "pass --overwrite to start it again") from None
        _check_resume(path, shape, names, prov, *old)
        try:
            _drop_unrecorded(path, manifest)
            for folder in manifest["folders"]:
                (path / folder).mkdir(exist_ok=True)
        except OSError as error:
            raise _unwritable(path, error) from None
        return cls(path, manifest)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any) -> None:
        images, labels, seed_index, real = self._batch(images, labels, seed_index, real)
        manifest = self._open()
        grey = self.image_shape[2] == 1
        try:
            for image, label, seed, is_real in zip(images, labels.tolist(), seed_index.tolist(), real.tolist()):
                folder, n = self._folders[label], self._counts[label]
                final = folder / f"{n:0{_PNG_DIGITS}d}.png"
                tmp = folder / f".{final.name}.tmp"  # hidden and not .png: no reader ever sees a half-written PNG
                Image.fromarray(image[..., 0] if grey else image).save(tmp, format="PNG")
                os.replace(tmp, final)
                self._counts[label] += 1
                manifest["seed_index"][label].append(seed)
                manifest["real"][label].append(int(is_real))
            manifest["complete"] = False  # a resumed, finished output that grows is unfinished again
            _write_manifest(self.path, manifest)  # PNGs past the manifest's counts are dropped on resume
        except OSError as error:
            raise _unwritable(self.path, error) from None

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


def _check_folders(folders: list[str]) -> None:
    """Folder names from a manifest must be single safe path components: resume deletes files inside them."""
    bad = [folder for folder in folders if not isinstance(folder, str) or folder != safe_name(folder)]
    if bad:
        raise ValueError(f"unsafe class folder names {bad[:3]}")


def _write_manifest(root: Path, manifest: dict) -> None:
    """Atomically; one key per line with each value compact, so it stays readable and small."""
    lines = (f"  {json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}" for key, value in manifest.items())
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    os.replace(tmp, root / MANIFEST)


def _drop_unrecorded(root: Path, manifest: dict) -> None:
    """Delete what a kill left behind: temp files, and PNGs written after the last manifest update."""
    (root / f".{MANIFEST}.tmp").unlink(missing_ok=True)
    for folder, count in zip(manifest["folders"], manifest["counts"]):
        if not (root / folder).is_dir():
            continue
        for file in (root / folder).iterdir():
            number = _png_number(file.name)
            if file.name.endswith(".tmp") or (number is not None and number >= count):
                file.unlink()
    for key in ("seed_index", "real"):  # written together with counts, so already equal; cheap insurance
        manifest[key] = [values[:count] for values, count in zip(manifest[key], manifest["counts"])]


def _png_number(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "png" and stem.isdigit() else None


# --- inspecting ----------------------------------------------------------------------------------------------------


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
        except _H5_ERRORS as error:
            s.problems.append(f"file attributes are unreadable ({error})")
            return s
        if "format_version" not in attrs and "n_written" not in attrs:
            raise DatagenError(f"{path} is an HDF5 file that datagen did not write (no format_version): "
                               "give an output of `datagen augment`")
        s.complete = bool(attrs.get("complete", False))
        if not s.complete:
            s.problems.append("incomplete: the writer never finished (interrupted?); continue it with "
                              "`datagen augment --resume` or regenerate it")
        s.class_names = _attr_json(attrs, "class_names", list, s.problems) or []
        try:
            s.provenance = _h5_provenance(f)
        except (*_H5_ERRORS, json.JSONDecodeError) as error:
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


def _h5_check_lengths(f: h5py.File, attrs: dict, s: Summary) -> int | None:
    """The number of rows to trust (n_written, capped by the data), or None if the layout is unusable."""
    lengths = {}
    for name in _DATASETS:
        if isinstance(f.get(name), h5py.Dataset):
            lengths[name] = len(f[name])
        else:
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
    except _H5_ERRORS as error:
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
        except _H5_ERRORS as error:
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
        except _H5_ERRORS as error:
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
        _check_folders(folders)
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
    expected = {f"{k:0{_PNG_DIGITS}d}.png" for k in range(count)}
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
