"""What every output format shares: the writer protocol, batch checks, and the rules for resuming.

Every writer appends durably: once ``write()`` returns, a ``kill -9`` loses nothing written so far, and ``resume``
continues from exactly there. Only ``finish()`` makes an output look complete (``complete`` = true), so a reader
can always tell an interrupted output from a finished one.
"""

from __future__ import annotations

import errno
import io
import os
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from datagen.common.errors import DatagenError, WriteFailed
from datagen.common.files import write_failed, write_text
from datagen.data.formats import OUTPUT_MANIFEST

if TYPE_CHECKING:  # torch is slow to import; writers only ever need .detach().cpu().numpy() on a tensor
    import torch


FORMATS = ("hdf5", "imagefolder", "webdataset")
FORMAT_VERSION = 1  # stored under OUTPUT_MARK, which tells datagen.data an output from a source dataset


# What decides which images an augment output holds: a resume that changed any of these would mix two outputs.
# (batch_size: a batch's noise is drawn per batch; channels_last: G's float rounding.)
RESUME_MUST_MATCH = ("checkpoint_sha256", "noise", "seed", "seeds_per_class", "per_class", "filter", "min_confidence",
                     "source", "seed_indices", "mix", "unlabeled", "unlabeled_pool", "pseudo_labels", "batch_size", "include_seeds",
                     "include_unlabeled", "real_rows", "channels_last", "square", "shard")
# What an output written before a setting was recorded did: a resume under today's default must match it.
WRITTEN_BEFORE = {"include_unlabeled": False}


MANIFEST = OUTPUT_MANIFEST
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py raises on damaged files


# Per row, beside images, labels, seed_index and real: how sure its label is (1 for a labeled seed's), and what
# re-creates it: G(latent), the code after the noise of scale `noise` was added (a real row: its own code, noise 0).
DETAILS = ("label_confidence", "noise", "latent")


class Writer(Protocol):
    path: Path

    def counts(self) -> list[int]: ...
    def write(self, images: torch.Tensor | np.ndarray, labels: Any, seed_index: Any, real: Any,
              details: dict[str, Any] | None = None) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Writer: ...
    def __exit__(self, *exc: object) -> None: ...


class BaseWriter:
    path: Path

    def __init__(self, path: Path, image_shape: tuple, class_names: list[str], counts: list[int],
                 latent_dim: int | None = None):
        self.path = path
        self.image_shape = image_shape
        self.class_names = class_names
        self._counts = counts
        self.latent_dim = latent_dim  # None: no latent column (an output that did not come from a G)

    def counts(self) -> list[int]:
        return list(self._counts)

    def __enter__(self) -> BaseWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batch(self, images: Any, labels: Any, seed_index: Any, real: Any,
               details: dict[str, Any] | None = None) -> tuple[np.ndarray, ...]:
        """The columns as numpy arrays (images, labels, seed_index, real, then DETAILS), checked: a wrong batch is a
        bug in the caller, hence ValueError. Details not given read as unknown: confidence 1, noise 0, latent NaN."""
        images, labels, seed_index, real = (_numpy(x) for x in (images, labels, seed_index, real))
        n = len(images)
        details = {k: _numpy(v) for k, v in (details or {}).items()}
        if set(details) - set(DETAILS):
            raise ValueError(f"unknown details {sorted(set(details) - set(DETAILS))}; known: {', '.join(DETAILS)}")
        confidence = details.get("label_confidence", np.ones(n)).astype(np.float32)
        noise = details.get("noise", np.zeros(n)).astype(np.float32)
        latent = details.get("latent", np.full((n, self.latent_dim or 0), np.nan)).astype(np.float32)
        if confidence.shape != (n,) or noise.shape != (n,) or latent.shape != (n, self.latent_dim or 0):
            raise ValueError(f"label_confidence and noise must each hold {n} values, latent {n}×{self.latent_dim or 0}")
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images must be uint8 N×{'×'.join(map(str, self.image_shape))}, "
                             f"got {images.dtype} {images.shape}")
        if any(np.shape(x) != (n,) for x in (labels, seed_index, real)):
            raise ValueError(f"labels, seed_index and real must each hold {n} values")
        labels, seed_index = labels.astype(np.int64), seed_index.astype(np.int64)
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1}")
        return np.ascontiguousarray(images), labels, seed_index, real.astype(bool), confidence, noise, latent


