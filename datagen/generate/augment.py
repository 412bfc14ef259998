"""Grow labeled seeds into many more labeled images: latent neighbours through G (thesis §4.2.1).

For each class: z = proj(E(x_seed)), z' = proj(z + sigma * eps), x' = G(z'); seeds are used
round-robin; an optional filter (a classifier trained on the seeds only) keeps a neighbour when it
agrees with the label at a given confidence. Two extensions widen what neighbours start from: `mix`
blends two seeds of a class, `unlabeled` adds the dataset's other images, labelled from the seeds by
label spreading on E's codes (datagen.generate.pseudo). Every row records its label's confidence and the
latent code and noise scale that re-create it. Samples stream to the output batch by batch, and a
resumed output continues exactly where the interrupted one stopped (datagen.generate.neighbours). With a shard
(--shard i/n, or torchrun's rank) the call writes only its share of every class to its own file, and the last
shard to finish writes the index that reads them as one output (datagen.store.shards).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from datagen.common.version import __version__
from datagen.classify.fit import probabilities
from datagen.common import locks
from datagen.common.console import console, progress
from datagen.common.errors import DatagenError
from datagen.common.interrupts import Interrupted, StopRequest
from datagen.common.files import safe_name
from datagen.common.grids import save_grid
from datagen.common.seeds import generator
from datagen.data.conform import SQUARE_FLAGS, check_safe_to_conform, check_square
from datagen.data.imageset import ImageSet, indices_digest
from datagen.data.pixels import to_model_input
from datagen.data.sources import load, probe
from datagen.generate.filter import FILTER_CACHE, FilterCapError, filter_classifier, filter_wanted
from datagen.generate import defaults
from datagen.generate.neighbours import batch_generator, candidates, neighbours, pick_seeds
from datagen.generate.pseudo import ALPHA, NEIGHBOURS, joins, spread_labels
from datagen.model import checkpoint, speed
from datagen.model.device import pick_device
from datagen.model.latent import Model
from datagen.store import shards as sharding, writers
from datagen.store.base import Writer
from datagen.store.memory import MemoryWriter
from datagen.train import rundir
from datagen.train.rundir import RUNS_ROOT


@dataclass
class AugmentOptions:
    run: Path = RUNS_ROOT / "latest"
    per_class: int = 100
    seeds: str | None = None  # default: the run's own dataset, train split
    square: str | None = None  # "crop" | "pad": how non-square seeds become square; None: as the run's training did
    seeds_per_class: int | None = None  # use only K labeled images per class
    seed_indices: tuple[int, ...] | None = None  # API only: exactly these source indices (e.g. a labels budget)
    noise: tuple[float, ...] = defaults.NOISE
    mix: float = defaults.MIX  # share of candidates blended from two seeds of their class (see candidates)
    # Also grow from the dataset's unlabeled images, labelled from the seeds (generate.pseudo); None: when there are any
    unlabeled: bool | None = None
    min_label_confidence: float = defaults.MIN_LABEL_CONFIDENCE  # less sure unlabeled images are left out
    unlabeled_indices: tuple[int, ...] | None = None  # API only: exactly these source indices as unlabeled images
    filter: bool | None = defaults.FILTER  # None: on with at least defaults.FILTER_MIN_SEEDS seeds per class
    min_confidence: float = 0.9
    fmt: str = "hdf5"
    shard_size: int | None = None  # webdataset: images per tar shard (None: the writer's default, or the output's)
    out: Path | None = None
    include_seeds: bool = False
    # also write the unlabeled images that joined a class, with their spread labels; None: whenever there are any
    include_unlabeled: bool | None = defaults.INCLUDE_UNLABELED
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
    shard: str | None = None  # "i/n": write shard i of n (datagen.store.shards); the CLI's default: torchrun's rank


# Inside the run directory; webdataset's own name, so it never meets an ImageFolder output of the same run.
_DEFAULT_OUT = {"hdf5": "augmented.h5", "imagefolder": "augmented", "webdataset": "augmented-webdataset"}


@dataclass
class AugmentResult:
    path: Path
    counts: list[int]  # rows per class, real ones included
    real: list[int]  # of those, the real rows per class (--include-seeds, --include-unlabeled)
    rejection: list[float]  # share of candidates the filter rejected, per class (this call)
    real_kinds: tuple[str, ...] = ()  # what the real rows are: "seeds", "unlabeled"
    previews: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase of this call
    shard: str | None = None  # "i/n" when this call wrote a shard
    index: Path | None = None  # a shard's call that found every shard done: the index it wrote


def _validate(o: AugmentOptions) -> None:
    if o.per_class <= 0:
        raise DatagenError(f"--per-class {o.per_class}: ask for at least one image per class")
    if o.seeds_per_class is not None and o.seeds_per_class <= 0:
        raise DatagenError(f"--seeds-per-class {o.seeds_per_class}: use at least one seed per class")
    if not o.noise or any(s < 0 for s in o.noise):
        raise DatagenError("--noise takes one or more scales >= 0, e.g. --noise 0.3 or --noise 0.2,0.5")
    if not 0 <= o.mix <= 1:
        raise DatagenError(f"--mix {o.mix}: give the share of blended candidates, between 0 and 1")
    if not 0 <= o.min_label_confidence <= 1:
        raise DatagenError(f"--min-label-confidence {o.min_label_confidence}: use a probability between 0 and 1")
    if not 0 <= o.min_confidence <= 1:
        raise DatagenError(f"--min-confidence {o.min_confidence}: use a probability between 0 and 1")
    if o.batch_size < 1:
        raise DatagenError("--batch-size must be at least 1")
    if o.include_unlabeled and o.unlabeled is False:
        raise DatagenError("--include-unlabeled writes the unlabeled images augment labels: leave out --seeds-only")
    if o.shard is not None and o.fmt != "hdf5":
        raise DatagenError(f"--shard writes HDF5 shards and an index over them, not {o.fmt}: pass --format hdf5 "
                           "(or run a single process)")


def _pool(indices: torch.Tensor) -> dict:
    """The unlabeled pool in a few bytes: its size and a digest of its source indices."""
    return {"images": len(indices), "sha256": indices_digest(indices)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def augment(o: AugmentOptions) -> AugmentResult:
    """Write per_class neighbours per class (plus the seeds, if asked) to o.out; see the module docstring.

    The call holds the output's lock throughout (datagen.common.locks), taken before anything is loaded so that a
    second process on the same output refuses at once; each shard locks its own file, so shards run side by side.
    """
    _validate(o)
    shard = sharding.parse_shard(o.shard) if o.shard is not None else None
    ckpt = rundir.checkpoint_of(o.run)
    state = checkpoint.load(ckpt)  # a missing run fails here, before a lock file is made for its default output
    out = o.out or rundir.folder_of(ckpt) / _DEFAULT_OUT.get(o.fmt, "augmented")
    with locks.hold(shard.path(out) if shard is not None else out, "the output"):
        return _augment(o, shard, ckpt, state, out)


def _augment(o: AugmentOptions, shard: sharding.Shard | None, ckpt: Path, state: dict, out: Path) -> AugmentResult:
    device = _rank_device(pick_device(o.device)) if shard is not None else pick_device(o.device)
    how = speed.choose(device, o.channels_last, o.compile)
    model = checkpoint.load_model(state, device, how)
    img = model.recipe.image
    source = o.seeds or state["dataset"]["source"]
    trained = state["dataset"].get("square")  # absent: a run trained before the choice was recorded
    square = o.square or trained
    check_square(square)
    if o.seeds is None and square != trained:  # G learnt the run's images as they were squared in training
        raise DatagenError(f"the run's own images were squared with {SQUARE_FLAGS.get(trained, 'neither --crop nor --pad')} "
                           "in training, and augment loads them the same way: leave out --crop/--pad, or pass --seeds "
                           "to grow from other images squared your way")
    if o.seeds is not None:  # the run's own data was conformed in training already; other seeds must convert safely
        check_safe_to_conform(o.seeds, probe(o.seeds, o.data_root, square), img.size, img.channels, img.crop, square)
    seeds = load(source, "train", size=img.size, channels=img.channels, crop=img.crop, square=square,
                 data_root=o.data_root)
    names = seeds.class_names
    if o.seed_indices is not None:  # only the given images may be seeds: anything else would leak labels
        allowed = torch.isin(seeds.indices, torch.as_tensor(o.seed_indices, dtype=torch.int64))
        picked = pick_seeds(torch.where(allowed, seeds.labels, -1), len(names), o.seeds_per_class, o.seed, names)
    else:
        picked = pick_seeds(seeds.labels, len(names), o.seeds_per_class, o.seed, names)
    chosen = torch.cat(picked)
    unlabeled = _unlabeled_positions(o, seeds, chosen)
    if o.include_unlabeled is None:
        o = dataclasses.replace(o, include_unlabeled=unlabeled is not None)
    if o.include_unlabeled and unlabeled is None:
        raise DatagenError(f"--include-unlabeled: every image of {seeds.source} is a seed, so none is unlabeled; use "
                           "--seeds-per-class K so the others can be, or drop --include-unlabeled")
    automatic = o.filter is None
    o = dataclasses.replace(o, filter=filter_wanted(o.filter, min(len(p) for p in picked)))
    clock = _Clock()
    x_seeds = to_model_input(seeds.images[chosen]).to(device)
    classifier = None
    if o.filter:
        classifier = filter_classifier(rundir.folder_of(ckpt) / FILTER_CACHE, seeds.images[chosen], x_seeds,
                                        seeds.labels[chosen].to(device), len(names), o.seed)
    clock.lap("filter_fit")
    pools, joined = _pools(model, o, seeds, len(picked), chosen, x_seeds, unlabeled)
    clock.lap("encode")
    if automatic and classifier is not None and not _filter_keeps_enough(model, o, pools, classifier, names):
        o, classifier = dataclasses.replace(o, filter=False), None
    provenance = {
        "class_names": list(names), "source": seeds.source, "square": square, "split": "train", "split_rule": seeds.split_rule,
        "seed_indices": seeds.indices[chosen].tolist(), "seeds_per_class": o.seeds_per_class,
        "checkpoint": str(ckpt), "checkpoint_sha256": _sha256(ckpt), "recipe": model.recipe.name,
        "noise": list(o.noise), "mix": o.mix, "unlabeled": unlabeled is not None,
        "pseudo_labels": {"method": "label spreading", "neighbours": NEIGHBOURS, "alpha": ALPHA,
                          "min_label_confidence": o.min_label_confidence} if unlabeled is not None else None,
        "filter": o.filter, "min_confidence": o.min_confidence if o.filter else None,
        "per_class": o.per_class, "include_seeds": o.include_seeds, "include_unlabeled": o.include_unlabeled,
        "seed": o.seed, "batch_size": o.batch_size,
        "unlabeled_pool": _pool(seeds.indices[unlabeled]) if unlabeled is not None else None,
        "channels_last": how.channels_last, "datagen_version": __version__,
    }
    index, first, index_stays = out, 0, True
    if shard is not None:  # this call writes one share of every class (the seeds go to shard 0) to its own file
        sharding.prepare(index, shard, o.overwrite)
        provenance["shard"] = {"index": shard.index, "count": shard.count, "per_class": shard.share(o.per_class)}
        out, first = shard.path(index), shard.offset(o.per_class)
        index_stays = o.resume and sharding.finished(out)  # only resuming a finished shard adds nothing to it
        o = dataclasses.replace(o, per_class=shard.share(o.per_class), include_seeds=o.include_seeds and shard.index == 0,
                                include_unlabeled=o.include_unlabeled and shard.index == 0)
    # a resume must meet the same real rows: they come from label spreading, which another device may tip
    provenance["real_rows"] = _real_per_class(o, pools, picked)
    h, w, ch = img.size, img.size, img.channels
    writer = writers.open_writer(out, o.fmt, image_shape=(h, w, ch), class_names=list(names), provenance=provenance,
                                 resume=o.resume, overwrite=o.overwrite, latent_dim=model.recipe.latent.dim,
                                 shard_size=o.shard_size)
    if not index_stays:  # this shard is (re)written, and the index must exist only while every shard is done
        sharding.drop_index(index)
    if o.fmt == "hdf5":  # hidden behind G; PNG encoding would compete with G for the CPU (docs/performance-notes.md)
        writer = writers.Overlapped(writer)
    with StopRequest("stopping after this batch; every image written so far is kept") as stop, writer:
        stop.armed = True  # the output exists: a signal stops after a whole batch, which resume continues from
        if sum(writer.counts()) == 0:  # the real rows go first, in one durable batch
            _write_real_rows(model, o, writer, seeds, chosen, x_seeds, joined)
        rejection = _generate(model, o, writer, pools, picked, seeds, classifier, first, stop)
        clock.lap("generate")
        writer.finish()
        counts = writer.counts()
        clock.lap("finish")
    written = shard is not None and sharding.write_index_if_complete(index, shard.count)
    # previews depend on the seeds and --seed only: one shard draws them, beside the index
    previews = _previews(model, o, index, picked, seeds, names, device) if shard is None or shard.index == 0 else []
    clock.lap("previews")
    kinds = tuple(kind for kind, wanted in (("seeds", o.include_seeds), ("unlabeled", o.include_unlabeled)) if wanted)
    return AugmentResult(path=out, counts=counts, real=_real_per_class(o, pools, picked), real_kinds=kinds,
                         rejection=rejection, previews=previews, seconds=clock.laps,
                         shard=str(shard) if shard is not None else None, index=index if written else None)


PROBE = 64  # neighbours per class the automatic filter is tried on before it is used


@torch.inference_mode()
def _filter_keeps_enough(model: Model, o: AugmentOptions, pools: list[Pool], classifier: torch.nn.Module,
                         names: tuple[str, ...]) -> bool:
    """Whether the automatic filter keeps enough of a fixed probe of each class's neighbours to be used.

    A G that does not yet render its neighbours as digits (a run of an epoch or two) gets nearly all of them
    rejected; rather than stop on the cap, augment then writes without the filter and says so. The probe is seeded,
    so a resumed call decides the same way.
    """
    for c, pool in enumerate(pools):
        images, *_ = candidates(model, pool.z, o.noise, 0, PROBE, generator("augment-filter-probe", o.seed, c), o.mix)
        probs = probabilities(classifier, to_model_input(images).to(pool.z.device)).cpu()
        rejected = 1 - ((probs.argmax(1) == c) & (probs[:, c] >= o.min_confidence)).float().mean().item()
        if rejected > 1 - 1 / o.max_candidates:  # more, and the filter would stop on its cap (max_candidates per image)
            console.print(f"the filter would reject {rejected:.0%} of class '{names[c]}' neighbours (is G trained "
                          "enough? look at the previews): writing without it; --filter insists on it",
                          markup=False, highlight=False)
            return False
    return True


def _rank_device(device: torch.device) -> torch.device:
    """Under torchrun, each rank's own GPU of the machine (LOCAL_RANK), not all of them on the first."""
    local = os.environ.get("LOCAL_RANK", "")
    if device.type == "cuda" and device.index is None and local.isdigit():
        return torch.device("cuda", int(local) % torch.cuda.device_count())
    return device


