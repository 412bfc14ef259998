"""The training loop: epochs, progress, JSONL metrics, sample grids, checkpoints, resume.

`prepare` validates everything (recipe, nets, data, output directory) and writes nothing, so bad
input never leaves a run directory behind; `fit` then trains and writes.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from datagen.common.version import __version__
from datagen.common.console import console, progress
from datagen.common import locks
from datagen.common.errors import DatagenError
from datagen.common.files import write_json
from datagen.common.interrupts import Interrupted, StopRequest
from datagen.common.seeds import generator
from datagen.data.conform import SQUARE_FLAGS, check_square
from datagen.data.imageset import indices_digest
from datagen.data.pixels import to_model_input
from datagen.data.sources import dataset_names, load, probe
from datagen.model import checkpoint, nets, recipes, speed
from datagen.model.checkpoint import new_model
from datagen.model.device import pick_device
from datagen.model.latent import Model
from datagen.model.objectives import Optimizers, make_optimizers, train_step
from datagen.model.recipes import Recipe
from datagen.train import distributed, rundir, tensorboard
from datagen.train.monitor import Monitor


# The recipe a registered dataset trains with when --recipe is not given.
DEFAULT_RECIPES = {"mnist-5k": "mnist-cpu", "digits": "mnist-cpu", "mnist": "mnist", "fashion-mnist": "mnist",
                   "svhn": "svhn", "cifar10": "cifar10", "celeba": "celeba64"}


@dataclass
class TrainOptions:
    dataset: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None  # None: 0 for a new run, the run's own seed on --resume
    device: str = "auto"
    out: Path | None = None
    resume: bool = False
    data_root: Path | None = None
    runs_root: Path = rundir.RUNS_ROOT
    progress: bool = True
    channels_last: bool | None = None  # None: datagen.speed's measured default for the device
    compile: bool = False
    amp: bool | None = None
    square: str | None = None  # "crop" | "pad": how non-square images become square; on --resume None keeps the run's
    tensorboard: bool = False  # mirror metrics.jsonl and the sample grids into RUN/tensorboard/
    sync_bn: bool | None = None  # SyncBatchNorm across torchrun's processes; None: off for a new run, the run's own on --resume

    def __post_init__(self) -> None:
        if self.tensorboard:
            tensorboard.require()  # the optional package is missing: say so before anything is written


@dataclass
class Plan:
    """A validated training job: nothing has been written yet."""

    recipe: Recipe
    dataset: str
    out: Path
    device: torch.device
    seed: int
    resume_state: dict[str, Any] | None
    options: TrainOptions
    how: speed.Speed  # layout, compilation, precision: resumed runs keep their own
    square: str | None = None  # recorded with the dataset, so every later load squares the data as training did
    ranks: distributed.Ranks = field(default_factory=distributed.Ranks)  # this process's place under torchrun
    sync_bn: bool = False  # the run's setting, recorded; it acts only when there are several processes to share with


def _suggest_recipes(dataset: str, data_root: Path | None) -> str:
    h, w, c = probe(dataset, data_root)
    side = min(h, w)
    fitting = []
    for name in recipes.builtin_names():
        r = recipes.load(name)
        if r.image.channels == c:
            fitting.append((abs(r.image.size - side), r.image.size, name))
    fitting.sort()
    listed = ", ".join(f"{name} ({size}x{size})" for _, size, name in fitting[:4]) or "none; write your own"
    return f"{dataset} ({h}x{w}x{c}) has no default recipe: pass --recipe NAME|PATH; {c}-channel recipes nearest its size: {listed}"


def _resolve_recipe(opts: TrainOptions, stored: Recipe | None) -> Recipe:
    sets = list(opts.overrides)
    if opts.epochs is not None:
        sets.append(f"train.epochs={opts.epochs}")
    if opts.batch_size is not None:
        sets.append(f"train.batch_size={opts.batch_size}")
    if opts.recipe is not None:
        base = recipes.load(opts.recipe)
    elif stored is not None:
        base = stored
    elif opts.dataset in DEFAULT_RECIPES:
        base = recipes.load(DEFAULT_RECIPES[opts.dataset])
    else:
        raise DatagenError(_suggest_recipes(opts.dataset, opts.data_root))
    return recipes.apply_overrides(base, sets)


def prepare(opts: TrainOptions) -> Plan:
    """Resolve and check everything a run needs; raises DatagenError, writes nothing."""
    state = None
    if opts.resume:
        out = opts.out or opts.runs_root / "latest"
        if not out.exists():
            raise DatagenError(f"--resume: no run at {out}; give the run directory with --out DIR")
        if (out / "run.json").is_file() and not (out / "checkpoints" / "last.pt").exists():
            raise DatagenError(f"--resume: {out} stopped before its first checkpoint, so there is nothing to resume; "
                               f"run the same `datagen train DATASET --out {out}` without --resume to start it again")
        state = checkpoint.load(out / "checkpoints" / "last.pt")
        stored = recipes.parse(state["recipe"], f"in {out}")
        dataset = opts.dataset or state["dataset"]["source"]
        recipe = _resolve_recipe(TrainOptions(**{**opts.__dict__, "dataset": dataset}), stored)
        if recipe.architecture() != stored.architecture():
            raise DatagenError(f"--resume: {out} was trained with recipe '{stored.name}', which differs from "
                               f"'{recipe.name}' in its nets; drop --recipe/--set to continue it, or train into a new --out")
        changed = [k for k, v in recipe.to_dict()["train"].items()
                   if k not in ("epochs", "log_every") and stored.to_dict()["train"][k] != v]
        if opts.seed is not None and opts.seed != state["seed"]:
            changed.append(f"seed (the run's is {state['seed']})")
        if changed:
            raise DatagenError(f"--resume keeps the run's training settings; only --epochs may change (changed: {', '.join(changed)})")
        device, how = _execution(opts, state.get("execution"), out)
        sync_bn = _resumed_sync_bn(opts.sync_bn, state.get("distributed"), out)
        square = _resumed_square(opts.square, state["dataset"].get("square"), out)  # absent: trained before the choice
        out = out.resolve()
    else:
        if opts.dataset is None:
            raise DatagenError("give a DATASET to train on (e.g. datagen train mnist-5k)")
        device, how = _execution(opts, None, None)
        sync_bn = bool(opts.sync_bn)
        dataset = opts.dataset
        square = opts.square
        check_square(square)
        recipe = _resolve_recipe(opts, None)
        if dataset not in dataset_names():
            probe(dataset)  # a missing or unreadable path fails here, before anything is written
        out = opts.out or rundir.default_dir(dataset, opts.runs_root)
        if distributed.ranks().is_main:  # rank 0 alone owns the run directory (and may clear a dead run's files)
            rundir.check_new(out)
    nets.build(recipe)  # shape errors surface here, naming the layer
    seed = state["seed"] if state is not None else (opts.seed or 0)
    if not 0 <= seed < 2**32:
        raise DatagenError(f"--seed {seed}: use a number from 0 to {2**32 - 1}")
    ranks = distributed.ranks()
    distributed.check_batch(recipe.train.batch_size, ranks)
    device = distributed.local_device(device, ranks)
    distributed.check_sync_bn(opts.sync_bn, sync_bn, device, ranks)
    return Plan(recipe=recipe, dataset=dataset, out=out, device=device, seed=seed, resume_state=state, options=opts, how=how,
                square=square, ranks=ranks, sync_bn=sync_bn)


def _resumed_sync_bn(asked: bool | None, recorded: dict[str, Any] | None, out: Path) -> bool:
    """A resumed run keeps its BatchNorm mode (absent from checkpoints older than the option: off)."""
    trained = bool((recorded or {}).get("sync_bn", False))
    if asked is not None and asked != trained:
        keep = "pass --sync-bn or leave it out" if trained else "leave out --sync-bn"
        raise DatagenError(f"--resume: {out} was trained with sync_bn = {trained}, which resuming must keep so the run "
                           f"continues as it began: {keep}")
    return trained


def _resumed_square(asked: str | None, recorded: str | None, out: Path) -> str | None:
    """A resumed run squares its images as it was trained to; asking for another way is refused, not ignored."""
    if asked is not None and asked != recorded:
        trained = SQUARE_FLAGS.get(recorded, "neither --crop nor --pad")
        keep = f"pass {trained} or leave it out" if recorded else "leave out --crop/--pad"
        raise DatagenError(f"--resume: {out} was trained with {trained}, which resuming must keep so the run sees the "
                           f"same images: {keep}")
    return recorded


def _execution(opts: TrainOptions, recorded: dict[str, Any] | None, out: Path | None) -> tuple[torch.device, speed.Speed]:
    """The device and speed settings a run trains with: the options' for a new run; a resumed run's own.

    Another device, layout or precision rounds floats differently, so a resumed run would not continue as it
    would have uninterrupted: an explicit request for other settings is refused, options left out take the run's.
    `recorded` is None for a new run and for checkpoints from before these settings were recorded.
    """
    if recorded is None:
        device = pick_device(opts.device)
        return device, speed.choose(device, opts.channels_last, opts.compile, opts.amp)
    device = pick_device(recorded["device"] if opts.device == "auto" else opts.device)
    asked = {"device": device.type, "channels_last": opts.channels_last, "compile": opts.compile, "amp": opts.amp}
    keep = {"device": f"pass --device {recorded['device']} or leave --device out",
            "channels_last": f"pass {'--channels-last' if recorded['channels_last'] else '--no-channels-last'} or leave it out",
            "compile": "pass --compile" if recorded["compile"] else "leave out --compile",
            "amp": f"pass {'--amp' if recorded['amp'] else '--no-amp'} or leave it out"}
    for key, value in asked.items():
        if value is not None and value != recorded[key]:
            raise DatagenError(f"--resume: {out} was trained with {key} = {recorded[key]}, which resuming must keep so the run "
                               f"continues exactly: {keep[key]}")
    return device, speed.Speed(channels_last=recorded["channels_last"], compile=recorded["compile"], amp=recorded["amp"])


def dry_run_report(plan: Plan) -> str:
    recipe = plan.recipe
    img = (recipe.image.channels, recipe.image.size, recipe.image.size)
    m = recipe.latent.dim
    built = nets.build(recipe)
    inputs = {"encoder": [img], "generator": [(m,)], "d1": [img], "d2": [img, (m,)], "dz": [(m,)]}
    lines = [f"recipe {recipe.name} for {plan.dataset} -> {plan.out}", json.dumps(recipe.to_dict(), indent=2)]
    for name, net in built.items():
        if name == "generator_ema":
            lines.append(f"\n{name}: the average of generator's weights (train.ema_decay {recipe.train.ema_decay}), its shapes")
            continue
        lines.append(f"\n{name}: {nets.parameter_count(net):,} parameters, input {' + '.join(str(s) for s in inputs[name])}")
        lines += [f"  {shape!s:<18} {desc}" for desc, shape in nets.layer_shapes(net, inputs[name])]
    return "\n".join(lines)


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch depends on (seed, epoch) only, so a resumed run replays it."""
    return torch.randperm(n, generator=generator("epoch-order", seed, epoch))


