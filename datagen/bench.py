"""`datagen bench train|augment`: how close training and generation run to what this machine can do.

Training is timed on synthetic data of the recipe's shape (the speed of the maths, not of a disk),
after warm-up steps, and set against the machine's fp32 matrix-multiply peak measured in the same
process: FLOPs per image are counted by torch.utils.flop_counter over one real training step.
Generation is timed end to end through the augment library and set against G's forward pass alone.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from datagen import checkpoint, nets, recipes, speed, store
from datagen.classifier import small_cnn
from datagen.errors import DatagenError
from datagen.selfexgan import Model, make_optimizers, train_step
from datagen.train import load_model, new_model

GEMM_SIDE = 2048


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def gemm_peak_gflops(device: torch.device, side: int = GEMM_SIDE, repeats: int = 10) -> float:
    """fp32 matmul rate of a large square GEMM: the practical ceiling for conv nets on this device."""
    a = torch.randn(side, side, device=device)
    b = torch.randn(side, side, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * side ** 3 * repeats / (time.perf_counter() - started) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _noise(model: Model, batch: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    return [model.gaussian(batch, gen).to(device) for _ in range(model.recipe.train.eg_steps)]


def bench_train(recipe_name: str = "mnist", batch_size: int | None = None, steps: int = 20, warmup: int = 3,
                device: torch.device | str = "cpu", seed: int = 0, how: speed.Speed | None = None) -> dict:
    """Training steps as `datagen train` runs them (same speed settings; default: the device's)."""
    if steps < 1 or warmup < 0:
        raise DatagenError("--steps must be at least 1 (and warm-up at least 0)")
    device = torch.device(device)
    how = how or speed.choose(device)
    recipe = recipes.load(recipe_name)
    batch = batch_size or recipe.train.batch_size
    torch.manual_seed(seed)
    model = new_model(recipe, device, dataclasses.replace(how, compile=False))  # compiled below, after counting FLOPs
    opt = make_optimizers(model)
    precision = speed.precision(device, how)
    img = recipe.image
    gen = torch.Generator().manual_seed(seed)
    x = speed.as_input((torch.rand(batch, img.channels, img.size, img.size, generator=gen) * 2 - 1).to(device), how)
    step = lambda: train_step(model, opt, x, _noise(model, batch, gen, device), precision)
    with FlopCounterMode(display=False) as counter:  # one real step, forward and backward, eager
        step()
    flops_per_image = counter.get_total_flops() / batch
    if how.compile:
        for _, net in model.nets.items():
            speed.compile_in_place(net)
        warmup = max(warmup, 1)  # the first compiled call compiles: never time it
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    images_per_second = steps * batch / seconds
    achieved = flops_per_image * images_per_second / 1e9
    peak = gemm_peak_gflops(device)
    return {"recipe": recipe.name, "model": recipe.model, "batch_size": batch, "steps": steps, "warmup": warmup,
            **_settings(how), "seconds": seconds, "images_per_second": images_per_second, "flops_per_image": flops_per_image,
            "achieved_gflops": achieved, "peak_gflops": peak, "fraction_of_peak": achieved / peak,
            "peak_rss_mb": peak_rss_mb(), "machine": machine(device)}


def bench_scaling(recipe_name: str = "mnist-cpu", sizes: tuple[int, ...] = (1024, 2048, 4096),
                  batch_size: int | None = None, device: str = "cpu") -> dict:
    """One training epoch per dataset size, each in a fresh process so its peak memory is its own.

    The epoch is the training loop's own: a uint8 dataset held in memory, a shuffled order, and per
    step the batch's conversion to floats plus one train_step. Time should grow linearly with the
    size; memory only by the dataset's own bytes.
    """
    if not sizes or min(sizes) < 1:
        raise DatagenError("--sizes takes dataset sizes of at least one batch, e.g. --sizes 1024,2048,4096")
    recipe = recipes.load(recipe_name)
    batch = batch_size or recipe.train.batch_size
    if min(sizes) < batch:
        raise DatagenError(f"--sizes {min(sizes)} is smaller than the batch size {batch}: an epoch needs a full batch")
    context = multiprocessing.get_context("spawn")  # a fresh process: ru_maxrss starts from zero
    rows = []
    for n in sizes:
        with context.Pool(1) as pool:
            rows.append(pool.apply(_one_epoch, (recipe_name, n, batch, device)))
    first = rows[0]
    for row in rows:
        row["seconds_per_image"] = row["seconds"] / row["images"]
        row["time_ratio"] = row["seconds"] / first["seconds"]
        row["size_ratio"] = row["images"] / first["images"]
    return {"recipe": recipe.name, "batch_size": batch, **_settings(speed.choose(torch.device(device))),
            "epochs": rows, "machine": machine(torch.device(device))}


def _one_epoch(recipe_name: str, n: int, batch: int, device: str) -> dict:
    from datagen.data import to_model_input

    device_ = torch.device(device)
    how = speed.choose(device_)
    recipe = recipes.load(recipe_name)
    torch.manual_seed(0)
    model = new_model(recipe, device_, how)
    opt = make_optimizers(model)
    precision = speed.precision(device_, how)
    img = recipe.image
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, img.size, img.size, img.channels), dtype=torch.uint8, generator=gen).to(device_)
    step = lambda rows: train_step(model, opt, speed.as_input(to_model_input(images[rows]), how),
                                   _noise(model, batch, gen, device_), precision)
    step(torch.arange(batch))  # warm-up, outside the timed epoch
    rss_before = peak_rss_mb()
    order = torch.randperm(n, generator=gen)
    _sync(device_)
    started = time.perf_counter()
    for i in range(n // batch):
        step(order[i * batch:(i + 1) * batch])
    _sync(device_)
    return {"images": n // batch * batch, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
            "peak_rss_before_epoch_mb": rss_before, "dataset_mb": images.numel() / 2**20}


def bench_augment(run: Path | None = None, per_class: int = 5000, device: str = "cpu", use_filter: bool = True,
                  recipe_name: str | None = None, how: speed.Speed | None = None) -> dict:
    """End-to-end augment (encode, sample, generate, filter, write HDF5) against G's forward pass alone.

    With a recipe instead of a run: an untrained model of that recipe grows 100 random seed images per
    class (10 classes) — the speed of the pipeline for that shape, nothing about image quality. The
    filter is off there: an untrained G gives a seed-trained classifier nothing to agree with.
    """
    from datagen.augmentation import AugmentOptions, augment

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
            from datagen import rundir

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
    model = load_model(state, device, how)
    limits = _forward_limits(model, device_, total, how, n_classes=len(result.counts))
    g_rate = limits["generator_forward_images_per_second"]
    rejection = sum(result.rejection) / len(result.rejection)
    out = {"run": str(run) if run is not None else None, "recipe": model.recipe.name, "per_class": per_class,
           "filter": use_filter, **_settings(how), "images": total, "seconds": seconds,
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
        _sync(device)
        calls = max(1, rows // batch)
        started = time.perf_counter()
        for _ in range(calls):
            forward(inputs[:batch])
        _sync(device)
        return calls * batch / (time.perf_counter() - started)

    best = max(LIMIT_BATCHES, key=lambda batch: rate(batch, 4 * max(LIMIT_BATCHES)))
    return rate(best, total), best


def _forward_limits(model: Model, device: torch.device, total: int, how: speed.Speed, n_classes: int) -> dict:
    """G's forward limit, and the filter classifier's (an untrained one: the same net, the same cost)."""
    model.nets.generator.eval()
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
    with store.open_writer(seeds, "hdf5", image_shape=(img.size, img.size, img.channels), class_names=names,
                           provenance={"bench": "random seed images"}) as writer:
        writer.write(images, labels, torch.arange(n), torch.ones(n, dtype=torch.bool))
        writer.finish()
    ckpt = folder / "untrained.pt"  # what augment reads from a checkpoint: the recipe, the nets, the seeds' source
    checkpoint.save(ckpt, {"recipe": recipe.to_dict(), "nets": {name: net.state_dict() for name, net in model.nets.items()},
                           "dataset": {"source": str(seeds)}})
    return ckpt, str(seeds)


def _settings(how: speed.Speed) -> dict:
    return {"channels_last": how.channels_last, "compile": how.compile, "amp": how.amp}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
