"""The downstream classifier of the benchmark: one fixed recipe, trained the same way in every arm.

Every arm gets the same net (the bundled small CNN), optimiser, batch size and number of steps;
only what fills the batches differs. With generated images, half of each batch is real seeds and
half generated, so the few real labels are never drowned by thousands of neighbours (fixed before
any measurement, not tuned). Early stopping is model selection on a validation split carved from
the seeds only: the net is scored every EVAL_EVERY steps and the best state is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from datagen.classify.fit import fit, predict
from datagen.classify.nets import small_cnn
from datagen.data.pixels import to_model_input
from datagen.eval.defaults import CLASSIFIER_STEPS

STEPS = CLASSIFIER_STEPS
BATCH = 64
EVAL_EVERY = 25
LR = 1e-3


def classic_transform(channels: int) -> v2.Transform:
    """torchvision's classical augmentation, as a user would add it: random affine for every image,
    plus TrivialAugmentWide for colour images (its colour and contrast ops mean little on grey digits)."""
    ops: list[v2.Transform] = [v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    if channels == 3:
        ops.append(v2.TrivialAugmentWide())
    return v2.Compose(ops)


@dataclass
class TrainingSet:
    """uint8 N×H×W×C images and int64 labels; `generated` may be empty."""

    images: torch.Tensor
    labels: torch.Tensor
    generated_images: torch.Tensor | None = None
    generated_labels: torch.Tensor | None = None


def _apply(transform: v2.Transform | None, images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], each image with its own random draw."""
    chw = images.permute(0, 3, 1, 2)
    if transform is not None:
        chw = torch.stack([transform(img) for img in chw])
    return to_model_input(chw.permute(0, 2, 3, 1))


def train(data: TrainingSet, val_images: torch.Tensor, val_labels: torch.Tensor, n_classes: int, *,
          classic: bool, seed: int, steps: int = STEPS) -> torch.nn.Module:
    """Train the small CNN for exactly `steps` steps; return the state that scored best on validation."""
    channels = data.images.shape[-1]
    transform = classic_transform(channels) if classic else None
    has_generated = data.generated_images is not None and len(data.generated_images) > 0
    n_real = BATCH // 2 if has_generated else BATCH

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(data.images), (n_real,), generator=gen)
        images, labels = data.images[idx], data.labels[idx]
        if has_generated:
            g = torch.randint(0, len(data.generated_images), (BATCH - n_real,), generator=gen)
            images, labels = torch.cat([images, data.generated_images[g]]), torch.cat([labels, data.generated_labels[g]])
        return _apply(transform, images), labels

    select = None
    if len(val_images):
        val_x = to_model_input(val_images)
        select = lambda net: (predict(net, val_x) == val_labels).float().mean().item()  # noqa: E731
    return fit(lambda: small_cnn(channels, n_classes), batches, steps=steps, seed=seed, lr=LR, select=select,
               select_every=EVAL_EVERY)


def accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (predict(net, to_model_input(images)) == labels).float().mean().item()
