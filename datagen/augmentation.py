"""Grow labeled seeds into many more labeled images: latent neighbours through G (thesis §4.2.1).

For each class: z = proj(E(x_seed)), z' = proj(z + sigma * eps), x' = G(z'); seeds are used
round-robin; an optional filter (a classifier trained on the seeds only) keeps a neighbour when it
agrees with the label at a given confidence. Two extensions widen what neighbours start from: `mix`
blends two seeds of a class, `unlabeled` adds the dataset's other images, each labelled by its
nearest seed code (measured to help a downstream classifier: README, "datagen evaluate"). Samples stream to the output batch by batch. Every
batch's randomness is derived from (seed, class, samples already kept), so a resumed output
continues with exactly the candidates an uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from datagen import __version__, checkpoint, data, rundir, speed, store
from datagen import classifier as classifier_module
from datagen.classifier import probabilities, small_cnn, train_classifier
from datagen.errors import DatagenError
from datagen.report import console, progress, save_grid
from datagen.rundir import RUNS_ROOT, safe_name
from datagen.selfexgan import Model
from datagen.train import load_model, pick_device


FILTER_CACHE = "filters"  # in the run folder: fitted filter classifiers, by digest of their seeds
FILTER_STEPS = 300


class FilterCapError(DatagenError):
    """The filter rejected more than max_candidates per wanted image: the noise is too large for the model."""


@dataclass
class AugmentOptions:
    run: Path = RUNS_ROOT / "latest"
    per_class: int = 100
    seeds: str | None = None  # default: the run's own dataset, train split
    seeds_per_class: int | None = None  # use only K labeled images per class
    seed_indices: tuple[int, ...] | None = None  # API only: exactly these source indices (e.g. a labels budget)
    # 0.5: the largest scale at which an independent classifier still agrees with 98% of the kept
    # neighbours (92% unfiltered) on the default mnist-5k run; README "Choosing the noise scale".
    noise: tuple[float, ...] = (0.5,)
    mix: float = 0.0  # share of candidates blended from two seeds of their class (see _candidates)
    unlabeled: bool = False  # also grow from the dataset's unlabeled images, labelled by their nearest seed code
    unlabeled_indices: tuple[int, ...] | None = None  # API only: exactly these source indices as unlabeled images
    filter: bool = True
    min_confidence: float = 0.9
    fmt: str = "hdf5"
    out: Path | None = None
    include_seeds: bool = False
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    batch_size: int = 256
    max_candidates: int = 20  # per kept sample, at most: beyond it the filter rejects too much
    device: str = "auto"
    data_root: Path | None = None
    progress: bool = True
    channels_last: bool | None = None  # None: datagen.speed's measured default for the device
    compile: bool = False


@dataclass
class AugmentResult:
    path: Path
    counts: list[int]
    rejection: list[float]  # share of candidates the filter rejected, per class (this call)
    previews: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase of this call


def _validate(o: AugmentOptions) -> None:
    if o.per_class <= 0:
        raise DatagenError(f"--per-class {o.per_class}: ask for at least one image per class")
    if o.seeds_per_class is not None and o.seeds_per_class <= 0:
        raise DatagenError(f"--seeds-per-class {o.seeds_per_class}: use at least one seed per class")
    if not o.noise or any(s < 0 for s in o.noise):
        raise DatagenError("--noise takes one or more scales >= 0, e.g. --noise 0.3 or --noise 0.2,0.5")
    if not 0 <= o.mix <= 1:
        raise DatagenError(f"--mix {o.mix}: give the share of blended candidates, between 0 and 1")
    if not 0 <= o.min_confidence <= 1:
        raise DatagenError(f"--min-confidence {o.min_confidence}: use a probability between 0 and 1")
    if o.batch_size < 1:
        raise DatagenError("--batch-size must be at least 1")


def _pick_seeds(labels: torch.Tensor, n_classes: int, k: int | None, seed: int, names: tuple[str, ...]) -> list[torch.Tensor]:
    """Per class, the positions of the seeds to grow from: all, or a fixed random K."""
    picked = []
    for c in range(n_classes):
        where = torch.nonzero(labels == c).flatten()
        if where.numel() == 0:
            raise DatagenError(f"class '{names[c]}' has no seed images: add some, or drop the class from the seeds")
        if k is not None:
            order = torch.randperm(where.numel(), generator=torch.Generator().manual_seed(seed * 7919 + c))
            where = where[order[:k]].sort().values
        picked.append(where)
    return picked


def _batch_generator(seed: int, c: int, kept: int, stalled: int) -> torch.Generator:
    """A batch's noise from (seed, class, samples kept so far, batches since one was kept): resumable."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + c) * 1_000_003 + kept) * 1_009 + stalled)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _neighbours(model: Model, z: torch.Tensor, noise: tuple[float, ...], gen: torch.Generator) -> torch.Tensor:
    """G(proj(z + sigma * eps)) for each row of z, the scales of `noise` taken in turn."""
    sigma = torch.tensor(noise)[torch.arange(z.shape[0]) % len(noise)].unsqueeze(1)
    eps = torch.randn(z.shape, generator=gen)
    return model.decode_all(model.project(z + (sigma * eps).to(z.device)))  # in cache-sized chunks: speed.inference_batch


