"""`datagen evaluate` (the downstream benchmark) and `datagen demo` (train -> augment -> evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from datagen.cli.common import parse_scales, stdout
from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.eval.defaults import ALL_ARMS, ARMS, BUDGETS, CLASSIFIER, GAN_PER_CLASS, REPEATS
from datagen.generate import defaults as augment_defaults


def evaluate_cmd(
    run: Path = typer.Option(Path("runs/latest"), "--run", help="A run directory (its last.pt) or a checkpoint file."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Comma list of runs (several GAN trainings) to pool; the spread between them is reported. Replaces --run."),
    split: str = typer.Option("test", "--split", help="dev: choose settings on the dev split carved from train; test: the reported table (read it once)."),
    labels_per_class: str = typer.Option(",".join(map(str, BUDGETS)), "--labels-per-class", help="Comma list of label budgets per class; 'all' for every label."),
    repeats: int = typer.Option(REPEATS, "--repeats", min=1, help="Label draws per budget (the same draw for every arm and run)."),
    arms: str = typer.Option(",".join(ARMS), "--arms", help="Comma list of: " + ", ".join(ALL_ARMS) + " (fixmatch, the SSL reference, is slow: README)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="evaluation JSON path (its .md and accuracy plot go beside it); default RUN/evaluation/evaluation-SPLIT.json."),
    gan_per_class: int = typer.Option(GAN_PER_CLASS, "--gan-per-class", min=1, help="Generated images per class in the gan arms."),
    noise: Optional[str] = typer.Option(None, "--noise", help="augment's noise for the gan arms (default: augment's default)."),
    mix: Optional[float] = typer.Option(None, "--mix", help="augment's --mix for the gan arms (default: augment's default)."),
    min_label_confidence: Optional[float] = typer.Option(None, "--min-label-confidence", min=0.0, max=1.0, help="augment's --min-label-confidence for the pseudo and gan arms (default: augment's default)."),
    unlabeled: bool = typer.Option(True, "--unlabeled/--seeds-only", help="gan arms also grow from the train images outside the labels budget, labels never read (augment --unlabeled)."),
    filter_: Optional[bool] = typer.Option(augment_defaults.FILTER, "--filter/--no-filter", help="augment's seed-trained label filter in the gan arms (default: augment's default)."),
    steps: int = typer.Option(CLASSIFIER["steps"], "--steps", min=1, help="Optimisation steps of every downstream classifier."),
    lr: float = typer.Option(CLASSIFIER["lr"], "--lr", help="Downstream classifier's peak learning rate (cosine to zero)."),
    weight_decay: float = typer.Option(CLASSIFIER["weight_decay"], "--weight-decay", help="Downstream classifier's AdamW weight decay."),
    width: int = typer.Option(CLASSIFIER["width"], "--width", min=1, help="Downstream classifier's first conv width."),
    with_quality: bool = typer.Option(True, "--quality/--no-quality", help="Also measure E and G (1-NN, prior-sample FID/KID, precision/recall...)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Draws the label budgets and seeds every repeat."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps: where the classifiers train."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
) -> None:
    """Benchmark: accuracy with real labels only, classical augmentation, pseudo-labels, datagen, and FixMatch."""
    from datagen.eval.downstream import Recipe
    from datagen.eval.protocol import EvaluateOptions, evaluate

    budgets = tuple(_budget(v, labels_per_class) for v in labels_per_class.split(","))
    paths = tuple(Path(p.strip()) for p in runs.split(",") if p.strip()) if runs else (run,)
    recipe = Recipe.with_overrides(steps=steps, lr=lr, weight_decay=weight_decay, width=width)
    result = evaluate(EvaluateOptions(runs=paths, split=split, labels_per_class=budgets, repeats=repeats,
                                      arms=tuple(a.strip() for a in arms.split(",")), json_path=json_path,
                                      gan_per_class=gan_per_class, noise=parse_scales(noise, "--noise") if noise else None,
                                      mix=mix, min_label_confidence=min_label_confidence, unlabeled=unlabeled, filter=filter_, classifier=recipe, quality=with_quality,
                                      seed=seed, device=device, data_root=data_root))
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
    from datagen.eval.report import gain_text, gains_of

    c = result.config
    table = Table(title=f"{c['split']} accuracy on {c['source']} ({c['repeats']} repeats × {len(c['runs'])} run(s))")
    for col in ("labels/class", "arm", "accuracy %", "worst", "gain over real [95% CI]", "gain over the arm without G"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in result.results:
        gains = gains_of(result, r)
        twin = next((f"{base}: {gain_text(g)}" for base, g in gains.items() if base != "real"), "-")
        table.add_row(str(r["labels_per_class"]), r["arm"], f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}",
                      f"{100 * r['worst']:.1f}", gain_text(gains.get("real")), twin)
    out = stdout()
    out.print(table)
    q = result.quality
    for name, per in q.get("runs", {}).items():
        prior, floor = per["prior_samples"], q["floor_real_train_vs_split"]
        gaussian = per.get("gaussian_samples")
        beside = f", N(0, I) samples FID {gaussian['fid']:.1f}" if gaussian else ""
        out.print(f"quality {name}: prior samples ({per.get('prior', 'gaussian')}) FID {prior['fid']:.1f} KID "
                  f"{prior['kid_mean']:.4f} precision {prior['precision']:.2f} recall {prior['recall']:.2f}{beside} "
                  f"(real-vs-real floor: FID {floor['fid']:.1f} KID {floor['kid_mean']:.4f}); 1-NN "
                  f"{per['latent_1nn_accuracy']:.3f}; recon label fidelity {per['recon_label_fidelity']:.3f}",
                  markup=False, highlight=False)
    for name, path in result.paths.items():
        out.print(f"{name}: {path}", markup=False, highlight=False)


def demo_cmd(
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs (README gives the time the default takes)."),
    repeats: int = typer.Option(3, "--repeats", min=1),
) -> None:
    """train -> augment -> evaluate on the bundled mnist-5k, in the current folder (README: how long it takes)."""
    from datagen.generate.augment import AugmentOptions, augment
    from datagen.train import loop as training
    from datagen.train.monitor import grid_paths
    from datagen.eval.protocol import EvaluateOptions, evaluate

    trained = training.fit(training.prepare(training.TrainOptions(dataset="mnist-5k", epochs=epochs)))
    if trained.status != "completed":
        raise typer.Exit(130 if trained.status == "interrupted" else 1)
    console.print(f"trained -> {trained.out}; growing 200 images per class from 10 seeds per class and the other "
                  "train images, which the output also holds with their spread labels")
    grown = augment(AugmentOptions(run=trained.out, per_class=200, seeds_per_class=10))
    result = evaluate(EvaluateOptions(runs=(trained.out,), labels_per_class=(10,), repeats=repeats))
    print_evaluation(result)
    out = stdout()
    grids = grid_paths(trained.out / "samples", trained.epoch)
    out.print(f"reconstructions: {grids['recon']}", markup=False, highlight=False)
    if grids["prior"].is_file():
        out.print(f"samples of the fitted prior: {grids['prior']}", markup=False, highlight=False)
    out.print(f"augmented: {grown.path}; previews: {grown.previews[0].parent}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("demo")(demo_cmd)
