"""Build each role's network from a recipe's layer list, checking every shape at build time.

Shape errors name the net and the layer ("generator[4] deconv ..."), so a typo in a recipe is
caught before any data is loaded or anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from datagen.common.errors import DatagenError
from datagen.model.recipes import Layer, Recipe

Shape = tuple[int, ...]  # without the batch axis: (C, H, W) or (F,)


ACTIVATION_TYPES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "lrelu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softmax": nn.Softmax,
}
# Those applied unit by unit, whose outputs are a net's hidden features; softmax normalises across units.
ELEMENTWISE_ACTIVATIONS = tuple(kind for name, kind in ACTIVATION_TYPES.items() if name != "softmax")


def _activation(layer: Layer) -> nn.Module | None:
    if layer.act == "none":
        return None
    if layer.act == "lrelu":
        return nn.LeakyReLU(layer.slope)
    if layer.act == "softmax":
        return nn.Softmax(dim=1)
    return ACTIVATION_TYPES[layer.act]()


def _build_layer(layer: Layer, shape: Shape, where: str) -> tuple[list[nn.Module], Shape]:
    """Modules for one recipe layer and the shape it outputs."""
    def fail(why: str) -> DatagenError:
        return DatagenError(f"recipe shape mismatch at {where} ({layer.describe()}): {why}")

    mods: list[nn.Module] = []
    if layer.kind == "fc":
        features = math.prod(shape)
        if len(shape) != 1:
            mods.append(nn.Flatten())
        mods.append(nn.Linear(features, layer.value, bias=not layer.bn))
        out: Shape = (layer.value,)
        if layer.bn:
            mods.append(nn.BatchNorm1d(layer.value))
    elif layer.kind in ("conv", "deconv"):
        if len(shape) != 3:
            raise fail(f"needs an image-shaped input (C, H, W) but gets {shape}; add a reshape before it")
        c, h, w = shape
        k, s = layer.kernel, layer.stride
        if layer.kind == "conv":
            # "same" padding: output = ceil(input / stride), as in the thesis' tables
            mods.append(nn.Conv2d(c, layer.value, k, s, padding=k // 2, bias=not layer.bn))
            out = (layer.value, (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1)
        else:
            # padding and output_padding chosen so the output is exactly input * stride
            pad = (k - 1) // 2
            extra = s - 1 - (k - 1 - 2 * pad)
            if extra < 0 or extra >= s:
                raise fail(f"kernel {k} with stride {s} cannot give an exact x{s} upsampling; use an odd kernel")
            mods.append(nn.ConvTranspose2d(c, layer.value, k, s, padding=pad, output_padding=extra, bias=not layer.bn))
            out = (layer.value, h * s, w * s)
        if layer.bn:
            mods.append(nn.BatchNorm2d(layer.value))
    elif layer.kind == "maxpool":
        if len(shape) != 3 or shape[1] % layer.value or shape[2] % layer.value:
            raise fail(f"needs a (C, H, W) input divisible by {layer.value}, gets {shape}")
        mods.append(nn.MaxPool2d(layer.value))
        out = (shape[0], shape[1] // layer.value, shape[2] // layer.value)
    elif layer.kind == "flatten":
        mods.append(nn.Flatten())
        out = (math.prod(shape),)
    elif layer.kind == "reshape":
        if math.prod(shape) != math.prod(layer.value):
            raise fail(f"needs {math.prod(layer.value)} inputs but gets {math.prod(shape)} (shape {shape})")
        mods.append(nn.Unflatten(1, layer.value) if len(shape) == 1 else nn.Sequential(nn.Flatten(), nn.Unflatten(1, layer.value)))
        out = tuple(layer.value)
    else:  # dropout
        mods.append(nn.Dropout(layer.value))
        out = shape
    act = _activation(layer)
    if act is not None:
        mods.append(act)
    if any(d <= 0 for d in out):
        raise fail(f"output shape {out} is empty; the input {shape} is too small for it")
    return mods, out


def build_stack(layers: tuple[Layer, ...], in_shape: Shape, role: str, *, head: bool = False) -> tuple[nn.Sequential, Shape]:
    """nn.Sequential for a layer list; with head=True the final sigmoid/softmax is left to the loss."""
    mods: list[nn.Module] = []
    shape = in_shape
    for i, layer in enumerate(layers):
        if head and i == len(layers) - 1:
            if layer.act not in ("sigmoid", "softmax", "none") or layer.kind != "fc":
                raise DatagenError(f"recipe: {role}[{i}] must be the discriminator head: an fc layer with 1 (sigmoid) or 2 (softmax) outputs")
            layer = Layer(kind=layer.kind, value=layer.value, bn=layer.bn)  # logits out; the loss applies the sigmoid
        layer_mods, shape = _build_layer(layer, shape, f"{role}[{i}]")
        mods.extend(layer_mods)
    return nn.Sequential(*mods), shape


class PairDiscriminator(nn.Module):
    """D2: an image branch, then the joint net on concat(branch(x), z)."""

    def __init__(self, x_branch: nn.Module, joint: nn.Module):
        super().__init__()
        self.x_branch = x_branch
        self.joint = joint

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_branch(x).flatten(1), z], dim=1))


@dataclass
class Nets:
    encoder: nn.Module
    generator: nn.Module
    d1: nn.Module | None
    d2: PairDiscriminator | None
    dz: nn.Module | None = None  # the latent discriminator (train.latent_adversary_weight)
    generator_ema: AveragedModel | None = None  # G's weights averaged over steps (train.ema_decay); never trained

    def items(self) -> list[tuple[str, nn.Module]]:
        pairs = [("encoder", self.encoder), ("generator", self.generator), ("d1", self.d1), ("d2", self.d2),
                 ("dz", self.dz), ("generator_ema", self.generator_ema)]
        return [(name, net) for name, net in pairs if net is not None]

    def sampler(self) -> nn.Module:
        """The G that renders images for users: the averaged one when the run keeps an average."""
        return self.generator if self.generator_ema is None else self.generator_ema.module

    def discriminators(self) -> list[nn.Module]:
        return [net for net in (self.d1, self.d2, self.dz) if net is not None]


def nets_used(model: str) -> tuple[str, ...]:
    """The sub-nets a model variant trains: BiGAN has one (pair) discriminator, the autoencoder none."""
    return {"selfexgan": ("encoder", "generator", "d1", "d2"),
            "bigan": ("encoder", "generator", "d2"),
            "autoencoder": ("encoder", "generator")}[model]


def _check_head(shape: Shape, role: str) -> None:
    if shape not in ((1,), (2,)):
        raise DatagenError(f"recipe shape mismatch: {role} must end in 1 (sigmoid) or 2 (softmax) outputs, it ends in {shape}")


def build(recipe: Recipe) -> Nets:
    """All nets of a recipe, with every role's input and output shape checked."""
    img: Shape = (recipe.image.channels, recipe.image.size, recipe.image.size)
    m = recipe.latent.dim
    generator, g_out = build_stack(recipe.generator, (m,), "generator")
    if g_out != img:
        raise DatagenError(f"recipe shape mismatch: generator ends in {g_out} but the image is {img} "
                           f"(fix the last layer, generator[{len(recipe.generator) - 1}])")
    encoder, e_out = build_stack(recipe.encoder, img, "encoder")
    if e_out != (m,):
        raise DatagenError(f"recipe shape mismatch: encoder ends in {e_out} but latent.dim is {m} "
                           f"(fix the last layer, encoder[{len(recipe.encoder) - 1}])")
    if recipe.encoder[-1].act != "sigmoid":
        raise DatagenError(f"recipe: encoder[{len(recipe.encoder) - 1}] must end in act = \"sigmoid\" (the sphere projection centres on 0.5)")
    used = nets_used(recipe.model)
    d1 = d2 = None
    if "d1" in used:
        d1, d1_out = build_stack(recipe.d1, img, "d1", head=True)
        _check_head(d1_out, "d1")
    if "d2" in used:
        x_branch, x_out = build_stack(recipe.d2_x, img, "d2.x")
        joint, j_out = build_stack(recipe.d2_joint, (math.prod(x_out) + m,), "d2.joint", head=True)
        _check_head(j_out, "d2.joint")
        d2 = PairDiscriminator(x_branch, joint)
    dz = None
    if recipe.train.latent_adversary_weight > 0:
        dz, dz_out = build_stack(recipe.dz, (m,), "dz", head=True)
        _check_head(dz_out, "dz")
    if recipe.train.spectral_norm:
        for net in (d1, d2, dz):
            if net is not None:
                _spectral_norm(net)
    # The average starts as a copy of G and follows it (buffers too: BatchNorm's running statistics).
    ema = (AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(recipe.train.ema_decay), use_buffers=True)
           if recipe.train.ema_decay > 0 else None)
    return Nets(encoder=encoder, generator=generator, d1=d1, d2=d2, dz=dz, generator_ema=ema)


def _spectral_norm(net: nn.Module) -> None:
    """Bound each weight's largest singular value by 1 (Miyato et al. 2018), so D cannot sharpen without limit."""
    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(module)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def layer_shapes(net: nn.Module, in_shapes: list[Shape]) -> list[tuple[str, Shape]]:
    """(module description, output shape) for each top-level module, traced with a batch of 2."""
    rows: list[tuple[str, Shape]] = []
    inputs = [torch.zeros(2, *s) for s in in_shapes]
    with torch.no_grad():
        was_training = net.training
        net.eval()
        if isinstance(net, PairDiscriminator):
            h = inputs[0]
            for mod in net.x_branch:
                h = mod(h)
                rows.append((f"x: {mod}", tuple(h.shape[1:])))
            h = torch.cat([h.flatten(1), inputs[1]], dim=1)
            rows.append(("concat(x, z)", tuple(h.shape[1:])))
            for mod in net.joint:
                h = mod(h)
                rows.append((str(mod), tuple(h.shape[1:])))
        else:
            h = inputs[0]
            for mod in net:
                h = mod(h)
                rows.append((str(mod), tuple(h.shape[1:])))
        net.train(was_training)
    return rows
