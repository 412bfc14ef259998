"""`datagen evaluate`: does augment's output raise downstream accuracy when labels are few?

Protocol (README, "datagen evaluate"): for each labels-per-class budget and repeat, draw the labeled
seeds from the run's train split (deterministic per repeat), carve a validation split from them,
and train the same small CNN under each arm — real seeds only, with classical augmentation, plus
datagen neighbours grown from the training seeds only, and both. Accuracy is measured on the run's
reserved test split, which the run must provably never have trained on. Arms share the seeds of a
repeat, so gains are paired differences.
"""

from __future__ import annotations

import math
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.common.version import __version__
from datagen.classify import reference
from datagen.common.console import console, progress
from datagen.common.errors import DatagenError
from datagen.common.seeds import derive_seed
from datagen.data.imageset import ImageSet, draw_per_class
from datagen.data.sources import load
from datagen.eval import downstream, quality
from datagen.eval.defaults import ARMS, GAN_PER_CLASS
from datagen.generate.augment import AugmentOptions, augment
from datagen.model import checkpoint
from datagen.model.device import machine
from datagen.train import rundir


VAL_SHARE = 5  # one seed in five per class is validation (none when a class has a single seed)


@dataclass
class EvaluateOptions:
    run: Path = rundir.RUNS_ROOT / "latest"
    labels_per_class: tuple[int | None, ...] = (1, 10, 100)  # None: all labels
    repeats: int = 3
    arms: tuple[str, ...] = ARMS
    json_path: Path | None = None  # default RUN/evaluation/evaluation.json
    gan_per_class: int = GAN_PER_CLASS
    noise: tuple[float, ...] | None = None  # None: augment's default
    mix: float | None = None  # None: augment's default
    # The gan arms' augment settings that measured best for the downstream classifier (README): grow
    # also from the train images outside the budget (labels never read) and keep the filter off.
    unlabeled: bool = True
    filter: bool = False
    steps: int = downstream.STEPS
    seed: int = 0
    quality: bool = True
    data_root: Path | None = None
    progress: bool = True


@dataclass
class Evaluation:
    results: list[dict]
    quality: dict
    config: dict
    paths: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"results": self.results, "quality": self.quality, "config": self.config}


def _validate(o: EvaluateOptions) -> None:
    if o.repeats < 1:
        raise DatagenError(f"--repeats {o.repeats}: use at least 1")
    if not o.labels_per_class or any(k is not None and k < 1 for k in o.labels_per_class):
        raise DatagenError("--labels-per-class takes positive numbers or 'all', e.g. 1,10,100,all")
    unknown = [a for a in o.arms if a not in ARMS]
    if unknown or not o.arms:
        raise DatagenError(f"--arms {','.join(o.arms)}: choose from {', '.join(ARMS)}")
    if o.gan_per_class < 1 or o.steps < 1:
        raise DatagenError("--gan-per-class and --steps must be at least 1")


def check_no_test_leak(state: dict, train: ImageSet, test: ImageSet) -> None:
    """Refuse a run that trained on any test image: by content hashes recorded in its checkpoint, or,
    for runs from before those were recorded, by the fingerprint of the train split it used."""
    recorded = state["dataset"].get("image_hashes")
    if recorded is not None:
        overlap = int(torch.isin(test.image_hashes(), recorded).sum())
        if overlap:
            raise DatagenError(f"the run was trained on {overlap} image(s) of {test.source}'s test split; evaluating on "
                               "them would overstate every number: train a run on the train split only")
        return
    if state["dataset"].get("fingerprint") != train.fingerprint():
        raise DatagenError(f"cannot prove the run never saw {test.source}'s test split: it was not trained on that "
                           "source's train split (fingerprints differ); evaluate a run trained with datagen train on it")


