"""How good E and G are, in numbers the literature uses (BiGAN's 1-NN anchor, FID, KID, precision/recall, density/coverage).

Every feature-space number uses the independent reference classifier (datagen.classify.reference), never
downloaded weights: FID and KID (torchmetrics, with the reference as its custom feature module) and
precision/recall/density/coverage are computed on its 128-d penultimate features.
"""

from __future__ import annotations

import warnings

import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from datagen.classify.fit import predict
from datagen.classify.reference import Reference
from datagen.common.seeds import derive_seed, generator
from datagen.data.pixels import pixel_distance, to_model_input, to_uint8
from datagen.model import speed
from datagen.model.latent import Model


BATCH = 512  # rows per distance/similarity matmul (1-NN search, k-NN balls)
K = 5  # neighbours per k-NN ball: Naeem et al.'s default for density/coverage, used for precision/recall too
KID_SUBSET, KID_SUBSETS = 1000, 100  # Bińkowski et al.'s subset size; subsets for KID's mean and std


def latent_classification(model: Model, train_images, train_labels, test_images, test_labels) -> dict[str, float]:
    """1-NN (cosine, as BiGAN reports it) and a linear probe on E's codes: fitted on train, scored on test."""
    z_train, z_test = model.encode_all(train_images), model.encode_all(test_images)
    a, b = torch.nn.functional.normalize(z_test, dim=1), torch.nn.functional.normalize(z_train, dim=1)
    nearest = torch.cat([(a[i:i + BATCH] @ b.T).argmax(1) for i in range(0, len(a), BATCH)])
    one_nn = (train_labels[nearest] == test_labels).float().mean().item()
    probe = LogisticRegression(max_iter=2000).fit(z_train.numpy(), train_labels.numpy())
    linear = float((probe.predict(z_test.numpy()) == test_labels.numpy()).mean())
    return {"latent_1nn_accuracy": one_nn, "latent_linear_probe_accuracy": linear}


