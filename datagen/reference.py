"""An independent judge of labels: a classifier trained on every labeled image of a run's train split.

It is independent of what it judges: a different architecture from the filter and monitor classifiers
(the network of PyTorch's own MNIST example — two convs, max-pool, dropout — pooled after the first
conv to be cheap on a CPU and made size-agnostic by an adaptive pool), trained on all train labels rather than the few seeds, and it never sees a generated
image. A batch-norm variant was measured too and judged reconstructions far more harshly than four
other judges (70% against 90–94%): it keys on the grain of G's strokes; see README. Its accuracy on the real test split is the ceiling any
agreement it reports can be read against. It is cached beside the run, keyed by the data it
learnt from, since fitting it takes a while on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from datagen import checkpoint, data, speed
from datagen.classifier import predict
from datagen.report import console

STEPS = 1000
BATCH = 128
FILE = "reference.pt"
ARCHITECTURE = "mnist-example-pooled-v1"  # part of the cache key: a changed net must not load old weights


class ReferenceNet(nn.Module):
    """PyTorch's MNIST-example CNN, pooled early, any image size: `features` (128-d) is the space FID-style numbers use."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # pool early: 4x cheaper on a CPU
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Dropout(0.25), nn.AdaptiveMaxPool2d(6), nn.Flatten(),
            nn.Linear(64 * 36, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Reference:
    net: ReferenceNet
    test_accuracy: float  # on the real test split: the ceiling for agreement figures
    source: str


def fit(train: data.ImageSet, test: data.ImageSet, seed: int = 0, steps: int = STEPS) -> Reference:
    """Train on the whole train split with Adam and a cosine schedule; no augmentation, like the example."""
    x, y = data.to_model_input(train.images), train.labels
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
        torch.manual_seed(seed)
        net = ReferenceNet(x.shape[1], len(train.class_names))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(BATCH, x.shape[0]),), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    _for_inference(net)
    accuracy = (predict(net, data.to_model_input(test.images)) == test.labels).float().mean().item()
    return Reference(net=net, test_accuracy=accuracy, source=train.source)


def _for_inference(net: ReferenceNet) -> ReferenceNet:
    """Eval mode, channels_last on CPU: 4x faster judging (measured); it is fitted in the default layout, so
    cached weights stay those of the fit, and the layout only changes float rounding of its outputs."""
    speed.prepare([net], speed.choose(torch.device("cpu")))
    return net.eval()


def load_or_fit(folder: Path, train: data.ImageSet, load_test: Callable[[], data.ImageSet], seed: int = 0) -> Reference:
    """The cached reference in `folder` if it was fitted on exactly `train`, else fit one and cache it.

    The caller has the train split loaded already; the test split is only loaded (`load_test()`) when
    a new reference must be fitted and scored.
    """
    _, size, _, channels = train.images.shape
    key = {"source": train.source, "train": train.fingerprint(), "size": size, "channels": channels, "seed": seed, "steps": STEPS,
           "net": ARCHITECTURE}
    path = folder / FILE
    if path.is_file():
        state = checkpoint.load_plain(path)
        if isinstance(state, dict) and state.get("key") == key:
            net = ReferenceNet(channels, state["n_classes"])
            net.load_state_dict(state["net"])
            return Reference(net=_for_inference(net), test_accuracy=state["test_accuracy"], source=train.source)
    console.print(f"fitting the reference classifier on all {len(train)} labeled train images of {train.source}")
    ref = fit(train, load_test(), seed)
    checkpoint.save(path, {"key": key, "net": ref.net.state_dict(), "n_classes": len(train.class_names),
                           "test_accuracy": ref.test_accuracy})
    return ref
