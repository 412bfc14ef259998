"""`datagen bench augment`: end-to-end augment images/s against G's forward pass alone, and peak memory."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from datagen.bench.measure import peak_rss_mb, settings, sync
from datagen.classify.nets import small_cnn
from datagen.common.errors import DatagenError
from datagen.generate.augment import AugmentOptions, augment
from datagen.model import checkpoint, nets, recipes, speed
from datagen.model.device import machine
from datagen.model.latent import Model
from datagen.store import writers
from datagen.train import rundir


def bench_augment(run: Path | None = None, per_class: int = 5000, device: str = "cpu", use_filter: bool = True,
                  recipe_name: str | None = None, how: speed.Speed | None = None) -> dict:
    """End-to-end augment (encode, sample, generate, filter, write HDF5) against G's forward pass alone.

    With a recipe instead of a run: an untrained model of that recipe grows 100 random seed images per
    class (10 classes) — the speed of the pipeline for that shape, nothing about image quality. The
    filter is off there: an untrained G gives a seed-trained classifier nothing to agree with.
    """
    if per_class < 1:
        raise DatagenError(f"--per-class {per_class}: ask for at least one image per class")
    if (run is None) == (recipe_name is None):
        raise DatagenError("give a run directory (or checkpoint) or --recipe NAME, not both")
    device_ = torch.device(device)
    how = how or speed.choose(device_)
    with tempfile.TemporaryDirectory(prefix="datagen-bench-") as tmp:
        if recipe_name is not None:
            use_filter = False
            ckpt, seeds = _untrained_run(recipe_name, Path(tmp))
        else:
            # A copy in a fresh folder: the run's cached filter (augmentation.FILTER_CACHE) is not found, so the
            # first pass pays the fit like a first augment does; the second pass reuses it, like any later one.
            ckpt, seeds = Path(tmp) / "checkpoint.pt", None
            shutil.copyfile(rundir.checkpoint_of(run), ckpt)
        state = checkpoint.load(ckpt)
        options = AugmentOptions(run=ckpt, per_class=per_class, out=Path(tmp) / "bench.h5", device=device,
                                 filter=use_filter, progress=False, seeds=seeds, overwrite=True,
                                 channels_last=how.channels_last, compile=how.compile)
        started = time.perf_counter()
        result = augment(options)
        seconds = time.perf_counter() - started
        warm_seconds = None
        if use_filter:
            started = time.perf_counter()
            augment(options)
            warm_seconds = time.perf_counter() - started
    total = sum(result.counts)
    model = checkpoint.load_model(state, device, how)
    limits = _forward_limits(model, device_, total, how, n_classes=len(result.counts))
    g_rate = limits["generator_forward_images_per_second"]
    rejection = sum(result.rejection) / len(result.rejection)
    out = {"run": str(run) if run is not None else None, "recipe": model.recipe.name, "per_class": per_class,
           "filter": use_filter, **settings(how), "images": total, "seconds": seconds,
           "images_per_second": total / seconds, **limits, "fraction_of_generator_limit": (total / seconds) / g_rate}
    if warm_seconds:
        # With the filter, each kept image costs 1 / (1 - rejection) candidates through G *and* the classifier:
        # the most any filtered pipeline could do on these nets; the share of it says what the pipeline wastes.
        per_candidate = 1 / g_rate + 1 / limits["classifier_forward_images_per_second"]
        filter_limit = (1 - rejection) / per_candidate
        out.update(cached_filter_images_per_second=total / warm_seconds,
                   cached_filter_fraction_of_generator_limit=(total / warm_seconds) / g_rate,
                   filter_limit_images_per_second=filter_limit,
                   cached_filter_fraction_of_filter_limit=(total / warm_seconds) / filter_limit)
    return {**out,
            "mean_rejection": rejection,
            "phase_seconds": {name: round(value, 3) for name, value in result.seconds.items()},
            "peak_rss_mb": peak_rss_mb(), "machine": machine(device_)}


LIMIT_BATCHES = (32, 64, 128, 256, 512, 1024)


@torch.inference_mode()
def _fastest(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, device: torch.device,
             total: int) -> tuple[float, int]:
    """A forward pass alone over `total` rows, at whichever batch size it is fastest (rows/s, batch).

    Every size is tried briefly, the fastest timed over `total` rows: the limit is what the net can do on
    this machine, not what it does at the batch augment happens to use.
    """
    def rate(batch: int, rows: int) -> float:
        forward(inputs[:batch])  # warm-up: kernels for this shape
        sync(device)
        calls = max(1, rows // batch)
        started = time.perf_counter()
        for _ in range(calls):
            forward(inputs[:batch])
        sync(device)
        return calls * batch / (time.perf_counter() - started)

    best = max(LIMIT_BATCHES, key=lambda batch: rate(batch, 4 * max(LIMIT_BATCHES)))
    return rate(best, total), best


def _forward_limits(model: Model, device: torch.device, total: int, how: speed.Speed, n_classes: int) -> dict:
    """G's forward limit, and the filter classifier's (an untrained one: the same net, the same cost)."""
    z = model.project(model.gaussian(max(LIMIT_BATCHES), torch.Generator().manual_seed(0))).to(device)
    g_rate, g_batch = _fastest(model.decode, z, device, total)
    with torch.inference_mode():
        x = speed.as_input(model.decode(z), how)
    classifier = small_cnn(x.shape[1], n_classes).to(device).eval()
    speed.prepare([classifier], dataclasses.replace(how, compile=False))
    c_rate, c_batch = _fastest(classifier, x, device, total)
    return {"generator_forward_images_per_second": g_rate, "generator_forward_batch": g_batch,
            "classifier_forward_images_per_second": c_rate, "classifier_forward_batch": c_batch}


def _untrained_run(recipe_name: str, folder: Path, classes: int = 10, per_class: int = 100) -> tuple[Path, str]:
    """A checkpoint of an untrained model of the recipe, and an HDF5 file of random seed images for it."""
    recipe = recipes.load(recipe_name)
    torch.manual_seed(0)
    model = Model(recipe=recipe, nets=nets.build(recipe))
    img = recipe.image
    gen = torch.Generator().manual_seed(0)
    n = classes * per_class
    images = torch.randint(0, 256, (n, img.size, img.size, img.channels), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % classes
    seeds = folder / "seeds.h5"
    names = [str(c) for c in range(classes)]
    with writers.open_writer(seeds, "hdf5", image_shape=(img.size, img.size, img.channels), class_names=names,
                           provenance={"bench": "random seed images"}) as writer:
        writer.write(images, labels, torch.arange(n), torch.ones(n, dtype=torch.bool))
        writer.finish()
    ckpt = folder / "untrained.pt"  # what augment reads from a checkpoint: the recipe, the nets, the seeds' source
    checkpoint.save(ckpt, {"recipe": recipe.to_dict(), "nets": {name: net.state_dict() for name, net in model.nets.items()},
                           "dataset": {"source": str(seeds)}})
    return ckpt, str(seeds)