class _Clock:
    """Wall seconds per phase, for `datagen bench augment`'s breakdown."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


@torch.inference_mode()
def _unlabeled_positions(o: AugmentOptions, seeds: ImageSet, chosen: torch.Tensor) -> torch.Tensor | None:
    """Positions of the images that may serve unlabeled (None without --unlabeled); checked before writing."""
    if o.unlabeled is False:
        return None
    rest = torch.ones(len(seeds), dtype=torch.bool)
    rest[chosen] = False
    if o.unlabeled_indices is not None:
        rest &= torch.isin(seeds.indices, torch.as_tensor(o.unlabeled_indices, dtype=torch.int64))
    if not rest.any() and o.unlabeled is None:  # the default: every image is a seed, so there is nothing to add
        return None
    if not rest.any():
        raise DatagenError(f"--unlabeled: every image of {seeds.source} is already a seed; use --seeds-per-class K "
                           "so the others can serve as unlabeled images, or drop --unlabeled")
    return torch.nonzero(rest).flatten()


@torch.inference_mode()
def codes_and_owners(model: Model, x_seeds: torch.Tensor, seed_labels: torch.Tensor, chosen: torch.Tensor,
                     unlabeled_images: torch.Tensor | None, n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The seeds' codes, then the unlabeled images' codes (when given); for each code the position of the labeled
    seed its label comes from (a seed's own, or for an unlabeled image the nearest seed of its spread label,
    datagen.generate.pseudo), and how sure that label is (1 for a seed). No label beyond the seeds' is used."""
    z_seeds = model.encode_all(x_seeds)
    sure = torch.ones(len(chosen))
    if unlabeled_images is None:
        return z_seeds, chosen, sure
    z_rest = model.encode_all(unlabeled_images)
    _, confidence, nearest = spread_labels(model, z_seeds, seed_labels, z_rest, n_classes)
    return torch.cat([z_seeds, z_rest]), torch.cat([chosen, chosen[nearest]]), torch.cat([sure, confidence])


