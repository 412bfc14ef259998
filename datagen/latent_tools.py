"""The thesis' latent-space figures on any run: reconstruct, sample, chain, similarity, explore, embed, interpolate.

Each function loads a run's E and G (eval mode), draws one picture (a torchvision grid; a matplotlib plot
for embed), writes it as a PNG (default RUN/figures/<command>-<what>.png) and returns a small dataclass
with its path and numbers. An IMAGE is a path to an image file, or DATASET:INDEX for the image at
position INDEX of a dataset's test split. Codes live on a sphere about `latent.center`, so angles and
cosines are taken about that centre, and interpolation follows the sphere (slerp). Neighbours are
z' = proj(z + sigma * eps), decoded by augment's own sampler. Random draws come from an explicit seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datagen import checkpoint, data, rundir
from datagen.augmentation import AugmentOptions, _neighbours
from datagen.errors import DatagenError
from datagen.report import pairs_grid, save_grid
from datagen.rundir import RUNS_ROOT, safe_name
from datagen.selfexgan import Model
from datagen.train import load_model, pick_device

DEFAULT_NOISE = AugmentOptions().noise[0]  # augment's measured default (README "Choosing the noise scale")
KNN_CAP = 20_000  # train/test codes used for k-NN at most: beyond it the number no longer moves, the time does
_DATASET_SUFFIXES = {".h5", ".hdf5"}


# ---------------------------------------------------------------- results


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


@dataclass
class ExploreResult:
    path: Path
    scales: list[float]
    distance: list[float]  # per scale: mean absolute pixel difference of the neighbours to the design (0..1)


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


@dataclass
class InterpolateResult:
    path: Path
    angle_degrees: float  # between the two codes, about the sphere's centre
    steps: int


# ---------------------------------------------------------------- loading


@dataclass
class _Run:
    model: Model
    state: dict[str, Any]
    ckpt: Path
    device: torch.device
    _test_sets: dict[str, data.ImageSet] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.state["dataset"]["source"]

    @property
    def center(self) -> float:
        return self.model.recipe.latent.center


def _open(run: str | Path, device: str) -> _Run:
    ckpt = rundir.checkpoint_of(Path(run))
    state = checkpoint.load(ckpt)
    dev = pick_device(device)
    model = load_model(state, dev)
    for net in (model.nets.encoder, model.nets.generator):
        net.eval()  # BatchNorm on running statistics: a picture must not depend on its batch
    return _Run(model=model, state=state, ckpt=ckpt, device=dev)


def _is_own(r: _Run, spec: str) -> bool:
    """The run's training data: conformed at training time already, so no safety check applies."""
    return spec == r.source or Path(spec).expanduser().resolve() == Path(r.source)


def _dataset(r: _Run, spec: str | None, split: str) -> data.ImageSet:
    spec = spec or r.source
    if split == "test" and spec in r._test_sets:
        return r._test_sets[spec]
    img = r.model.recipe.image
    if not _is_own(r, spec):  # other data must convert safely, as augment's --seeds must
        data.check_safe_to_conform(spec, data.probe(spec), img.size, img.channels, img.crop)
    loaded = data.load(spec, split, size=img.size, channels=img.channels, crop=img.crop)
    if len(loaded) == 0:
        raise DatagenError(f"{spec} has no {split} images: give a dataset with at least five images per class")
    if split == "test":
        r._test_sets[spec] = loaded
    return loaded


def _read_file(path: Path) -> torch.Tensor:
    """One image file as uint8 H×W×C (grey stays grey, alpha is dropped)."""
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grey: keep the high byte, as data.py does
                return torch.from_numpy((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)[..., None])
            grey = img.mode in ("1", "L", "LA", "I", "F")
            pixels = np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise DatagenError(f"cannot read image {path} ({type(error).__name__}): give a PNG, JPEG or other image file") from None
    return torch.from_numpy(np.array(pixels[..., None] if grey else pixels))  # a writable copy for torch


def _dataset_index(spec: str) -> tuple[str, int] | None:
    """('mnist-5k', 17) for 'mnist-5k:17'; None when spec is not of that form."""
    name, sep, index = spec.rpartition(":")
    return (name, int(index)) if sep and name and index.isdigit() else None


