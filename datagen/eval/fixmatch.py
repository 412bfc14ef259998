"""FixMatch, the benchmark's semi-supervised reference: the unlabeled images used directly, no generator.

Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence" (arXiv:2001.07685).
The classifier recipe is the benchmark's own (downstream.Recipe: net, AdamW, cosine to zero, batch size, steps,
final state), so the arm differs from `real+classic` only in the unlabeled term.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from datagen.classify.fit import fit
from datagen.classify.nets import downstream_cnn
from datagen.data.pixels import to_model_input
from datagen.eval import downstream
from datagen.model import speed

THRESHOLD = 0.95  # the paper's confidence threshold
# The paper's mu is 7; 1 keeps a CPU fit near 4x a plain one (README, "datagen evaluate", gives the measured step
# costs): the net's pass over (1 + 2 mu) batches dominates, not RandAugment.
UNLABELED_RATIO = 1
UNLABELED_WEIGHT = 1.0  # the paper's lambda_u
RANDAUGMENT_OPS = 2  # the paper's N; each image draws its own magnitude over all of torchvision's bins
MAGNITUDE_BINS = 31  # torchvision's default bins
CUTOUT = 0.5  # side of the Cutout square, as a share of the image side (16 px on CIFAR's 32, as in the paper)

SETTINGS = {
    "method": "FixMatch (Sohn et al. 2020)",
    "threshold": THRESHOLD,
    "unlabeled_ratio": UNLABELED_RATIO,
    "unlabeled_weight": UNLABELED_WEIGHT,
    "weak": "classic (random affine; + TrivialAugmentWide on colour)",
    "strong": (f"torchvision v2.RandAugment(num_ops={RANDAUGMENT_OPS}, all 14 ops, magnitude uniform over "
               f"{MAGNITUDE_BINS} bins per image) + the weak view's random affine + Cutout (square, {CUTOUT} x side, "
               "background value)"),
    "pseudo_label": "argmax of the weak view, no gradient, kept where max prob >= threshold; masked mean",
    "forward": "one pass over labeled + weak + strong (BatchNorm sees all)",
}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Per-image ops on one intra-op thread: tiny tensors gain nothing from more, and on a shared CPU each op's
    parallel region waits for a descheduled thread (measured 3x to 100x slower with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rand_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """torchvision RandAugment on each uint8 NHWC image, with a random magnitude per image (the paper's RA variant).

    All 14 ops run on grey images (Color is then the identity). torchvision draws the ops and signs from torch's
    global stream: seeded here from ours inside fork_rng, so a fit repeats and the caller's stream stays put.
    """
    magnitudes = torch.randint(0, MAGNITUDE_BINS, (len(images),), generator=gen).tolist()
    ra = v2.RandAugment(num_ops=RANDAUGMENT_OPS, num_magnitude_bins=MAGNITUDE_BINS)  # fill 0: background
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        out = []
        for img, magnitude in zip(images.permute(0, 3, 1, 2).cpu(), magnitudes):
            ra.magnitude = magnitude
            out.append(ra(img))
    return torch.stack(out).permute(0, 2, 3, 1).to(images.device)


def cutout(x: torch.Tensor, gen: torch.Generator, share: float = CUTOUT) -> torch.Tensor:
    """DeVries & Taylor's Cutout for a float NCHW batch in one mask: a square of `share` x side centred anywhere
    (clipped at the borders), set to background (-1)."""
    n, _, h, w = x.shape
    side = share * min(h, w)
    centre = torch.rand(n, 2, generator=gen) * torch.tensor([h, w])
    rows = (torch.arange(h) + 0.5 - centre[:, :1]).abs() < side / 2  # n x h
    cols = (torch.arange(w) + 0.5 - centre[:, 1:]).abs() < side / 2  # n x w
    hole = (rows[:, :, None] & cols[:, None, :])[:, None].to(x.device)
    return x.masked_fill(hole, -1.0)


def strong(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The strong view: RandAugment, then the weak view's random affine, then Cutout (no TrivialAugment on colour:
    RandAugment already stands for it). uint8 NHWC in, float NCHW in [-1, 1] out."""
    return cutout(downstream.random_affine(to_model_input(rand_augment(images, gen)), gen), gen)


def unlabeled_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cross-entropy of the strong view against the weak view's confident argmax, averaged over the WHOLE batch
    (the paper's masked mean: few confident images give a small term, not a large one)."""
    probs = torch.softmax(weak_logits.detach().float(), 1)
    confidence, pseudo = probs.max(1)
    mask = (confidence >= threshold).to(strong_logits.dtype)
    return (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean()


def train(data: downstream.TrainingSet, unlabeled: torch.Tensor, n_classes: int, *, seed: int,
          recipe: downstream.Recipe = downstream.Recipe(), device: torch.device = torch.device("cpu"),
          threshold: float = THRESHOLD, unlabeled_ratio: int = UNLABELED_RATIO,
          unlabeled_weight: float = UNLABELED_WEIGHT) -> torch.nn.Module:
    """Train the downstream CNN with FixMatch for exactly recipe.steps steps; return its final state in eval mode.

    Each step: recipe.batch labeled images (weak view, cross-entropy) and unlabeled_ratio x recipe.batch unlabeled
    (uint8 NHWC) images, in one forward pass. The draws never depend on threshold or unlabeled_weight, so
    threshold > 1 gives exactly the fit with unlabeled_weight 0. `data.extra_*` is not used.
    unlabeled_ratio defaults to 1, not the paper's 7, for its cost on a CPU (README).
    """
    if len(unlabeled) == 0:
        raise ValueError("FixMatch needs unlabeled images")
    channels = data.images.shape[-1]
    how = speed.choose(device)
    images, labels, pool = data.images.to(device), data.labels.to(device), unlabeled.to(device)
    n_unlabeled = unlabeled_ratio * recipe.batch

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(images), (recipe.batch,), generator=gen).to(device)
        u = pool[torch.randint(0, len(pool), (n_unlabeled,), generator=gen).to(device)]
        x = torch.cat([downstream.classic(images[idx], gen), downstream.classic(u, gen), strong(u, gen)])
        return speed.as_input(x, how), labels[idx]

    def loss(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = net(x)
        labeled, (weak, strong_) = logits[:len(y)], logits[len(y):].chunk(2)
        return F.cross_entropy(labeled, y) + unlabeled_weight * unlabeled_loss(weak, strong_, threshold)

    def make() -> torch.nn.Module:
        net = downstream_cnn(channels, n_classes, recipe.width, recipe.dropout).to(device)
        speed.prepare([net], how)
        return net

    return fit(make, batches, steps=recipe.steps, seed=seed, lr=recipe.lr, cosine=True,
               weight_decay=recipe.weight_decay, loss=loss)
