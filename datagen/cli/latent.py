"""`datagen reconstruct|sample|chain|similarity|explore|embed|interpolate`: the latent-space commands (thesis §4.1.3, §4.2): reconstruct, sample, chain, similarity, explore, embed, interpolate.

Each writes one PNG, prints its path on stdout (nothing else goes there) and its numbers on stderr; the
work is in datagen.tools. Commands that take IMAGEs accept an optional RUN before them: the first
argument is RUN when it is a directory or a checkpoint file (.pt), or when there is one argument too many.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from datagen.cli.common import parse_scales
from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.train.rundir import RUNS_ROOT

LATEST = RUNS_ROOT / "latest"
IMAGE_HELP = "an image file, or DATASET:INDEX for image INDEX of a dataset's test split (e.g. mnist-5k:17)"
_RUN_HELP = "A run directory (its best checkpoint) or a checkpoint file; default runs/latest."
_OUT_HELP = "Where to write the PNG (a .png path or a folder); default RUN/figures/."
_RUN_SUFFIXES = (".pt", ".pth", ".ckpt")


def _looks_like_run(arg: str) -> bool:
    path = Path(arg).expanduser()
    return path.is_dir() or path.suffix.lower() in _RUN_SUFFIXES


def split_run(args: list[str], least: int, most: int | None, usage: str) -> tuple[Path, list[str]]:
    """([RUN] IMAGE ...) -> (RUN, IMAGEs): images are never folders or checkpoints, so the first argument is RUN
    when it is one of those, or when there are more arguments than images allowed."""
    has_run = bool(args) and (_looks_like_run(args[0]) or (most is not None and len(args) > most))
    run, images = (Path(args[0]), args[1:]) if has_run else (LATEST, list(args))
    if len(images) < least or (most is not None and len(images) > most):
        raise DatagenError(f"usage: datagen {usage}; IMAGE is {IMAGE_HELP}")
    return run, images


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _done(path: Path) -> None:
    print(path, flush=True)  # stdout carries only the path: scripts can use it


def register(app: typer.Typer) -> None:
    """Add the seven latent-space commands to the datagen app."""

    @app.command("reconstruct")
    def reconstruct_cmd(
        run: Path = typer.Argument(LATEST, help=_RUN_HELP),
        images: Optional[list[str]] = typer.Option(None, "--images", help=f"A dataset (random --n of its test split) or one or more IMAGEs (repeat --images); IMAGE is {IMAGE_HELP}. Default: the run's own test split."),
        n: int = typer.Option(64, "--n", min=1, help="Images drawn from a dataset."),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Which images are drawn."),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """Real images, each row followed by their reconstructions G(E(x)), with per-image errors (Figs. 4.xb)."""
        from datagen.tools.figures import reconstruct

        result = reconstruct(run, images=images, n=n, seed=seed, out=out, device=device)
        _say("reconstruction error (mean absolute, 0-1 scale), laid out as the picture's rows:")
        for i in range(0, len(result.errors), 8):
            _say("  " + " ".join(f"{e:.3f}" for e in result.errors[i:i + 8]))
        worst = max(range(len(result.errors)), key=result.errors.__getitem__)
        _say(f"mean {result.mean_error:.3f}; worst {result.errors[worst]:.3f} ({result.sources[worst]})")
        _done(result.path)

    @app.command("sample")
    def sample_cmd(
        run: Path = typer.Argument(LATEST, help=_RUN_HELP),
        n: int = typer.Option(64, "--n", min=1),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """G(z) for z from the run's prior: the mixture fitted to its codes, or N(0, I) (Figs. 4.xc)."""
        from datagen.tools.figures import sample

        _done(sample(run, n=n, seed=seed, out=out, device=device).path)

    @app.command("chain")
    def chain_cmd(
        args: list[str] = typer.Argument(..., metavar="[RUN] IMAGE...", help=f"Optional RUN, then one or more IMAGEs: {IMAGE_HELP}."),
        steps: int = typer.Option(16, "--steps", min=1, help="Times to feed G(E(.)) its own output."),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """Iterative feeding x -> G(E(x)) -> G(E(G(E(x)))) ... (Fig. 4.8), one row per starting image."""
        from datagen.tools.figures import chain

        run, images = split_run(args, 1, None, "chain [RUN] IMAGE... [--steps 16]")
        result = chain(run, images=images, steps=steps, out=out, device=device)
        for source, distance in zip(result.sources, result.distance):
            _say(f"{source}: distance to the start (mean absolute, 0-1 scale) after 1 step {distance[0]:.3f}, "
                 f"after {steps} {distance[-1]:.3f}")
        _done(result.path)

    @app.command("similarity")
    def similarity_cmd(
        args: list[str] = typer.Argument(..., metavar="[RUN] IMAGE_A IMAGE_B", help=f"Optional RUN, then two IMAGEs: {IMAGE_HELP}."),
        neighbours: int = typer.Option(8, "--neighbours", min=1, help="Generated neighbours per image."),
        noise: Optional[float] = typer.Option(None, "--noise", min=0.0, help="Noise scale of the neighbours (default: augment's, 0.5)."),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """How alike two images are to the model, from their codes and generated neighbourhoods (Fig. 4.11)."""
        from datagen.generate.neighbours import DEFAULT_NOISE
        from datagen.tools.similarity import similarity

        run, (a, b) = split_run(args, 2, 2, "similarity [RUN] IMAGE_A IMAGE_B [--neighbours 8 --noise 0.5]")
        result = similarity(run, image_a=a, image_b=b, neighbours=neighbours,
                            noise=DEFAULT_NOISE if noise is None else noise, seed=seed, out=out, device=device)
        _say(f"similarity score {result.score:.3f} (1 = the two neighbourhoods are as alike as each is to itself); "
             f"cosine of the codes alone {result.code_cosine:.3f}")
        _done(result.path)

    @app.command("explore")
    def explore_cmd(
        args: list[str] = typer.Argument(..., metavar="[RUN] IMAGE", help=f"Optional RUN, then one IMAGE: {IMAGE_HELP}."),
        scales: str = typer.Option("0.1,0.3,1.0", "--scales", help="Comma list of noise scales, one row each."),
        n: int = typer.Option(8, "--n", min=1, help="Neighbours per scale."),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """Neighbours of one design at several noise scales (Fig. 4.12), the same directions on every row."""
        from datagen.tools.figures import explore

        run, (image,) = split_run(args, 1, 1, "explore [RUN] IMAGE [--scales 0.1,0.3,1.0] [--n 8]")
        result = explore(run, image=image, scales=parse_scales(scales, "--scales"), n=n, seed=seed, out=out, device=device)
        _say("distance to the design (mean absolute, 0-1 scale): "
             + ", ".join(f"σ {s:g}: {d:.3f}" for s, d in zip(result.scales, result.distance)))
        _done(result.path)

    @app.command("embed")
    def embed_cmd(
        run: Path = typer.Argument(LATEST, help=_RUN_HELP),
        dataset: Optional[str] = typer.Option(None, "--dataset", help="Whose test split to map (default: the run's own)."),
        method: str = typer.Option("tsne", "--method", help="tsne | pca"),
        n: int = typer.Option(2000, "--n", min=3, help="Test images on the map, at most."),
        k: int = typer.Option(5, "--k", min=1, help="Neighbours of the k-NN accuracy."),
        seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """2-D map of E's codes coloured by label (Fig. 4.9), and how well classes separate (k-NN accuracy)."""
        from datagen.tools.embed import embed

        result = embed(run, dataset=dataset, method=method, n=n, k=k, seed=seed, out=out, device=device)
        if result.knn_accuracy is None:
            _say(f"{result.source} has one class: no k-NN accuracy")
        else:
            _say(f"{result.k}-NN accuracy on E's codes: {result.knn_accuracy:.1%} (fitted on {result.train_images} train, "
                 f"scored on {result.test_images} test images); on raw pixels {result.pixel_knn_accuracy:.1%}; "
                 f"chance {result.chance:.1%}")
        _done(result.path)

    @app.command("interpolate")
    def interpolate_cmd(
        args: list[str] = typer.Argument(..., metavar="[RUN] IMAGE_A IMAGE_B", help=f"Optional RUN, then two IMAGEs: {IMAGE_HELP}."),
        steps: int = typer.Option(8, "--steps", min=2, help="Points along the arc, both ends included."),
        out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
        device: str = typer.Option("auto", "--device"),
    ) -> None:
        """x_a, G along the sphere's great circle from E(x_a) to E(x_b) (slerp), then x_b."""
        from datagen.tools.figures import interpolate

        run, (a, b) = split_run(args, 2, 2, "interpolate [RUN] IMAGE_A IMAGE_B [--steps 8]")
        result = interpolate(run, image_a=a, image_b=b, steps=steps, out=out, device=device)
        _say(f"angle between the codes: {result.angle_degrees:.1f}°")
        _done(result.path)
