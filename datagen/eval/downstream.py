"""The downstream classifier of the benchmark: one fixed recipe, trained the same way in every arm.

Every arm gets the same net (classify.nets.downstream_cnn), optimiser, schedule, batch size and number of
steps; only what fills the batches differs. With extra images (pseudo-labelled or generated), half of each
batch is real seeds and half extra, so the few real labels are never drowned by thousands of others (fixed
before any measurement, not tuned). The schedule anneals to zero and the final state is kept: no early
stopping, so no validation images are taken from the budget and no selection rule can pick a collapsed state.
The recipe was chosen on the dev split with the real and real+classic arms only (README, "datagen evaluate").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from datagen.classify.fit import fit, predict
from datagen.classify.nets import downstream_cnn
from datagen.data.pixels import to_model_input
from datagen.eval.defaults import CLASSIFIER
from datagen.model import speed


@dataclass(frozen=True)
class Recipe:
    width: int = CLASSIFIER["width"]
    dropout: float = CLASSIFIER["dropout"]
    steps: int = CLASSIFIER["steps"]
    batch: int = CLASSIFIER["batch"]
    lr: float = CLASSIFIER["lr"]
    weight_decay: float = CLASSIFIER["weight_decay"]

    def to_dict(self) -> dict:
        return {"net": "downstream_cnn", **asdict(self), "optimizer": "AdamW", "schedule": "cosine to zero",
                "selection": "final state (no early stopping)", "extra_batch_share": 0.5}

    @classmethod
    def with_overrides(cls, **given: float | int | None) -> "Recipe":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in given.items() if k in names and v is not None})


# torchvision's RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1)), drawn per image for a whole batch
DEGREES, TRANSLATE, SCALE = 15.0, 0.1, (0.9, 1.1)


def random_affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image of a float NCHW batch in [-1, 1] rotated, shifted and scaled with its own random draw.

    The same distribution as torchvision's RandomAffine above, in one grid_sample for the batch: per-image
    torchvision calls cost more than the classifier's own step on a CPU. Uncovered pixels are background (-1).
    """
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(DEGREES)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * TRANSLATE * 2  # grid units: the image spans [-1, 1]
    scale = SCALE[0] + torch.rand(n, generator=gen) * (SCALE[1] - SCALE[0])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # output -> input pixels
    theta = torch.cat([inverse, -(inverse @ shift.unsqueeze(2))], 2).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False) - 1  # zeros padding on x + 1: background -1


def classic(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """torchvision-style classical augmentation, as a user would add it: a random affine for every image, plus
    TrivialAugmentWide for colour images (its colour and contrast ops mean little on grey digits).
    uint8 NHWC in, float NCHW in [-1, 1] out."""
    if images.shape[-1] == 3:
        trivial = v2.TrivialAugmentWide()
        with torch.random.fork_rng(devices=[]):  # TrivialAugment draws from the global stream: seed it from ours
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            chw = torch.stack([trivial(img) for img in images.permute(0, 3, 1, 2).cpu()])
        images = chw.permute(0, 2, 3, 1).to(images.device)
    return random_affine(to_model_input(images), gen)


@dataclass
class TrainingSet:
    """uint8 N×H×W×C images and int64 labels; `extra` (pseudo-labelled or generated) may be empty."""

    images: torch.Tensor
    labels: torch.Tensor
    extra_images: torch.Tensor | None = None
    extra_labels: torch.Tensor | None = None


def train(data: TrainingSet, n_classes: int, *, classic_aug: bool, seed: int, recipe: Recipe = Recipe(),
          device: torch.device = torch.device("cpu")) -> torch.nn.Module:
    """Train the downstream CNN for exactly recipe.steps steps and return its final state, in eval mode."""
    channels = data.images.shape[-1]
    how = speed.choose(device)
    images, labels = data.images.to(device), data.labels.to(device)
    has_extra = data.extra_images is not None and len(data.extra_images) > 0
    extra_images = data.extra_images.to(device) if has_extra else None
    extra_labels = data.extra_labels.to(device) if has_extra else None
    n_real = recipe.batch // 2 if has_extra else recipe.batch

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(images), (n_real,), generator=gen).to(device)
        x, y = images[idx], labels[idx]
        if has_extra:
            g = torch.randint(0, len(extra_images), (recipe.batch - n_real,), generator=gen).to(device)
            x, y = torch.cat([x, extra_images[g]]), torch.cat([y, extra_labels[g]])
        x = classic(x, gen) if classic_aug else to_model_input(x)
        return speed.as_input(x, how), y

    def make() -> torch.nn.Module:
        net = downstream_cnn(channels, n_classes, recipe.width, recipe.dropout).to(device)
        speed.prepare([net], how)
        return net

    return fit(make, batches, steps=recipe.steps, seed=seed, lr=recipe.lr, cosine=True,
               weight_decay=recipe.weight_decay)


def accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(net.parameters()).device
    x = speed.as_input(to_model_input(images.to(device)), speed.choose(device))
    return (predict(net, x).cpu() == labels).float().mean().item()
