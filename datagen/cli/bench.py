"""`datagen bench noise|train|augment|scaling|read|write`: the measurements behind the defaults and the speed claims."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from datagen.cli.common import CHANNELS_LAST_HELP, COMPILE_HELP, parse_scales, stdout
from datagen.common.errors import DatagenError
from datagen.common.files import write_json


def bench_noise_cmd(
    run: Path = typer.Argument(Path("runs/latest"), help="A run directory or a checkpoint file."),
    scales: str = typer.Option("0,0.1,0.2,0.3,0.5,0.7,1.0", "--scales", help="Comma list of noise scales to try."),
    per_class: int = typer.Option(300, "--per-class", min=1, help="Generated images per class and scale."),
    seeds_per_class: int = typer.Option(10, "--seeds-per-class", min=1, help="Labeled seeds per class to grow from."),
    min_confidence: float = typer.Option(0.9, "--min-confidence", min=0.0, max=1.0),
    mix: float = typer.Option(0.0, "--mix", min=0.0, max=1.0, help="augment's --mix: share of candidates blended from two seeds of a class."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every number to this JSON file."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
) -> None:
    """Label agreement (independent reference classifier) and variety of augment's neighbours per noise scale."""
    from datagen.bench.noise import sweep

    result = sweep(run, parse_scales(scales, "--scales"), per_class=per_class, seeds_per_class=seeds_per_class,
                   min_confidence=min_confidence, seed=seed, data_root=data_root, mix=mix)
    table = Table(title=f"augment neighbours vs. the reference classifier ({result.reference_test_accuracy:.1%} on real test images)")
    for col in ("noise", "filter", "agreement", "worst class", "rejected", "distance to seed", "seconds"):
        table.add_column(col, justify="right")
    for r in result.rows:
        if r.agreement is None:
            table.add_row(f"{r.noise:g}", "on", "filter cap hit", "-", "-", "-", f"{r.seconds:.1f}")
            continue
        table.add_row(f"{r.noise:g}", "on" if r.filter else "off", f"{r.agreement:.1%}", f"{min(r.agreement_per_class):.1%}",
                      f"{r.rejection:.1%}", f"{r.distance_to_seed:.3f}", f"{r.seconds:.1f}")
    stdout().print(table)
    _maybe_json(result.to_json(), json_path)


