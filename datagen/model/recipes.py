"""TOML recipe -> frozen dataclasses. Unknown keys are errors; `--set a.b=v` overrides; JSON round-trip.

A recipe reads like one of the thesis' architecture tables: one inline table per layer. The
resolved recipe (after overrides) is stored in the run directory and inside every checkpoint, so
any command can rebuild the nets from a checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from datagen.common.errors import DatagenError

MODELS = ("selfexgan", "bigan", "autoencoder")
ACTIVATIONS = ("none", "relu", "lrelu", "tanh", "sigmoid", "softmax")
LAYER_KINDS = ("fc", "conv", "deconv", "maxpool", "flatten", "reshape", "dropout")
# Which extra keys each layer kind accepts (besides its kind key).
_LAYER_KEYS = {
    "fc": {"bn", "act", "slope"},
    "conv": {"kernel", "stride", "bn", "act", "slope"},
    "deconv": {"kernel", "stride", "bn", "act", "slope"},
    "maxpool": set(),
    "flatten": set(),
    "reshape": set(),
    "dropout": set(),
}
NET_ROLES = ("generator", "encoder", "d1", "d2.x", "d2.joint", "dz")


@dataclass(frozen=True)
class Layer:
    kind: str
    value: Any  # width / channels / pool size / shape / dropout p / True for flatten
    kernel: int = 3
    stride: int = 1
    bn: bool = False
    act: str = "none"
    slope: float = 0.2

    def describe(self) -> str:
        if self.kind in ("conv", "deconv"):
            text = f"{self.kind} {self.value} k{self.kernel} s{self.stride}"
        elif self.kind == "flatten":
            text = "flatten"
        else:
            text = f"{self.kind} {self.value}"
        if self.bn:
            text += " bn"
        if self.act != "none":
            text += f" {self.act}"
        return text


@dataclass(frozen=True)
class ImageSpec:
    size: int
    channels: int
    crop: int | None = None  # centre-crop the source to crop×crop before resizing


PRIORS = ("gaussian", "mixture")
PRIOR_KEYS = ("prior", "mixture_components")  # latent keys fitted after training, never part of the nets


@dataclass(frozen=True)
class LatentSpec:
    dim: int
    # E's sigmoid output e is projected onto the sphere {z : |z - center| = radius} through
    # its direction from 0.5 (Eqs. 4.1-4.4). center 0 puts the codes where N(0, I) samples
    # concentrate (|z| ~ sqrt(M)); center 0.5 is the literal reading of the thesis.
    center: float = 0.0
    radius: float | None = None  # None: sqrt(dim)
    # What "a sample of the model" is after training (datagen.model.prior): "gaussian" is N(center, I), the z_n of
    # training; "mixture" is a Gaussian mixture fitted to E's codes of the training images every epoch.
    prior: str = "gaussian"
    mixture_components: int = 20


@dataclass(frozen=True)
class TrainSpec:
    batch_size: int = 64
    epochs: int = 25
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    kl_weight: float = 1.0
    eg_steps: int = 1  # E/G updates per D update; §3.1: "update G twice, then update D"
    # Additions beyond the thesis (off in the faithful recipes), measured side by side:
    recon_weight: float = 0.0  # L1 between x and G(E(x)) (ALICE-style image cycle)
    feature_recon_weight: float = 0.0  # L1 between D1's hidden features of x and of G(E(x)) (VAE-GAN's learned similarity)
    latent_cycle_weight: float = 0.0  # squared error between z and proj(E(G(z))) (AGE-style)
    # Make E's codes fill the prior, so G learns the whole sphere and not only the neighbourhoods of codes:
    latent_adversary_weight: float = 0.0  # a latent discriminator `dz`: codes vs prior samples (AAE, WAE-GAN)
    latent_mmd_weight: float = 0.0  # maximum mean discrepancy between codes and prior samples (WAE-MMD)
    ema_decay: float = 0.0  # > 0: sample from an exponential moving average of G's weights (0: G itself)
    # D1's term for prior samples G(z_n), against its term for reconstructions; 0 trains G on reconstructions only
    # (D1 sharpens G(E(x)), and samples from the prior are G's generalisation between codes, as in VAE-GAN)
    prior_sample_weight: float = 1.0
    spectral_norm: bool = False  # spectral normalisation of every conv and fc weight of D1, D2 and dz (SN-GAN)
    log_every: int = 10  # steps between metrics.jsonl lines


@dataclass(frozen=True)
class Recipe:
    name: str
    image: ImageSpec
    latent: LatentSpec
    generator: tuple[Layer, ...]
    encoder: tuple[Layer, ...]
    d1: tuple[Layer, ...]
    d2_x: tuple[Layer, ...]
    d2_joint: tuple[Layer, ...]
    dz: tuple[Layer, ...] = ()  # the latent discriminator, used when train.latent_adversary_weight > 0
    train: TrainSpec = field(default_factory=TrainSpec)
    model: str = "selfexgan"
    description: str = ""
    source: str = ""
    fixes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able dict in the recipe file's own shape (round-trips through parse)."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "model": self.model,
            "fixes": list(self.fixes),
            "image": _drop_none(dataclasses.asdict(self.image)),
            "latent": _drop_none(dataclasses.asdict(self.latent)),
            "train": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.train).items()},
            "generator": [_layer_to_dict(layer) for layer in self.generator],
            "encoder": [_layer_to_dict(layer) for layer in self.encoder],
            "d1": [_layer_to_dict(layer) for layer in self.d1],
            "d2": {"x": [_layer_to_dict(layer) for layer in self.d2_x],
                   "joint": [_layer_to_dict(layer) for layer in self.d2_joint]},
        }
        if self.dz:  # absent from recipes without one, so their recipe.json reads as it always did
            out["dz"] = [_layer_to_dict(layer) for layer in self.dz]
        return out

    def architecture(self) -> dict[str, Any]:
        """What must match for a checkpoint to load into nets built from this recipe (the prior is fitted after
        the fact, so a run may change it on --resume)."""
        d = self.to_dict()
        d["latent"] = {k: v for k, v in d["latent"].items() if k not in PRIOR_KEYS}
        return {k: d[k] for k in ("model", "image", "latent", "generator", "encoder", "d1", "d2", "dz") if k in d}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _layer_to_dict(layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {layer.kind: list(layer.value) if isinstance(layer.value, tuple) else layer.value}
    defaults = Layer(kind=layer.kind, value=layer.value)
    for key in _LAYER_KEYS[layer.kind]:
        if getattr(layer, key) != getattr(defaults, key) or (key in ("kernel", "stride")):
            out[key] = getattr(layer, key)
    return out


# ---------------------------------------------------------------- parsing


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    for key in sorted(keys - allowed):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
        raise DatagenError(f"{where}: unknown key '{key}'{hint}")


def _parse_layer(raw: Any, where: str) -> Layer:
    if not isinstance(raw, dict):
        raise DatagenError(f"{where}: a layer must be an inline table like {{ fc = 256, act = \"relu\" }}")
    kinds = [k for k in raw if k in LAYER_KINDS]
    if len(kinds) != 1:
        raise DatagenError(f"{where}: a layer needs exactly one of {', '.join(LAYER_KINDS)}; got {sorted(raw)}")
    kind = kinds[0]
    _unknown(set(raw) - {kind}, _LAYER_KEYS[kind], f"{where} ({kind})")
    value = raw[kind]
    if kind == "reshape":
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and v > 0 for v in value)):
            raise DatagenError(f"{where}: reshape takes [C, H, W] of positive integers, got {value!r}")
        value = tuple(value)
    elif kind == "dropout":
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DatagenError(f"{where}: dropout takes a probability in [0, 1), got {value!r}")
        value = float(value)
    elif kind == "flatten":
        value = True
    elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DatagenError(f"{where}: {kind} takes a positive integer, got {value!r}")
    act = raw.get("act", "none")
    if act not in ACTIVATIONS:
        close = difflib.get_close_matches(str(act), ACTIVATIONS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(ACTIVATIONS)}"
        raise DatagenError(f"{where}: unknown activation '{act}' ({hint})")
    if not isinstance(raw.get("bn", False), bool):
        raise DatagenError(f"{where}: bn must be true or false, got {raw['bn']!r}")
    if not _is_number(raw.get("slope", 0.2)):
        raise DatagenError(f"{where}: slope must be a number, got {raw['slope']!r}")
    stride_default = 2 if kind == "deconv" else 1
    fields = {"kernel": raw.get("kernel", 3), "stride": raw.get("stride", stride_default)}
    for key, number in fields.items():
        if not _is_int(number) or number <= 0:
            raise DatagenError(f"{where}: {key} must be a positive integer, got {number!r}")
    return Layer(kind=kind, value=value, bn=raw.get("bn", False), act=act,
                 slope=float(raw.get("slope", 0.2)), **fields)


def _parse_layers(raw: Any, where: str) -> tuple[Layer, ...]:
    if not isinstance(raw, list) or not raw:
        raise DatagenError(f"{where}: expected a non-empty list of layers")
    return tuple(_parse_layer(layer, f"{where}[{i}]") for i, layer in enumerate(raw))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(name: str, annotation: str, value: Any, where: str) -> Any:
    """Check one spec field against its annotation; ints stay ints, numbers become floats."""
    if value is None and "None" in annotation:
        return None
    if annotation.startswith("int"):
        if not _is_int(value) or value < 0:
            raise DatagenError(f"{where}.{name} must be a whole number >= 0, got {value!r}")
        return value
    if annotation.startswith("bool"):
        if not isinstance(value, bool):
            raise DatagenError(f"{where}.{name} must be true or false, got {value!r}")
        return value
    if annotation.startswith("str"):
        if not isinstance(value, str):
            raise DatagenError(f"{where}.{name} must be a string, got {value!r}")
        return value
    if annotation.startswith("float"):
        if not _is_number(value):
            raise DatagenError(f"{where}.{name} must be a number, got {value!r}")
        return float(value)
    # betas: Adam's two decay rates
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(b) and 0 <= b < 1 for b in value)):
        raise DatagenError(f"{where}.{name} must be two numbers in [0, 1), e.g. [0.5, 0.999], got {value!r}")
    return tuple(float(b) for b in value)


def _parse_spec(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise DatagenError(f"{where}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _unknown(set(raw), set(fields), where)
    missing = [name for name, f in fields.items() if name not in raw and f.default is dataclasses.MISSING]
    if missing:
        raise DatagenError(f"{where}: missing {', '.join(missing)}")
    return cls(**{name: _check_value(name, str(fields[name].type), value, where) for name, value in raw.items()})


TOP_KEYS = {"name", "description", "source", "model", "fixes", "image", "latent", "train",
            "generator", "encoder", "d1", "d2", "dz"}


def parse(raw: dict[str, Any], origin: str) -> Recipe:
    """Validate a recipe dict (from TOML or recipe.json) into a Recipe; errors name the key."""
    _unknown(set(raw), TOP_KEYS, f"recipe {origin}")
    for key in ("name", "image", "latent", "generator", "encoder", "d1", "d2"):
        if key not in raw:
            raise DatagenError(f"recipe {origin}: missing '{key}' (see recipes/mnist.toml for the format)")
    model = raw.get("model", "selfexgan")
    if model not in MODELS:
        raise DatagenError(f"recipe {origin}: model must be one of {', '.join(MODELS)}, got '{model}'")
    d2 = raw["d2"]
    if not isinstance(d2, dict):
        raise DatagenError(f"recipe {origin}: d2 must be a table with 'x' and 'joint' layer lists")
    _unknown(set(d2), {"x", "joint"}, f"recipe {origin}: d2")
    image = _parse_spec(ImageSpec, raw["image"], f"recipe {origin}: image")
    train = _parse_spec(TrainSpec, raw.get("train", {}), f"recipe {origin}: train")
    latent = _parse_spec(LatentSpec, raw["latent"], f"recipe {origin}: latent")
    if image.size <= 0 or image.channels not in (1, 3) or image.crop == 0:
        raise DatagenError(f"recipe {origin}: image needs size > 0, channels 1 or 3, and crop > 0 if given")
    if latent.dim < 1 or (latent.radius is not None and latent.radius <= 0):
        raise DatagenError(f"recipe {origin}: latent needs dim >= 1 and radius > 0 if given")
    if latent.prior not in PRIORS or latent.mixture_components < 1:
        raise DatagenError(f"recipe {origin}: latent.prior must be one of {', '.join(PRIORS)} and "
                           f"latent.mixture_components >= 1, got {latent.prior!r} and {latent.mixture_components}")
    if train.batch_size < 2 or train.epochs < 1 or train.eg_steps < 1 or train.log_every < 1 or train.lr <= 0:
        raise DatagenError(f"recipe {origin}: train needs batch_size >= 2, lr > 0, and epochs, eg_steps, log_every >= 1")
    weights = ("kl_weight", "recon_weight", "feature_recon_weight", "latent_cycle_weight", "latent_adversary_weight",
               "latent_mmd_weight", "prior_sample_weight")
    if min(getattr(train, w) for w in weights) < 0:
        raise DatagenError(f"recipe {origin}: train's {', '.join(weights)} must be >= 0")
    if not 0 <= train.ema_decay < 1:
        raise DatagenError(f"recipe {origin}: train.ema_decay must be in [0, 1) (0 turns the average off), got {train.ema_decay}")
    if model == "autoencoder" and (train.latent_adversary_weight > 0 or train.ema_decay > 0):
        raise DatagenError(f"recipe {origin}: the autoencoder has no adversary to average against and trains no dz; "
                           f"set latent_adversary_weight and ema_decay to 0, or use model = \"selfexgan\"")
    if train.feature_recon_weight > 0 and model != "selfexgan":
        raise DatagenError(f"recipe {origin}: train.feature_recon_weight compares images in D1's features, and only "
                           f"model = \"selfexgan\" has D1; set it to 0 or use selfexgan")
    dz = _parse_layers(raw["dz"], "dz") if "dz" in raw else ()
    if train.latent_adversary_weight > 0 and not dz:
        raise DatagenError(f"recipe {origin}: train.latent_adversary_weight needs a latent discriminator: add a "
                           f"'dz' layer list ending in {{ fc = 1, act = \"sigmoid\" }} (see recipes/mnist-cpu-aae16.toml)")
    fixes = raw.get("fixes", [])
    if not isinstance(fixes, list) or not all(isinstance(f, str) for f in fixes):
        raise DatagenError(f"recipe {origin}: fixes must be a list of strings")
    return Recipe(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        source=str(raw.get("source", "")),
        model=model,
        fixes=tuple(fixes),
        image=image,
        latent=latent,
        train=train,
        generator=_parse_layers(raw["generator"], "generator"),
        encoder=_parse_layers(raw["encoder"], "encoder"),
        d1=_parse_layers(raw["d1"], "d1"),
        d2_x=_parse_layers(d2.get("x"), "d2.x"),
        d2_joint=_parse_layers(d2.get("joint"), "d2.joint"),
        dz=dz,
    )


# ---------------------------------------------------------------- finding recipes

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def builtin_names() -> list[str]:
    files = resources.files("datagen.builtin_recipes").iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DatagenError(f"recipe {origin} is not valid TOML: {exc}") from None


def load(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a TOML file by path."""
    path = Path(name_or_path)
    # A built-in name wins over a same-named folder in the working directory; paths look like paths.
    if path.suffix == ".toml" or "/" in name_or_path or os.sep in name_or_path:
        if not path.is_file():
            raise DatagenError(f"recipe file not found: {path} (give a built-in name: {', '.join(builtin_names())})")
        return parse(_read_toml(path.read_text(), str(path)), str(path))
    names = builtin_names()
    if not _NAME.match(name_or_path) or name_or_path not in names:
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"built-in recipes: {', '.join(names)}"
        raise DatagenError(f"unknown recipe '{name_or_path}' ({hint}); or give a path to a .toml file")
    text = resources.files("datagen.builtin_recipes").joinpath(f"{name_or_path}.toml").read_text()
    return parse(_read_toml(text, name_or_path), name_or_path)