def _image(r: _Run, spec: str) -> torch.Tensor:
    """One IMAGE spec as uint8 H×W×C at the run's size and channels."""
    img = r.model.recipe.image
    if not spec.strip():
        raise DatagenError("an empty IMAGE: give an image file, or DATASET:INDEX for an image of a dataset's test split")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() not in _DATASET_SUFFIXES:
        pixels = _read_file(path)
        data.check_safe_to_conform(spec, tuple(pixels.shape), img.size, img.channels, img.crop)
        return data.conform(pixels[None], img.size, img.channels, img.crop)[0]
    parsed = _dataset_index(spec)
    if parsed is None:
        if path.is_dir() or path.suffix.lower() in _DATASET_SUFFIXES or spec in data.dataset_names():
            raise DatagenError(f"{spec} is a dataset, not one image: pick one of its test images with {spec}:INDEX")
        raise DatagenError(f"no image file {spec}: give an image file, or DATASET:INDEX for an image of a "
                           f"dataset's test split (e.g. {r.source if '/' not in r.source else 'DATASET'}:0)")
    name, index = parsed
    test = _dataset(r, name, "test")
    if index >= len(test):
        raise DatagenError(f"{spec}: the test split of {name} has {len(test)} images; use an INDEX from 0 to {len(test) - 1}")
    return test.images[index]


def _images(r: _Run, specs: Sequence[str]) -> torch.Tensor:
    """IMAGE specs as model input (float N×C×H×W in [-1, 1]) on the run's device."""
    if not specs:
        raise DatagenError("no IMAGE given: give an image file or DATASET:INDEX")
    return data.to_model_input(torch.stack([_image(r, s) for s in specs])).to(r.device)


# ---------------------------------------------------------------- output


def _target(r: _Run, out: str | Path | None, name: str) -> Path:
    """--out as given (a .png file, or a folder to put the default name in), else RUN/figures/name."""
    if out is None:
        return rundir.folder_of(r.ckpt) / "figures" / name
    out = Path(out)
    if out.is_dir():
        return out / name
    if out.suffix.lower() != ".png":
        raise DatagenError(f"--out {out}: the picture is a PNG; give a path ending in .png, or a folder")
    return out


def _write(save: Any, path: Path) -> Path:
    """Run a saver, turning an unwritable place into one line instead of a traceback."""
    try:
        return save(path)
    except OSError as exc:
        raise DatagenError(f"cannot write {path} ({exc.strerror or exc}); choose a writable --out") from None


def _tag(spec: str) -> str:
    """A short file-name part for a user's IMAGE or dataset spec (sanitised; never a path)."""
    path = Path(spec).expanduser()
    return safe_name(path.stem if path.is_file() else spec)[:40]


# ---------------------------------------------------------------- maths


def _pixel_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, mean absolute difference on a 0..1 scale (images are in [-1, 1], hence the /2)."""
    return (a - b).abs().flatten(1).mean(1) / 2


def _directions(z: torch.Tensor, center: float) -> torch.Tensor:
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


@torch.inference_mode()
def _neighbourhood_directions(model: Model, x: torch.Tensor, k: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: its code, its k decoded neighbours, and the unit directions of {code} + E(neighbours).

    Every image gets the same k noise draws (one generator per call, seeded alike), so two identical
    images get identical neighbourhoods and the score below is symmetric.
    """
    z = model.encode_all(x)
    images = torch.cat([_neighbours(model, code.expand(k, -1), (noise,), torch.Generator().manual_seed(seed)) for code in z])
    codes = model.encode_all(images).view(len(z), k, -1)
    directions = _directions(torch.cat([z.unsqueeze(1), codes], 1), model.recipe.latent.center)
    return z, images, directions


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


# ---------------------------------------------------------------- the figures


def _check_positive(value: int, option: str) -> None:
    if value < 1:
        raise DatagenError(f"{option} {value}: use at least 1")


def _check_noise(scales: Sequence[float], option: str) -> None:
    if not scales or any(not math.isfinite(s) or s < 0 for s in scales):
        raise DatagenError(f"{option}: give one or more noise scales >= 0, e.g. {option} 0.1,0.3,1.0")