def bench_train_cmd(
    recipe: str = typer.Option("mnist", "--recipe", help="Recipe to time (default: mnist, the thesis' Table 4.1 MNIST nets with the measured settings)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Default: the recipe's."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed training steps, after 3 warm-up steps."),
    device: str = typer.Option("cpu", "--device"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP),
    compile_: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (CUDA only)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Images/s, FLOPs per image and the share of this machine's fp32 matmul peak of SelfExGAN training steps."""
    from datagen.bench.training import bench_train
    from datagen.model import speed
    from datagen.model.device import pick_device

    dev = pick_device(device)
    how = speed.choose(dev, channels_last, compile_, amp)
    bench_report(bench_train(recipe, batch_size, steps, device=dev, how=how), json_path)


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
    from datagen.bench.generation import bench_augment
    from datagen.model import speed
    from datagen.model.device import pick_device

    dev = pick_device(device)
    if run is None and recipe is None:
        run = Path("runs/latest")
    bench_report(bench_augment(run, per_class, device=str(dev), use_filter=filter_, recipe_name=recipe,
                                how=speed.choose(dev, channels_last)), json_path)


def bench_scaling_cmd(
    recipe: str = typer.Option("mnist-cpu", "--recipe"),
    sizes: str = typer.Option("1024,2048,4096", "--sizes", help="Dataset sizes, one training epoch each."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2, help="Default: the recipe's."),
    device: str = typer.Option("cpu", "--device"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Epoch time and peak memory against dataset size: should grow linearly, and stay flat apart from the data."""
    from datagen.bench.training import bench_scaling
    from datagen.model.device import pick_device

    result = bench_scaling(recipe, _whole_numbers(sizes, "--sizes", "1024,2048,4096"), batch_size,
                           str(pick_device(device)))
    out = stdout()
    table = Table(title=f"one epoch of {result['recipe']} (batch {result['batch_size']}), {result['machine']}")
    for col in ("images", "seconds", "ms/image", "time ×", "size ×", "peak RSS MiB", "data MiB"):
        table.add_column(col, justify="right")
    for row in result["epochs"]:
        table.add_row(str(row["images"]), f"{row['seconds']:.1f}", f"{row['seconds_per_image'] * 1e3:.2f}",
                      f"{row['time_ratio']:.2f}", f"{row['size_ratio']:.2f}", f"{row['peak_rss_mb']:,.0f}",
                      f"{row['dataset_mb']:.1f}")
    out.print(table)
    _maybe_json(result, json_path)


def bench_read_cmd(
    path: Path = typer.Argument(..., help="An augment output: an .h5 file, or an ImageFolder or webdataset directory."),
    workers: str = typer.Option("0,2", "--workers", help="DataLoader worker counts to time, e.g. 0,2,4."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Read only this many images per pass (default: all)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Random-access images/s of datagen.SyntheticDataset through a DataLoader, per worker count."""
    from datagen.bench.reading import bench_read

    result = bench_read(path, _whole_numbers(workers, "--workers", "0,2"), batch_size, limit)
    out = stdout()
    table = Table(title=f"shuffled reads of {result['path']} ({result['format']}, {result['dataset_images']} images, "
                        f"batch {result['batch_size']})")
    for col in ("reading", "workers", "images", "images/s", "seconds", "open s"):
        table.add_column(col, justify="right")
    for row in result["rows"]:
        table.add_row(row["way"], str(row["workers"]), str(row["images"]), f"{row['images_per_s']:,.0f}",
                      f"{row['seconds']:.2f}", f"{row['open_seconds']:.2f}")
    out.print(table)
    _maybe_json(result, json_path)


def bench_write_cmd(
    fmt: str = typer.Option("imagefolder", "--format", help="imagefolder | hdf5 | webdataset"),
    per_class: int = typer.Option(5000, "--per-class", min=1, help="Images per class, 10 classes of 32x32 grey."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """How an output format's write time grows with its size: the writer alone, random images, no G."""
    from datagen.bench.writing import bench_write

    result = bench_write(fmt, per_class)
    out = stdout()
    table = Table(title=f"writing {result['images']:,} images as {fmt}: {result['images_per_s']:,.0f} images/s, "
                        f"finish {result['finish_seconds']:.1f} s")
    for col in ("images written", "seconds so far", "seconds for the last ones"):
        table.add_column(col, justify="right")
    for mark in result["marks"]:
        table.add_row(f"{mark['images']:,}", f"{mark['seconds']:.1f}", f"{mark['since_last']:.2f}")
    out.print(table)
    _maybe_json(result, json_path)


def _whole_numbers(text: str, option: str, example: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DatagenError(f"{option} {text}: give whole numbers, e.g. {option} {example}") from None


def _maybe_json(result: dict, json_path: Optional[Path]) -> None:
    if json_path is not None:
        write_json(json_path, result)
        stdout().print(f"wrote {json_path}", markup=False, highlight=False)


def bench_report(numbers: dict, json_path: Optional[Path]) -> None:
    out = stdout()
    for key, value in numbers.items():
        out.print(f"{key}: {value:,.4g}" if isinstance(value, float) else f"{key}: {value}", markup=False, highlight=False)
    _maybe_json(numbers, json_path)


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(no_args_is_help=True, help="Measurements that back datagen's defaults and speed claims.")
    app.add_typer(bench_app, name="bench")
    bench_app.command("noise")(bench_noise_cmd)
    bench_app.command("train")(bench_train_cmd)
    bench_app.command("augment")(bench_augment_cmd)
    bench_app.command("scaling")(bench_scaling_cmd)
    bench_app.command("read")(bench_read_cmd)
    bench_app.command("write")(bench_write_cmd)