def apply_overrides(recipe: Recipe, assignments: list[str]) -> Recipe:
    """Apply `key=value` / `a.b=value` overrides; values are read as TOML (strings may go unquoted)."""
    if not assignments:
        return recipe
    raw = recipe.to_dict()
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DatagenError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word such as bigan
        parts = key.split(".")
        node = raw
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            allowed = set(node) | _optional_keys(parts[:depth])
            if part not in allowed:
                close = difflib.get_close_matches(where, sorted(_settable_keys(raw)), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise DatagenError(f"--set {key}: unknown recipe key '{where}'{hint}")
            if depth == len(parts) - 1:
                if isinstance(node.get(part), list) and node.get(part) and isinstance(node[part][0], dict):
                    raise DatagenError(f"--set {key}: layer lists cannot be set inline; copy the recipe to a .toml file and edit it")
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise DatagenError(f"--set {key}: '{where}' is not a table")
    return parse(raw, f"{recipe.name} (with --set)")


def _optional_keys(path: list[str]) -> set[str]:
    """Keys a table may hold although the resolved dict omitted them (None-valued fields)."""
    cls = {("image",): ImageSpec, ("latent",): LatentSpec, ("train",): TrainSpec}.get(tuple(path))
    return {f.name for f in dataclasses.fields(cls)} if cls else set()


def _settable_keys(raw: dict[str, Any]) -> list[str]:
    keys = [k for k, v in raw.items() if not isinstance(v, dict)]
    for table in ("image", "latent", "train"):
        keys += [f"{table}.{k}" for k in _optional_keys([table])]
    return keys
