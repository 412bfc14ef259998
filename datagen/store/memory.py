"""An output held in memory: what `datagen evaluate` grows per repeat, with no file round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datagen.store.base import BaseWriter


class MemoryWriter(BaseWriter):
    """The writer protocol (datagen.store.base.Writer) into lists: checked like a file output's batches."""

    def __init__(self, image_shape: tuple, class_names: list[str], latent_dim: int | None = None):
        super().__init__(Path("<memory>"), tuple(image_shape), list(class_names), [0] * len(class_names), latent_dim)
        self._batches: list[tuple[np.ndarray, ...]] = []

    def write(self, images: Any, labels: Any, seed_index: Any, real: Any, details: dict[str, Any] | None = None) -> None:
        batch = self._batch(images, labels, seed_index, real, details)
        self._batches.append(batch)
        for label, count in zip(*np.unique(batch[1], return_counts=True)):
            self._counts[label] += int(count)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 images, labels, seed_index) of everything written, in writing order."""
        if not self._batches:
            return np.zeros((0, *self.image_shape), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return tuple(np.concatenate([b[i] for b in self._batches]) for i in range(3))  # type: ignore[return-value]