@torch.inference_mode()
def reconstruct(run: str | Path = RUNS_ROOT / "latest", *, images: Sequence[str] | None = None, n: int = 64, seed: int = 0,
                out: str | Path | None = None, device: str = "auto") -> ReconstructResult:
    """Real images, each row followed by a row of their G(E(x)) (Figs. 4.1b-4.7b), with per-image errors.

    `images`: None (n random images of the run's own test split), one dataset spec (n random of its test
    split), or IMAGE specs (exactly those).
    """
    _check_positive(n, "--n")
    images = [images] if isinstance(images, str) else images
    r = _open(run, device)
    one = images[0] if images is not None and len(images) == 1 else None
    if images is None or (one is not None and _names_a_dataset(one)):
        test = _dataset(r, one, "test")
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        x = data.to_model_input(test.images[pick]).to(r.device)
        sources = [f"{test.source}:{i}" for i in pick.tolist()]  # IMAGE specs: each can be passed back as is
        path = _target(r, out, f"reconstruct-{_tag(one or r.source)}-seed{seed}.png")
    else:
        x, sources = _images(r, images), list(images)
        more = f"-and-{len(images) - 1}-more" if len(images) > 1 else ""
        path = _target(r, out, f"reconstruct-{_tag(images[0])}{more}.png")
    x_rec = r.model.decode_all(r.model.encode_all(x))
    errors = _pixel_distance(x, x_rec).cpu().tolist()
    _write(lambda p: pairs_grid(x.cpu(), x_rec.cpu(), p, nrow=8), path)
    return ReconstructResult(path=path, sources=sources, errors=errors)


def _names_a_dataset(spec: str) -> bool:
    path = Path(spec).expanduser()
    return spec in data.dataset_names() or path.is_dir() or (path.is_file() and path.suffix.lower() in _DATASET_SUFFIXES)


@torch.inference_mode()
def sample(run: str | Path = RUNS_ROOT / "latest", *, n: int = 64, seed: int = 0, out: str | Path | None = None,
           device: str = "auto") -> SampleResult:
    """G(z) for z ~ N(c, I) (Figs. 4.1c-4.7c): what G makes of latents E was never asked about."""
    _check_positive(n, "--n")
    r = _open(run, device)
    path = _target(r, out, f"sample-seed{seed}.png")
    z = r.model.gaussian(n, torch.Generator().manual_seed(seed)).to(r.device)
    _write(lambda p: save_grid(r.model.decode_all(z).cpu(), p, nrow=8), path)
    return SampleResult(path=path, n=n, seed=seed)


@torch.inference_mode()
def chain(run: str | Path = RUNS_ROOT / "latest", *, images: Sequence[str], steps: int = 16,
          out: str | Path | None = None, device: str = "auto") -> ChainResult:
    """Iterative feeding x -> G(E(x)) -> G(E(G(E(x)))) ... (Fig. 4.8): one row per starting image."""
    _check_positive(steps, "--steps")
    images = [images] if isinstance(images, str) else list(images)
    r = _open(run, device)
    x = _images(r, images)
    more = f"-and-{len(images) - 1}-more" if len(images) > 1 else ""
    path = _target(r, out, f"chain-{_tag(images[0])}{more}.png")
    frames = [x]
    for _ in range(steps):
        frames.append(r.model.decode_all(r.model.encode_all(frames[-1])))
    grid = torch.stack(frames, 1)  # image, step, C, H, W: one row per image
    distance = torch.stack([_pixel_distance(x, f) for f in frames[1:]], 1).cpu().tolist()
    _write(lambda p: save_grid(grid.flatten(0, 1).cpu(), p, nrow=steps + 1), path)
    return ChainResult(path=path, sources=list(images), distance=distance)


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
    _check_positive(neighbours, "--neighbours")
    _check_noise((noise,), "--noise")
    r = _open(run, device)
    x = _images(r, [image_a, image_b])
    path = _target(r, out, f"similarity-{_tag(image_a)}-vs-{_tag(image_b)}.png")
    z, shown, directions = _neighbourhood_directions(r.model, x, neighbours, noise, seed)
    score = _score(directions[:1], directions[1:]).item()
    code_cosine = (_directions(z[0], r.center) @ _directions(z[1], r.center)).item()
    rows = torch.cat([x[:1], shown[:neighbours], x[1:], shown[neighbours:]])
    _write(lambda p: save_grid(rows.cpu(), p, nrow=neighbours + 1), path)
    return SimilarityResult(path=path, score=score, code_cosine=code_cosine, neighbours=neighbours, noise=noise)


