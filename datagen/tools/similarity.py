"""How alike two images are to the model (§4.2.2, Fig. 4.11), and what the score means on a run's test split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from datagen.common.errors import DatagenError
from datagen.common.grids import save_grid
from datagen.data.pixels import to_model_input
from datagen.generate.neighbours import DEFAULT_NOISE, neighbours
from datagen.model.latent import Model, directions
from datagen.tools.inputs import check_noise, check_positive, images_of, load_split, open_run, tag, target, write
from datagen.train.rundir import RUNS_ROOT


@dataclass
class SimilarityResult:
    path: Path
    score: float  # cosine of the two neighbourhoods' mean directions: 1 = as alike as each is to itself
    code_cosine: float  # cosine of the two codes alone, about the sphere's centre
    neighbours: int
    noise: float


@dataclass
class SimilarityBenchmark:
    """score and code_cosine on random same-class and different-class pairs of a test split."""

    source: str
    same: list[float]
    different: list[float]
    same_code: list[float]
    different_code: list[float]
    neighbours: int
    noise: float

    def summary(self) -> dict[str, Any]:
        out = {"source": self.source, "pairs": [len(self.same), len(self.different)],
               "neighbours": self.neighbours, "noise": self.noise}
        for name, same, diff in (("score", self.same, self.different), ("code_cosine", self.same_code, self.different_code)):
            threshold, accuracy = _best_threshold(same, diff)
            out[name] = {"same_mean": float(np.mean(same)), "same_std": float(np.std(same)),
                         "different_mean": float(np.mean(diff)), "different_std": float(np.std(diff)),
                         "auc": _auc(same, diff), "threshold": threshold, "threshold_accuracy": accuracy}
        return out


@torch.inference_mode()
def _neighbourhood_directions(model: Model, x: torch.Tensor, k: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: its code, its k decoded neighbours, and the unit directions of {code} + E(neighbours).

    Every image gets the same k noise draws (one generator per call, seeded alike), so two identical
    images get identical neighbourhoods and the score below is symmetric.
    """
    z = model.encode_all(x)
    images = torch.cat([neighbours(model, code.expand(k, -1), (noise,), torch.Generator().manual_seed(seed)) for code in z])
    codes = model.encode_all(images).view(len(z), k, -1)
    return z, images, directions(torch.cat([z.unsqueeze(1), codes], 1), model.recipe.latent.center)


def _score(dir_a: torch.Tensor, dir_b: torch.Tensor) -> torch.Tensor:
    """cos of the mean directions = mean cross-neighbourhood cosine / sqrt(product of within-neighbourhood ones)."""
    return F.cosine_similarity(dir_a.mean(1), dir_b.mean(1), dim=1)


def _auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney)."""
    p, n = torch.tensor(positive).unsqueeze(1), torch.tensor(negative).unsqueeze(0)
    return ((p > n).float().mean() + 0.5 * (p == n).float().mean()).item()


def _best_threshold(positive: Sequence[float], negative: Sequence[float]) -> tuple[float, float]:
    """The cut that best tells the two apart (balanced accuracy), and that accuracy."""
    p, n = np.asarray(positive), np.asarray(negative)
    best = (float("nan"), 0.0)
    for cut in np.unique(np.concatenate([p, n])):
        accuracy = ((p >= cut).mean() + (n < cut).mean()) / 2
        if accuracy > best[1]:
            best = (float(cut), float(accuracy))
    return best


@torch.inference_mode()
def similarity(run: str | Path = RUNS_ROOT / "latest", *, image_a: str, image_b: str, neighbours: int = 8,
               noise: float = DEFAULT_NOISE, seed: int = 0, out: str | Path | None = None,
               device: str = "auto") -> SimilarityResult:
    """How alike two images are to the model (§4.2.2, Fig. 4.11), from their codes and generated neighbourhoods.

    Each image's neighbourhood is its code z plus E(G(proj(z + noise * eps))) for `neighbours` draws of eps;
    the score is the cosine between the two neighbourhoods' mean directions about the sphere's centre, which
    equals their mean cross cosine divided by the geometric mean of their within-neighbourhood cosines: 1 means
    the two neighbourhoods are as close to each other as each is to itself. The picture has one row per image:
    the image, then its neighbours.
    """
    check_positive(neighbours, "--neighbours")
    check_noise((noise,), "--noise")
    r = open_run(run, device)
    x = images_of(r, [image_a, image_b])
    path = target(r, out, f"similarity-{tag(image_a)}-vs-{tag(image_b)}.png")
    z, shown, around = _neighbourhood_directions(r.model, x, neighbours, noise, seed)
    score = _score(around[:1], around[1:]).item()
    code_cosine = (directions(z[0], r.center) @ directions(z[1], r.center)).item()
    rows = torch.cat([x[:1], shown[:neighbours], x[1:], shown[neighbours:]])
    write(lambda p: save_grid(rows.cpu(), p, nrow=neighbours + 1), path)
    return SimilarityResult(path=path, score=score, code_cosine=code_cosine, neighbours=neighbours, noise=noise)


@torch.inference_mode()
def similarity_benchmark(run: str | Path = RUNS_ROOT / "latest", *, dataset: str | None = None, pairs: int = 500,
                         neighbours: int = 8, noise: float = DEFAULT_NOISE, seed: int = 0,
                         device: str = "auto") -> SimilarityBenchmark:
    """The similarity score on `pairs` random same-class and `pairs` different-class pairs of a test split.

    Tells what a score means on this run and data: where the two distributions lie and how well they separate.
    """
    check_positive(pairs, "pairs")
    r = open_run(run, device)
    test = load_split(r, dataset, "test")
    if len(test.class_names) < 2:
        raise DatagenError(f"{test.source} has a single class: same- and different-class pairs need at least two")
    same, different = _pairs(test.labels, pairs, seed)
    x = to_model_input(test.images).to(r.device)
    used = torch.unique(torch.cat([same.flatten(), different.flatten()]))
    z, _, around = _neighbourhood_directions(r.model, x[used], neighbours, noise, seed)
    where = torch.full((len(test),), -1, dtype=torch.int64)
    where[used] = torch.arange(len(used))
    u = directions(z, r.center)

    def scores(p: torch.Tensor) -> tuple[list[float], list[float]]:
        a, b = where[p[:, 0]], where[p[:, 1]]
        return _score(around[a], around[b]).cpu().tolist(), (u[a] * u[b]).sum(1).cpu().tolist()

    (s_same, c_same), (s_diff, c_diff) = scores(same), scores(different)
    return SimilarityBenchmark(source=test.source, same=s_same, different=s_diff, same_code=c_same,
                               different_code=c_diff, neighbours=neighbours, noise=noise)


def _pairs(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs of distinct same-class images and n pairs of different-class images (positions), seeded."""
    gen = torch.Generator().manual_seed(seed)
    classes = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    classes = [c for c in classes if len(c) >= 2]
    if not classes:
        raise DatagenError("no class has two test images: same-class pairs need at least two images of a class")
    same = []
    for _ in range(n):
        members = classes[int(torch.randint(len(classes), (1,), generator=gen))]
        i, j = torch.randperm(len(members), generator=gen)[:2]
        same.append((members[i], members[j]))
    different = []
    while len(different) < n:
        i, j = torch.randint(len(labels), (2,), generator=gen)
        if labels[i] != labels[j]:
            different.append((i, j))
    return torch.tensor(same), torch.tensor(different)
