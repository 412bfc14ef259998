"""The latent prior a run samples from: a Gaussian mixture fitted to E's codes at every checkpoint (recipe
latent.prior = "mixture"), or N(0, I); what training saves, what loading restores and what sampling draws."""

import pytest
import torch

from datagen.common.errors import DatagenError
from datagen.eval import quality
from datagen.model import checkpoint, recipes
from datagen.model.prior import fit_mixture, sample_mixture
from datagen.train import rundir


def _two_clusters(n=400, dim=3):
    gen = torch.Generator().manual_seed(0)
    left = torch.randn(n, dim, generator=gen) * 0.1 + torch.tensor([-5.0] + [0.0] * (dim - 1))
    right = torch.randn(n, dim, generator=gen) * 0.3 + torch.tensor([5.0] + [0.0] * (dim - 1))
    return torch.cat([left, right])


def test_mixture_samples_land_in_the_clusters_of_the_codes_with_their_spread():
    prior = fit_mixture(_two_clusters(), components=2, seed=0)
    z = sample_mixture(prior, 4000, torch.Generator().manual_seed(1))
    left, right = z[z[:, 0] < 0], z[z[:, 0] >= 0]
    assert abs(len(left) - len(right)) < 300  # equal weights
    assert left[:, 0].mean().item() == pytest.approx(-5, abs=0.05) and right[:, 0].mean().item() == pytest.approx(5, abs=0.05)
    assert left[:, 1].std().item() == pytest.approx(0.1, rel=0.15) and right[:, 1].std().item() == pytest.approx(0.3, rel=0.15)
    assert (z[:, 0].abs() < 2.5).sum().item() == 0  # nothing between them, where N(0, I) would put most samples


def test_mixture_sampling_repeats_per_generator_and_caps_components_at_the_codes():
    prior = fit_mixture(_two_clusters(n=2), components=20, seed=0)
    assert prior["weights"].shape == (4,) and prior["scale_tril"].shape == (4, 3, 3)
    a = sample_mixture(prior, 10, torch.Generator().manual_seed(3))
    assert torch.equal(a, sample_mixture(prior, 10, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, sample_mixture(prior, 10, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("setting, message", [
    (["latent.prior=uniform"], "latent.prior must be one of gaussian, mixture"),
    (["latent.mixture_components=0"], "latent.mixture_components >= 1"),
    (["latent.prior=1"], "latent.prior must be a string"),
])
def test_a_bad_prior_setting_is_refused_in_one_line(setting, message):
    with pytest.raises(DatagenError, match=message):
        recipes.apply_overrides(recipes.load("tiny8"), setting)


def test_training_saves_the_fitted_prior_and_every_sample_of_the_model_comes_from_it(tiny_run):
    state = checkpoint.load(rundir.checkpoint_of(tiny_run))  # weights_only=True
    assert state["recipe"]["latent"]["prior"] == "mixture" and state["latent_prior"]["means"].shape == (4, 8)
    model = checkpoint.load_model(state)
    assert model.prior is not None
    z = model.sample_prior(256, torch.Generator().manual_seed(0))
    assert torch.allclose(z.norm(dim=1), torch.full((256,), model.radius), atol=1e-4)  # put on the codes' sphere
    # the fitted prior is not N(0, I): its samples sit nearer E's codes than Gaussian draws do
    from datagen.data.sources import load
    codes = model.encode_all(load("digits", "train", size=8, channels=1).images)
    nearest = lambda q: torch.cdist(q, codes).min(dim=1).values.mean().item()
    gaussian = model.project(model.gaussian(256, torch.Generator().manual_seed(0)))
    assert nearest(z) < nearest(gaussian)
    assert not torch.equal(quality.prior_samples(model, 16, 0), quality.prior_samples(model, 16, 0, gaussian=True))
    assert (tiny_run / "samples" / "epoch-001-prior.png").stat().st_size > 0


def test_a_gaussian_recipe_keeps_n01_and_draws_no_prior_grid(tmp_path):
    from datagen.train import loop as training

    out = tmp_path / "run"
    training.fit(training.prepare(training.TrainOptions(dataset="digits", recipe="tiny8", epochs=1, out=out,
                                                        overrides=["latent.prior=gaussian"], progress=False)))
    state = checkpoint.load(rundir.checkpoint_of(out))
    model = checkpoint.load_model(state)
    assert state["latent_prior"] is None and model.prior is None
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.sample_prior(8, g), model.gaussian(8, torch.Generator().manual_seed(0)))
    assert not (out / "samples" / "epoch-001-prior.png").exists()


def test_a_finished_run_given_a_mixture_prior_on_resume_fits_it_without_training(tmp_path, cli):
    from datagen.train import loop as training

    out = tmp_path / "run"
    training.fit(training.prepare(training.TrainOptions(dataset="digits", recipe="tiny8", epochs=1, out=out,
                                                        overrides=["latent.prior=gaussian"], progress=False)))
    before = checkpoint.load(rundir.checkpoint_of(out))
    done = cli("train", "--resume", "--out", str(out), "--set", "latent.prior=mixture", "--set", "latent.mixture_components=3")
    assert done.returncode == 0 and "now holds the prior the recipe asks for" in done.stdout + done.stderr
    after = checkpoint.load(rundir.checkpoint_of(out))
    assert after["latent_prior"]["weights"].shape == (3,) and after["epoch"] == before["epoch"] == 1
    assert all(torch.equal(after["nets"]["generator"][k], v) for k, v in before["nets"]["generator"].items())
    assert after["recipe"]["latent"]["prior"] == "mixture"
    again = cli("train", "--resume", "--out", str(out))  # nothing left to do: the prior is as asked
    said = again.stdout + again.stderr
    assert again.returncode == 0 and "now holds" not in said and "already trained" in said


def test_a_large_set_is_fitted_on_a_seeded_subset(tiny_run, monkeypatch):
    from datagen.data.sources import load
    from datagen.model import latent

    monkeypatch.setattr(latent, "MIXTURE_FIT_IMAGES", 64)
    model = checkpoint.load_model(checkpoint.load(rundir.checkpoint_of(tiny_run)))
    images = load("digits", "train", size=8, channels=1).images
    model.fit_prior(images, run_seed=3)
    first = model.prior
    model.fit_prior(images, run_seed=3)
    assert torch.equal(first["means"], model.prior["means"])
    model.fit_prior(images[:64], run_seed=3)  # a different subset gives a different mixture
    assert not torch.equal(first["means"], model.prior["means"])