def _pools(model: Model, o: AugmentOptions, seeds: ImageSet, n_classes: int, chosen: torch.Tensor,
           x_seeds: torch.Tensor, unlabeled: torch.Tensor | None) -> tuple[list[Pool], Joined | None]:
    """Per class, the codes to grow from: the class's seeds, plus (with `unlabeled`) the unlabeled images that
    joined it sure enough; the filter, when on, still judges each neighbour. Also those unlabeled images."""
    rest = seeds.images[unlabeled] if unlabeled is not None else None
    z, owner, confidence = codes_and_owners(model, x_seeds, seeds.labels[chosen], chosen, rest, n_classes)
    pools = class_pools(z, owner, confidence, seeds.labels, n_classes, o.min_label_confidence)
    if unlabeled is None:
        return pools, None
    sure = joins(confidence[len(chosen):], o.min_label_confidence)
    return pools, Joined(unlabeled[sure], seeds.labels[owner[len(chosen):][sure]], confidence[len(chosen):][sure],
                         z[len(chosen):][sure.to(z.device)].cpu())


@dataclass
class Joined:
    """The unlabeled images that joined a class: their positions in the seeds' set, spread labels, confidence, codes."""

    position: torch.Tensor
    label: torch.Tensor
    confidence: torch.Tensor
    z: torch.Tensor


