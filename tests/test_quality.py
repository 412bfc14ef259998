"""datagen.eval.quality's distribution numbers: FID/KID (torchmetrics) and PRDC in the reference's feature space.

The metric properties hold for any fixed feature map, so a seeded, untrained ReferenceNet judges here (fitting
the real one takes ~9 s); prior_samples uses the shared tiny run's trained G.
"""

import numpy as np
import pytest
import torch
from scipy import linalg

from datagen.classify.nets import ReferenceNet
from datagen.classify.reference import Reference
from datagen.data.sources import load
from datagen.eval import quality
from datagen.model import checkpoint
from datagen.train import rundir

DISTRIBUTION_KEYS = {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "compared_images"}


@pytest.fixture(scope="module")
def ref():
    torch.manual_seed(0)
    return Reference(net=ReferenceNet(1, 10).eval(), test_accuracy=0.0, source="digits")


@pytest.fixture(scope="module")
def halves():
    """Two disjoint random halves of the digits train split: the same distribution, different images."""
    images = load("digits", "train", size=8, channels=1).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half = len(images) // 2
    return images[order[:half]], images[order[half:2 * half]]


def test_identical_sets_are_perfect_and_a_different_set_is_far(ref, halves):
    real, _ = halves
    same = quality.distribution_quality(ref, real, real, seed=0)
    far = quality.distribution_quality(ref, real, 255 - real, seed=0)  # inverted digits
    assert set(same) == set(far) == DISTRIBUTION_KEYS and same["compared_images"] == len(real)
    assert far["fid"] > 0 and abs(same["fid"]) < 1e-6 * far["fid"]
    # KID's unbiased estimate of a set against itself is 2/n (mean off-diagonal - mean diagonal kernel): not 0
    assert far["kid_mean"] > 0 and abs(same["kid_mean"]) < 1e-2 * far["kid_mean"]
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # Each real ball holds its own centre plus its k neighbours: a copy of the reals scores (k + 1) / k.
    assert same["density"] == pytest.approx((quality.K + 1) / quality.K, abs=0.02)
    assert far["precision"] < 0.2 and far["coverage"] < 0.2 and far["density"] < 0.2


def test_another_sample_of_the_same_distribution_scores_near_the_ideal(ref, halves):
    real, other = halves
    q = quality.distribution_quality(ref, real, other, seed=0)
    far = quality.distribution_quality(ref, real, 255 - other, seed=0)
    assert q["fid"] < 0.1 * far["fid"] and q["kid_mean"] < 0.1 * far["kid_mean"]
    assert q["precision"] > 0.6 and q["recall"] > 0.6 and q["coverage"] > 0.8
    assert 0.7 < q["density"] < 1.3  # Naeem et al.: 1 in expectation for fakes from the real distribution


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # an untrained net's dead ReLUs: singular covariances
def test_fid_matches_the_formula_on_the_same_features(ref, halves):
    real, fake = halves
    features = quality.ReferenceFeatures(ref.net)
    a, b = features(real).double().numpy(), features(fake).double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert quality.distribution_quality(ref, real, fake, seed=0)["fid"] == pytest.approx(expected, rel=1e-3)


def test_features_convert_uint8_images_once(ref, halves):
    real, _ = halves
    with torch.no_grad():
        direct = ref.net.features(real.permute(0, 3, 1, 2).float() / 127.5 - 1)
    torch.testing.assert_close(quality.ReferenceFeatures(ref.net)(real), direct.double(), rtol=1e-5, atol=1e-6)


def test_kid_subsets_repeat_per_seed_and_leave_the_global_rng_alone(ref, halves, monkeypatch):
    monkeypatch.setattr(quality, "KID_SUBSET", 100)  # subsets smaller than n: the sampling matters
    real, fake = halves
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = quality.distribution_quality(ref, real, fake, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # another global state must not change the numbers
    b = quality.distribution_quality(ref, real, fake, seed=3)
    c = quality.distribution_quality(ref, real, fake, seed=4)
    assert a == b and a["kid_std"] > 0
    assert (c["kid_mean"], c["kid_std"]) != (a["kid_mean"], a["kid_std"])


def test_prdc_on_known_sets():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 4, generator=g), torch.randn(400, 4, generator=g)
    assert quality.prdc(x, x) == pytest.approx({"precision": 1, "recall": 1, "density": 1.2, "coverage": 1}, abs=0.02)
    assert quality.prdc(x, x + 100) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    fewer_modes = quality.prdc(x, y * 0.2)  # fakes crowd the centre: faithful but not diverse
    assert fewer_modes["precision"] > 0.9 and fewer_modes["recall"] < 0.5 and fewer_modes["coverage"] < 0.5


def test_generated_quality_adds_label_fidelity_to_the_distribution_numbers(ref, halves):
    real, fake = halves
    labels = ref.net(fake.permute(0, 3, 1, 2).float() / 127.5 - 1).argmax(1)  # what the judge itself says
    q = quality.generated_quality(ref, real, fake[:300], labels[:300], seed=0)
    assert set(q) == DISTRIBUTION_KEYS | {"generated_label_fidelity"}
    assert q["generated_label_fidelity"] == 1.0 and q["compared_images"] == 300


def test_prior_samples_are_seeded_uint8_images_of_g(tiny_run):
    model = checkpoint.load_model(checkpoint.load(rundir.checkpoint_of(tiny_run)))
    state = torch.get_rng_state()
    a, b = quality.prior_samples(model, 10, seed=0), quality.prior_samples(model, 10, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # a private generator
    assert a.dtype == torch.uint8 and a.shape == (10, 8, 8, 1)
    assert torch.equal(a, b) and not torch.equal(a, quality.prior_samples(model, 10, seed=1))