def _rank_batch(group: distributed.Group, order: torch.Tensor, batch: int, batch_size: int, eg_steps: int, model: Model,
                noise_gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """This rank's image indices and noise batches for global batch `batch` of an epoch.

    The global batch is the run's whatever the number of processes: each rank takes its slice of the batch's
    images and of its noise, which every rank draws whole, so the noise stream does not depend on the number.
    """
    rows = group.shard(order[batch * batch_size:(batch + 1) * batch_size])
    return rows, [group.shard(model.gaussian(batch_size, noise_gen)) for _ in range(eg_steps)]


@dataclass
class Result:
    out: Path
    status: str  # completed | interrupted | failed
    epoch: int
    step: int
    message: str = ""
    last_epoch: dict[str, Any] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    stopped_by: int = signal.SIGINT  # when interrupted: the signal asked for the stop (a rank may stop for another's)


def _prior_settings(latent: recipes.LatentSpec) -> tuple:
    return tuple(getattr(latent, key) for key in recipes.PRIOR_KEYS)


def _state(model: Model, opt: Optimizers, plan: Plan, dataset: dict[str, str], epoch: int, batch: int, step: int,
           noise_gen: torch.Generator, best: float | None) -> dict[str, Any]:
    return {
        "nets": {name: net.state_dict() for name, net in model.nets.items()},
        "optimizers": opt.state_dict(),
        "epoch": epoch, "batch": batch, "step": step, "seed": plan.seed, "best_fidelity": best,
        "rng": {"torch": torch.get_rng_state(), "noise": noise_gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "recipe": plan.recipe.to_dict(),
        "latent_prior": model.prior,  # None unless the recipe's latent.prior is "mixture"
        "dataset": dataset,
        "execution": {"device": plan.device.type, "channels_last": plan.how.channels_last, "compile": plan.how.compile,
                      "amp": plan.how.amp},
        # sync_bn is kept on --resume; the number of processes is for the record: the checkpoint means the same for any
        "distributed": {"sync_bn": plan.sync_bn, "processes": plan.ranks.world},
        "datagen_version": __version__,
    }


def fit(plan: Plan) -> Result:
    """Train per the plan; every epoch logs, draws grids and checkpoints. Never raises on Ctrl-C, SIGTERM or NaN.

    Rank 0 holds the run directory's lock throughout (datagen.common.locks): a second process refuses to write it.
    """
    started = {"run": False}  # set once this call has marked the run "running" (rank 0 only)
    with _run_lock(plan):
        try:
            with (distributed.join(plan.ranks, plan.device) as group, _quiet_unless(group.is_main),
                  StopRequest("saving a checkpoint after this step") as stop):
                return _fit(plan, stop, started, group)
        except DatagenError:
            raise  # bad input: found before this call changed anything
        except BaseException as exc:
            if started["run"]:  # say how the run ended, so nobody mistakes it for a live one
                status = "interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "failed"
                try:
                    rundir.set_status(plan.out, status, reason=f"{type(exc).__name__}: {exc}")
                except OSError:  # e.g. the full disk that stopped the run: report that, not run.json
                    pass
            raise


@contextmanager
def _run_lock(plan: Plan) -> Iterator[None]:
    """Rank 0's lock on the run directory (the other ranks write nothing there); a new run checks again, under the
    lock, that no other process began a run in the directory since `prepare` looked."""
    if not plan.ranks.is_main:
        yield
        return
    with locks.hold(plan.out, "the run directory"):
        if plan.resume_state is None:
            rundir.check_new(plan.out, clear_unsaved=True)
        yield


@contextmanager
def _quiet_unless(main: bool) -> Iterator[None]:
    """Rank 0 alone prints progress and messages; the other ranks would repeat them line for line."""
    was = console.quiet
    console.quiet = was or not main
    try:
        yield
    finally:
        console.quiet = was


class _NoMetrics:
    """What ranks other than 0 log to: nothing (rank 0 writes metrics.jsonl)."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _fit(plan: Plan, stop: StopRequest, started: dict[str, bool], group: distributed.Group) -> Result:
    recipe, t, out = plan.recipe, plan.recipe.train, plan.out
    img = recipe.image
    main = group.is_main
    show = plan.options.progress and console.is_terminal and main
    with progress() as bar, group.first_on_each_node():  # decoding a large folder or CelebA takes a while: show it
        task = bar.add_task("load", total=None, info=plan.dataset, visible=show)
        train_set = load(plan.dataset, "train", size=img.size, channels=img.channels, crop=img.crop,
                              square=plan.square, data_root=plan.options.data_root,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if len(train_set) < t.batch_size:
        raise DatagenError(f"{plan.dataset} has {len(train_set)} training images, fewer than the batch size "
                           f"{t.batch_size}; lower it with --batch-size")
    fingerprint = train_set.fingerprint()
    # The resolved source (an absolute path for folders and files), so --resume works from anywhere.
    dataset_info = {"source": train_set.source, "square": plan.square, "fingerprint": fingerprint,
                    "image_hashes": train_set.image_hashes()}
    state = plan.resume_state
    if state is not None and state["dataset"]["fingerprint"] != fingerprint:
        raise DatagenError(f"--resume: {plan.dataset} is not the data {out} was trained on (fingerprints differ); "
                           "resume with the same dataset and recipe size")
    torch.manual_seed(plan.seed)
    how = plan.how
    model = new_model(recipe, plan.device, how)
    if plan.sync_bn and group.world > 1:
        distributed.sync_batchnorm(model)
    precision = speed.precision(plan.device, how)
    opt = make_optimizers(model)
    noise_gen = generator("train-noise", plan.seed)
    images = train_set.images.to(plan.device)
    monitor_file = out / "monitor.pt"
    monitor = None  # rank 0's: it alone measures, draws grids and writes files; the other ranks wait for it
    if state is None and not main:
        epoch, batch, step, best = 0, 0, 0, None
        stop.armed = True
    elif state is None:
        rundir.create(out)
        write_json(out / "recipe.json", recipe.to_dict())
        write_json(out / "dataset.json", {
            "source": train_set.source, "square": plan.square, "split": "train", "split_rule": train_set.split_rule,
            "images": len(train_set),
            "class_names": list(train_set.class_names), "shape": list(train_set.shape), "fingerprint": fingerprint,
            "train_indices_sha": indices_digest(train_set.indices)})
        write_json(out / "run.json", {"status": "running", "dataset": plan.dataset, "recipe": recipe.name,
                                             "seed": plan.seed, "device": str(plan.device), "processes": group.world,
                                             "sync_bn": plan.sync_bn, "datagen_version": __version__})
        started["run"] = stop.armed = True
        rundir.point_latest(out, plan.options.runs_root)
        console.print(f"training {recipe.model} ({recipe.name}) on {plan.dataset}: {len(train_set)} images -> {out}")
        console.print("fitting the small classifier behind the label-fidelity number (once per run)")
        monitor = Monitor.create(images, train_set.labels, len(train_set.class_names), recipe.latent.dim, plan.seed,
                                 recipe.latent.center)
        monitor.save(monitor_file)
        epoch, batch, step, best = 0, 0, 0, None
    else:
        for name, net in model.nets.items():
            net.load_state_dict(state["nets"][name])
        model.prior = state.get("latent_prior") if recipe.latent.prior == "mixture" else None
        opt.load_state_dict(state["optimizers"])
        torch.set_rng_state(state["rng"]["torch"])
        noise_gen.set_state(state["rng"]["noise"])
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        epoch, batch, step, best = state["epoch"], state["batch"], state["step"], state["best_fidelity"]
        stop.armed = True
        if main:
            monitor = Monitor.from_state(checkpoint.load_plain(monitor_file), img.channels)
            rundir.set_status(out, "running")
            started["run"] = True
            write_json(out / "recipe.json", recipe.to_dict())  # --epochs may have changed
            console.print(f"resuming {out} at epoch {epoch + 1}, step {step}"
                          + (f" in {group.world} processes" if group.world > 1 else ""))
    metrics_log = tensorboard.MetricsAndTensorBoard if plan.options.tensorboard else rundir.MetricsLog
    metrics = metrics_log(out / "metrics.jsonl", keep_until_step=step if state is not None else None) if main else _NoMetrics()
    steps_per_epoch = len(train_set) // t.batch_size
    result = Result(out=out, status="completed", epoch=epoch, step=step)
    if epoch >= t.epochs:
        metrics.close()
        result.message = f"{out} has already trained {epoch} epochs (--epochs {t.epochs}); raise --epochs to train more"
        stored = recipes.parse(state["recipe"], "stored in the checkpoint") if main else None  # older: N(0, I)
        if stored is not None and _prior_settings(stored.latent) != _prior_settings(recipe.latent):
            model.prior = None  # a finished run given another prior (e.g. an older run --set latent.prior=mixture)
            model.fit_prior(images, plan.seed)
            checkpoint.save(out / "checkpoints" / "last.pt", _state(model, opt, plan, dataset_info, epoch, 0, step, noise_gen, best))
            result.message = (f"{out} has already trained {epoch} epochs; its checkpoint now holds the prior the recipe "
                              f"asks for (latent.prior = {recipe.latent.prior!r})")
        if main:
            rundir.set_status(out, "completed")
        return result

    def save(name: str, e: int, b: int) -> None:
        if main:
            checkpoint.save(out / "checkpoints" / name, _state(model, opt, plan, dataset_info, e, b, step, noise_gen, best))

    average = group.average_step if group.world > 1 else None
    logs: dict[str, float] = {}
    with progress() as bar:
        task = bar.add_task("train", total=t.epochs * steps_per_epoch, completed=epoch * steps_per_epoch + batch,
                            info="", visible=show)
        window_start, window_images = time.perf_counter(), 0
        shown = ""  # the last epoch's fidelity and reconstruction error, kept on the bar
        while epoch < t.epochs:
            order = _epoch_order(plan.seed, epoch, len(train_set)).to(plan.device)
            epoch_start = time.perf_counter()
            while batch < steps_per_epoch:
                rows, z_noise = _rank_batch(group, order, batch, t.batch_size, t.eg_steps, model, noise_gen)
                x = speed.as_input(to_model_input(images[rows]), how)
                z_noise = [z.to(plan.device) for z in z_noise]
                logs = train_step(model, opt, x, z_noise, precision, average=average)
                if not all(math.isfinite(v) for v in logs.values()):  # averaged across ranks: all stop here alike
                    bad = ", ".join(k for k, v in logs.items() if not math.isfinite(v))
                    return _stop_non_finite(result, out if main else None, metrics, epoch, step + 1, bad)
                batch, step = batch + 1, step + 1
                window_images += t.batch_size
                elapsed = time.perf_counter() - window_start
                rate = window_images / elapsed if elapsed > 0 else 0.0
                if step % t.log_every == 0 or batch == steps_per_epoch:
                    metrics.write({"epoch": epoch + 1, "step": step, "img_per_s": round(rate, 1), **logs})
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{t.epochs} step {step} {_losses(logs)} {shown} {rate:.0f} img/s")
                if elapsed > 10:
                    window_start, window_images = time.perf_counter(), 0
                if group.any(stop.requested):  # Ctrl-C or SIGTERM seen by any rank stops all of them after the same step
                    group.average_buffers(model)
                    save("last.pt", epoch, batch)  # at once, with the prior of the last epoch's end: a refit could outlast the grace period
                    metrics.close()
                    if main:
                        rundir.set_status(out, "interrupted")
                    result.status, result.epoch, result.step = "interrupted", epoch, step
                    result.stopped_by = stop.signum or signal.SIGINT
                    result.message = (f"interrupted at epoch {epoch + 1}, step {step}: checkpoint saved; continue with "
                                      f"datagen train --resume --out {out}")
                    return result
            epoch, batch = epoch + 1, 0
            if not all(torch.isfinite(p).all() for _, net in model.nets.items() for p in net.parameters()):
                return _stop_non_finite(result, out if main else None, metrics, epoch - 1, step, "the weights")
            group.average_buffers(model)  # on every rank: the nets rank 0 measures and saves describe all the data
            if not main:
                continue
            model.fit_prior(images, plan.seed)  # drawn in the epoch's grid, and saved
            measured = monitor.measure(model, images, out / "samples", epoch)
            record = {"epoch": epoch, "step": step, "event": "epoch", "epoch_seconds": round(time.perf_counter() - epoch_start, 2), **measured}
            metrics.write(record)
            if measured["fidelity"] is not None and (best is None or measured["fidelity"] > best):
                best = measured["fidelity"]  # a diagnostic (run.json): it chooses no checkpoint
            save("last.pt", epoch, 0)  # the checkpoint augment and evaluate use: no label chooses it (rundir.CHOSEN_BY)
            result.last_epoch = record
            fid = "n/a" if measured["fidelity"] is None else f"{measured['fidelity']:.1%}"
            shown = f"fidelity {fid} recon {measured['recon_error']:.3f}"
            console.print(f"epoch {epoch}/{t.epochs}: fidelity {fid}, recon error {measured['recon_error']:.3f}, "
                          f"{_losses(logs)}, {record['epoch_seconds']:.0f} s")
    metrics.close()
    if main:
        rundir.set_status(out, "completed", epochs=epoch, step=step, best_fidelity=best)
    result.epoch, result.step, result.final_losses = epoch, step, logs
    return result


def _stop_non_finite(result: Result, out: Path | None, metrics: rundir.MetricsLog | _NoMetrics, epoch: int, step: int,
                     what: str) -> Result:
    """End a run whose numbers went NaN/inf, keeping the last good checkpoint untouched (out None: not rank 0)."""
    metrics.close()
    if out is None:
        result.status, result.epoch, result.step = "failed", epoch, step
        return result
    rundir.set_status(out, "failed", reason=f"non-finite {what}")
    result.status, result.epoch, result.step = "failed", epoch, step
    result.message = (f"training stopped: {what} became NaN/inf at epoch {epoch + 1}, step {step}; the last good "
                      f"checkpoint is kept in {out / 'checkpoints' / 'last.pt'}; try a lower learning rate (--set train.lr=1e-4)")
    return result


def _losses(logs: dict[str, float]) -> str:
    return " ".join(f"{name.removesuffix('_loss')} {logs[name]:.3f}" for name in ("d_loss", "eg_loss") if name in logs)
