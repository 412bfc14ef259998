"""`datagen evaluate`: what augment's images add beyond what a user with a few labels can already do.

Protocol (README, "datagen evaluate"): for each labels-per-class budget and repeat, draw the labeled seeds
from the train split (deterministic per repeat, the same in every arm and every run) and train the same
classifier under each arm: the seeds alone, with classical augmentation, with the other train images
labelled from the seeds by label spreading on E's codes (pseudo: no G), with G's neighbours grown from seeds and those images
(gan), and FixMatch on the same images (SSL reference). Accuracy is read on the dev split while settings are
chosen, and on the test split once for the reported table; the run must provably never have trained on that
split. Arms share the seeds of a repeat, so gains are paired differences; several GAN trainings (--runs)
pool their repeats and report the spread between them.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datagen.classify import reference
from datagen.classify.fit import predict
from datagen.common.console import console, progress
from datagen.common.errors import DatagenError
from datagen.common.seeds import derive_seed
from datagen.common.version import __version__
from datagen.data.imageset import ImageSet, draw_per_class
from datagen.data.pixels import to_model_input
from datagen.data.sources import load
from datagen.eval import downstream, quality, stats
from datagen.eval.defaults import ALL_ARMS, ARMS, BUDGETS, GAN_PER_CLASS, REPEATS, SPLITS
from datagen.generate.augment import AugmentOptions, class_pools, codes_and_owners, grow_in_memory
from datagen.generate import defaults as augment_defaults
from datagen.generate.filter import FILTER_CACHE, filter_classifier, filter_wanted
from datagen.generate.pseudo import joins
from datagen.model import checkpoint
from datagen.model.device import machine, pick_device
from datagen.model.latent import Model
from datagen.train import rundir

# Paired comparisons reported (when both arms ran): every arm against real, and each gan arm against its
# twin without G, which uses the same unlabeled images and labels; Holm corrects them as one family.
COMPARISONS = (("real+gan", "real+pseudo"), ("real+gan+classic", "real+pseudo+classic"),
               ("real+gan+classic", "real+classic"), ("real+gan+classic", "fixmatch"),
               ("real+pseudo+gan", "real+pseudo"), ("real+pseudo+gan+classic", "real+pseudo+classic"),
               ("real+pseudo+gan+classic", "real+classic"), ("real+pseudo+gan+classic", "fixmatch"))


@dataclass
class EvaluateOptions:
    runs: tuple[Path, ...] = (rundir.RUNS_ROOT / "latest",)
    split: str = "test"
    labels_per_class: tuple[int | None, ...] = BUDGETS  # None: all labels
    repeats: int = REPEATS
    arms: tuple[str, ...] = ARMS
    json_path: Path | None = None  # default RUN/evaluation/evaluation-<split>.json
    gan_per_class: int = GAN_PER_CLASS
    noise: tuple[float, ...] | None = None  # None: augment's default
    mix: float | None = None  # None: augment's default
    min_label_confidence: float | None = None  # None: augment's default; pseudo and gan arms alike
    unlabeled: bool = True  # gan arms grow from the unlabeled train images too (augment --unlabeled)
    filter: bool | None = augment_defaults.FILTER  # augment's seed-trained label filter in the gan arms (None: its default)
    classifier: downstream.Recipe = field(default_factory=downstream.Recipe)
    seed: int = 0
    quality: bool = True
    device: str = "auto"
    data_root: Path | None = None
    progress: bool = True


@dataclass
class Evaluation:
    results: list[dict]
    comparisons: list[dict]
    quality: dict
    config: dict
    paths: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"results": self.results, "comparisons": self.comparisons, "quality": self.quality, "config": self.config}


@dataclass
class Run:
    """One GAN training under evaluation: its checkpoint, how that was chosen, its saved state, and E and G."""
    name: str
    checkpoint: Path
    chosen_by: str
    state: dict
    model: Model


def _validate(o: EvaluateOptions) -> None:
    if o.repeats < 1:
        raise DatagenError(f"--repeats {o.repeats}: use at least 1")
    if o.split not in SPLITS:
        raise DatagenError(f"--split {o.split}: use dev (to choose settings) or test (the reported table)")
    if not o.labels_per_class or any(k is not None and k < 1 for k in o.labels_per_class):
        raise DatagenError("--labels-per-class takes positive numbers or 'all', e.g. 1,5,10,50")
    unknown = [a for a in o.arms if a not in ALL_ARMS]
    if unknown or not o.arms:
        raise DatagenError(f"--arms {','.join(o.arms)}: choose from {', '.join(ALL_ARMS)}")
    if not o.runs:
        raise DatagenError("--runs: name at least one run directory or checkpoint")
    if o.gan_per_class < 1 or o.classifier.steps < 1:
        raise DatagenError("--gan-per-class and --steps must be at least 1")


def check_no_leak(state: dict, train: ImageSet, target: ImageSet) -> None:
    """Refuse a run that trained on any image of the split we measure on: by content hashes recorded in its
    checkpoint, or, for runs from before those were recorded, by the fingerprint of the train split it used."""
    recorded = state["dataset"].get("image_hashes")
    if recorded is not None:
        overlap = int(torch.isin(target.image_hashes(), recorded).sum())
        if overlap:
            raise DatagenError(f"the run was trained on {overlap} image(s) of {target.source}'s {target.split} split; "
                               f"measuring on them would overstate every number: train a new run (datagen train "
                               f"trains on the train split only)")
        return
    if state["dataset"].get("fingerprint") != train.fingerprint():
        raise DatagenError(f"cannot prove the run never saw {target.source}'s {target.split} split: it was not trained "
                           "on that source's train split (fingerprints differ); evaluate a run trained with datagen train")


def _open_runs(o: EvaluateOptions, device: torch.device) -> list[Run]:
    """Each run's checkpoint and model; they must share one source and image shape."""
    runs: list[Run] = []
    for path in o.runs:
        ckpt = rundir.checkpoint_of(path)
        state = checkpoint.load(ckpt)
        if runs and _data_of(state) != _data_of(runs[0].state):
            raise DatagenError(f"--runs: {path} was trained on other data, squaring or image sizes than {o.runs[0]}; "
                               "pool only trainings of one recipe on one dataset")
        runs.append(Run(name=rundir.folder_of(ckpt).name, checkpoint=ckpt, chosen_by=rundir.chosen_by(path),
                        state=state, model=checkpoint.load_model(state, device)))
    if len({r.name for r in runs}) < len(runs):  # e.g. two checkpoint files in one folder
        for r in runs:
            r.name = str(r.checkpoint)
    return runs


