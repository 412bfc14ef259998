"""Where progress and messages go: a rich console on stderr and the progress bar every long command shows."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


# Progress and messages go to stderr so stdout stays clean for machine-readable output.
console = Console(stderr=True, soft_wrap=True)


def progress() -> Progress:
    """The training/generation bar: description, bar, counts, free-form fields, elapsed, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
