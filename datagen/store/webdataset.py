"""The WebDataset output: OUT/shard-000000.tar, shard-000001.tar, … of N samples each, plus OUT/manifest.json.

Each sample is three tar members sharing a key (its index in the output, zero-padded, no dots: WebDataset splits
the extension at the first dot): KEY.png (grey 'L' or 'RGB'), KEY.cls (the label as decimal text, WebDataset's
convention) and KEY.json (label, class name, seed index, real, label confidence, noise, latent code). The shards are
plain uncompressed tar, readable by the `webdataset` package and by the standard library's `tarfile`.

Durability: a batch's members are appended to the last shard, the shard is closed again (end-of-archive blocks)
and fsynced, and only then does manifest.json (rewritten atomically) record its new length. So the recorded
bytes of every shard are a whole tar archive; a kill during an append leaves the last shard longer than its
record (the output says it is unfinished), and resume restores it to exactly its recorded bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from datagen.common.errors import DatagenError
from datagen.common.files import leftover_temporaries
from datagen.data.formats import OUTPUT_MARK
from datagen.store.base import (FORMAT_VERSION, MANIFEST, ManifestWriter, check_resume, png_bytes, row_record,
                                unwritable, write_manifest)


SHARD_SIZE = 10_000  # samples per shard: ~10–120 MB for 28×28 grey to 64×64 RGB, within WebDataset's advice
KEY_DIGITS = 9  # 000000000: keys sort in write order up to a billion samples
MEMBERS = ("png", "cls", "json")  # per sample, in this order
TAR_FORMAT = tarfile.USTAR_FORMAT  # plain POSIX headers: our names are short, every reader knows them
_SHARD = re.compile(r"shard-(\d{6})\.tar")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def sample_key(index: int) -> str:
    return f"{index:0{KEY_DIGITS}d}"


class WebDatasetWriter(ManifestWriter):
    """Tar shards of `shard_size` samples; manifest.json's per-shard lengths are the only trusted ones.

    Per shard the manifest records `samples`, `data_bytes` (where the next member goes) and `bytes` (the file's
    length, end-of-archive blocks included). A write starts by cutting the shard back to `data_bytes`, so a batch
    that failed or was killed is simply written over.
    """

    def __init__(self, path: Path, manifest: dict):
        super().__init__(path, tuple(manifest["image_shape"]), manifest["class_names"], list(manifest["counts"]),
                         manifest.get("latent_dim"))
        self._manifest: dict | None = manifest
        self.shard_size = int(manifest["shard_size"])
        self._encoded: dict[str, str] = {}

    @classmethod
    def create(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None,
               shard_size: int | None = None) -> WebDatasetWriter:
        shard_size = SHARD_SIZE if shard_size is None else int(shard_size)
        if shard_size < 1:
            raise DatagenError(f"--shard-size {shard_size}: put at least one image in each shard")
        manifest = {OUTPUT_MARK: FORMAT_VERSION, "format": "webdataset", "complete": False,
                    "image_shape": list(shape), "class_names": names, "counts": [0] * len(names),
                    "shard_size": shard_size, "members": list(MEMBERS), "shards": [], "latent_dim": latent_dim,
                    "provenance": prov}
        writer = cls(path, manifest)
        try:
            path.mkdir(parents=True, exist_ok=True)
            writer._write_manifest()
        except OSError as error:
            raise unwritable(path, error) from None
        return writer

    @classmethod
    def reopen(cls, path: Path, shape: tuple, names: list[str], prov: dict, latent_dim: int | None = None,
               shard_size: int | None = None) -> WebDatasetWriter:
        if not path.is_dir() or not (path / MANIFEST).is_file():
            raise DatagenError(f"{path} is not a webdataset output written by datagen (no {MANIFEST}): "
                               "choose another --out, or pass the --format it was written with")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if not isinstance(manifest, dict) or OUTPUT_MARK not in manifest:
                raise DatagenError(f"{path} is not an output written by datagen (its {MANIFEST} is not ours): "
                                   "choose another --out")
            if manifest.get("format") != "webdataset":
                raise DatagenError(f"{path} was written with --format {manifest.get('format')}, not webdataset: "
                                   f"pass --format {manifest.get('format')} to resume it")
            old = (manifest["image_shape"], manifest["class_names"], manifest["provenance"])
            check_shards(manifest["shards"])
            if len(manifest["counts"]) != len(manifest["class_names"]) or int(manifest["shard_size"]) < 1:
                raise ValueError("counts or shard_size do not fit the class names")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DatagenError(f"cannot resume {path}: {MANIFEST} is unreadable ({error}); "
                               "pass --overwrite to start it again") from None
        check_resume(path, shape, names, prov, *old)
        if manifest.get("latent_dim") != latent_dim:
            raise DatagenError(f"cannot resume {path}: its samples have latent codes of {manifest.get('latent_dim')} "
                               f"values, this generator's have {latent_dim}; pass --overwrite to start it again")
        if shard_size is not None and int(shard_size) != int(manifest["shard_size"]):
            raise DatagenError(f"cannot resume {path}: it was written with --shard-size {manifest['shard_size']}, "
                               f"not {shard_size}; resume with the same --shard-size (or none) or pass --overwrite")
        try:
            _restore(path, manifest["shards"])
        except OSError as error:
            raise unwritable(path, error) from None
        return cls(path, manifest)

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        columns = self._batch(images, labels, seed_index, real, details)
        manifest = self._open()
        shards = [dict(shard) for shard in manifest["shards"]]  # committed only once the manifest says so
        done = sum(shard["samples"] for shard in shards)
        samples = [self._sample(sample_key(done + i), *(column[i] for column in columns))
                   for i in range(len(columns[1]))]
        try:
            if manifest["complete"]:  # a finished output that grows is unfinished again, before its shard changes
                manifest = {**manifest, "complete": False}
                self._write_manifest(manifest)
                self._manifest = manifest
            while samples:
                if not shards or shards[-1]["samples"] >= self.shard_size:
                    shards.append({"name": shard_name(len(shards)), "samples": 0, "data_bytes": 0, "bytes": 0})
                room = self.shard_size - shards[-1]["samples"]
                _append(self.path / shards[-1]["name"], shards[-1], samples[:room])
                samples = samples[room:]
            counts = (np.asarray(self._counts) + np.bincount(columns[1], minlength=len(self._counts))).tolist()
            after = {**manifest, "complete": False, "counts": counts, "shards": shards}
            self._write_manifest(after)
        except OSError as error:
            raise unwritable(self.path, error) from None
        self._manifest, self._counts = after, counts

    def _sample(self, key: str, image: np.ndarray, label: int, seed_index: int, real: bool, confidence: float,
                noise: float, latent: np.ndarray) -> list[tuple[str, bytes]]:
        """One sample's members, (name, bytes): KEY.png, KEY.cls, KEY.json."""
        meta = row_record(self.class_names, label, seed_index, real, confidence, noise,
                          latent if self.latent_dim is not None else None)
        return [(f"{key}.png", png_bytes(image)),
                (f"{key}.cls", str(int(label)).encode()),
                (f"{key}.json", json.dumps(meta, separators=(",", ":")).encode())]

    def finish(self) -> None:
        manifest = {**self._open(), "complete": True}
        try:
            self._write_manifest(manifest)
        except OSError as error:
            raise unwritable(self.path, error) from None
        self.close()


    def _write_manifest(self, manifest: dict | None = None) -> None:
        write_manifest(self.path, manifest or self._open(), self._encoded)


