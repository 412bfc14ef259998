"""The objectives and one training step: SelfExGAN (Chapter 3, §4.1), BiGAN and the autoencoder floor.

SelfExGAN, per iteration:
    z_e = proj(E(x)),  x_hat = G(z_e),  z_hat = proj(E(x_hat)),  x_n = G(z_n) with z_n ~ N(0, I)
    D1: real x  vs fake x_hat, x_n
    D2: real (x, z_e)  vs fake (x_hat, z_e), (x, z_hat)
E and G minimise the same objective with the labels flipped (non-saturating BCE), plus the KL
term on the batch statistics of the projected codes. No reconstruction loss: the options
`recon_weight`, `feature_recon_weight` (the same image cycle measured in D1's hidden features, VAE-GAN's) and
`latent_cycle_weight` are named additions beyond the thesis, off by default, as are `latent_adversary_weight` and
`latent_mmd_weight`, which pull E's codes onto the whole prior so that G learns to render all of it, and
`ema_decay`, G's weights averaged over steps for sampling.

`bigan` (Donahue et al.) is the comparison on the same nets: D2 alone, real (x, z_e) vs fake
(G(z_n), z_n). `autoencoder` is the non-adversarial floor: L1 reconstruction + KL, no D.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from datagen.model.latent import Model, kl_to_unit_gaussian
from datagen.model.nets import ELEMENTWISE_ACTIVATIONS


def real_logit(out: torch.Tensor) -> torch.Tensor:
    """One logit per sample from a 1-unit (sigmoid) or 2-unit (softmax) head.

    For a 2-way softmax p(real) = sigmoid(l1 - l0), so BCE on l1 - l0 is exactly its cross-entropy.
    """
    return out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0]


def bce(out: torch.Tensor, target: float) -> torch.Tensor:
    logit = real_logit(out)
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def _selfexgan_forward(model: Model, x: torch.Tensor, z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    n = x.shape[0]
    z_e = model.encode(x)
    # One G call for both codes keeps G's BatchNorm statistics those of the mix it is trained on.
    fakes = model.decode(torch.cat([z_e, z_n]))
    x_hat, x_n = fakes[:n], fakes[n:]
    z_hat = model.encode(x_hat)
    return {"z_e": z_e, "x_hat": x_hat, "x_n": x_n, "z_hat": z_hat}


def _d1_batch(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor],
              hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
    """D1 on x, x_hat and x_n in one call (x_n left out when its weight is 0), in both steps alike.

    With `hidden`, D1 runs layer by layer and appends the output of each of its activations before the head.
    """
    prior = [f["x_n"]] if model.recipe.train.prior_sample_weight > 0 else []
    batch = torch.cat([x, f["x_hat"], *prior])
    if hidden is None:
        return model.nets.d1(batch)
    layers = list(model.nets.d1)
    for i, layer in enumerate(layers):
        batch = layer(batch)
        if isinstance(layer, ELEMENTWISE_ACTIVATIONS) and i < len(layers) - 1:
            hidden.append(batch)
    return batch


def feature_recon(hidden: list[torch.Tensor], n: int) -> torch.Tensor:
    """Mean over D1's hidden layers of the L1 distance between the features of x (the batch's first n) and of x_hat
    (the next n): a reconstruction error in what D1 looks at rather than in pixels (Larsen et al. 2016)."""
    return torch.stack([(h[n:2 * n] - h[:n]).abs().mean() for h in hidden]).mean()


def _d1_fakes(model: Model, d1: torch.Tensor, n: int, target: float) -> torch.Tensor:
    """D1's loss on the fakes: x_hat and x_n, x_n's term weighted by train.prior_sample_weight (1: the thesis'
    plain mean over both)."""
    w = model.recipe.train.prior_sample_weight
    if w == 1:
        return bce(d1[n:], target)
    if w == 0:
        return bce(d1[n:2 * n], target)
    return (bce(d1[n:2 * n], target) + w * bce(d1[2 * n:], target)) / (1 + w)


def _d2_pairs(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """D2 on the real pair (x, z_e), then the fake pairs (x_hat, z_e) and (x, z_hat), in one call."""
    return model.nets.d2(torch.cat([x, f["x_hat"], x]), torch.cat([f["z_e"], f["z_e"], f["z_hat"]]))


def prior_codes(model: Model, z_n: torch.Tensor) -> torch.Tensor:
    """Samples of the prior E's codes should fill: the Gaussian batch moved onto the codes' sphere."""
    return model.project(z_n)


def _latent_d_loss(model: Model, f: dict[str, torch.Tensor], z_n: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """dz: prior samples real, E's codes fake (AAE). Zero when the recipe has no latent adversary."""
    if model.nets.dz is None:
        return torch.zeros((), device=z_n.device)
    n = z_n.shape[0]
    dz = model.nets.dz(torch.cat([prior_codes(model, z_n), f["z_e"]]))
    out["dz"] = bce(dz[:n], 1.0) + bce(dz[n:], 0.0)
    return out["dz"]


