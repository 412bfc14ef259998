"""Batches that mix real and generated images in a fixed share, the half-and-half `datagen evaluate` trains with."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from datagen.common.errors import DatagenError


class MixedBatchSampler(Sampler[list[int]]):
    """A `batch_sampler` whose every batch holds `real_share` real images and the rest generated ones.

    `real` and `generated` are dataset indices, e.g. for `ConcatDataset([real_set, synthetic])`:
    `real=range(len(real_set))`, `generated=range(len(real_set), len(real_set) + len(synthetic))`. An epoch shows
    every generated image once (reshuffled each epoch); the few real images are cycled in fresh permutations as
    often as the batches need them, so thousands of generated images never drown them (evaluate uses half and
    half). The last batch may be smaller when `drop_last` is False.
    """

    def __init__(self, real: Sequence[int], generated: Sequence[int], batch_size: int, real_share: float = 0.5,
                 drop_last: bool = False, generator: torch.Generator | None = None):
        if batch_size < 2:
            raise DatagenError(f"batch_size {batch_size} cannot mix two kinds of image: use at least 2")
        if not 0 < real_share < 1:
            raise DatagenError(f"real_share {real_share} must lie strictly between 0 and 1: e.g. 0.5, as evaluate uses")
        if len(real) == 0 or len(generated) == 0:
            raise DatagenError("MixedBatchSampler needs both real and generated indices: with only one kind, use "
                               "a plain DataLoader(shuffle=True)")
        self.real = torch.as_tensor(list(real), dtype=torch.int64)
        self.generated = torch.as_tensor(list(generated), dtype=torch.int64)
        self.n_real = min(batch_size - 1, max(1, round(batch_size * real_share)))
        self.n_generated = batch_size - self.n_real
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        whole, rest = divmod(len(self.generated), self.n_generated)
        return whole + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        gen = self.generator if self.generator is not None else torch.Generator().manual_seed(
            int(torch.empty((), dtype=torch.int64).random_().item()))
        generated = self.generated[torch.randperm(len(self.generated), generator=gen)]
        reals = self._cycled_reals(gen)
        for b in range(len(self)):
            g = generated[b * self.n_generated:(b + 1) * self.n_generated]
            n_real = self.n_real if len(g) == self.n_generated else max(1, math.ceil(len(g) * self.n_real / self.n_generated))
            yield torch.cat([next(reals) for _ in range(n_real)] + [g]).tolist()

    def _cycled_reals(self, gen: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            yield from self.real[torch.randperm(len(self.real), generator=gen)].split(1)