@torch.inference_mode()
def reconstruction(model: Model, ref: Reference, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Error, BiGAN's ratio ||x - G(E(x))|| / ||x - x_random|| and the label fidelity of G(E(x))."""
    x = to_model_input(images)
    x_rec = model.decode_all(model.encode_all(x))
    shift = 1 + torch.randperm(len(x) - 1, generator=generator("quality-random-pair", seed))[0].item()
    x_random = x.roll(shift, 0)  # every image paired with another one (never itself)
    rec_dist = pixel_distance(x, x_rec, "l2").mean().item()
    rand_dist = pixel_distance(x, x_random, "l2").mean().item()
    return {"recon_error": pixel_distance(x, x_rec).mean().item(), "recon_l2": rec_dist, "random_pair_l2": rand_dist,
            "recon_ratio": rec_dist / rand_dist,
            "recon_label_fidelity": (predict(ref.net, x_rec) == labels).float().mean().item()}


class ReferenceFeatures(nn.Module):
    """The reference net's 128-d features as torchmetrics' custom `feature` module: it takes our uint8 N×H×W×C
    images as they are (torchmetrics passes a custom module's input through untouched unless `normalize`) and
    converts them with to_model_input once, chunk by chunk. `num_features` spares torchmetrics its dummy forward
    (a random 3×299×299 image from the global RNG, which our 1-channel net could not even take). Features come
    as float64: KID keeps the dtype it is given, and its cubic-kernel sums over 10^6 pairs were off by ~17% in
    float32 in a check (FID casts to float64 itself)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = net.head[-1].in_features

    def train(self, mode: bool = True) -> "ReferenceFeatures":
        return self  # a judge stays in eval mode (no dropout), whatever a metric does to its children

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.net.parameters()).device
        return speed.chunked(lambda c: self.net.features(to_model_input(c).to(device)).cpu(), images, device).double()


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = K) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019) and density, coverage (Naeem et al. 2020) from k-NN balls.

    A real ball has the radius of its centre's k-th nearest other real (fakes likewise). precision: fakes inside
    some real ball; recall: reals inside some fake ball; density: real balls holding a fake, per fake and over k
    (about 1 for fakes from the real distribution; (k + 1) / k for a copy of the reals: each ball holds its own
    centre); coverage: reals whose own ball holds a fake. Distances in row blocks: memory O(BATCH × n).
    """
    real_r, fake_r = _knn_radii(real, k), _knn_radii(fake, k)
    in_real = torch.zeros(len(fake))  # per fake: how many real balls hold it
    in_fake = torch.zeros(len(real), dtype=torch.bool)  # per real: inside some fake ball
    nearest_fake = torch.full((len(real),), float("inf"))  # per real: distance to the nearest fake
    for i in range(0, len(fake), BATCH):
        d = torch.cdist(fake[i:i + BATCH], real)  # fakes × reals
        in_real[i:i + BATCH] = (d <= real_r[None, :]).sum(1).float()
        in_fake |= (d <= fake_r[i:i + BATCH, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {"precision": (in_real > 0).float().mean().item(), "recall": in_fake.float().mean().item(),
            "density": (in_real.sum() / (k * len(fake))).item(),
            "coverage": (nearest_fake <= real_r).float().mean().item()}


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (k + 1: the nearest is the row itself)."""
    return torch.cat([torch.cdist(x[i:i + BATCH], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), BATCH)])


def distribution_quality(ref: Reference, real_images: torch.Tensor, fake_images: torch.Tensor,
                         seed: int = 0) -> dict[str, float]:
    """FID, KID and precision/recall/density/coverage of fakes against reals in the reference's feature space.

    Equal n per side, n = min of the two (fakes picked at random, seeded): FID's bias depends on n, so numbers
    stay comparable between sets of different sizes. FID: Heusel et al. 2017; KID: Bińkowski et al. 2018.
    """
    n = min(len(real_images), len(fake_images))
    pick = torch.randperm(len(fake_images), generator=generator("quality-fake-pick", seed))[:n]
    real, fake = real_images[:n], fake_images[pick]
    feature = ReferenceFeatures(ref.net)
    real_f, fake_f = feature(real), feature(fake)  # once: FID, KID and the k-NN numbers all read these
    given = _Given(feature.num_features)
    out = {"fid": _fid(given, real_f, fake_f), **_kid(given, real_f, fake_f, seed), **prdc(real_f, fake_f)}
    return {**out, "compared_images": n}


class _Given(nn.Module):
    """torchmetrics' `feature` module for features already computed: they pass through untouched."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _fid(feature: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    fid = FrechetInceptionDistance(feature=feature)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return fid.compute().item()


def _kid(feature: nn.Module, real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict[str, float]:
    """KID over random subsets of min(1000, n) per side (Bińkowski et al.'s size). Where that is all of n, every
    subset holds the same images and one subset is the whole answer (std 0). torchmetrics draws the subsets
    from torch's global RNG: seeded here inside fork_rng, so they repeat per seed and the caller's stream stays."""
    n = min(len(real), len(fake))
    size = min(KID_SUBSET, n)
    with warnings.catch_warnings():  # its note that it keeps every feature: 128 floats per image here
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=feature, subset_size=size, subsets=1 if size == n else KID_SUBSETS)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("quality-kid-subsets", seed))
        mean, std = kid.compute()
    return {"kid_mean": mean.item(), "kid_std": std.item()}


@torch.inference_mode()
def prior_samples(model: Model, n: int, seed: int, gaussian: bool = False) -> torch.Tensor:
    """n images G(z), uint8 N×H×W×C, z from the model's prior (Model.sample_prior: the fitted mixture where the run
    has one); with `gaussian`, z ~ N(c, I) unprojected, the z_n training feeds G, whatever prior the run has."""
    draws = generator("quality-prior-samples", seed)
    z = model.gaussian(n, draws) if gaussian else model.sample_prior(n, draws)
    device = next(model.nets.generator.parameters()).device
    return to_uint8(model.decode_all(z.to(device))).cpu()


def generated_quality(ref: Reference, real_images: torch.Tensor, fake_images: torch.Tensor,
                      fake_labels: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Label fidelity of generated images, and distribution_quality against real test images."""
    fidelity = (predict(ref.net, to_model_input(fake_images)) == fake_labels).float().mean().item()
    return {"generated_label_fidelity": fidelity, **distribution_quality(ref, real_images, fake_images, seed)}
