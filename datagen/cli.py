"""The `datagen` command: parse, call the library, render with rich, map errors to exit codes.

Exit codes: 0 done, 1 a run that stopped on its own (NaN loss, internal error) or an output that
`inspect` found incomplete or damaged, 2 bad input, 130 interrupted with Ctrl-C (after saving a
checkpoint).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from datagen import nets, recipes, rundir, store, train as training
from datagen.cli_latent import register as _register_latent
from datagen.downstream import STEPS
from datagen.evaluate import ARMS, GAN_PER_CLASS
from datagen.errors import DatagenError
from datagen.report import console

CHANNELS_LAST_HELP = "NHWC layout for the nets (faster convolutions); default: on for CPU, where it was measured."
COMPILE_HELP = "torch.compile the nets (falls back to eager where unavailable); off by default: on 2 CPU cores it compiled for 85 s and then ran slower."

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Grow a small labeled image set into a larger, faithfully labeled one with SelfExGAN.")


@app.command("train")
def train_cmd(
    dataset: Optional[str] = typer.Argument(None, help="mnist-5k, digits, mnist, fashion-mnist, svhn, cifar10, celeba, an ImageFolder directory or an .h5 file. Optional with --resume."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe name (see `datagen recipes`) or .toml path; default: the dataset's own."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Total epochs (with --resume: train until this many)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="Seeds initialisation, data order and noise: same seed, same run on CPU (default 0; with --resume, the run's own)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<dataset>-<time>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.lr=2e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (default runs/latest) from its last checkpoint."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where torchvision datasets are downloaded (default ~/.cache/datagen)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe and each net's layer shapes, then exit."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast for the forward passes; default: on for CUDA devices with bf16, never on CPU."),
) -> None:
    """Train SelfExGAN (E, G, D1, D2) on a dataset's train split."""
    opts = training.TrainOptions(dataset=dataset, recipe=recipe, overrides=set_, epochs=epochs, batch_size=batch_size,
                                 seed=seed, device=device, out=out, resume=resume, data_root=data_root,
                                 channels_last=channels_last, compile=compile_, amp=amp)
    plan = training.prepare(opts)
    if dry_run:
        print(training.dry_run_report(plan))
        return
    result = training.fit(plan)
    if result.message:
        console.print(result.message, highlight=False)
    if result.status == "failed":
        raise typer.Exit(1)
    if result.status == "interrupted":
        raise typer.Exit(130)
    if result.last_epoch:
        last = result.last_epoch
        samples = result.out / "samples" / f"epoch-{last['epoch']:03d}-recon.png"
        console.print(f"done: {result.epoch} epochs, {result.step} steps -> {result.out}\n"
                      f"reconstructions: {samples}\nfinal losses: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in result.final_losses.items()), highlight=False)


@app.command("recipes")
def recipes_cmd() -> None:
    """List the built-in recipes: image size, channels, latent size and parameters per net."""
    table = Table(title="datagen recipes")
    for col in ("name", "model", "image", "latent", "E", "G", "D1", "D2", "source"):
        table.add_column(col, justify="right" if col in ("E", "G", "D1", "D2", "latent") else "left")
    for name in recipes.builtin_names():
        r = recipes.load(name)
        built = dict(nets.build(r).items())
        count = lambda key: f"{nets.parameter_count(built[key]):,}" if key in built else "-"
        table.add_row(name, r.model, f"{r.image.size}x{r.image.size}x{r.image.channels}", str(r.latent.dim),
                      count("encoder"), count("generator"), count("d1"), count("d2"), r.source)
    _stdout().print(table)


@app.command("augment")
def augment_cmd(
    run: Path = typer.Argument(Path("runs/latest"), help="A run directory (its best checkpoint) or a checkpoint file."),
    per_class: int = typer.Option(..., "--per-class", help="Generated images per class."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Labeled images to grow from (name or path, as in train); default: the run's own train split."),
    seeds_per_class: Optional[int] = typer.Option(None, "--seeds-per-class", help="Use only K seeds per class (a fixed subset for --seed)."),
    noise: str = typer.Option("0.5", "--noise", help="Latent noise scale, or a comma list of scales to mix (default chosen by `datagen bench noise`, see README)."),
    mix: float = typer.Option(0.0, "--mix", help="Share of candidates that start from a blend of two seeds of their class (0..1)."),
    unlabeled: bool = typer.Option(False, "--unlabeled", help="Also grow from the seeds' dataset's other (unlabeled) images, each labelled by its nearest seed in latent space."),
    filter_: bool = typer.Option(True, "--filter/--no-filter", help="Keep a neighbour only if a classifier trained on the seeds agrees with its label."),
    min_confidence: float = typer.Option(0.9, "--min-confidence"),
    fmt: str = typer.Option("hdf5", "--format", help="hdf5 | imagefolder"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: inside the run directory)."),
    include_seeds: bool = typer.Option(False, "--include-seeds", help="Also write the real seeds, marked as real."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted output to exactly N per class."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
) -> None:
    """Grow labeled seeds into many more labeled images: latent neighbours through G."""
    from datagen.augmentation import AugmentOptions, augment

    result = augment(AugmentOptions(run=run, per_class=per_class, seeds=seeds, seeds_per_class=seeds_per_class,
                                    noise=_scales(noise, "--noise"), mix=mix, unlabeled=unlabeled,
                                    filter=filter_, min_confidence=min_confidence, fmt=fmt, out=out, include_seeds=include_seeds,
                                    resume=resume, overwrite=overwrite, seed=seed, batch_size=batch_size, device=device,
                                    data_root=data_root, channels_last=channels_last, compile=compile_))
    rates = ", ".join(f"{r:.0%}" for r in result.rejection)
    console.print(f"wrote {sum(result.counts)} images ({', '.join(map(str, result.counts))} per class) -> {result.path}\n"
                  f"filter rejection per class: {rates}\npreviews: {result.previews[0].parent if result.previews else '-'}",
                  highlight=False, markup=False)


@app.command("inspect")
def inspect_cmd(path: Path = typer.Argument(..., help="An .h5 file or ImageFolder directory written by datagen.")) -> None:
    """Summarise a generated dataset and verify it: exit 1 if it is incomplete or damaged."""
    summary = store.inspect(path)
    table = Table(title=escape(f"{summary.path} ({summary.format})"))
    for col in ("class", "images", "of which real"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, count, real in zip(summary.class_names, summary.counts, summary.real_counts):
        table.add_row(escape(name), str(count), str(real))
    table.add_row("[bold]total", f"[bold]{sum(summary.counts)}", f"[bold]{sum(summary.real_counts)}")
    out = _stdout()
    out.print(table)
    h, w, c = summary.image_shape
    out.print(f"images {h}x{w}x{c}, complete: {summary.complete}")
    for key, value in summary.provenance.items():
        if isinstance(value, list) and len(value) > 12:  # e.g. 4,000 seed indices: a count and the ends
            value = f"{len(value)} values: {', '.join(map(str, value[:5]))}, …, {', '.join(map(str, value[-3:]))}"
        out.print(f"  {key}: {value}", markup=False, highlight=False)
    if summary.problems:
        for problem in summary.problems:
            _one_line("problem:", problem)
        raise typer.Exit(1)
    out.print("verified: no problems found")


@app.command("evaluate")
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
    steps: int = typer.Option(STEPS, "--steps", min=1, help="Optimisation steps of every downstream classifier."),
    with_quality: bool = typer.Option(True, "--quality/--no-quality", help="Also measure E and G (1-NN, FID, precision/recall...)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**20),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
) -> None:
    """Benchmark: downstream test accuracy with real labels only, classical augmentation, datagen, and both."""
    from datagen.evaluate import EvaluateOptions, evaluate

    budgets = tuple(_budget(v, labels_per_class) for v in labels_per_class.split(","))
    result = evaluate(EvaluateOptions(run=run, labels_per_class=budgets, repeats=repeats, arms=tuple(arms.split(",")),
                                      json_path=json_path, gan_per_class=gan_per_class,
                                      noise=_scales(noise, "--noise") if noise else None, mix=mix, unlabeled=unlabeled,
                                      filter=filter_, steps=steps, quality=with_quality, seed=seed, data_root=data_root))
    _print_evaluation(result)


def _budget(text: str, given: str) -> int | None:
    """One --labels-per-class entry: a number, or 'all' (None)."""
    if text.strip() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise DatagenError(f"--labels-per-class {given}: give whole numbers or 'all', e.g. 1,10,100,all") from None


def _print_evaluation(result) -> None:
    from datagen.evaluation_report import gain_text

    table = Table(title=f"test accuracy on {result.config['source']} ({result.config['repeats']} repeats)")
    for col in ("labels/class", "arm", "accuracy %", "gain over real [95% CI]", "gain over real+classic"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in result.results:
        table.add_row(str(r["labels_per_class"]), r["arm"], f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}",
                      gain_text(r.get("gain_over_real")), gain_text(r.get("gain_over_real+classic")))
    out = _stdout()
    out.print(table)
    if result.quality:
        q = result.quality
        keys = [k for k in ("latent_1nn_accuracy", "latent_linear_probe_accuracy", "recon_ratio", "recon_label_fidelity",
                            "generated_label_fidelity", "fid_reference_features", "precision", "recall") if k in q]
        out.print("quality: " + ", ".join(f"{k} {q[k]:.3f}" for k in keys), markup=False, highlight=False)
    for name, path in result.paths.items():
        out.print(f"{name}: {path}", markup=False, highlight=False)


@app.command("demo")
def demo_cmd(
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs (8 fit the 15-minute budget on 2 CPU cores)."),
    repeats: int = typer.Option(3, "--repeats", min=1),
) -> None:
    """train -> augment -> evaluate on the bundled mnist-5k, in the current folder (about 7 minutes on 2 CPU cores)."""
    from datagen.augmentation import AugmentOptions, augment
    from datagen.evaluate import EvaluateOptions, evaluate

    trained = training.fit(training.prepare(training.TrainOptions(dataset="mnist-5k", epochs=epochs)))
    if trained.status != "completed":
        raise typer.Exit(130 if trained.status == "interrupted" else 1)
    console.print(f"trained -> {trained.out}; growing 200 images per class from 10 seeds per class")
    grown = augment(AugmentOptions(run=trained.out, per_class=200, seeds_per_class=10))
    result = evaluate(EvaluateOptions(run=trained.out, labels_per_class=(10,), repeats=repeats))
    _print_evaluation(result)
    out = _stdout()
    out.print(f"reconstructions: {trained.out / 'samples' / f'epoch-{trained.epoch:03d}-recon.png'}", markup=False, highlight=False)
    out.print(f"augmented: {grown.path}; previews: {grown.previews[0].parent}", markup=False, highlight=False)


bench_app = typer.Typer(no_args_is_help=True, help="Measurements that back datagen's defaults and speed claims.")
app.add_typer(bench_app, name="bench")


@bench_app.command("noise")
def bench_noise_cmd(
    run: Path = typer.Argument(Path("runs/latest"), help="A run directory or a checkpoint file."),
    scales: str = typer.Option("0,0.1,0.2,0.3,0.5,0.7,1.0", "--scales", help="Comma list of noise scales to try."),
    per_class: int = typer.Option(300, "--per-class", min=1, help="Generated images per class and scale."),
    seeds_per_class: int = typer.Option(10, "--seeds-per-class", min=1, help="Labeled seeds per class to grow from."),
    min_confidence: float = typer.Option(0.9, "--min-confidence", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every number to this JSON file."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
) -> None:
    """Label agreement (independent reference classifier) and variety of augment's neighbours per noise scale."""
    from datagen.noise_sweep import sweep

    result = sweep(run, _scales(scales, "--scales"), per_class=per_class, seeds_per_class=seeds_per_class,
                   min_confidence=min_confidence, seed=seed, data_root=data_root)
    table = Table(title=f"augment neighbours vs. the reference classifier ({result.reference_test_accuracy:.1%} on real test images)")
    for col in ("noise", "filter", "agreement", "worst class", "rejected", "distance to seed", "seconds"):
        table.add_column(col, justify="right")
    for r in result.rows:
        if r.agreement is None:
            table.add_row(f"{r.noise:g}", "on", "filter cap hit", "-", "-", "-", f"{r.seconds:.1f}")
            continue
        table.add_row(f"{r.noise:g}", "on" if r.filter else "off", f"{r.agreement:.1%}", f"{min(r.agreement_per_class):.1%}",
                      f"{r.rejection:.1%}", f"{r.distance_to_seed:.3f}", f"{r.seconds:.1f}")
    _stdout().print(table)
    if json_path is not None:
        rundir.write_json(json_path, result.to_json())
        _stdout().print(f"wrote {json_path}", markup=False, highlight=False)


@bench_app.command("train")
def bench_train_cmd(
    recipe: str = typer.Option("mnist", "--recipe", help="Recipe to time (default: the thesis' Table 4.1 MNIST nets)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Default: the recipe's."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed training steps, after 3 warm-up steps."),
    device: str = typer.Option("cpu", "--device"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (CUDA only)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Images/s, FLOPs per image and the share of this machine's fp32 matmul peak of SelfExGAN training steps."""
    from datagen import speed
    from datagen.bench import bench_train

    dev = training.pick_device(device)
    how = speed.choose(dev, channels_last, compile_, amp)
    _bench_report(bench_train(recipe, batch_size, steps, device=dev, how=how), json_path)


@bench_app.command("augment")
def bench_augment_cmd(
    run: Optional[Path] = typer.Argument(None, help="A run directory or a checkpoint file (or give --recipe)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Time an untrained model of this recipe on random seeds instead of a run (filter off)."),
    per_class: int = typer.Option(5000, "--per-class", min=1, help="Images per class (10 classes with --recipe)."),
    filter_: bool = typer.Option(True, "--filter/--no-filter", help="Include augment's filter (its default)."),
    device: str = typer.Option("cpu", "--device"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """End-to-end augment images/s against the generator-forward-only limit, and peak memory."""
    from datagen import speed
    from datagen.bench import bench_augment

    dev = training.pick_device(device)
    if run is None and recipe is None:
        run = Path("runs/latest")
    _bench_report(bench_augment(run, per_class, device=str(dev), use_filter=filter_, recipe_name=recipe,
                                how=speed.choose(dev, channels_last)), json_path)


@bench_app.command("scaling")
def bench_scaling_cmd(
    recipe: str = typer.Option("mnist-cpu", "--recipe"),
    sizes: str = typer.Option("1024,2048,4096", "--sizes", help="Dataset sizes, one training epoch each."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Default: the recipe's."),
    device: str = typer.Option("cpu", "--device"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Epoch time and peak memory against dataset size: should grow linearly, and stay flat apart from the data."""
    from datagen.bench import bench_scaling

    try:
        parsed = tuple(int(v) for v in sizes.split(","))
    except ValueError:
        raise DatagenError(f"--sizes {sizes}: give whole numbers, e.g. --sizes 1024,2048,4096") from None
    result = bench_scaling(recipe, parsed, batch_size, str(training.pick_device(device)))
    out = _stdout()
    table = Table(title=f"one epoch of {result['recipe']} (batch {result['batch_size']}), {result['machine']}")
    for col in ("images", "seconds", "ms/image", "time ×", "size ×", "peak RSS MiB", "data MiB"):
        table.add_column(col, justify="right")
    for row in result["epochs"]:
        table.add_row(str(row["images"]), f"{row['seconds']:.1f}", f"{row['seconds_per_image'] * 1e3:.2f}",
                      f"{row['time_ratio']:.2f}", f"{row['size_ratio']:.2f}", f"{row['peak_rss_mb']:,.0f}",
                      f"{row['dataset_mb']:.1f}")
    out.print(table)
    if json_path is not None:
        rundir.write_json(json_path, result)
        out.print(f"wrote {json_path}", markup=False, highlight=False)


def _bench_report(numbers: dict, json_path: Optional[Path]) -> None:
    out = _stdout()
    for key, value in numbers.items():
        out.print(f"{key}: {value:,.4g}" if isinstance(value, float) else f"{key}: {value}", markup=False, highlight=False)
    if json_path is not None:
        rundir.write_json(json_path, numbers)
        out.print(f"wrote {json_path}", markup=False, highlight=False)


_register_latent(app)  # reconstruct, sample, chain, similarity, explore, embed, interpolate (datagen.cli_latent)


def _scales(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DatagenError(f"{option} {text}: give a number or a comma list such as 0.2,0.5") from None


def _stdout() -> Console:
    """A command's own output: stdout, and wide enough to read when piped."""
    return Console(width=None if sys.stdout.isatty() else 160)


def _one_line(prefix: str, message: str) -> None:
    """Print `prefix message` as exactly one line on stderr; the message is never read as markup."""
    first = " ".join(str(message).split()) or "(no message)"
    console.print(f"{prefix} {first}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: one line on stderr and exit 2 for bad input, never a traceback."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")  # bare `datagen`: the help, not a usage error
    try:
        code = app(standalone_mode=False)
    except DatagenError as exc:
        _one_line("error:", str(exc))
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors: unknown option, --epochs 0, missing argument
        _one_line("error:", f"{exc.format_message()} (see datagen {' '.join(sys.argv[1:2])} --help)")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        _one_line("aborted:", "interrupted before anything was saved")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("DATAGEN_DEBUG"):
            raise
        _one_line("internal error:", f"{type(exc).__name__}: {exc} (set DATAGEN_DEBUG=1 for the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