def _candidates(model: Model, z_seeds: torch.Tensor, noise: tuple[float, ...], start: int, n: int,
                gen: torch.Generator, mix: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """n neighbours, seeds taken round-robin from position `start`; returns (uint8 images, seed positions).

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
    return data.to_uint8(_neighbours(model, z, noise, gen).cpu()), which


def augment(o: AugmentOptions) -> AugmentResult:
    """Write per_class neighbours per class (plus the seeds, if asked) to o.out; see the module docstring."""
    _validate(o)
    ckpt = rundir.checkpoint_of(o.run)
    state = checkpoint.load(ckpt)
    device = pick_device(o.device)
    model = load_model(state, device, speed.choose(device, o.channels_last, o.compile))
    for net in (model.nets.encoder, model.nets.generator):
        net.eval()
    img = model.recipe.image
    source = o.seeds or state["dataset"]["source"]
    if o.seeds is not None:  # the run's own data was conformed in training already; other seeds must convert safely
        data.check_safe_to_conform(o.seeds, data.probe(o.seeds, o.data_root), img.size, img.channels, img.crop)
    seeds = data.load(source, "train", size=img.size, channels=img.channels, crop=img.crop, data_root=o.data_root)
    names = seeds.class_names
    if o.seed_indices is not None:  # only the given images may be seeds: anything else would leak labels
        allowed = torch.isin(seeds.indices, torch.as_tensor(o.seed_indices, dtype=torch.int64))
        picked = _pick_seeds(torch.where(allowed, seeds.labels, -1), len(names), o.seeds_per_class, o.seed, names)
    else:
        picked = _pick_seeds(seeds.labels, len(names), o.seeds_per_class, o.seed, names)
    chosen = torch.cat(picked)
    unlabeled = _unlabeled_positions(o, seeds, chosen)
    out = o.out or rundir.folder_of(ckpt) / ("augmented.h5" if o.fmt == "hdf5" else "augmented")
    provenance = {
        "class_names": list(names), "source": seeds.source, "split": "train", "split_rule": seeds.split_rule,
        "seed_indices": seeds.indices[chosen].tolist(), "seeds_per_class": o.seeds_per_class,
        "checkpoint": str(ckpt), "checkpoint_sha256": _sha256(ckpt), "recipe": model.recipe.name,
        "noise": list(o.noise), "mix": o.mix, "unlabeled": o.unlabeled, "filter": o.filter, "min_confidence": o.min_confidence if o.filter else None,
        "per_class": o.per_class, "include_seeds": o.include_seeds, "seed": o.seed, "datagen_version": __version__,
    }
    h, w, ch = img.size, img.size, img.channels
    writer = store.open_writer(out, o.fmt, image_shape=(h, w, ch), class_names=list(names), provenance=provenance,
                               resume=o.resume, overwrite=o.overwrite)
    if o.fmt == "hdf5":  # hidden behind G: measured. PNG encoding competes with G for the CPU: 0.4-0.6 s slower per 10k
        writer = store.Overlapped(writer)
    clock = _Clock()
    with writer:
        if o.include_seeds and sum(writer.counts()) == 0:  # seeds go first, in one durable batch
            writer.write(seeds.images[chosen], seeds.labels[chosen], seeds.indices[chosen], torch.ones(len(chosen), dtype=torch.bool))
        x_seeds = data.to_model_input(seeds.images[chosen]).to(device)
        classifier = None
        if o.filter:
            classifier = _filter_classifier(rundir.folder_of(ckpt) / FILTER_CACHE, seeds.images[chosen], x_seeds,
                                            seeds.labels[chosen].to(device), len(names), o.seed)
        clock.lap("filter_fit")
        pools = _pools(model, seeds, len(picked), chosen, x_seeds, unlabeled)
        clock.lap("encode")
        rejection = _generate(model, o, writer, pools, picked, seeds, classifier)
        clock.lap("generate")
        writer.finish()
        counts = writer.counts()
        clock.lap("finish")
    previews = _previews(model, o, out, picked, seeds, names, device)
    clock.lap("previews")
    return AugmentResult(path=out, counts=counts, rejection=rejection, previews=previews, seconds=clock.laps)


class _Clock:
    """Wall seconds per phase, for `datagen bench augment`'s breakdown."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _filter_classifier(cache: Path, images: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, n_classes: int,
                       seed: int) -> torch.nn.Module:
    """The filter for these seeds: fitted once (the slowest fixed cost of augment), then reused from the run folder.

    The cache file is named by a digest of everything the fit depends on (the seed images and labels, the
    seed, datagen's version, the source of the classifier module: net and training), so a hit is the very net a
    new fit would give. An unwritable run folder only means no cache.
    """
    digest = hashlib.sha256()
    for part in (images.contiguous().numpy().tobytes(), labels.cpu().numpy().tobytes(),
                 f"{seed}|{n_classes}|{FILTER_STEPS}|{__version__}".encode(),
                 inspect.getsource(classifier_module).encode()):
        digest.update(part)
    path = cache / f"{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        net = small_cnn(x.shape[1], n_classes).to(x.device)
        net.load_state_dict(checkpoint.load_plain(path))
        speed.prepare([net], speed.choose(x.device))
        return net.eval()
    console.print(f"fitting the filter classifier on {len(labels)} seed images")
    net = train_classifier(x, labels, n_classes, steps=FILTER_STEPS, seed=seed)
    try:
        checkpoint.save(path, net.state_dict())
    except OSError:
        pass  # a read-only run folder: the next call fits again
    return net


