"""The objective: projection, KL term, heads, and one real step of every model variant on CPU."""

import math

import pytest
import torch

from datagen import nets, recipes
from datagen.selfexgan import Model, kl_to_unit_gaussian, make_optimizers, project, real_logit, train_step


def test_projection_puts_codes_on_the_sphere():
    e = torch.rand(16, 8)
    z = project(e, center=0.0, radius=math.sqrt(8))
    assert torch.allclose(z.norm(dim=1), torch.full((16,), math.sqrt(8)), atol=1e-5)
    z_literal = project(e, center=0.5, radius=1.0)  # Eqs. 4.1-4.4 read literally: a sphere about 0.5
    assert torch.allclose((z_literal - 0.5).norm(dim=1), torch.ones(16), atol=1e-5)
    # the direction from the centre is kept
    assert torch.allclose(torch.nn.functional.normalize(z, dim=1), torch.nn.functional.normalize(e - 0.5, dim=1), atol=1e-5)


def test_kl_term_is_zero_for_unit_gaussian_batches_and_grows_otherwise():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 4, generator=g)
    assert kl_to_unit_gaussian(z).item() == pytest.approx(0.0, abs=2e-3)
    shifted = z * 0.5 + 1.0  # per dim: (0.25 + 1)/2 - log 0.5 - 0.5 = 0.818
    assert kl_to_unit_gaussian(shifted).item() == pytest.approx(0.625 + math.log(2) - 0.5, abs=0.02)


def test_two_way_softmax_head_equals_sigmoid_of_logit_difference():
    out = torch.tensor([[0.3, 1.2], [2.0, -1.0]])
    assert torch.allclose(torch.sigmoid(real_logit(out)), torch.softmax(out, 1)[:, 1])
    assert torch.equal(real_logit(torch.tensor([[0.7]])), torch.tensor([0.7]))


@pytest.mark.parametrize("variant", [[], ["model=bigan"], ["model=autoencoder"],
                                     ["train.recon_weight=1", "train.latent_cycle_weight=1", "train.eg_steps=2"]])
@pytest.mark.parametrize("recipe", ["tiny8", "tiny16"])
def test_one_training_step_updates_every_net(recipe, variant):
    torch.manual_seed(0)
    r = recipes.apply_overrides(recipes.load(recipe), variant)
    model = Model(recipe=r, nets=nets.build(r))
    opt = make_optimizers(model)
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in model.nets.items()}
    x = torch.rand(8, r.image.channels, r.image.size, r.image.size) * 2 - 1
    logs = train_step(model, opt, x, [model.gaussian(8) for _ in range(r.train.eg_steps)])
    assert logs and all(math.isfinite(v) for v in logs.values())
    for name, net in model.nets.items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert changed, f"{name} did not learn"
        assert all(p.requires_grad for p in net.parameters()), f"{name} left frozen"
    if r.model == "selfexgan":
        assert {"d_d1", "d_d2", "eg_kl"} <= set(logs)
    if "train.recon_weight=1" in variant:
        assert {"eg_recon", "eg_latent_cycle"} <= set(logs)