def write_manifest(root: Path, manifest: dict, encoded: dict[str, str] | None = None) -> None:
    """A directory output's manifest.json, atomically: one key per line (a list of records, one record per line),
    each value compact, so it stays readable. `encoded` keeps the text of the keys that never change (class names,
    provenance, which can be large) for a writer that rewrites its manifest after every batch."""
    lines = []
    for key, value in manifest.items():
        if key in ("class_names", "provenance") and encoded is not None:
            text = encoded.setdefault(key, json.dumps(value, separators=(",", ":")))
        elif key == "shards":
            text = "[" + ",".join(f"\n    {json.dumps(item, separators=(',', ':'))}" for item in value) + "]"
        else:
            text = json.dumps(value, separators=(",", ":"))
        lines.append(f"  {json.dumps(key)}: {text}")
    write_text(Path(root) / MANIFEST, "{\n" + ",\n".join(lines) + "\n}\n")


def png_bytes(image: np.ndarray) -> bytes:
    """One uint8 H×W×C image as a PNG file's bytes: mode 'L' for one channel, 'RGB' for three."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def row_record(class_names: list[str], label: int, seed_index: int, real: bool, confidence: float, noise: float,
               latent: np.ndarray | None) -> dict[str, Any]:
    """One image's record as the directory formats write it (a metadata.jsonl line, a KEY.json member)."""
    record = {"label": int(label), "class_name": class_names[label], "seed_index": int(seed_index), "real": bool(real),
              "label_confidence": round(float(confidence), 6), "noise": round(float(noise), 6)}
    if latent is not None:
        record["latent"] = np.round(latent.astype(np.float64), 6).tolist()  # float64: not float32's long tails
    return record


class ManifestWriter(BaseWriter):
    """A directory output whose manifest.json (held here while open) says what it holds: ImageFolder, webdataset."""

    _manifest: dict | None

    def close(self) -> None:
        self._manifest = None

    def _open(self) -> dict:
        if self._manifest is None:
            raise ValueError(f"the writer for {self.path} is closed")
        return self._manifest


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def unwritable(path: Path, error: BaseException) -> Exception:
    """The error for an output that could not be written: a path that cannot be written at all is bad input
    (choose another --out, exit 2); a write that failed (disk full, I/O error) is a fault, and --resume continues
    from what was written (WriteFailed, exit 1)."""
    code = getattr(error, "errno", None)
    if code in _BAD_OUT:  # also when a WriteFailed from a lower layer carries it: one rule for every output format
        return DatagenError(f"cannot write {path} ({os.strerror(code)}); choose a writable --out")
    return error if isinstance(error, WriteFailed) else write_failed(path, error)


_BAD_OUT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT,
            errno.EEXIST}


def jsonable(provenance: dict) -> dict:
    """Provenance as it reads back from JSON (tuples become lists), so resume compares like with like."""
    return json.loads(json.dumps(provenance, default=str))


def check_resume(path: Path, shape: tuple, names: list[str], prov: dict,
                  old_shape: tuple, old_names: list[str], old_prov: dict) -> None:
    pairs = [("image_shape", list(old_shape), list(shape)), ("class_names", list(old_names), names)]
    old_prov = {**WRITTEN_BEFORE, **old_prov}
    pairs += [(key, old_prov[key], prov[key]) for key in RESUME_MUST_MATCH if key in old_prov and key in prov]
    for key, old, new in pairs:
        if old != new:
            raise DatagenError(f"cannot resume {path}: it was written with {key} = {_short(old)}, not {_short(new)}; "
                               f"resume with the same {_OPTIONS.get(key, key)} or pass --overwrite to replace it")


_OPTIONS = {"batch_size": "--batch-size", "include_seeds": "--include-seeds (or none)",
            "include_unlabeled": "--include-unlabeled/--exclude-unlabeled choice",
            "real_rows": "device (the spread labels, which decide them, came out otherwise)", "per_class": "--per-class",
            "unlabeled_pool": "--unlabeled and unlabeled images", "channels_last": "--channels-last/--no-channels-last",
            "seeds_per_class": "--seeds-per-class", "min_confidence": "--min-confidence", "seed": "--seed",
            "square": "--crop center / --pad (or neither)", "shard": "--shard"}


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