def _draw_seeds(labels: torch.Tensor, n_classes: int, k: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of (training seeds, validation seeds): K per class, one in VAL_SHARE held out per class."""
    train_pos, val_pos = [], []
    for where in draw_per_class(labels, n_classes, k, seed):
        n_val = len(where) // VAL_SHARE
        val_pos.append(where[:n_val])
        train_pos.append(where[n_val:])
    return torch.cat(train_pos), torch.cat(val_pos)


def _generate(o: EvaluateOptions, ckpt: Path, seed_indices: torch.Tensor, repeat_seed: int, folder: Path,
              unlabeled_indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """datagen images labelled by exactly these seeds (grown from them, and from `unlabeled_indices` when
    o.unlabeled), through the augment library; every label's seed is verified to be in the budget."""
    out = folder / f"gan-{repeat_seed}-{len(seed_indices)}.h5"
    extra = {key: value for key, value in (("noise", o.noise), ("mix", o.mix)) if value is not None}
    if o.unlabeled and unlabeled_indices is not None and len(unlabeled_indices):  # none left at --labels-per-class all
        extra.update(unlabeled=True, unlabeled_indices=tuple(unlabeled_indices.tolist()))
    augment(AugmentOptions(run=ckpt, per_class=o.gan_per_class, seed_indices=tuple(seed_indices.tolist()), out=out,
                           filter=o.filter, seed=repeat_seed, data_root=o.data_root, progress=False, **extra))
    with h5py.File(out, "r") as f:
        images, labels, grown_from = f["images"][:], f["labels"][:], f["seed_index"][:]
    if not np.isin(grown_from, seed_indices.numpy()).all():
        raise RuntimeError("augment used a seed outside the labels budget")  # would be a leak: never report it
    return torch.from_numpy(images), torch.from_numpy(labels)


def evaluate(o: EvaluateOptions) -> Evaluation:
    _validate(o)
    started = time.perf_counter()
    ckpt = rundir.checkpoint_of(o.run)
    state = checkpoint.load(ckpt)
    img = state["recipe"]["image"]
    size, channels, crop = img["size"], img["channels"], img.get("crop")
    source = state["dataset"]["source"]
    train = load(source, "train", size=size, channels=channels, crop=crop, data_root=o.data_root)
    test = load(source, "test", size=size, channels=channels, crop=crop, data_root=o.data_root)
    if len(test) == 0:
        raise DatagenError(f"{source} has no test split ({train.split_rule}): evaluate a run trained on a dataset "
                           "that has one")
    check_no_test_leak(state, train, test)
    n_classes = len(train.class_names)
    json_path = o.json_path or rundir.folder_of(ckpt) / "evaluation" / "evaluation.json"
    rundir.ensure_writable(json_path.parent, "the evaluation folder", "choose a writable --json path")
    runs: dict[tuple[int | None, str], list[dict]] = {}
    fakes: list[tuple[torch.Tensor, torch.Tensor]] = []
    jobs = len(o.labels_per_class) * o.repeats
    with tempfile.TemporaryDirectory(prefix="datagen-eval-") as tmp, progress() as bar:
        task = bar.add_task("evaluate", total=jobs * len(o.arms), info="", visible=o.progress and console.is_terminal)
        for k in o.labels_per_class:
            for r in range(o.repeats):
                repeat_seed = derive_seed("evaluate-repeat", o.seed, r)
                train_pos, val_pos = _draw_seeds(train.labels, n_classes, k, repeat_seed)
                gen = None
                if any("gan" in arm for arm in o.arms):
                    outside = torch.ones(len(train), dtype=torch.bool)
                    outside[train_pos], outside[val_pos] = False, False  # validation seeds stay unseen
                    gen = _generate(o, ckpt, train.indices[train_pos], repeat_seed, Path(tmp), train.indices[outside])
                    fakes.append(gen)
                for arm in o.arms:
                    bar.update(task, info=f"{budget_label(k)} labels/class, repeat {r + 1}, {arm}")
                    use_gan = "gan" in arm
                    net = downstream.train(
                        downstream.TrainingSet(train.images[train_pos], train.labels[train_pos],
                                               *(gen if use_gan else (None, None))),
                        train.images[val_pos], train.labels[val_pos], n_classes,
                        classic="classic" in arm, seed=repeat_seed, steps=o.steps)
                    acc = downstream.accuracy(net, test.images, test.labels)
                    runs.setdefault((k, arm), []).append({"repeat": r, "seed": repeat_seed, "accuracy": acc,
                                                          "train_seeds": len(train_pos), "val_seeds": len(val_pos)})
                    bar.advance(task)
    results = _summarise(runs, o)
    quality_numbers = _quality(o, ckpt, state, train, test, fakes) if o.quality else {}
    config = {"run": str(ckpt), "source": source, "test_images": len(test), "train_images": len(train),
              "labels_per_class": [budget_label(k) for k in o.labels_per_class], "repeats": o.repeats, "arms": list(o.arms),
              "gan_per_class": o.gan_per_class, "noise": list(o.noise) if o.noise else "augment default",
              "mix": o.mix if o.mix is not None else "augment default", "unlabeled": o.unlabeled, "filter": o.filter,
              "classifier": {"net": "small_cnn", "steps": o.steps, "batch": downstream.BATCH, "lr": downstream.LR,
                             "optimizer": "Adam", "eval_every": downstream.EVAL_EVERY,
                             "val_share": f"1 in {VAL_SHARE} seeds per class",
                             "gan_batch_mix": "half real, half generated"},
              "seed": o.seed, "seconds": round(time.perf_counter() - started, 1),
              "versions": {"datagen": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "machine": machine(torch.device("cpu"))}  # evaluate trains and measures on the CPU
    evaluation = Evaluation(results=results, quality=quality_numbers, config=config)
    from datagen.eval.report import write_all  # matplotlib is imported only when writing the plot

    evaluation.paths = write_all(evaluation, json_path)
    return evaluation


def budget_label(k: int | None) -> int | str:
    return "all" if k is None else k


def _summarise(runs: dict, o: EvaluateOptions) -> list[dict]:
    results = []
    for (k, arm), entries in runs.items():
        accs = np.array([e["accuracy"] for e in entries])
        row = {"labels_per_class": budget_label(k), "arm": arm, "mean": float(accs.mean()),
               "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0, "runs": entries}
        if arm != "real" and (k, "real") in runs:
            base = np.array([e["accuracy"] for e in runs[(k, "real")]])
            row["gain_over_real"] = _paired(accs - base)
        if arm == "real+gan+classic" and (k, "real+classic") in runs:
            base = np.array([e["accuracy"] for e in runs[(k, "real+classic")]])
            row["gain_over_real+classic"] = _paired(accs - base)
        results.append(row)
    return results


def _paired(diff: np.ndarray) -> dict:
    """Mean paired gain, its 95% t-interval and a two-sided paired t-test over repeats."""
    from scipy import stats  # scipy is slow to import; only evaluate's summary needs it
    n = len(diff)
    out = {"mean": float(diff.mean()), "ci95": None, "p_value": None}
    if n > 1:
        sd = diff.std(ddof=1)
        half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
        out["ci95"] = [float(diff.mean() - half), float(diff.mean() + half)]
        out["p_value"] = float(stats.ttest_1samp(diff, 0.0).pvalue) if sd > 0 else (0.0 if diff.mean() else 1.0)
    return out


def _quality(o: EvaluateOptions, ckpt: Path, state: dict, train: ImageSet, test: ImageSet,
             fakes: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    console.print("measuring the encoder and generator (1-NN, linear probe, reconstructions, FID, precision/recall)")
    ref = reference.load_or_fit(rundir.folder_of(ckpt), train, lambda: test)
    model = checkpoint.load_model(state)
    numbers = {"reference_test_accuracy": ref.test_accuracy,
               **quality.latent_classification(model, train.images, train.labels, test.images, test.labels),
               **quality.reconstruction(model, ref, test.images, test.labels, seed=o.seed)}
    if fakes:
        fake_images = torch.cat([f[0] for f in fakes])
        fake_labels = torch.cat([f[1] for f in fakes])
        numbers.update(quality.generated_quality(ref, test.images, fake_images, fake_labels, seed=o.seed))
        numbers["generated_images_judged"] = len(fake_images)
    return numbers