def check_shards(shards: list[dict]) -> None:
    """The manifest's shard records must be shard-000000.tar, … in order with sane lengths: resume truncates them."""
    for index, shard in enumerate(shards):
        lengths = [shard["samples"], shard["data_bytes"], shard["bytes"]]
        if shard["name"] != shard_name(index) or any(type(v) is not int for v in lengths):
            raise ValueError(f"shard record {index} is not {shard_name(index)} with whole-number lengths")
        if not (0 < shard["samples"] and 0 < shard["data_bytes"] < shard["bytes"]):
            raise ValueError(f"shard record {index} has impossible lengths {lengths}")


def _restore(root: Path, shards: list[dict]) -> None:
    """Bring the shards back to what the manifest records: a kill may have left a batch half appended to the last
    shard, a shard the manifest never heard of, or a temporary manifest."""
    for leftover in leftover_temporaries(root / MANIFEST):
        leftover.unlink()
    for file in root.iterdir():
        match = _SHARD.fullmatch(file.name)
        if match and int(match.group(1)) >= len(shards) and file.is_file():
            file.unlink()
    for index, shard in enumerate(shards):
        size = (root / shard["name"]).stat().st_size if (root / shard["name"]).is_file() else -1
        last = index == len(shards) - 1
        if size < shard["data_bytes"] or (not last and size != shard["bytes"]):
            state = "missing" if size < 0 else f"{size} bytes"
            raise DatagenError(f"cannot resume {root}: {shard['name']} is {state}, but {MANIFEST} records "
                               f"{shard['bytes']} bytes (damaged); pass --overwrite to start it again")
    if shards:
        last = shards[-1]
        with (root / last["name"]).open("r+b") as fh:  # the recorded members, then end-of-archive blocks
            fh.seek(last["data_bytes"])
            fh.write(bytes(last["bytes"] - last["data_bytes"]))
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())


def _append(path: Path, shard: dict, samples: list[list[tuple[str, bytes]]]) -> None:
    """Append samples after the shard's recorded members, close the archive again and fsync it; update `shard`."""
    with path.open("r+b" if shard["data_bytes"] else "wb") as fh:
        fh.truncate(shard["data_bytes"])  # the end-of-archive blocks, or a batch that was cut short
        fh.seek(shard["data_bytes"])
        with tarfile.open(fileobj=fh, mode="w", format=TAR_FORMAT) as tar:
            for sample in samples:
                for name, data in sample:
                    _add(tar, name, data)
            data_bytes = tar.offset
        fh.flush()
        os.fsync(fh.fileno())  # the bytes are on disk before the manifest vouches for them
        shard.update(samples=shard["samples"] + len(samples), data_bytes=data_bytes, bytes=fh.tell())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # TarInfo's defaults (mtime 0, mode 0o644, owner 0) are kept on purpose: the same samples give the same bytes.
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
