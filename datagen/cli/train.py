"""`datagen train` and `datagen recipes`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from datagen.cli.common import CHANNELS_LAST_HELP, COMPILE_HELP, stdout
from datagen.common.console import console


def _complete_dataset(incomplete: str) -> list[str]:
    """Tab completion for DATASET: the registered names; anything else falls back to the shell's file completion."""
    from datagen.data.names import dataset_names  # torch-free: completion runs on every tab

    return [name for name in dataset_names() if name.startswith(incomplete)]


def _complete_recipe(incomplete: str) -> list[tuple[str, str]]:
    """Tab completion for --recipe: the built-in recipes with their descriptions (zsh and fish show them)."""
    from datagen.model import recipes

    return [(name, recipes.load(name).description) for name in recipes.builtin_names() if name.startswith(incomplete)]


def train_cmd(
    dataset: Optional[str] = typer.Argument(None, autocompletion=_complete_dataset, help="mnist-5k, digits, mnist, fashion-mnist, svhn, cifar10, celeba, an ImageFolder directory or an .h5 file. Optional with --resume."),
    recipe: Optional[str] = typer.Option(None, "--recipe", autocompletion=_complete_recipe, help="Recipe name (see `datagen recipes`) or .toml path; default: the dataset's own."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Total epochs (with --resume: train until this many)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help="Seeds initialisation, data order and noise: same seed, same run on CPU (default 0; with --resume, the run's own)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<dataset>-<time>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.lr=2e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (default runs/latest) from its last checkpoint."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where torchvision datasets are downloaded (default ~/.cache/datagen)."),
    crop: Optional[str] = typer.Option(None, "--crop", metavar="center", help="Square each image by keeping its largest centred square; accepts non-square and mixed-size images. The run records it."),
    pad: bool = typer.Option(False, "--pad", help="Square each image by padding it, centred, with black bars (keeps the whole picture); accepts non-square and mixed-size images. The run records it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe and each net's layer shapes, then exit."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast for the forward passes; default: on for CUDA devices with bf16, never on CPU."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write the losses, fidelity and sample grids as TensorBoard event files in RUN/tensorboard (needs: pip install 'datagen[tensorboard]')."),
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn/--no-sync-bn", help="Under torchrun on CUDA: BatchNorm statistics over the whole global batch (SyncBatchNorm) instead of each process's slice; off by default, a resumed run keeps its own."),
) -> None:
    """Train SelfExGAN (E, G, D1, D2) on a dataset's train split.

    In several processes: torchrun --nproc_per_node N -m datagen train DATASET ... (one process per GPU; gloo on
    CPU). --batch-size stays the batch of all processes together; rank 0 writes the run.
    """
    from datagen.data.conform import square_mode
    from datagen.train import loop as training
    from datagen.train.monitor import grid_paths

    opts = training.TrainOptions(dataset=dataset, recipe=recipe, overrides=set_, epochs=epochs, batch_size=batch_size,
                                 seed=seed, device=device, out=out, resume=resume, data_root=data_root,
                                 square=square_mode(crop, pad),
                                 channels_last=channels_last, compile=compile_, amp=amp, tensorboard=tensorboard,
                                 sync_bn=sync_bn)
    plan = training.prepare(opts)
    main = plan.ranks.is_main  # under torchrun, rank 0 alone reports
    if dry_run:
        if main:
            print(training.dry_run_report(plan))
        return
    if tensorboard and main:
        from datagen.train.tensorboard import viewing_hint

        console.print(viewing_hint(plan.out), highlight=False)
    result = training.fit(plan)
    if result.message and main:
        console.print(result.message, highlight=False)
    if result.status == "failed":
        raise typer.Exit(1)
    if result.status == "interrupted":  # Ctrl-C 130, SIGTERM 143: the checkpoint is saved either way
        raise typer.Exit(128 + result.stopped_by)
    if result.last_epoch:  # rank 0's only
        grids = grid_paths(result.out / "samples", result.last_epoch["epoch"])
        prior = grids["prior"]
        console.print(f"done: {result.epoch} epochs, {result.step} steps -> {result.out}\n"
                      f"reconstructions: {grids['recon']}\n" + (f"samples of the fitted prior: {prior}\n" if prior.is_file() else "")
                      + "final losses: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in result.final_losses.items()), highlight=False)


def recipes_cmd() -> None:
    """List the built-in recipes: image size, channels, latent size and parameters per net."""
    from datagen.model import nets, recipes

    table = Table(title="datagen recipes")
    for col in ("name", "model", "image", "latent", "E", "G", "D1", "D2", "source"):
        table.add_column(col, justify="right" if col in ("E", "G", "D1", "D2", "latent") else "left")
    for name in recipes.builtin_names():
        r = recipes.load(name)
        built = dict(nets.build(r).items())
        count = lambda key: f"{nets.parameter_count(built[key]):,}" if key in built else "-"
        table.add_row(name, r.model, f"{r.image.size}x{r.image.size}x{r.image.channels}", str(r.latent.dim),
                      count("encoder"), count("generator"), count("d1"), count("d2"), r.source)
    stdout().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("recipes")(recipes_cmd)
