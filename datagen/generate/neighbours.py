"""Latent neighbours (thesis §4.2.1): z' = proj(z + sigma * eps), x' = G(z'), and the seeds they start from.

Every batch's randomness is derived from (seed, class, samples already kept), so a resumed output
continues with exactly the candidates an uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch

from datagen.common.errors import DatagenError
from datagen.common.seeds import generator
from datagen.data.imageset import draw_per_class
from datagen.data.pixels import to_uint8
from datagen.generate import defaults
from datagen.model.latent import Model

DEFAULT_NOISE = defaults.NOISE[0]  # the scale the tools (similarity, figures) use unless told otherwise


def pick_seeds(labels: torch.Tensor, n_classes: int, k: int | None, seed: int, names: tuple[str, ...]) -> list[torch.Tensor]:
    """Per class, the positions of the seeds to grow from, in source order: all, or a fixed random K."""
    picked = []
    for c, where in enumerate(draw_per_class(labels, n_classes, k, seed)):
        if where.numel() == 0:
            raise DatagenError(f"class '{names[c]}' has no seed images: add some, or drop the class from the seeds")
        picked.append(where.sort().values)
    return picked


def batch_generator(seed: int, c: int, kept: int, stalled: int) -> torch.Generator:
    """A batch's noise from (seed, class, samples kept so far, batches since one was kept): resumable."""
    return generator("augment-batch", seed, c, kept, stalled)


def perturb(model: Model, z: torch.Tensor, noise: tuple[float, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """proj(z + sigma * eps) for each row of z, the scales of `noise` taken in turn; and each row's sigma."""
    sigma = torch.tensor(noise)[torch.arange(z.shape[0]) % len(noise)]
    eps = torch.randn(z.shape, generator=gen)
    return model.project(z + (sigma.unsqueeze(1) * eps).to(z.device)), sigma


def neighbours(model: Model, z: torch.Tensor, noise: tuple[float, ...], gen: torch.Generator) -> torch.Tensor:
    """G(proj(z + sigma * eps)) for each row of z, the scales of `noise` taken in turn."""
    return model.decode_all(perturb(model, z, noise, gen)[0])  # in cache-sized chunks: speed.inference_batch


def candidates(model: Model, z_seeds: torch.Tensor, noise: tuple[float, ...], start: int, n: int,
                gen: torch.Generator, mix: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n neighbours, seeds taken round-robin from position `start`; returns (uint8 images, seed positions, the
    codes G rendered, the noise scale of each).

    With mix > 0, that share of the candidates starts from a blend of their seed and another random
    seed of the same class, proj((1 - t) z_a + t z_b) with t ~ U(0, 1): new combinations of the
    class's own variations rather than only small moves around one seed.
    """
    which = (start + torch.arange(n)) % z_seeds.shape[0]
    z = z_seeds[which]
    if mix > 0:  # drawn only when asked, so mix = 0 reproduces earlier outputs exactly
        blend = torch.rand(n, generator=gen) < mix
        partner = torch.randint(0, z_seeds.shape[0], (n,), generator=gen)
        t = (torch.rand(n, 1, generator=gen) * blend.unsqueeze(1)).to(z.device)
        z = model.project((1 - t) * z + t * z_seeds[partner.to(z.device)])
    z, sigma = perturb(model, z, noise, gen)
    return to_uint8(model.decode_all(z).cpu()), which, z.cpu(), sigma
