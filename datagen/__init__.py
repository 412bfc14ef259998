"""datagen: grow a small labeled image set into a larger, faithfully labeled one with SelfExGAN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datagen.common.version import __version__

__all__ = ["__version__", "augment", "SyntheticDataset", "MixedBatchSampler"]


def augment(run: str | Path = "runs/latest", per_class: int = 100, **options: Any):
    """Python API of `datagen augment`: write `per_class` labeled neighbours per class; returns an AugmentResult.

    `options` are the fields of `datagen.generate.augment.AugmentOptions` (seeds, seeds_per_class, noise, filter,
    min_confidence, fmt, shard_size, shard, out, include_seeds, include_unlabeled, resume, overwrite, seed, batch_size,
    device, data_root, square, progress).
    """
    from datagen.generate.augment import AugmentOptions, augment as run_augment  # torch loads only when used

    return run_augment(AugmentOptions(run=Path(run), per_class=per_class, **options))


def __getattr__(name: str) -> Any:
    """`datagen.SyntheticDataset` and `datagen.MixedBatchSampler`, imported on first use (they need torch)."""
    if name == "SyntheticDataset":
        from datagen.store.dataset import SyntheticDataset

        return SyntheticDataset
    if name == "MixedBatchSampler":
        from datagen.data.mixing import MixedBatchSampler

        return MixedBatchSampler
    raise AttributeError(f"module 'datagen' has no attribute {name!r}")
