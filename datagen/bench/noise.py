"""`datagen bench noise`: how faithful and how varied augment's neighbours are at each noise scale.

For every scale (with the filter off and on) it runs the real augment pipeline on K seeds per class
and asks the independent reference classifier (datagen.classify.reference) whether each generated image
still shows its label. It also reports how far neighbours move from their seed, because a scale
that keeps every label by copying the seed adds nothing. This is the measurement behind augment's
default --noise.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.classify import reference
from datagen.classify.fit import predict
from datagen.data.imageset import ImageSet
from datagen.data.pixels import pixel_distance, to_model_input
from datagen.data.sources import load
from datagen.generate.augment import AugmentOptions, augment
from datagen.generate.filter import FilterCapError
from datagen.model import checkpoint
from datagen.train import rundir


@dataclass
class SweepRow:
    noise: float
    filter: bool
    agreement: float | None  # share of generated images the reference labels as their class; None: cap hit
    agreement_per_class: list[float] | None
    rejection: float  # share of candidates the filter threw away (0 with the filter off)
    distance_to_seed: float | None  # mean absolute pixel difference to the seed, on a 0..1 scale
    seconds: float


@dataclass
class Sweep:
    rows: list[SweepRow]
    reference_test_accuracy: float
    settings: dict

    def to_json(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "reference_test_accuracy": self.reference_test_accuracy,
                "settings": self.settings}


def sweep(run: Path, scales: tuple[float, ...], *, per_class: int = 300, seeds_per_class: int | None = 10,
          min_confidence: float = 0.9, seed: int = 0, data_root: Path | None = None, progress: bool = True,
          mix: float = 0.0) -> Sweep:
    ckpt = rundir.checkpoint_of(run)
    state = checkpoint.load(ckpt)
    img = state["recipe"]["image"]
    size, channels, crop = img["size"], img["channels"], img.get("crop")
    source, square = state["dataset"]["source"], state["dataset"].get("square")  # loaded as training did
    seeds = load(source, "train", size=size, channels=channels, crop=crop, square=square, data_root=data_root)
    ref = reference.load_or_fit(rundir.folder_of(ckpt), seeds, lambda: load(
        source, "test", size=size, channels=channels, crop=crop, square=square, data_root=data_root))
    position = {int(i): p for p, i in enumerate(seeds.indices.tolist())}
    rows = []
    with tempfile.TemporaryDirectory(prefix="datagen-noise-") as tmp:
        for k, sigma in enumerate(scales):
            for use_filter in (False, True):
                out = Path(tmp) / f"{k}-{int(use_filter)}.h5"
                started = time.perf_counter()
                try:
                    # unlabeled=False: the neighbours of labeled seeds alone, so a wrong label is G's, not the labelling's
                    result = augment(AugmentOptions(run=ckpt, per_class=per_class, seeds_per_class=seeds_per_class,
                                                    unlabeled=False, mix=mix,
                                                    noise=(sigma,), filter=use_filter, min_confidence=min_confidence,
                                                    out=out, seed=seed, data_root=data_root, progress=progress))
                except FilterCapError:  # this scale is too far for the filter: a result of the sweep, not a failure
                    rows.append(SweepRow(sigma, use_filter, None, None, 1.0, None, time.perf_counter() - started))
                    continue
                seconds = time.perf_counter() - started
                rows.append(_judge(out, ref.net, seeds, position, sigma, use_filter, result.rejection, seconds))
    settings = {"run": str(ckpt), "scales": list(scales), "per_class": per_class, "seeds_per_class": seeds_per_class,
                "min_confidence": min_confidence, "seed": seed, "mix": mix, "source": source, "reference_steps": reference.STEPS}
    return Sweep(rows=rows, reference_test_accuracy=ref.test_accuracy, settings=settings)


def _judge(out: Path, net: torch.nn.Module, seeds: ImageSet, position: dict[int, int], sigma: float,
           use_filter: bool, rejection: list[float], seconds: float) -> SweepRow:
    with h5py.File(out, "r") as f:
        images, labels, seed_index = torch.from_numpy(f["images"][:]), f["labels"][:], f["seed_index"][:]
    predicted = predict(net, to_model_input(images)).numpy()
    hits = predicted == labels
    per_class = [float(hits[labels == c].mean()) for c in range(int(labels.max()) + 1)]
    seed_images = seeds.images[[position[int(i)] for i in seed_index]]
    distance = pixel_distance(to_model_input(images), to_model_input(seed_images)).mean().item()
    return SweepRow(noise=sigma, filter=use_filter, agreement=float(hits.mean()), agreement_per_class=per_class,
                    rejection=float(np.mean(rejection)), distance_to_seed=distance, seconds=seconds)