@torch.inference_mode()
def similarity_benchmark(run: str | Path = RUNS_ROOT / "latest", *, dataset: str | None = None, pairs: int = 500,
                         neighbours: int = 8, noise: float = DEFAULT_NOISE, seed: int = 0,
                         device: str = "auto") -> SimilarityBenchmark:
    """The similarity score on `pairs` random same-class and `pairs` different-class pairs of a test split.

    Tells what a score means on this run and data: where the two distributions lie and how well they separate.
    """
    _check_positive(pairs, "pairs")
    r = _open(run, device)
    test = _dataset(r, dataset, "test")
    if len(test.class_names) < 2:
        raise DatagenError(f"{test.source} has a single class: same- and different-class pairs need at least two")
    same, different = _pairs(test.labels, pairs, seed)
    x = data.to_model_input(test.images).to(r.device)
    used = torch.unique(torch.cat([same.flatten(), different.flatten()]))
    z, _, directions = _neighbourhood_directions(r.model, x[used], neighbours, noise, seed)
    where = torch.full((len(test),), -1, dtype=torch.int64)
    where[used] = torch.arange(len(used))
    u = _directions(z, r.center)

    def scores(p: torch.Tensor) -> tuple[list[float], list[float]]:
        a, b = where[p[:, 0]], where[p[:, 1]]
        return _score(directions[a], directions[b]).cpu().tolist(), (u[a] * u[b]).sum(1).cpu().tolist()

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


@torch.inference_mode()
def explore(run: str | Path = RUNS_ROOT / "latest", *, image: str, scales: Sequence[float] = (0.1, 0.3, 1.0),
            n: int = 8, seed: int = 0, out: str | Path | None = None, device: str = "auto") -> ExploreResult:
    """Neighbours of one design at several noise scales (§4.2.3, Fig. 4.12): one row per scale.

    Every row uses the same n noise directions, so rows differ only in how far they go.
    """
    _check_positive(n, "--n")
    _check_noise(scales, "--scales")
    r = _open(run, device)
    x = _images(r, [image])
    path = _target(r, out, f"explore-{_tag(image)}.png")
    z = r.model.encode_all(x).repeat(n, 1)
    rows, distance = [], []
    for scale in scales:
        found = _neighbours(r.model, z, (float(scale),), torch.Generator().manual_seed(seed))
        rows += [x, found]
        distance.append(_pixel_distance(found, x.expand_as(found)).mean().item())
    _write(lambda p: save_grid(torch.cat(rows).cpu(), p, nrow=n + 1), path)
    return ExploreResult(path=path, scales=[float(s) for s in scales], distance=distance)


@torch.inference_mode()
def interpolate(run: str | Path = RUNS_ROOT / "latest", *, image_a: str, image_b: str, steps: int = 8,
                out: str | Path | None = None, device: str = "auto") -> InterpolateResult:
    """x_a, then G along the great circle from E(x_a) to E(x_b) in `steps` points, then x_b."""
    if steps < 2:
        raise DatagenError(f"--steps {steps}: use at least 2 (the two ends)")
    r = _open(run, device)
    x = _images(r, [image_a, image_b])
    path = _target(r, out, f"interpolate-{_tag(image_a)}-to-{_tag(image_b)}.png")
    z = r.model.encode_all(x)
    arc = slerp(z[0], z[1], torch.linspace(0, 1, steps, device=z.device), r.center)
    cosine = (_directions(z[0], r.center) @ _directions(z[1], r.center)).clamp(-1, 1).item()
    _write(lambda p: save_grid(torch.cat([x[:1], r.model.decode_all(arc), x[1:]]).cpu(), p, nrow=steps + 2), path)
    return InterpolateResult(path=path, angle_degrees=math.degrees(math.acos(cosine)), steps=steps)


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
    _check_positive(k, "--k")
    r = _open(run, device)
    spec = dataset or r.source
    path = _target(r, out, f"embed-{method}-{_tag(spec)}.png")
    train, test = _dataset(r, spec, "train"), _dataset(r, spec, "test")
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
    _write(lambda p: _scatter(xy, y_test[shown].numpy(), test.class_names, title, p), path)
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
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    for c in np.unique(labels):
        at = labels == c
        ax.scatter(xy[at, 0], xy[at, 1], s=6, color=cmap(int(c) % cmap.N), label=names[c])
    if len(names) <= 20:  # beyond that a legend hides the map
        ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp)
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path
