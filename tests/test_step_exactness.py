"""Speed changes that are meant to be exact give the same training, to the last bit.

The reference below is the step written plainly, as before the optimisation: the D update runs its
own E/G forward pass (without gradients) and the E/G update runs another. The optimised step shares
the first pass. Losses and weights must agree exactly over several steps; only BatchNorm's running
statistics (used in eval mode, never in a training loss) differ, because the shared pass updates
them once per step instead of twice.
"""

import copy
import math

import pytest
import torch

from datagen import nets, recipes
from datagen.selfexgan import _OBJECTIVES, Model, make_optimizers, train_step


def two_pass_step(model, opt, x, z_noise):
    forward, d_fn, eg_fn = _OBJECTIVES[model.recipe.model]
    logs = {}
    if d_fn is not None:
        with torch.no_grad():
            f = forward(model, x, z_noise[0])
        d_out = d_fn(model, x, f, z_noise[0])
        logs.update({f"d_{k}" if k != "loss" else "d_loss": v.item() for k, v in d_out.items()})
        opt.d.zero_grad(set_to_none=True)
        d_out["loss"].backward()
        opt.d.step()
    ds = [d for d in (model.nets.d1, model.nets.d2) if d is not None]
    for d in ds:
        d.requires_grad_(False)
    for z_n in z_noise:
        eg_out = eg_fn(model, x, forward(model, x, z_n), z_n)
        logs.update({f"eg_{k}" if k != "loss" else "eg_loss": v.item() for k, v in eg_out.items()})
        opt.eg.zero_grad(set_to_none=True)
        eg_out["loss"].backward()
        opt.eg.step()
    for d in ds:
        d.requires_grad_(True)
    return logs


def _trained(r, step, steps=4):
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    opt = make_optimizers(model)
    gen = torch.Generator().manual_seed(1)
    history = []
    for _ in range(steps):
        x = torch.rand(16, r.image.channels, r.image.size, r.image.size, generator=gen) * 2 - 1
        history.append(step(model, opt, x, [model.gaussian(16, gen) for _ in range(r.train.eg_steps)]))
    return model, history


@pytest.mark.parametrize("variant", [[], ["model=bigan"], ["model=autoencoder"],
                                     ["train.recon_weight=1", "train.latent_cycle_weight=1", "train.eg_steps=2"],
                                     ["model=bigan", "train.recon_weight=1", "train.eg_steps=2"]])
@pytest.mark.parametrize("recipe", ["tiny8", "tiny16"])
def test_shared_forward_pass_trains_exactly_like_two_passes(recipe, variant):
    r = recipes.apply_overrides(recipes.load(recipe), variant)
    fast, fast_logs = _trained(r, train_step)
    plain, plain_logs = _trained(r, two_pass_step)
    assert fast_logs == plain_logs and all(math.isfinite(v) for logs in fast_logs for v in logs.values())
    for name, net in fast.nets.items():
        for (p_name, a), b in zip(net.named_parameters(), getattr(plain.nets, name).parameters()):
            assert torch.equal(a, b), f"{name}.{p_name} differs"
