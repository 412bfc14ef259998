"""Checkpoints: one file each, written atomically, loaded with weights_only=True; models built fresh or from one."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from datagen.common.errors import DatagenError
from datagen.common.files import atomic_path
from datagen.model import nets, recipes, speed
from datagen.model.latent import Model
from datagen.model.recipes import Recipe


def save(path: Path, state: dict[str, Any]) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a crash never leaves half a checkpoint. Written
    through a Python file, so a failed write (disk full) keeps its OSError, which atomic_path names in one line."""
    with atomic_path(path, durable=True) as tmp, tmp.open("wb") as fh:
        torch.save(state, fh)


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


def new_model(recipe: Recipe, device: torch.device | str, how: speed.Speed) -> Model:
    """Freshly initialised nets of a recipe (from the global RNG) on `device`, in train mode, laid out per `how`."""
    model = Model(recipe=recipe, nets=nets.build(recipe))
    for _, net in model.nets.items():
        net.to(device).train()
    speed.prepare([net for _, net in model.nets.items()], how)
    return model


def load_model(state: dict[str, Any], device: torch.device | str = "cpu", how: speed.Speed | None = None) -> Model:
    """Rebuild the nets from the recipe stored in a checkpoint and load their weights, in eval mode (BatchNorm on
    running statistics: what a net makes of an image never depends on its batch; G is the weight average when the
    run kept one), laid out per `how` (default:
    datagen.model.speed's measured default for the device)."""
    recipe = recipes.parse(state["recipe"], "stored in the checkpoint")
    model = Model(recipe=recipe, nets=nets.build(recipe))
    for name, net in model.nets.items():
        net.load_state_dict(state["nets"][name])
        net.to(device).eval()
    model.prior = state.get("latent_prior")  # absent in checkpoints from before priors were fitted
    model.nets.generator = model.nets.sampler()  # every command after training renders with the averaged G
    speed.prepare([net for _, net in model.nets.items()], how or speed.choose(torch.device(device)))
    return model
