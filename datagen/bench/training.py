"""`datagen bench train|scaling`: how close training runs to what this machine can do, and how it scales.

Training is timed on synthetic data of the recipe's shape (the speed of the maths, not of a disk),
after warm-up steps, and set against the machine's fp32 matrix-multiply peak measured in the same
process: FLOPs per image are counted by torch.utils.flop_counter over one real training step.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from datagen.bench.measure import gemm_peak_gflops, peak_rss_mb, settings, sync
from datagen.common.errors import DatagenError
from datagen.data.pixels import to_model_input
from datagen.model import recipes, speed
from datagen.model.checkpoint import new_model
from datagen.model.device import machine
from datagen.model.latent import Model
from datagen.model.objectives import make_optimizers, train_step


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
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - started
    images_per_second = steps * batch / seconds
    achieved = flops_per_image * images_per_second / 1e9
    peak = gemm_peak_gflops(device)
    return {"recipe": recipe.name, "model": recipe.model, "batch_size": batch, "steps": steps, "warmup": warmup,
            **settings(how), "seconds": seconds, "images_per_second": images_per_second, "flops_per_image": flops_per_image,
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
    return {"recipe": recipe.name, "batch_size": batch, **settings(speed.choose(torch.device(device))),
            "epochs": rows, "machine": machine(torch.device(device))}


def _one_epoch(recipe_name: str, n: int, batch: int, device: str) -> dict:
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
    sync(device_)
    started = time.perf_counter()
    for i in range(n // batch):
        step(order[i * batch:(i + 1) * batch])
    sync(device_)
    return {"images": n // batch * batch, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
            "peak_rss_before_epoch_mb": rss_before, "dataset_mb": images.numel() / 2**20}
