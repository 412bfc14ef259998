"""A 2-D map of E's codes coloured by label (Fig. 4.9), and how well the codes separate classes (k-NN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datagen.common.errors import DatagenError
from datagen.common import plots
from datagen.tools.inputs import check_positive, load_split, open_run, tag, target, write
from datagen.train.rundir import RUNS_ROOT


KNN_CAP = 20_000  # train/test codes used for k-NN at most: beyond it the number no longer moves, the time does


@dataclass
class EmbedResult:
    path: Path
    source: str
    method: str
    points: int  # test images drawn on the map
    k: int
    knn_accuracy: float | None  # k-NN on E's codes, fitted on the train split, scored on the test split
    pixel_knn_accuracy: float | None  # the same k-NN on raw pixels: what the codes must beat
    chance: float | None  # always answering the most common train class
    train_images: int
    test_images: int


@torch.inference_mode()
def embed(run: str | Path = RUNS_ROOT / "latest", *, dataset: str | None = None, method: str = "tsne", n: int = 2000,
          k: int = 5, seed: int = 0, out: str | Path | None = None, device: str = "auto") -> EmbedResult:
    """A 2-D map of E's codes of up to n test images coloured by label (Fig. 4.9), plus k-NN accuracies.

    The k-NN classifier is fitted on the codes of the train split and scored on those of the test split
    (each up to KNN_CAP images); the same on raw pixels says whether the codes separate classes better.
    """
    if method not in ("tsne", "pca"):
        raise DatagenError(f"--method {method}: use tsne or pca")
    if n < 3:
        raise DatagenError(f"--n {n}: a map needs at least 3 points")
    check_positive(k, "--k")
    r = open_run(run, device)
    spec = dataset or r.source
    path = target(r, out, f"embed-{method}-{tag(spec)}.png")
    train, test = load_split(r, spec, "train"), load_split(r, spec, "test")
    gen = torch.Generator().manual_seed(seed)
    fit_at = torch.randperm(len(train), generator=gen)[:KNN_CAP]
    score_at = torch.randperm(len(test), generator=gen)[:KNN_CAP]
    z_train = r.model.encode_all(train.images[fit_at]).cpu()
    z_test = r.model.encode_all(test.images[score_at]).cpu()
    y_train, y_test = train.labels[fit_at], test.labels[score_at]
    knn = pixel_knn = chance = None
    if len(test.class_names) >= 2:
        if k > len(fit_at):
            raise DatagenError(f"--k {k}: the train split of {spec} has only {len(fit_at)} images; use a smaller --k")
        knn = _knn_accuracy(z_train, y_train, z_test, y_test, k)
        pixel_knn = _knn_accuracy(train.images[fit_at].flatten(1).float() / 255, y_train,
                                  test.images[score_at].flatten(1).float() / 255, y_test, k)
        chance = (y_test == torch.bincount(y_train).argmax()).float().mean().item()
    shown = torch.arange(min(n, len(score_at)))  # score_at is already a random order
    xy = _project_2d(z_test[shown].numpy(), method, seed)
    title = (f"E's codes of {len(shown)} test images of {Path(test.source).name} ({method})"
             + (f"\n{k}-NN accuracy {knn:.1%} (raw pixels {pixel_knn:.1%}, chance {chance:.1%})" if knn is not None else ""))
    write(lambda p: _scatter(xy, y_test[shown].numpy(), test.class_names, title, p), path)
    return EmbedResult(path=path, source=test.source, method=method, points=len(shown), k=k, knn_accuracy=knn,
                       pixel_knn_accuracy=pixel_knn, chance=chance, train_images=len(fit_at), test_images=len(score_at))


def _knn_accuracy(fit: torch.Tensor, fit_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor, k: int) -> float:
    from sklearn.neighbors import KNeighborsClassifier  # imported lazily: only embed needs it

    knn = KNeighborsClassifier(n_neighbors=k).fit(fit.numpy(), fit_labels.numpy())
    return float((knn.predict(test.numpy()) == test_labels.numpy()).mean())


def _project_2d(codes: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes)
    from sklearn.manifold import TSNE

    # sklearn requires perplexity < n; 30 is its default for maps of hundreds of points and more
    perplexity = min(30.0, (len(codes) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes)


def _scatter(xy: np.ndarray, labels: np.ndarray, names: Sequence[str], title: str, path: Path) -> Path:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    fig, ax = plots.subplots(figsize=(7, 6), dpi=120)
    for c in np.unique(labels):
        at = labels == c
        ax.scatter(xy[at, 0], xy[at, 1], s=6, color=cmap(int(c) % cmap.N), label=names[c])
    if len(names) <= 20:  # beyond that a legend hides the map
        ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return plots.save(fig, path)