def _data_of(state: dict) -> tuple:
    """What a run's images were: the source, how it squared them (absent: before that was recorded) and the recipe's image."""
    return state["dataset"]["source"], state["dataset"].get("square"), state["recipe"]["image"]


def evaluate(o: EvaluateOptions) -> Evaluation:
    _validate(o)
    started = time.perf_counter()
    device = pick_device(o.device)
    runs = _open_runs(o, device)
    state = runs[0].state
    img = state["recipe"]["image"]
    size, channels, crop = img["size"], img["channels"], img.get("crop")
    source, square = state["dataset"]["source"], state["dataset"].get("square")  # loaded as training did
    train = load(source, "train", size=size, channels=channels, crop=crop, square=square, data_root=o.data_root)
    target = load(source, o.split, size=size, channels=channels, crop=crop, square=square, data_root=o.data_root)
    if len(target) == 0:
        raise DatagenError(f"{source} has no {o.split} split ({train.split_rule}): evaluate a run trained on a dataset "
                           "that has one")
    for run in runs:
        check_no_leak(run.state, train, target)
    n_classes = len(train.class_names)
    json_path = o.json_path or rundir.folder_of(runs[0].checkpoint) / "evaluation" / f"evaluation-{o.split}.json"
    rundir.ensure_writable(json_path.parent, "the evaluation folder", "choose a writable --json path")
    entries: dict[tuple[int | None, str], list[dict]] = {}
    fakes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {r.name: [] for r in runs}
    shared = [a for a in o.arms if "gan" not in a and "pseudo" not in a]  # the same for every GAN training
    per_run = [a for a in o.arms if a not in shared]
    jobs = len(o.labels_per_class) * o.repeats * (len(shared) + len(per_run) * len(runs))
    with progress() as bar:
        task = bar.add_task(f"evaluate on {o.split}", total=jobs, info="", visible=o.progress and console.is_terminal)
        for k in o.labels_per_class:
            for r in range(o.repeats):
                repeat_seed = derive_seed("evaluate-repeat", o.seed, r)
                picked = [where.sort().values for where in draw_per_class(train.labels, n_classes, k, repeat_seed)]
                chosen = torch.cat(picked)
                unlabeled = torch.ones(len(train), dtype=torch.bool)
                unlabeled[chosen] = False
                rest = torch.nonzero(unlabeled).flatten()
                common = {"repeat": r, "seed": repeat_seed, "labeled": len(chosen), "unlabeled": len(rest)}
                for arm in shared:
                    bar.update(task, info=f"{budget_label(k)} labels/class, repeat {r + 1}, {arm}")
                    acc = _fit_arm(o, arm, train, chosen, rest, None, n_classes, repeat_seed, target, device)
                    for run in runs:  # one fit serves every run: pairing stays by (run, repeat)
                        entries.setdefault((k, arm), []).append({**common, "run": run.name, "accuracy": acc})
                    bar.advance(task)
                if not per_run:
                    continue
                for run in runs:
                    extra = _extra_data(o, run, train, picked, chosen, rest, repeat_seed)
                    if "generated" in extra:
                        fakes[run.name].append(extra["generated"])
                    for arm in per_run:
                        bar.update(task, info=f"{budget_label(k)} labels/class, repeat {r + 1}, {run.name}, {arm}")
                        acc = _fit_arm(o, arm, train, chosen, rest, extra, n_classes, repeat_seed, target, device)
                        entry = {**common, "run": run.name, "accuracy": acc}
                        if "pseudo" in arm:
                            entry["pseudo_label_accuracy"] = extra["pseudo_label_accuracy"]
                        entries.setdefault((k, arm), []).append(entry)
                        bar.advance(task)
    results = [_summary(k, arm, rows) for (k, arm), rows in entries.items()]
    comparisons = _comparisons(entries)
    quality_numbers = _quality(o, runs, train, target, fakes) if o.quality else {}
    config = {"runs": [{"name": r.name, "checkpoint": str(r.checkpoint), "checkpoint_chosen_by": r.chosen_by}
                       for r in runs],
              "source": source, "square": square, "split": o.split, "split_rule": target.split_rule, "split_images": len(target),
              "train_images": len(train), "labels_per_class": [budget_label(k) for k in o.labels_per_class],
              "repeats": o.repeats, "arms": list(o.arms), "gan_per_class": o.gan_per_class,
              "noise": list(o.noise) if o.noise else "augment default", "mix": o.mix if o.mix is not None else "augment default",
              "unlabeled": o.unlabeled,
              "filter": o.filter if o.filter is not None else f"augment's default: on with >= {augment_defaults.FILTER_MIN_SEEDS} seeds per class",
              "classifier": o.classifier.to_dict(), "seed": o.seed,
              "seconds": round(time.perf_counter() - started, 1), "device": str(device),
              "versions": {"datagen": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "machine": machine(device)}
    if "fixmatch" in o.arms:
        from datagen.eval import fixmatch
        config["fixmatch"] = fixmatch.SETTINGS
    evaluation = Evaluation(results=results, comparisons=comparisons, quality=quality_numbers, config=config)
    from datagen.eval.report import write_all  # matplotlib is imported only when writing the plot

    evaluation.paths = write_all(evaluation, json_path)
    return evaluation


def budget_label(k: int | None) -> int | str:
    return "all" if k is None else k


def _extra_data(o: EvaluateOptions, run: Run, train: ImageSet, picked: list[torch.Tensor], chosen: torch.Tensor,
                rest: torch.Tensor, repeat_seed: int) -> dict:
    """What one GAN training adds in a repeat: the unlabeled images' spread labels (pseudo) and G's
    neighbours of seeds and those images (generated), exactly as augment would grow them, in memory."""
    model = run.model
    n_classes = len(picked)
    z, owners, confidence = codes_and_owners(model, train.images[chosen], train.labels[chosen], chosen,
                                             train.images[rest] if len(rest) else None, n_classes)
    options = AugmentOptions(per_class=o.gan_per_class, filter=filter_wanted(o.filter, min(len(p) for p in picked)),
                             seed=repeat_seed, progress=False,
                             **{k: v for k, v in (("noise", o.noise), ("mix", o.mix),
                                                  ("min_label_confidence", o.min_label_confidence)) if v is not None})
    sure = joins(confidence[len(chosen):], options.min_label_confidence)  # the unlabeled images augment would keep
    pseudo_labels = train.labels[owners[len(chosen):]]  # empty when every label is in the budget
    extra: dict = {"pseudo": (train.images[rest][sure], pseudo_labels[sure]),
                   "pseudo_label_accuracy": float((pseudo_labels == train.labels[rest]).float().mean()) if len(rest) else 1.0}
    if any("gan" in arm for arm in o.arms):
        grown_from_codes = len(owners) if o.unlabeled else len(chosen)  # seeds first, then the unlabeled images
        judge = None
        if options.filter:
            device = z.device
            judge = filter_classifier(rundir.folder_of(run.checkpoint) / FILTER_CACHE, train.images[chosen],
                                      to_model_input(train.images[chosen]).to(device), train.labels[chosen].to(device),
                                      n_classes, repeat_seed)
        pools = class_pools(z[:grown_from_codes], owners[:grown_from_codes], confidence[:grown_from_codes],
                            train.labels, n_classes, options.min_label_confidence)
        images, labels, grown_from = grow_in_memory(model, options, pools, picked, train, judge)
        if not torch.isin(grown_from, train.indices[chosen]).all():
            raise RuntimeError("a neighbour's label came from outside the labels budget")  # a leak: never report it
        extra["generated"] = (images, labels)
    return extra


def _fit_arm(o: EvaluateOptions, arm: str, train: ImageSet, chosen: torch.Tensor, rest: torch.Tensor,
             extra: dict | None, n_classes: int, seed: int, target: ImageSet, device: torch.device) -> float:
    labeled = downstream.TrainingSet(train.images[chosen], train.labels[chosen])
    if arm == "fixmatch":
        from datagen.eval import fixmatch  # the SSL reference, on request only

        net = fixmatch.train(labeled, train.images[rest], n_classes, seed=seed, recipe=o.classifier, device=device)
        return downstream.accuracy(net, target.images, target.labels)
    if extra is not None:
        parts = [extra[name] for name, wanted in (("pseudo", "pseudo" in arm), ("generated", "gan" in arm)) if wanted]
        labeled.extra_images = torch.cat([images for images, _ in parts])
        labeled.extra_labels = torch.cat([labels for _, labels in parts])
    net = downstream.train(labeled, n_classes, classic_aug="classic" in arm, seed=seed, recipe=o.classifier,
                           device=device)
    return downstream.accuracy(net, target.images, target.labels)


def _summary(k: int | None, arm: str, rows: list[dict]) -> dict:
    accs = np.array([e["accuracy"] for e in rows])
    by_run: dict[str, list[float]] = {}
    for e in rows:
        by_run.setdefault(e["run"], []).append(e["accuracy"])
    run_means = {name: float(np.mean(v)) for name, v in by_run.items()}
    out = {"labels_per_class": budget_label(k), "arm": arm, "mean": float(accs.mean()),
           "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0, "worst": float(accs.min()),
           "run_means": run_means, "runs": rows}
    if len(run_means) > 1:  # the spread a user meets when they train one GAN
        values = np.array(list(run_means.values()))
        out["between_runs"] = {"std": float(values.std(ddof=1)), "range": float(values.max() - values.min())}
    if rows and "pseudo_label_accuracy" in rows[0]:
        out["pseudo_label_accuracy"] = float(np.mean([e["pseudo_label_accuracy"] for e in rows]))
    return out


def _comparisons(entries: dict[tuple[int | None, str], list[dict]]) -> list[dict]:
    """Paired gains for COMPARISONS and every arm against real; Holm over them all.

    A repeat is one pair: its differences are averaged over the runs first. The arms without G are fitted
    once per repeat and shared by every run, so counting (run, repeat) pairs would count them several times
    and make the intervals too narrow.
    """
    found = []
    for k in dict.fromkeys(k for k, _ in entries):
        pairs = [(arm, "real") for (kk, arm) in entries if kk == k and arm != "real"] + list(COMPARISONS)
        for arm, base in dict.fromkeys(pairs):
            if (k, arm) not in entries or (k, base) not in entries:
                continue
            base_acc = {(e["run"], e["repeat"]): e["accuracy"] for e in entries[(k, base)]}
            per_repeat: dict[int, list[float]] = {}
            for e in entries[(k, arm)]:
                per_repeat.setdefault(e["repeat"], []).append(e["accuracy"] - base_acc[(e["run"], e["repeat"])])
            diff = np.array([np.mean(d) for d in per_repeat.values()])
            found.append({"labels_per_class": budget_label(k), "arm": arm, "over": base, **stats.paired(diff)})
    for row, adjusted in zip(found, stats.holm([row["p_value"] for row in found])):
        row["p_holm"] = adjusted
    return found


def _quality(o: EvaluateOptions, runs: list[Run], train: ImageSet, target: ImageSet,
             fakes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]) -> dict:
    """E and G in numbers, per run, in the reference classifier's feature space; beside them the floor: the same
    numbers for real train images against the real images of the split."""
    console.print("measuring E and G: 1-NN, linear probe, reconstructions, prior samples and neighbours (FID, KID, "
                  "precision/recall/density/coverage), against the real-vs-real floor")
    ref = reference.load_or_fit(rundir.folder_of(runs[0].checkpoint), train, lambda: target)
    n = len(target)
    floor_pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(o.seed))[:n]
    numbers: dict = {
        "reference_accuracy": (predict(ref.net, to_model_input(target.images)) == target.labels).float().mean().item(),
        "floor_real_train_vs_split": quality.distribution_quality(ref, target.images, train.images[floor_pick], o.seed),
        "runs": {}}
    for run in runs:
        model = checkpoint.load_model(run.state)  # on the CPU, beside the reference net
        per = {**quality.latent_classification(model, train.images, train.labels, target.images, target.labels),
               **quality.reconstruction(model, ref, target.images, target.labels, seed=o.seed)}
        per["prior"] = "mixture" if model.prior is not None else "gaussian"
        per["prior_samples"] = quality.distribution_quality(ref, target.images, quality.prior_samples(model, n, o.seed),
                                                            o.seed)
        if model.prior is not None:  # beside the fitted prior, what G makes of the N(0, I) it trained on
            per["gaussian_samples"] = quality.distribution_quality(
                ref, target.images, quality.prior_samples(model, n, o.seed, gaussian=True), o.seed)
        if fakes[run.name]:
            images, labels = (torch.cat(parts) for parts in zip(*fakes[run.name]))
            per["neighbours"] = quality.generated_quality(ref, target.images, images, labels, o.seed)
        numbers["runs"][run.name] = per
    return numbers
