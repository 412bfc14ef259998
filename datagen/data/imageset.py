"""A loaded split (ImageSet), a split before conforming (Selection), the fixed split rules, and content hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from datagen.common.seeds import generator
from datagen.data.conform import rows_per_chunk


SPLITS = ("train", "dev", "test")
DEV_EVERY = 10  # dev: every tenth train image per class, so settings are chosen on labels training never sees
DEV_RULE = ("within each class of the train split, in source order, every tenth image (class positions 9, 19, 29, … "
            "counted within the train split) is dev, kept to choose settings, and the rest is train")
EVERY_FIFTH_RULE = ("within each class, in source order, every fifth image (class positions 4, 9, 14, …) is test "
                    f"and the others form the train split; {DEV_RULE}")


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field-wise has no single truth value
class ImageSet:
    images: torch.Tensor  # uint8, N×H×W×C, contiguous, already conformed
    labels: torch.Tensor  # int64, N
    class_names: tuple[str, ...]
    source: str  # the registered name, or the resolved absolute path as str
    split: str  # "train", "dev" or "test"
    indices: torch.Tensor  # int64, N: each image's position in the source's full ordering
    split_rule: str  # one human sentence saying how train, dev and test were made

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        _, h, w, c = self.images.shape
        return h, w, c

    def image_hashes(self) -> torch.Tensor:
        """One 64-bit content hash per image (int64): lets evaluate prove no test image was trained on."""
        flat = self.images.reshape(len(self.images), -1).numpy()
        return torch.tensor([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True)
                             for row in flat], dtype=torch.int64)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class Selection(NamedTuple):
    """One split of a source, before conforming: native chunks are decoded lazily so memory stays bounded."""
    chunks: Iterator[torch.Tensor]  # uint8 n×H×W×C, native size, in order
    labels: np.ndarray
    indices: np.ndarray
    class_names: tuple[str, ...]
    rule: str




def whole(n: int, split: str) -> np.ndarray:
    """Positions of `split` in a datagen output: all of them for train, none for dev or test."""
    return np.arange(n) if split == "train" else np.arange(0)


def class_rank(labels: np.ndarray) -> np.ndarray:
    """Each image's position among the images of its own class, in order (0 for each class's first)."""
    rank = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return rank


def carve(train_labels: np.ndarray, split: str) -> np.ndarray:
    """Positions within a train split of "train" or "dev" under DEV_RULE (stable, class-balanced, no shuffling)."""
    is_dev = class_rank(train_labels) % DEV_EVERY == DEV_EVERY - 1
    return np.flatnonzero(is_dev if split == "dev" else ~is_dev)


def official(labels: np.ndarray, split: str) -> np.ndarray:
    """Positions of `split` within a source's official split: all of test; train carved into train and dev."""
    return np.arange(len(labels)) if split == "test" else carve(labels, split)


def every_fifth(labels: np.ndarray, split: str) -> np.ndarray:
    """Source positions of `split` under EVERY_FIFTH_RULE: every fifth per class is test, the rest carved."""
    is_test = class_rank(labels) % 5 == 4
    if split == "test":
        return np.flatnonzero(is_test)
    train = np.flatnonzero(~is_test)
    return train[carve(labels[train], split)]


def array_chunks(images: np.ndarray | torch.Tensor, picked: np.ndarray) -> Iterator[torch.Tensor]:
    """Chunks of ``images[picked]`` (N×H×W×C in memory), copied one chunk at a time."""
    rows = rows_per_chunk(images.shape[1:])
    for start in range(0, len(picked), rows):
        yield torch.as_tensor(np.ascontiguousarray(images[picked[start:start + rows]]))


def indices_digest(indices: torch.Tensor) -> str:
    """Which source images a set of positions names, in 16 hex digits (recorded, then compared on resume)."""
    return hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def draw_per_class(labels: torch.Tensor, n_classes: int, k: int | None, seed: int) -> list[torch.Tensor]:
    """Per class, the positions of up to `k` of its members (all when k is None), in a random order fixed by `seed`.

    The one way datagen draws labeled seeds: augment's --seeds-per-class and evaluate's label budgets alike.
    """
    drawn = []
    for c in range(n_classes):
        where = torch.nonzero(labels == c).flatten()
        where = where[torch.randperm(len(where), generator=generator("draw-per-class", seed, c))]
        drawn.append(where if k is None else where[:k])
    return drawn
