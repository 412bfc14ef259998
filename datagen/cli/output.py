"""`datagen augment` (grow labeled seeds into a dataset) and `datagen inspect` (verify one)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from datagen.cli.common import CHANNELS_LAST_HELP, COMPILE_HELP, one_line, parse_scales, stdout
from datagen.common.console import console
from datagen.generate import defaults as augment_defaults


def augment_cmd(
    run: Path = typer.Argument(Path("runs/latest"), help="A run directory (its best checkpoint) or a checkpoint file."),
    per_class: int = typer.Option(..., "--per-class", help="Generated images per class."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Labeled images to grow from (name or path, as in train); default: the run's own train split."),
    crop: Optional[str] = typer.Option(None, "--crop", metavar="center", help="Square each seed image by keeping its largest centred square (as train --crop center); default: as the run was trained."),
    pad: bool = typer.Option(False, "--pad", help="Square each seed image by padding it with black bars (as train --pad); default: as the run was trained."),
    seeds_per_class: Optional[int] = typer.Option(None, "--seeds-per-class", help="Use only K seeds per class (a fixed subset for --seed)."),
    noise: str = typer.Option(",".join(map(str, augment_defaults.NOISE)), "--noise", help="Latent noise scale, or a comma list of scales to mix (default chosen on dev, see README)."),
    mix: float = typer.Option(augment_defaults.MIX, "--mix", help="Share of candidates that start from a blend of two seeds of their class (0..1)."),
    unlabeled: Optional[bool] = typer.Option(None, "--unlabeled/--seeds-only", help="Also grow from the seeds' dataset's other (unlabeled) images, labelled from the seeds by label spreading on E's codes (default: when there are any)."),
    min_label_confidence: float = typer.Option(augment_defaults.MIN_LABEL_CONFIDENCE, "--min-label-confidence", min=0.0, max=1.0, help="Leave out unlabeled images whose spread label is less sure than this."),
    filter_: Optional[bool] = typer.Option(augment_defaults.FILTER, "--filter/--no-filter", help="Keep a neighbour only if a classifier trained on the seeds agrees with its label (default: on with at least 10 seeds per class, where it was measured to help)."),
    min_confidence: float = typer.Option(0.9, "--min-confidence"),
    fmt: str = typer.Option("hdf5", "--format", help="hdf5 | imagefolder | webdataset (tar shards of PNG + .cls + .json)"),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1, help="--format webdataset: images per tar shard (default 10000)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file or folder (default: inside the run directory)."),
    include_seeds: bool = typer.Option(False, "--include-seeds", help="Also write the real seeds, marked as real."),
    include_unlabeled: Optional[bool] = typer.Option(augment_defaults.INCLUDE_UNLABELED, "--include-unlabeled/--exclude-unlabeled", help="Also write the unlabeled images that joined a class, marked as real, with their spread label and its confidence (default: whenever augment grows from unlabeled images; chosen on dev, see README)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted output to exactly N per class."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="i/n", help="Write shard i of n (0 <= i < n): its share of every class, to its own file beside --out; the last shard to finish writes --out, an index reading them as one output (default under torchrun: RANK/WORLD_SIZE)."),
) -> None:
    """Grow labeled seeds into many more labeled images: latent neighbours through G."""
    from datagen.data.conform import square_mode
    from datagen.generate.augment import AugmentOptions, augment
    from datagen.store.shards import from_environment

    if shard is None and from_environment() is not None:  # a torchrun rank: its own shard
        shard = str(from_environment())

    result = augment(AugmentOptions(run=run, per_class=per_class, seeds=seeds, square=square_mode(crop, pad),
                                    seeds_per_class=seeds_per_class,
                                    noise=parse_scales(noise, "--noise"), mix=mix, unlabeled=unlabeled,
                                    min_label_confidence=min_label_confidence,
                                    filter=filter_, min_confidence=min_confidence, fmt=fmt, shard_size=shard_size, out=out, include_seeds=include_seeds,
                                    include_unlabeled=include_unlabeled,
                                    resume=resume, overwrite=overwrite, seed=seed, batch_size=batch_size, device=device,
                                    data_root=data_root, channels_last=channels_last, compile=compile_, shard=shard))
    rates = ", ".join(f"{r:.0%}" for r in result.rejection)
    generated = [count - real for count, real in zip(result.counts, result.real)]
    kinds = {"seeds": "the seeds", "unlabeled": "the unlabeled images with their spread labels (--exclude-unlabeled: without)"}
    real_rows = (f"\nand {sum(result.real)} real images, marked `real`: {' and '.join(kinds[k] for k in result.real_kinds)}"
                 if sum(result.real) else "")
    console.print(f"wrote {sum(generated)} generated images ({', '.join(map(str, generated))} per class) -> {result.path}"
                  f"{real_rows}\n"
                  f"filter rejection per class: {rates}\npreviews: {result.previews[0].parent if result.previews else '-'}",
                  highlight=False, markup=False)
    if result.shard is not None:
        console.print(f"every shard is finished: index -> {result.index}" if result.index is not None else
                      f"shard {result.shard} is finished; the index is written when the last shard finishes",
                      highlight=False, markup=False)


def inspect_cmd(path: Path = typer.Argument(..., help="An .h5 file (an output, or the index of a sharded one), or an ImageFolder or webdataset directory, written by datagen.")) -> None:
    """Summarise a generated dataset and verify it: exit 1 if it is incomplete or damaged."""
    from datagen.store.inspect import inspect

    summary = inspect(path)
    table = Table(title=escape(f"{summary.path} ({summary.format})"))
    for col in ("class", "images", "of which real"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, count, real in zip(summary.class_names, summary.counts, summary.real_counts):
        table.add_row(escape(name), str(count), str(real))
    table.add_row("[bold]total", f"[bold]{sum(summary.counts)}", f"[bold]{sum(summary.real_counts)}")
    out = stdout()
    out.print(table)
    h, w, c = summary.image_shape
    out.print(f"images {h}x{w}x{c}, complete: {summary.complete}")
    for key, value in summary.provenance.items():
        if isinstance(value, list) and len(value) > 12:  # e.g. 4,000 seed indices: a count and the ends
            value = f"{len(value)} values: {', '.join(map(str, value[:5]))}, …, {', '.join(map(str, value[-3:]))}"
        out.print(f"  {key}: {value}", markup=False, highlight=False)
    if summary.problems:
        for problem in summary.problems:
            one_line("problem:", problem)
        raise typer.Exit(1)
    out.print("verified: no problems found")


def register(app: typer.Typer) -> None:
    app.command("augment")(augment_cmd)
    app.command("inspect")(inspect_cmd)
