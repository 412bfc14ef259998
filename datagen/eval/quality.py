"""How good E and G are, in numbers the literature uses (BiGAN's 1-NN anchor, FID, precision/recall).

Every feature-space number uses the independent reference classifier (datagen.classify.reference), never
downloaded weights: FID and precision/recall are computed on its 128-d penultimate features.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from datagen.classify.fit import predict
from datagen.classify.reference import Reference
from datagen.common.seeds import generator
from datagen.data.pixels import pixel_distance, to_model_input
from datagen.model import speed
from datagen.model.latent import Model


BATCH = 512  # test rows per similarity matmul in the 1-NN search


@torch.inference_mode()
def features(ref: Reference, images: torch.Tensor) -> np.ndarray:
    return speed.chunked(lambda c: ref.net.features(to_model_input(c)), images).numpy()


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


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    # tr sqrt(S1 S2) from the eigenvalues of S1 S2 (real and >= 0 for PSD S1, S2; clipped against round-off):
    # stable where sqrtm warns on the singular covariances of small samples.
    trace_root = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Kynkäänniemi et al. (2019): a sample is covered if it lies in some k-NN ball of the other set."""
    def radii(x: np.ndarray) -> np.ndarray:
        d = torch.cdist(torch.from_numpy(x), torch.from_numpy(x))
        return d.kthvalue(k + 1, dim=1).values.numpy()  # k+1: the nearest is the point itself

    def covered(points: np.ndarray, centres: np.ndarray, r: np.ndarray) -> float:
        d = torch.cdist(torch.from_numpy(points), torch.from_numpy(centres))
        return (d <= torch.from_numpy(r)[None, :]).any(1).float().mean().item()

    return {"precision": covered(fake, real, radii(real)), "recall": covered(real, fake, radii(fake))}


def generated_quality(ref: Reference, real_images: torch.Tensor, fake_images: torch.Tensor,
                      fake_labels: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Label fidelity of generated images, FID and precision/recall against real test images."""
    n = min(len(real_images), len(fake_images))
    pick = torch.randperm(len(fake_images), generator=generator("quality-fake-pick", seed))[:n]
    fidelity = (predict(ref.net, to_model_input(fake_images)) == fake_labels).float().mean().item()
    real_f, fake_f = features(ref, real_images[:n]), features(ref, fake_images[pick])
    return {"generated_label_fidelity": fidelity, "fid_reference_features": frechet_distance(real_f, fake_f),
            **precision_recall(real_f, fake_f), "compared_images": n}
