"""The latent space: the sphere projection (Eqs. 4.1-4.4), the KL term (Eq. 4.5), slerp, and E and G as a Model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from datagen.common.seeds import derive_seed
from datagen.data.pixels import to_model_input
from datagen.model import speed
from datagen.model.prior import MIXTURE_FIT_IMAGES, fit_mixture, sample_mixture
from datagen.model.nets import Nets
from datagen.model.recipes import Recipe


def project(v: torch.Tensor, center: float, radius: float, origin: float = 0.5) -> torch.Tensor:
    """Eqs. 4.1-4.4: move v onto the sphere about `center`, along its direction from `origin`.

    E's sigmoid output is projected along its direction from 0.5, the sigmoid's midpoint; a latent
    vector already near the sphere (a noisy neighbour) along its direction from the centre.
    """
    direction = v - origin
    norm = direction.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return center + radius * direction / norm


def kl_to_unit_gaussian(z: torch.Tensor) -> torch.Tensor:
    """Eq. 4.5 on the batch statistics of z, averaged over the M latent dimensions.

    Per dimension KL(N(mu, s^2) || N(0, 1)) = (s^2 + mu^2)/2 - log s - 1/2 (Appendix A, Eq. A.10).
    (Eq. 4.5 as printed writes -M/2 outside a 1/M mean and calls s the variance; both are typos.)
    """
    mu = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False).clamp_min(1e-8)
    return ((var + mu.pow(2)) / 2 - 0.5 * var.log() - 0.5).mean()


def directions(z: torch.Tensor, center: float) -> torch.Tensor:
    return F.normalize(z - center, dim=-1)


def slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: torch.Tensor, center: float = 0.0) -> torch.Tensor:
    """Points along the great circle from z_a to z_b (both on one sphere about `center`), one per t in [0, 1].

    A straight line between two codes cuts through the sphere, where E never puts a code; the arc stays on it.
    """
    a, b = z_a - center, z_b - center
    radius = (a.norm() + b.norm()) / 2
    u, v = a / a.norm(), b / b.norm()
    omega = torch.arccos((u @ v).clamp(-1.0, 1.0))
    t = t.to(z_a.dtype).unsqueeze(1)
    if omega < 1e-4:  # (nearly) the same code: the arc is a point; a line is exact enough
        points = (1 - t) * u + t * v
    else:
        points = (torch.sin((1 - t) * omega) * u + torch.sin(t * omega) * v) / torch.sin(omega)
    return center + radius * F.normalize(points, dim=1)


@dataclass
class Model:
    """The nets of one recipe plus the latent geometry they share."""

    recipe: Recipe
    nets: Nets
    prior: dict[str, torch.Tensor] | None = None  # the mixture fitted to E's codes (recipe latent.prior = "mixture")

    @property
    def radius(self) -> float:
        radius = self.recipe.latent.radius
        return math.sqrt(self.recipe.latent.dim) if radius is None else radius

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return project(self.nets.encoder(x), self.recipe.latent.center, self.radius)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.nets.generator(z)

    @torch.inference_mode()
    def encode_all(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of a whole set, in chunks (speed.inference_batch). uint8 N×H×W×C images are converted chunk
        by chunk (a large set is never held as floats); float model input is used as it is."""
        device = next(self.nets.encoder.parameters()).device
        return speed.chunked(lambda c: self.encode((to_model_input(c) if c.dtype == torch.uint8 else c).to(device)), x, device)

    @torch.inference_mode()
    def decode_all(self, z: torch.Tensor) -> torch.Tensor:
        """G of a whole set of codes, in chunks (speed.inference_batch)."""
        return speed.chunked(self.decode, z)

    def gaussian(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Samples of N(0, I), moved by latent.center so they surround the codes' sphere."""
        return torch.randn(n, self.recipe.latent.dim, generator=generator, device=device) + self.recipe.latent.center

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes of the model's prior (CPU): the fitted mixture, put on the codes' sphere, where the run has one;
        else N(c, I), the z_n training feeds G."""
        if self.prior is None:
            return self.gaussian(n, generator)
        return self.project(sample_mixture(self.prior, n, generator))

    @torch.inference_mode()
    def fit_prior(self, images: torch.Tensor, run_seed: int) -> None:
        """Fit the recipe's mixture to E's codes of `images` (no labels; a seeded subset of MIXTURE_FIT_IMAGES where
        there are more, so an epoch's fit stays seconds on a large dataset), its randomness derived from the run's
        seed; E runs in eval mode and is left as it was."""
        if self.recipe.latent.prior != "mixture":
            return
        seed = derive_seed("latent-prior", run_seed)
        if len(images) > MIXTURE_FIT_IMAGES:
            pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:MIXTURE_FIT_IMAGES]
            images = images[pick.sort().values.to(images.device)]
        encoder = self.nets.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            codes = self.encode_all(images)
        finally:
            encoder.train(was_training)
        self.prior = fit_mixture(codes, self.recipe.latent.mixture_components, seed)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Put any latent vector onto the codes' sphere (for neighbours z + noise)."""
        return project(z, self.recipe.latent.center, self.radius, origin=self.recipe.latent.center)
