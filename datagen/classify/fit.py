"""The one fit loop every small classifier trains with, and prediction in cache-sized chunks."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from datagen.classify.nets import small_cnn
from datagen.model import speed


Batch = tuple[torch.Tensor, ...]


def cross_entropy(net: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(net(x), y)


def fit(make_net: Callable[[], nn.Module], batches: Callable[[torch.Generator], Batch], *,
        steps: int, seed: int, lr: float, cosine: bool = False, weight_decay: float = 0.0,
        loss: Callable[[nn.Module, Batch], torch.Tensor] = cross_entropy,
        select: Callable[[nn.Module], float] | None = None, select_every: int = 25) -> nn.Module:
    """Build a net and train it with Adam (AdamW with `weight_decay`) for exactly `steps` batches; return it in eval mode.

    The loss is cross-entropy on `batches(generator)`'s (images, labels) unless `loss(net, batch)` says otherwise.
    Everything random (initialisation, dropout, the batches' augmentation) runs on a private stream seeded by
    `seed`, so a fit is repeatable and never disturbs the caller's stream; batch positions come from
    `batches(generator)` with a generator of the same seed. `cosine` anneals the rate to zero over the steps.
    With `select`, the net is scored every `select_every` steps and at the end, and the best-scoring state is
    returned (strictly better: ties keep the earlier, less fitted state).
    """
    gen = torch.Generator().manual_seed(seed)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net = make_net()
        opt = (torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay) if weight_decay
               else torch.optim.Adam(net.parameters(), lr=lr))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
        best, best_score = None, -math.inf
        for step in range(1, steps + 1):
            net.train()
            step_loss = loss(net, batches(gen))
            opt.zero_grad(set_to_none=True)
            step_loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            if select is not None and (step % select_every == 0 or step == steps):
                net.eval()
                score = select(net)
                if score > best_score:
                    best, best_score = copy.deepcopy(net.state_dict()), score
    if best is not None:
        net.load_state_dict(best)
    return net.eval()


def random_batches(x: torch.Tensor, y: torch.Tensor, size: int) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """Batches of `size` rows drawn with replacement (all rows when there are fewer)."""
    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, x.shape[0], (min(size, x.shape[0]),), generator=gen).to(x.device)
        return x[idx], y[idx]
    return draw


def train_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, steps: int = 300,
                     batch_size: int = 128, seed: int = 0) -> nn.Sequential:
    """The small CNN on float images in [-1, 1] (N, C, H, W) and int labels, in the device's fast layout."""
    def make() -> nn.Sequential:
        net = small_cnn(x.shape[1], n_classes).to(x.device)
        speed.prepare([net], speed.choose(x.device))
        return net
    return fit(make, random_batches(x, y, batch_size), steps=steps, seed=seed, lr=2e-3)


@torch.inference_mode()
def probabilities(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # in cache-sized chunks on CPU, where the first conv's full-resolution output then stays in cache
    return speed.chunked(lambda c: torch.softmax(net(c), 1), x)


@torch.inference_mode()
def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return speed.chunked(lambda c: net(c).argmax(1), x)


def label_fidelity(classifier: nn.Module, x: torch.Tensor, x_rec: torch.Tensor) -> float:
    """Share of images whose reconstruction the classifier labels the same as the original."""
    return (predict(classifier, x) == predict(classifier, x_rec)).float().mean().item()
