"""augment's label filter: a small classifier fitted on the seeds, kept only when it agrees with a neighbour's label.

Fitting it is augment's slowest fixed cost, so each fit is cached in the run folder by a digest of all it
depends on.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import torch

from datagen.common.version import __version__
from datagen.classify import fit as fit_module, nets as nets_module
from datagen.classify.fit import train_classifier
from datagen.classify.nets import small_cnn
from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.generate.defaults import FILTER_MIN_SEEDS
from datagen.model import checkpoint, speed


FILTER_CACHE = "filters"  # in the run folder: fitted filter classifiers, by digest of their seeds
FILTER_STEPS = 300


def filter_wanted(option: bool | None, seeds_per_class: int) -> bool:
    """--filter / --no-filter as given, or by default: on when every class has enough seeds to fit it."""
    return option if option is not None else seeds_per_class >= FILTER_MIN_SEEDS


class FilterCapError(DatagenError):
    """The filter rejected more than max_candidates per wanted image: the noise is too large for the model."""


def filter_classifier(cache: Path, images: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, n_classes: int,
                       seed: int) -> torch.nn.Module:
    """The filter for these seeds: fitted once (the slowest fixed cost of augment), then reused from the run folder.

    The cache file is named by a digest of everything the fit depends on (the seed images and labels, the
    seed, datagen's version, the source of the classifier modules: net and training), so a hit is the very net a
    new fit would give. An unwritable run folder only means no cache.
    """
    digest = hashlib.sha256()
    for part in (images.contiguous().numpy().tobytes(), labels.cpu().numpy().tobytes(),
                 f"{seed}|{n_classes}|{FILTER_STEPS}|{__version__}".encode(),
                 inspect.getsource(fit_module).encode(), inspect.getsource(nets_module).encode()):
        digest.update(part)
    path = cache / f"{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        net = small_cnn(x.shape[1], n_classes).to(x.device)
        net.load_state_dict(checkpoint.load_plain(path))
        speed.prepare([net], speed.choose(x.device))
        return net.eval()
    console.print(f"fitting the filter classifier on {len(labels)} seed images")
    net = train_classifier(x, labels, n_classes, steps=FILTER_STEPS, seed=seed)
    try:
        checkpoint.save(path, net.state_dict())
    except OSError:
        pass  # a read-only run folder: the next call fits again
    return net
