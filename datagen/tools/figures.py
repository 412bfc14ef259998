"""The thesis' figures of E and G: reconstruct (Figs. 4.xb), sample (4.xc), chain (4.8), explore (4.12), interpolate.

Each function loads a run's E and G (eval mode), draws one picture (a torchvision grid), writes it as a PNG
and returns a small dataclass with its path and numbers. Codes live on a sphere about `latent.center`, so
angles are taken about that centre, and interpolation follows the sphere (slerp). Neighbours are
z' = proj(z + sigma * eps), decoded by augment's own sampler. Random draws come from an explicit seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datagen.common.errors import DatagenError
from datagen.common.grids import pairs_grid, save_grid
from datagen.data.pixels import pixel_distance, to_model_input
from datagen.generate.neighbours import neighbours
from datagen.model.latent import directions, slerp
from datagen.tools.inputs import (check_noise, check_positive, images_of, load_split, names_a_dataset, open_run,
                                  tag, target, write)
from datagen.train.rundir import RUNS_ROOT


@dataclass
class ReconstructResult:
    path: Path
    sources: list[str]  # the IMAGE spec of each picture row's image (DATASET:INDEX or a file)
    errors: list[float]  # per image: mean absolute pixel error of G(E(x)) on a 0..1 scale

    @property
    def mean_error(self) -> float:
        return float(np.mean(self.errors))


@dataclass
class SampleResult:
    path: Path
    n: int
    seed: int


@dataclass
class ChainResult:
    path: Path
    sources: list[str]
    distance: list[list[float]]  # per image, per step: mean absolute pixel difference to the starting image (0..1)


@dataclass
class ExploreResult:
    path: Path
    scales: list[float]
    distance: list[float]  # per scale: mean absolute pixel difference of the neighbours to the design (0..1)


@dataclass
class InterpolateResult:
    path: Path
    angle_degrees: float  # between the two codes, about the sphere's centre
    steps: int


@torch.inference_mode()
def reconstruct(run: str | Path = RUNS_ROOT / "latest", *, images: Sequence[str] | None = None, n: int = 64, seed: int = 0,
                out: str | Path | None = None, device: str = "auto") -> ReconstructResult:
    """Real images, each row followed by a row of their G(E(x)) (Figs. 4.1b-4.7b), with per-image errors.

    `images`: None (n random images of the run's own test split), one dataset spec (n random of its test
    split), or IMAGE specs (exactly those).
    """
    check_positive(n, "--n")
    images = [images] if isinstance(images, str) else images
    r = open_run(run, device)
    one = images[0] if images is not None and len(images) == 1 else None
    if images is None or (one is not None and names_a_dataset(one)):
        test = load_split(r, one, "test")
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        x = to_model_input(test.images[pick]).to(r.device)
        sources = [f"{test.source}:{i}" for i in pick.tolist()]  # IMAGE specs: each can be passed back as is
        path = target(r, out, f"reconstruct-{tag(one or r.source)}-seed{seed}.png")
    else:
        x, sources = images_of(r, images), list(images)
        more = f"-and-{len(images) - 1}-more" if len(images) > 1 else ""
        path = target(r, out, f"reconstruct-{tag(images[0])}{more}.png")
    x_rec = r.model.decode_all(r.model.encode_all(x))
    errors = pixel_distance(x, x_rec).cpu().tolist()
    write(lambda p: pairs_grid(x.cpu(), x_rec.cpu(), p, nrow=8), path)
    return ReconstructResult(path=path, sources=sources, errors=errors)


@torch.inference_mode()
def sample(run: str | Path = RUNS_ROOT / "latest", *, n: int = 64, seed: int = 0, out: str | Path | None = None,
           device: str = "auto") -> SampleResult:
    """G(z) for z from the run's prior (Figs. 4.1c-4.7c): N(c, I), or the mixture fitted to E's codes where the
    recipe fits one (Model.sample_prior): what G makes of latents E was never asked about."""
    check_positive(n, "--n")
    r = open_run(run, device)
    path = target(r, out, f"sample-seed{seed}.png")
    z = r.model.sample_prior(n, torch.Generator().manual_seed(seed)).to(r.device)
    write(lambda p: save_grid(r.model.decode_all(z).cpu(), p, nrow=8), path)
    return SampleResult(path=path, n=n, seed=seed)


@torch.inference_mode()
def chain(run: str | Path = RUNS_ROOT / "latest", *, images: Sequence[str], steps: int = 16,
          out: str | Path | None = None, device: str = "auto") -> ChainResult:
    """Iterative feeding x -> G(E(x)) -> G(E(G(E(x)))) ... (Fig. 4.8): one row per starting image."""
    check_positive(steps, "--steps")
    images = [images] if isinstance(images, str) else list(images)
    r = open_run(run, device)
    x = images_of(r, images)
    more = f"-and-{len(images) - 1}-more" if len(images) > 1 else ""
    path = target(r, out, f"chain-{tag(images[0])}{more}.png")
    frames = [x]
    for _ in range(steps):
        frames.append(r.model.decode_all(r.model.encode_all(frames[-1])))
    grid = torch.stack(frames, 1)  # image, step, C, H, W: one row per image
    distance = torch.stack([pixel_distance(x, f) for f in frames[1:]], 1).cpu().tolist()
    write(lambda p: save_grid(grid.flatten(0, 1).cpu(), p, nrow=steps + 1), path)
    return ChainResult(path=path, sources=list(images), distance=distance)


@torch.inference_mode()
def explore(run: str | Path = RUNS_ROOT / "latest", *, image: str, scales: Sequence[float] = (0.1, 0.3, 1.0),
            n: int = 8, seed: int = 0, out: str | Path | None = None, device: str = "auto") -> ExploreResult:
    """Neighbours of one design at several noise scales (§4.2.3, Fig. 4.12): one row per scale.

    Every row uses the same n noise directions, so rows differ only in how far they go.
    """
    check_positive(n, "--n")
    check_noise(scales, "--scales")
    r = open_run(run, device)
    x = images_of(r, [image])
    path = target(r, out, f"explore-{tag(image)}.png")
    z = r.model.encode_all(x).repeat(n, 1)
    rows, distance = [], []
    for scale in scales:
        found = neighbours(r.model, z, (float(scale),), torch.Generator().manual_seed(seed))
        rows += [x, found]
        distance.append(pixel_distance(found, x.expand_as(found)).mean().item())
    write(lambda p: save_grid(torch.cat(rows).cpu(), p, nrow=n + 1), path)
    return ExploreResult(path=path, scales=[float(s) for s in scales], distance=distance)


@torch.inference_mode()
def interpolate(run: str | Path = RUNS_ROOT / "latest", *, image_a: str, image_b: str, steps: int = 8,
                out: str | Path | None = None, device: str = "auto") -> InterpolateResult:
    """x_a, then G along the great circle from E(x_a) to E(x_b) in `steps` points, then x_b."""
    if steps < 2:
        raise DatagenError(f"--steps {steps}: use at least 2 (the two ends)")
    r = open_run(run, device)
    x = images_of(r, [image_a, image_b])
    path = target(r, out, f"interpolate-{tag(image_a)}-to-{tag(image_b)}.png")
    z = r.model.encode_all(x)
    arc = slerp(z[0], z[1], torch.linspace(0, 1, steps, device=z.device), r.center)
    cosine = (directions(z[0], r.center) @ directions(z[1], r.center)).clamp(-1, 1).item()
    write(lambda p: save_grid(torch.cat([x[:1], r.model.decode_all(arc), x[1:]]).cpu(), p, nrow=steps + 2), path)
    return InterpolateResult(path=path, angle_degrees=math.degrees(math.acos(cosine)), steps=steps)
