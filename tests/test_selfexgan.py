"""The objective: projection, KL term, heads, one real step of every model variant on CPU, and the losses' signs."""

import math

import pytest
import torch
import torch.nn.functional as F

from datagen.model import nets, objectives, recipes
from datagen.model.latent import Model, kl_to_unit_gaussian, project
from datagen.model.objectives import make_optimizers, real_logit, train_step


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
                                     ["train.recon_weight=1", "train.latent_cycle_weight=1", "train.eg_steps=2"],
                                     ["train.latent_adversary_weight=1", "train.latent_mmd_weight=1", "train.ema_decay=0.9",
                                      "train.spectral_norm=true", "train.prior_sample_weight=0"],
                                     ["model=bigan", "train.latent_adversary_weight=1", "train.ema_decay=0.9"]])
@pytest.mark.parametrize("recipe", ["tiny8", "tiny16"])
def test_one_training_step_updates_every_net(recipe, variant):
    _one_step_updates_every_net(recipe, variant)


def test_the_default_recipe_of_the_bundled_sets_takes_a_step():
    """mnist-cpu (what `datagen train mnist-5k` and `digits` use): 32x32, eg_steps 2, recon_weight 50."""
    _one_step_updates_every_net("mnist-cpu", [])


def _one_step_updates_every_net(recipe, variant):
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
    if r.train.recon_weight > 0:
        assert "eg_recon" in logs
    if r.train.latent_cycle_weight > 0:
        assert "eg_latent_cycle" in logs
    if r.train.latent_adversary_weight > 0:
        assert {"d_dz", "eg_latent_adv"} <= set(logs)
    if r.train.latent_mmd_weight > 0:
        assert "eg_latent_mmd" in logs
    if r.train.ema_decay > 0:  # the average's first update copies G as it is after the step
        ema = model.nets.generator_ema.module.state_dict()
        assert all(torch.equal(ema[k], v) for k, v in model.nets.generator.state_dict().items())


# ---- the losses' signs: each side's training lowers the loss the thesis gives it, not the opposite one ----

def _judged(model, x, z_n):
    """Per discriminator, its real-logits on what it must call real and on what it must call fake (Chapter 3),
    computed here, independently of the labels in datagen.model.objectives; the batches are the ones D is trained on."""
    n = x.shape[0]
    z_e = model.encode(x)
    if model.recipe.model == "selfexgan":
        fakes = model.decode(torch.cat([z_e, z_n]))
        x_hat, x_n = fakes[:n], fakes[n:]
        z_hat = model.encode(x_hat)
        d1 = real_logit(model.nets.d1(torch.cat([x, x_hat, x_n])))
        d2 = real_logit(model.nets.d2(torch.cat([x, x_hat, x]), torch.cat([z_e, z_e, z_hat])))
        return {"d1": (d1[:n], d1[n:]), "d2": (d2[:n], d2[n:])}
    d2 = real_logit(model.nets.d2(torch.cat([x, model.decode(z_n)]), torch.cat([z_e, z_n])))
    return {"d2": (d2[:n], d2[n:])}


def _d_losses(judged):
    """D's loss: -log D(real) - log(1 - D(fake)), per discriminator."""
    return {d: (F.softplus(-real).mean() + F.softplus(fake).mean()).item() for d, (real, fake) in judged.items()}


def _eg_losses(judged):
    """E/G's loss: the labels flipped (non-saturating), on every term E or G can move (D1's real x: none)."""
    return {d: ((F.softplus(real).mean() if d == "d2" else 0.0) + F.softplus(-fake).mean()).item()
            for d, (real, fake) in judged.items()}


def _train_one_side(variant, side, steps=15):
    """train_step on one fixed batch for `steps` steps, the other side's learning rate 0 (fixed nets);
    returns the side's loss per discriminator before and after, and the logged losses of the first and last step."""
    r = recipes.apply_overrides(recipes.load("tiny8"), [*variant, "train.kl_weight=0"])  # the adversarial terms alone
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    opt = make_optimizers(model)
    fixed = opt.eg if side == "d" else opt.d
    for group in fixed.param_groups:
        group["lr"] = 0.0
    fixed_nets = [model.nets.encoder, model.nets.generator] if side == "d" else [n for n in (model.nets.d1, model.nets.d2) if n]
    frozen = [p.detach().clone() for net in fixed_nets for p in net.parameters()]
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, r.image.channels, r.image.size, r.image.size, generator=gen) * 2 - 1
    z = [model.gaussian(32, gen) for _ in range(r.train.eg_steps)]
    measure = _d_losses if side == "d" else _eg_losses
    with torch.no_grad():
        before = measure(_judged(model, x, z[0]))
    logs = [train_step(model, opt, x, z) for _ in range(steps)]
    with torch.no_grad():
        after = measure(_judged(model, x, z[0]))
    assert all(torch.equal(a, b) for a, b in zip(frozen, (p for net in fixed_nets for p in net.parameters())))
    return before, after, logs[0], logs[-1]


@pytest.mark.parametrize("variant", [[], ["model=bigan"]], ids=["selfexgan", "bigan"])
def test_d_learns_to_tell_real_from_fake_against_a_fixed_e_and_g(variant):
    before, after, first, last = _train_one_side(variant, "d")
    assert all(after[d] < before[d] for d in before), (before, after)
    assert last["d_loss"] < first["d_loss"]


@pytest.mark.parametrize("variant", [[], ["model=bigan"]], ids=["selfexgan", "bigan"])
def test_e_and_g_learn_to_fool_a_fixed_d(variant):
    before, after, first, last = _train_one_side(variant, "eg")
    assert all(after[d] < before[d] for d in before), (before, after)
    assert last["eg_adv"] < first["eg_adv"]


@pytest.mark.parametrize("side", ["d", "eg"])
def test_the_sign_checks_catch_flipped_labels(side, monkeypatch):
    """The two tests above can fail: with every real/fake label flipped, each side's loss rises instead."""
    real_bce = objectives.bce
    monkeypatch.setattr(objectives, "bce", lambda out, target: real_bce(out, 1.0 - target))
    for variant in ([], ["model=bigan"]):
        before, after, _, _ = _train_one_side(variant, side)
        assert sum(after.values()) > sum(before.values()), (variant, before, after)


def test_the_autoencoder_floor_learns_to_reconstruct():
    r = recipes.apply_overrides(recipes.load("tiny8"), ["model=autoencoder"])
    torch.manual_seed(0)
    model = Model(recipe=r, nets=nets.build(r))
    opt = make_optimizers(model)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    error = lambda: (model.decode(model.encode(x)) - x).abs().mean().item()
    with torch.no_grad():
        before = error()
    for _ in range(15):
        train_step(model, opt, x, [model.gaussian(32)])
    with torch.no_grad():
        assert error() < before
