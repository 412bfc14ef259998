"""`datagen bench train|augment`: how close training and generation run to what this machine can do.

Training is timed on synthetic data of the recipe's shape (the speed of the maths, not of a disk),
after warm-up steps, and set against the machine's fp32 matrix-multiply peak measured in the same
process: FLOPs per image are counted by torch.utils.flop_counter over one real training step.
Generation is timed end to end through the augment library and set against G's forward pass alone.
"""

from __future__ import annotations

import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from datagen import nets, recipes
from datagen.errors import DatagenError
from datagen.selfexgan import Model, make_optimizers, train_step

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
                device: torch.device | str = "cpu", seed: int = 0) -> dict:
    if steps < 1 or warmup < 0:
        raise DatagenError("--steps must be at least 1 (and warm-up at least 0)")
    device = torch.device(device)
    recipe = recipes.load(recipe_name)
    batch = batch_size or recipe.train.batch_size
    torch.manual_seed(seed)
    model = Model(recipe=recipe, nets=nets.build(recipe))
    for _, net in model.nets.items():
        net.to(device).train()
    opt = make_optimizers(model)
    img = recipe.image
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, img.channels, img.size, img.size, generator=gen) * 2 - 1).to(device)
    with FlopCounterMode(display=False) as counter:  # one real step, forward and backward
        train_step(model, opt, x, _noise(model, batch, gen, device))
    flops_per_image = counter.get_total_flops() / batch
    for _ in range(warmup):
        train_step(model, opt, x, _noise(model, batch, gen, device))
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, x, _noise(model, batch, gen, device))
    _sync(device)
    seconds = time.perf_counter() - started
    images_per_second = steps * batch / seconds
    achieved = flops_per_image * images_per_second / 1e9
    peak = gemm_peak_gflops(device)
    return {"recipe": recipe.name, "model": recipe.model, "batch_size": batch, "steps": steps, "warmup": warmup,
            "seconds": seconds, "images_per_second": images_per_second, "flops_per_image": flops_per_image,
            "achieved_gflops": achieved, "peak_gflops": peak, "fraction_of_peak": achieved / peak,
            "peak_rss_mb": peak_rss_mb(), "machine": machine(device)}


def bench_augment(run: Path, per_class: int = 500, device: str = "cpu", use_filter: bool = True) -> dict:
    """End-to-end augment (encode, sample, generate, filter, write HDF5) against G's forward pass alone."""
    from datagen import checkpoint, rundir
    from datagen.augmentation import AugmentOptions, augment
    from datagen.train import load_model

    if per_class < 1:
        raise DatagenError(f"--per-class {per_class}: ask for at least one image per class")
    ckpt = rundir.checkpoint_of(run)
    state = checkpoint.load(ckpt)
    with tempfile.TemporaryDirectory(prefix="datagen-bench-") as tmp:
        started = time.perf_counter()
        result = augment(AugmentOptions(run=ckpt, per_class=per_class, out=Path(tmp) / "bench.h5", device=device,
                                        filter=use_filter, progress=False))
        seconds = time.perf_counter() - started
    total = sum(result.counts)
    model = load_model(state, device)
    model.nets.generator.eval()
    batch = AugmentOptions().batch_size
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        z = model.project(model.gaussian(batch, gen)).to(device)
        model.decode(z)  # warm-up
        _sync(torch.device(device))
        g_started = time.perf_counter()
        for _ in range(max(1, total // batch)):
            model.decode(z)
        _sync(torch.device(device))
        g_seconds = time.perf_counter() - g_started
    g_rate = max(1, total // batch) * batch / g_seconds
    return {"run": str(ckpt), "per_class": per_class, "filter": use_filter, "images": total, "seconds": seconds,
            "images_per_second": total / seconds, "generator_forward_images_per_second": g_rate,
            "fraction_of_generator_limit": (total / seconds) / g_rate, "rejection": result.rejection,
            "peak_rss_mb": peak_rss_mb(), "machine": machine(torch.device(device))}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
