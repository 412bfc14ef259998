"""An independent judge of labels: a classifier trained on every labeled image of a run's train split.

It is independent of what it judges: a different architecture from the filter and monitor classifiers
(datagen.classify.nets.ReferenceNet), trained on all train labels rather than the few seeds, and it never
sees a generated image. Its accuracy on the real test split is the ceiling any agreement it reports can be
read against. It is cached beside the run, keyed by the data it learnt from, since fitting it takes a while
on a CPU. README ("Choosing the noise scale") compares it with other judges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from datagen.classify.fit import fit, predict, random_batches
from datagen.classify.nets import ReferenceNet
from datagen.common.console import console
from datagen.data.imageset import ImageSet
from datagen.data.pixels import to_model_input
from datagen.model import checkpoint, speed


STEPS = 1000
BATCH = 128
FILE = "reference.pt"
ARCHITECTURE = "mnist-example-pooled-v1"  # part of the cache key: a changed net must not load old weights
FIT = "private-rng-v2"  # part of the cache key: v1 drew its dropout masks from the caller's stream


@dataclass
class Reference:
    net: ReferenceNet
    test_accuracy: float  # on the real test split: the ceiling for agreement figures
    source: str


def fit_reference(train: ImageSet, test: ImageSet, seed: int = 0, steps: int = STEPS) -> Reference:
    """Train on the whole train split with Adam and a cosine schedule; no augmentation, like the example."""
    x, y = to_model_input(train.images), train.labels
    net = fit(lambda: ReferenceNet(x.shape[1], len(train.class_names)), random_batches(x, y, BATCH), steps=steps,
              seed=seed, lr=1e-3, cosine=True)
    _for_inference(net)
    accuracy = (predict(net, to_model_input(test.images)) == test.labels).float().mean().item()
    return Reference(net=net, test_accuracy=accuracy, source=train.source)


def _for_inference(net: ReferenceNet) -> ReferenceNet:
    """Eval mode, channels_last on CPU (faster judging: docs/performance-notes.md). It is fitted in the default
    layout, so cached weights stay those of the fit; the layout only changes float rounding of its outputs."""
    speed.prepare([net], speed.choose(torch.device("cpu")))
    return net.eval()


def load_or_fit(folder: Path, train: ImageSet, load_test: Callable[[], ImageSet], seed: int = 0) -> Reference:
    """The cached reference in `folder` if it was fitted on exactly `train`, else fit one and cache it.

    The caller has the train split loaded already; the test split is only loaded (`load_test()`) when
    a new reference must be fitted and scored.
    """
    _, size, _, channels = train.images.shape
    key = {"source": train.source, "train": train.fingerprint(), "size": size, "channels": channels, "seed": seed, "steps": STEPS,
           "net": ARCHITECTURE, "fit": FIT}
    path = folder / FILE
    if path.is_file():
        state = checkpoint.load_plain(path)
        if isinstance(state, dict) and state.get("key") == key:
            net = ReferenceNet(channels, state["n_classes"])
            net.load_state_dict(state["net"])
            return Reference(net=_for_inference(net), test_accuracy=state["test_accuracy"], source=train.source)
    console.print(f"fitting the reference classifier on all {len(train)} labeled train images of {train.source}")
    ref = fit_reference(train, load_test(), seed)
    checkpoint.save(path, {"key": key, "net": ref.net.state_dict(), "n_classes": len(train.class_names),
                           "test_accuracy": ref.test_accuracy})
    return ref