@torch.inference_mode()
def _unlabeled_positions(o: AugmentOptions, seeds: data.ImageSet, chosen: torch.Tensor) -> torch.Tensor | None:
    """Positions of the images that may serve unlabeled (None without --unlabeled); checked before writing."""
    if not o.unlabeled:
        return None
    rest = torch.ones(len(seeds), dtype=torch.bool)
    rest[chosen] = False
    if o.unlabeled_indices is not None:
        rest &= torch.isin(seeds.indices, torch.as_tensor(o.unlabeled_indices, dtype=torch.int64))
    if not rest.any():
        raise DatagenError(f"--unlabeled: every image of {seeds.source} is already a seed; use --seeds-per-class K "
                           "so the others can serve as unlabeled images, or drop --unlabeled")
    return torch.nonzero(rest).flatten()


def _pools(model: Model, seeds: data.ImageSet, n_classes: int, chosen: torch.Tensor, x_seeds: torch.Tensor,
           unlabeled: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per class, the codes to grow from and, for each, the position of the labeled seed its label comes from.

    Without `unlabeled` these are the class's seeds. With it, each unlabeled image joins the class of
    its nearest seed code (cosine, about the sphere's centre): no label beyond the seeds' is used, and
    the filter, when on, still judges each neighbour.
    """
    z_seeds = model.encode_all(x_seeds)
    owner, z_all = chosen.clone(), z_seeds
    if unlabeled is not None:
        z_rest = model.encode_all(seeds.images[unlabeled])
        center = model.recipe.latent.center
        nearest = (F.normalize(z_rest - center, dim=1) @ F.normalize(z_seeds - center, dim=1).T).argmax(1).cpu()
        owner, z_all = torch.cat([owner, chosen[nearest]]), torch.cat([z_seeds, z_rest])
    labels = seeds.labels[owner]
    return [(z_all[(labels == c).to(z_all.device)], owner[labels == c]) for c in range(n_classes)]


@torch.inference_mode()
def _generate(model: Model, o: AugmentOptions, writer: store.Writer, pools: list[tuple[torch.Tensor, torch.Tensor]],
              picked: list[torch.Tensor], seeds: data.ImageSet, classifier: torch.nn.Module | None) -> list[float]:
    rejection = []
    with progress() as bar:
        done = [count - (len(picked[c]) if o.include_seeds else 0) for c, count in enumerate(writer.counts())]
        task = bar.add_task("augment", total=o.per_class * len(picked), completed=sum(done), info="",
                            visible=o.progress and console.is_terminal)
        started, written = time.perf_counter(), 0
        for c, (z_pool, owner) in enumerate(pools):
            kept, tried, rejected = done[c], 0, 0
            stalled = 0  # batches since `kept` last grew: with `kept`, all a batch's randomness depends on
            while kept < o.per_class:
                if tried > o.max_candidates * o.per_class:
                    raise FilterCapError(f"class '{seeds.class_names[c]}': the filter rejected {rejected} of {tried} "
                                       f"neighbours; lower --min-confidence or --noise, or pass --no-filter")
                n = min(o.batch_size, (o.per_class - kept) * (2 if classifier is not None else 1))
                start = kept + stalled * n
                images, which = _candidates(model, z_pool, o.noise, start, n, _batch_generator(o.seed, c, kept, stalled), o.mix)
                keep = torch.ones(n, dtype=torch.bool)
                if classifier is not None:
                    probs = probabilities(classifier, data.to_model_input(images).to(z_pool.device)).cpu()
                    keep = (probs.argmax(1) == c) & (probs[:, c] >= o.min_confidence)
                tried += n
                rejected += int((~keep).sum())
                take = torch.nonzero(keep).flatten()[: o.per_class - kept]
                if take.numel():
                    writer.write(images[take], torch.full((take.numel(),), c, dtype=torch.int64),
                                 seeds.indices[owner[which[take]]], torch.zeros(take.numel(), dtype=torch.bool))
                    kept += take.numel()
                    stalled = 0
                    elapsed = time.perf_counter() - started
                    written += take.numel()
                    bar.update(task, advance=take.numel(),
                               info=f"class {seeds.class_names[c]} {written / elapsed if elapsed else 0:.0f} img/s")
                else:
                    stalled += 1
            rejection.append(rejected / tried if tried else 0.0)
    return rejection


@torch.inference_mode()
def _previews(model: Model, o: AugmentOptions, out: Path, picked: list[torch.Tensor], seeds: data.ImageSet,
              names: tuple[str, ...], device: torch.device) -> list[Path]:
    """Per class, rows of: a seed, then 7 of its neighbours — to look at before training on the output."""
    folder = out.with_name(f"{out.stem}-preview")
    paths = []
    for c, where in enumerate(picked):
        x = data.to_model_input(seeds.images[where[:8]]).to(device)
        z = model.encode(x).repeat_interleave(7, 0)
        neighbours = _neighbours(model, z, o.noise, torch.Generator().manual_seed(o.seed))
        rows = torch.cat([torch.cat([x[i:i + 1], neighbours[i * 7:(i + 1) * 7]]) for i in range(x.shape[0])])
        paths.append(save_grid(rows, folder / f"{c:03d}-{safe_name(names[c])}.png", nrow=8))
    return paths
