"""A latent prior fitted after training: a Gaussian mixture on E's codes of the training images.

G renders faithfully near E's codes but not everywhere on the sphere, so N(0, I) samples land where G never
learned to draw (README, "A generator that generates"). Fitting a density to the codes themselves and sampling
from it is ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders").
The fit uses images only, never labels. The mixture is stored as plain tensors, so a checkpoint that holds it
still loads with weights_only=True.
"""

from __future__ import annotations

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

REG_COVAR = 1e-4  # added to each covariance's diagonal: codes of a tight cluster can be nearly degenerate
MIXTURE_FIT_IMAGES = 20_000  # codes a fit uses at most: 20 components at 128 dimensions fit in tens of seconds


def fit_mixture(codes: torch.Tensor, components: int, seed: int) -> dict[str, torch.Tensor]:
    """A full-covariance Gaussian mixture on N×M codes (at most one component per code)."""
    gm = GaussianMixture(min(components, len(codes)), covariance_type="full", reg_covar=REG_COVAR, random_state=seed % 2**32)
    with warnings.catch_warnings():  # a mixture short of convergence is still a density to sample from
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(codes.detach().double().cpu().numpy())
    with torch.inference_mode(False):  # plain tensors, though the caller encodes under inference mode
        covariances = torch.as_tensor(gm.covariances_, dtype=torch.float64)
        return {"weights": torch.as_tensor(gm.weights_, dtype=torch.float32),
                "means": torch.as_tensor(gm.means_, dtype=torch.float32),
                "scale_tril": torch.linalg.cholesky(covariances).float()}


def sample_mixture(prior: dict[str, torch.Tensor], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes from the mixture (CPU, float32): a component by weight, then its mean plus its scale times N(0, I)."""
    component = torch.multinomial(prior["weights"], n, replacement=True, generator=generator)
    noise = torch.randn(n, prior["means"].shape[1], 1, generator=generator)
    return prior["means"][component] + (prior["scale_tril"][component] @ noise).squeeze(-1)