def latent_mmd(codes: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between two batches with the inverse multiquadratic kernel at several scales (WAE-MMD).

    The base scale 2 * dim is the mean squared distance between two points of the sphere of radius sqrt(dim).
    """
    n, dim = codes.shape
    both = torch.cat([codes, prior])
    sq = torch.cdist(both, both).pow(2)
    off_diagonal = 1 - torch.eye(n, device=codes.device)
    total = torch.zeros((), device=codes.device)
    for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2 * dim * scale
        k = c / (c + sq)
        within = ((k[:n, :n] + k[n:, n:]) * off_diagonal).sum() / (n * (n - 1))
        total = total + within - 2 * k[:n, n:].mean()
    return total


def selfexgan_d_loss(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    """D1: x real, x_hat and x_n fake. D2: (x, z_e) real, (x_hat, z_e) and (x, z_hat) fake. dz (if any): prior
    samples real, codes fake."""
    n = x.shape[0]
    d1 = _d1_batch(model, x, f)
    d1_loss = bce(d1[:n], 1.0) + _d1_fakes(model, d1, n, 0.0)
    d2 = _d2_pairs(model, x, f)
    d2_loss = bce(d2[:n], 1.0) + bce(d2[n:], 0.0)
    out = {"d1": d1_loss, "d2": d2_loss}
    return {"loss": d1_loss + d2_loss + _latent_d_loss(model, f, z_n, out), **out}


def selfexgan_eg_loss(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same terms with the labels flipped.

    D1 sees the same batch as in the D step (x with the fakes), so its BatchNorm statistics, and so
    the function E and G play against, are the ones D1 was trained with; D1's real-x term has no
    E/G gradient and is left out of the loss.
    """
    n = x.shape[0]
    t = model.recipe.train
    hidden: list[torch.Tensor] | None = [] if t.feature_recon_weight > 0 else None
    d1 = _d1_batch(model, x, f, hidden)
    d2 = _d2_pairs(model, x, f)
    adv = _d1_fakes(model, d1, n, 1.0) + bce(d2[:n], 0.0) + bce(d2[n:], 1.0)
    kl = kl_to_unit_gaussian(f["z_e"])
    loss = adv + t.kl_weight * kl
    out = {"adv": adv, "kl": kl}
    if hidden is not None:
        out["feature_recon"] = feature_recon(hidden, n)
        loss = loss + t.feature_recon_weight * out["feature_recon"]
    loss = loss + _extras(model, x, f, z_n, out)
    return {"loss": loss, **out}


def _extras(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The named additions beyond the thesis; each is logged when switched on."""
    t = model.recipe.train
    extra = torch.zeros((), device=x.device)
    if t.recon_weight > 0:
        out["recon"] = (f["x_hat"] - x).abs().mean()
        extra = extra + t.recon_weight * out["recon"]
    if t.latent_cycle_weight > 0:
        # AGE-style: a code survives a trip through G and back through E, for E's codes and for
        # Gaussian ones (projected onto the sphere, where E's codes live).
        z_n_hat = model.encode(f["x_n"])
        m = model.recipe.latent.dim
        cycle = ((f["z_hat"] - f["z_e"]).pow(2).sum(1).mean() + (z_n_hat - model.project(z_n)).pow(2).sum(1).mean()) / m
        out["latent_cycle"] = cycle
        extra = extra + t.latent_cycle_weight * cycle
    if t.latent_adversary_weight > 0:  # E makes its codes pass for prior samples
        out["latent_adv"] = bce(model.nets.dz(f["z_e"]), 1.0)
        extra = extra + t.latent_adversary_weight * out["latent_adv"]
    if t.latent_mmd_weight > 0:
        out["latent_mmd"] = latent_mmd(f["z_e"], prior_codes(model, z_n))
        extra = extra + t.latent_mmd_weight * out["latent_mmd"]
    return extra


def _bigan_forward(model: Model, x: torch.Tensor, z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"z_e": model.encode(x), "x_n": model.decode(z_n)}


def bigan_d_loss(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    d2 = model.nets.d2(torch.cat([x, f["x_n"]]), torch.cat([f["z_e"], z_n]))
    n = x.shape[0]
    d2_loss = bce(d2[:n], 1.0) + bce(d2[n:], 0.0)
    out = {"d2": d2_loss}
    return {"loss": d2_loss + _latent_d_loss(model, f, z_n, out), **out}


def bigan_eg_loss(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    n = x.shape[0]
    d2 = model.nets.d2(torch.cat([x, f["x_n"]]), torch.cat([f["z_e"], z_n]))
    adv = bce(d2[:n], 0.0) + bce(d2[n:], 1.0)
    kl = kl_to_unit_gaussian(f["z_e"])
    out = {"adv": adv, "kl": kl}
    t = model.recipe.train
    if t.recon_weight > 0 or t.latent_cycle_weight > 0:  # the image and code cycles need G(E(x)) and E(G(E(x)))
        x_hat = model.decode(f["z_e"])
        f = {**f, "x_hat": x_hat, "z_hat": model.encode(x_hat)}
    loss = adv + t.kl_weight * kl + _extras(model, x, f, z_n, out)
    return {"loss": loss, **out}


def _autoencoder_forward(model: Model, x: torch.Tensor, z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    z_e = model.encode(x)
    return {"z_e": z_e, "x_hat": model.decode(z_e)}


def autoencoder_loss(model: Model, x: torch.Tensor, f: dict[str, torch.Tensor], z_n: torch.Tensor) -> dict[str, torch.Tensor]:
    recon = (f["x_hat"] - x).abs().mean()
    kl = kl_to_unit_gaussian(f["z_e"])
    return {"loss": recon + model.recipe.train.kl_weight * kl, "recon": recon, "kl": kl}


@dataclass
class Optimizers:
    eg: torch.optim.Optimizer
    d: torch.optim.Optimizer | None

    def state_dict(self) -> dict:
        return {"eg": self.eg.state_dict(), "d": self.d.state_dict() if self.d else None}

    def load_state_dict(self, state: dict) -> None:
        self.eg.load_state_dict(state["eg"])
        if self.d is not None:
            self.d.load_state_dict(state["d"])


def make_optimizers(model: Model) -> Optimizers:
    """Adam, lr 1e-3, betas (0.9, 0.99) for all sub-nets (§4.1.1) unless the recipe says otherwise."""
    t = model.recipe.train
    nets = model.nets
    eg = torch.optim.Adam([*nets.encoder.parameters(), *nets.generator.parameters()], lr=t.lr, betas=t.betas)
    d_params = [p for net in nets.discriminators() for p in net.parameters()]
    d = torch.optim.Adam(d_params, lr=t.lr, betas=t.betas) if d_params else None
    return Optimizers(eg=eg, d=d)


_OBJECTIVES = {  # name: (E/G forward, D loss or None, E/G loss)
    "selfexgan": (_selfexgan_forward, selfexgan_d_loss, selfexgan_eg_loss),
    "bigan": (_bigan_forward, bigan_d_loss, bigan_eg_loss),
    "autoencoder": (_autoencoder_forward, None, autoencoder_loss),
}


# Called between a phase's backward pass and its optimiser step: averages the optimiser's gradients in place across
# the processes of a distributed run and returns the phase's loss terms averaged too (datagen.train.distributed).
Average = Callable[[torch.optim.Optimizer, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def train_step(model: Model, opt: Optimizers, x: torch.Tensor, z_noise: list[torch.Tensor],
               precision: Callable[[], AbstractContextManager] = nullcontext, average: Average | None = None) -> dict[str, float]:
    """One D update then `eg_steps` E/G updates (§3.1: don't let D get too strong).

    z_noise holds one Gaussian batch per E/G update (the D update reuses the first), drawn by the
    caller from the run's own generator so a resumed run replays the same noise. The first E/G
    update reuses the forward pass the D update ran on (same x, same noise, E and G unchanged).
    `precision` wraps the forward passes and losses (autocast on CUDA; see datagen.speed), never the
    backward passes or the optimiser steps. `average` (several processes only) runs after each backward pass; the
    terms it returns are the ones logged and checked for NaN, so every process stops at the same update.
    """
    forward, d_fn, eg_fn = _OBJECTIVES[model.recipe.model]
    logs: dict[str, float] = {}
    with precision():
        f = forward(model, x, z_noise[0])
    if d_fn is not None:
        with precision():
            d_out = d_fn(model, x, {k: v.detach() for k, v in f.items()}, z_noise[0])
        if not _update(opt.d, d_out, "d", logs, average):
            return logs  # never step on a NaN: the caller stops with the weights as they were
    discriminators = model.nets.discriminators()
    for d in discriminators:  # D's weights are constants for the E/G update
        d.requires_grad_(False)
    try:
        for i, z_n in enumerate(z_noise):
            with precision():
                if i > 0:  # E and G changed in the previous update: a new pass
                    f = forward(model, x, z_n)
                eg_out = eg_fn(model, x, f, z_n)
            if not _update(opt.eg, eg_out, "eg", logs, average):
                break
    finally:
        for d in discriminators:
            d.requires_grad_(True)
    if model.nets.generator_ema is not None:
        model.nets.generator_ema.update_parameters(model.nets.generator)
    return logs


def _update(optimizer: torch.optim.Optimizer, out: dict[str, torch.Tensor], prefix: str, logs: dict[str, float],
            average: Average | None) -> bool:
    """One phase's backward pass and step, its terms logged as `prefix`_name; no step (False) on a non-finite loss."""
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if average is not None:
        out = average(optimizer, {k: v.detach() for k, v in out.items()})
    logs.update({f"{prefix}_{k}" if k != "loss" else f"{prefix}_loss": v.item() for k, v in out.items()})
    if not math.isfinite(logs[f"{prefix}_loss"]):
        return False
    optimizer.step()
    return True