def _write_real_rows(model: Model, o: AugmentOptions, writer: Writer, seeds: ImageSet, chosen: torch.Tensor,
                     x_seeds: torch.Tensor, joined: Joined | None) -> None:
    """The seeds (--include-seeds) and the unlabeled images with their spread labels (--include-unlabeled), marked
    real, in one write: a resume finds either all of them or none."""
    parts = []
    if o.include_seeds:
        parts.append((chosen, seeds.labels[chosen], torch.ones(len(chosen)), model.encode_all(x_seeds).cpu()))
    if o.include_unlabeled and joined is not None:
        parts.append((joined.position, joined.label, joined.confidence, joined.z))
    if not parts:
        return
    position, label, confidence, z = (torch.cat(column) for column in zip(*parts))
    writer.write(seeds.images[position], label, seeds.indices[position], torch.ones(len(position), dtype=torch.bool),
                 {"label_confidence": confidence, "latent": z})


@dataclass
class Pool:
    """One class's codes to grow from, the position of the seed each one's label comes from, and how sure it is."""

    z: torch.Tensor
    owner: torch.Tensor
    confidence: torch.Tensor


def class_pools(z: torch.Tensor, owner: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor,
                n_classes: int, min_label_confidence: float = 0.0) -> list[Pool]:
    """Per class, the codes whose label (that of their owner seed) is the class and at least that sure."""
    label = torch.where(joins(confidence, min_label_confidence), labels[owner], -1)
    return [Pool(z[(label == c).to(z.device)], owner[label == c], confidence[label == c]) for c in range(n_classes)]


