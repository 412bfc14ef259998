"""`datagen evaluate` (the downstream benchmark) and `datagen demo` (train -> augment -> evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from datagen.cli.common import parse_scales, stdout
from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.eval.defaults import ARMS, CLASSIFIER_STEPS, GAN_PER_CLASS


def evaluate_cmd(
    run: Path = typer.Option(Path("runs/latest"), "--run", help="A run directory or a checkpoint file."),
    labels_per_class: str = typer.Option("1,10,100", "--labels-per-class", help="Comma list of label budgets per class; 'all' for every label."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Seed draws per budget (the same draw for every arm)."),
    arms: str = typer.Option(",".join(ARMS), "--arms", help="Comma list of: " + ", ".join(ARMS)),
    json_path: Optional[Path] = typer.Option(None, "--json", help="evaluation.json path (evaluation.md and accuracy.png go beside it); default RUN/evaluation/."),
    gan_per_class: int = typer.Option(GAN_PER_CLASS, "--gan-per-class", min=1, help="Generated images per class in the gan arms."),
    noise: Optional[str] = typer.Option(None, "--noise", help="augment's noise for the gan arms (default: augment's default)."),
    mix: Optional[float] = typer.Option(None, "--mix", help="augment's --mix for the gan arms (default: augment's default)."),
    unlabeled: bool = typer.Option(True, "--unlabeled/--seeds-only", help="gan arms also grow from the train images outside the labels budget, labels never read (augment --unlabeled)."),
    filter_: bool = typer.Option(False, "--filter/--no-filter", help="augment's seed-trained label filter in the gan arms (off: it measured worse)."),
    steps: int = typer.Option(CLASSIFIER_STEPS, "--steps", min=1, help="Optimisation steps of every downstream classifier."),
    with_quality: bool = typer.Option(True, "--quality/--no-quality", help="Also measure E and G (1-NN, FID, precision/recall...)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Draws the label budgets and seeds every repeat."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
) -> None:
    """Benchmark: downstream test accuracy with real labels only, classical augmentation, datagen, and both."""
    from datagen.eval.protocol import EvaluateOptions, evaluate

    budgets = tuple(_budget(v, labels_per_class) for v in labels_per_class.split(","))
    result = evaluate(EvaluateOptions(run=run, labels_per_class=budgets, repeats=repeats, arms=tuple(arms.split(",")),
                                      json_path=json_path, gan_per_class=gan_per_class,
                                      noise=parse_scales(noise, "--noise") if noise else None, mix=mix, unlabeled=unlabeled,
                                      filter=filter_, steps=steps, quality=with_quality, seed=seed, data_root=data_root))
    print_evaluation(result)


def _budget(text: str, given: str) -> int | None:
    """One --labels-per-class entry: a number, or 'all' (None)."""
    if text.strip() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise DatagenError(f"--labels-per-class {given}: give whole numbers or 'all', e.g. 1,10,100,all") from None


def print_evaluation(result) -> None:
    from datagen.eval.report import gain_text

    table = Table(title=f"test accuracy on {result.config['source']} ({result.config['repeats']} repeats)")
    for col in ("labels/class", "arm", "accuracy %", "gain over real [95% CI]", "gain over real+classic"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in result.results:
        table.add_row(str(r["labels_per_class"]), r["arm"], f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}",
                      gain_text(r.get("gain_over_real")), gain_text(r.get("gain_over_real+classic")))
    out = stdout()
    out.print(table)
    if result.quality:
        q = result.quality
        keys = [k for k in ("latent_1nn_accuracy", "latent_linear_probe_accuracy", "recon_ratio", "recon_label_fidelity",
                            "generated_label_fidelity", "fid_reference_features", "precision", "recall") if k in q]
        out.print("quality: " + ", ".join(f"{k} {q[k]:.3f}" for k in keys), markup=False, highlight=False)
    for name, path in result.paths.items():
        out.print(f"{name}: {path}", markup=False, highlight=False)


def demo_cmd(
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs (README gives the time the default takes)."),
    repeats: int = typer.Option(3, "--repeats", min=1),
) -> None:
    """train -> augment -> evaluate on the bundled mnist-5k, in the current folder (README: how long it takes)."""
    from datagen.generate.augment import AugmentOptions, augment
    from datagen.train import loop as training
    from datagen.eval.protocol import EvaluateOptions, evaluate

    trained = training.fit(training.prepare(training.TrainOptions(dataset="mnist-5k", epochs=epochs)))
    if trained.status != "completed":
        raise typer.Exit(130 if trained.status == "interrupted" else 1)
    console.print(f"trained -> {trained.out}; growing 200 images per class from 10 seeds per class")
    grown = augment(AugmentOptions(run=trained.out, per_class=200, seeds_per_class=10))
    result = evaluate(EvaluateOptions(run=trained.out, labels_per_class=(10,), repeats=repeats))
    print_evaluation(result)
    out = stdout()
    out.print(f"reconstructions: {trained.out / 'samples' / f'epoch-{trained.epoch:03d}-recon.png'}", markup=False, highlight=False)
    out.print(f"augmented: {grown.path}; previews: {grown.previews[0].parent}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("demo")(demo_cmd)
