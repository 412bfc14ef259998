"""One file per checkpoint, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from datagen.errors import DatagenError


def save(path: Path, state: dict[str, Any]) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_plain(path: Path) -> Any:
    """Any file this module saved; weights_only=True, so a hostile file cannot run code."""
    if not path.is_file():
        raise DatagenError(f"no checkpoint at {path}: train first (datagen train DATASET) or give a run directory that has checkpoints/last.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatagenError(f"cannot read checkpoint {path} ({first}); it is corrupt or not a datagen checkpoint") from None


def load(path: Path) -> dict[str, Any]:
    """A full training checkpoint: nets, optimizers, RNG states, recipe, dataset fingerprint."""
    state = load_plain(path)
    if not isinstance(state, dict) or "recipe" not in state or "nets" not in state:
        raise DatagenError(f"{path} is not a datagen checkpoint (no recipe or nets inside)")
    return state