def grow_in_memory(model: Model, o: AugmentOptions, pools: list[Pool],
                   picked: list[torch.Tensor], seeds: ImageSet,
                   classifier: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The neighbours augment would write for these pools and options, as (uint8 images, labels, seed source
    indices) in memory: what evaluate trains on, without a file round trip per repeat."""
    writer = MemoryWriter(tuple(seeds.images.shape[1:]), list(seeds.class_names), model.recipe.latent.dim)
    _generate(model, o, writer, pools, picked, seeds, classifier)
    return tuple(torch.from_numpy(column) for column in writer.columns())  # type: ignore[return-value]


@torch.inference_mode()
def _generate(model: Model, o: AugmentOptions, writer: Writer, pools: list[Pool], picked: list[torch.Tensor],
              seeds: ImageSet, classifier: torch.nn.Module | None, first: int = 0,
              stop: StopRequest | None = None) -> list[float]:
    """o.per_class images per class, the positions first.. of each class in the whole (sharded) set: a batch's
    seeds and noise follow from its position, so shards draw different candidates and each resumes exactly.
    A signal caught by `stop` ends the call after the batch under way, raising Interrupted."""
    rejection = []
    with progress() as bar:
        done = [count - real for count, real in zip(writer.counts(), _real_per_class(o, pools, picked))]
        task = bar.add_task("augment", total=o.per_class * len(picked), completed=sum(done), info="",
                            visible=o.progress and console.is_terminal)
        started, written = time.perf_counter(), 0
        for c, pool in enumerate(pools):
            kept, tried, rejected = done[c], 0, 0
            stalled = 0  # batches since `kept` last grew: with `kept`, all a batch's randomness depends on
            while kept < o.per_class:
                if tried > o.max_candidates * o.per_class:
                    raise FilterCapError(f"class '{seeds.class_names[c]}': the filter rejected {rejected} of {tried} "
                                       f"neighbours; lower --min-confidence or --noise, or pass --no-filter")
                n = min(o.batch_size, (o.per_class - kept) * (2 if classifier is not None else 1))
                start = first + kept + stalled * n
                images, which, z, sigma = candidates(model, pool.z, o.noise, start, n,
                                                     batch_generator(o.seed, c, first + kept, stalled), o.mix)
                keep = torch.ones(n, dtype=torch.bool)
                if classifier is not None:
                    probs = probabilities(classifier, to_model_input(images).to(pool.z.device)).cpu()
                    keep = (probs.argmax(1) == c) & (probs[:, c] >= o.min_confidence)
                tried += n
                rejected += int((~keep).sum())
                take = torch.nonzero(keep).flatten()[: o.per_class - kept]
                if take.numel():
                    writer.write(images[take], torch.full((take.numel(),), c, dtype=torch.int64),
                                 seeds.indices[pool.owner[which[take]]], torch.zeros(take.numel(), dtype=torch.bool),
                                 {"label_confidence": pool.confidence[which[take]], "noise": sigma[take], "latent": z[take]})
                    kept += take.numel()
                    stalled = 0
                    elapsed = time.perf_counter() - started
                    written += take.numel()
                    bar.update(task, advance=take.numel(),
                               info=f"class {seeds.class_names[c]} {written / elapsed if elapsed else 0:.0f} img/s")
                else:
                    stalled += 1
                if stop is not None and stop.requested:  # Ctrl-C or SIGTERM: this batch is written, stop here
                    raise Interrupted(stop.signum, f"stopped after a whole batch: {writer.path} keeps its "
                                      f"{sum(writer.counts())} images and is not marked complete; run the same command "
                                      "with --resume to finish it")
            rejection.append(rejected / tried if tried else 0.0)
    return rejection


def _real_per_class(o: AugmentOptions, pools: list[Pool], picked: list[torch.Tensor]) -> list[int]:
    """How many real rows of each class an output of these options starts with (a class's pool holds its seeds and
    the unlabeled images that joined it)."""
    return [(len(seeds) if o.include_seeds else 0) + (len(pool.z) - len(seeds) if o.include_unlabeled else 0)
            for pool, seeds in zip(pools, picked)]


@torch.inference_mode()
def _previews(model: Model, o: AugmentOptions, out: Path, picked: list[torch.Tensor], seeds: ImageSet,
              names: tuple[str, ...], device: torch.device) -> list[Path]:
    """Per class, rows of: a seed, then 7 of its neighbours — to look at before training on the output."""
    folder = out.with_name(f"{out.stem}-preview")
    paths = []
    for c, where in enumerate(picked):
        x = to_model_input(seeds.images[where[:8]]).to(device)
        z = model.encode(x).repeat_interleave(7, 0)
        grown = neighbours(model, z, o.noise, generator("augment-previews", o.seed))
        rows = torch.cat([torch.cat([x[i:i + 1], grown[i * 7:(i + 1) * 7]]) for i in range(x.shape[0])])
        paths.append(save_grid(rows, folder / f"{c:03d}-{safe_name(names[c])}.png", nrow=8))
    return paths
