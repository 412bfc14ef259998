"""What every command shares: option help texts, number lists, and how output and errors are printed."""

from __future__ import annotations

import sys

from rich.console import Console

from datagen.common.console import console
from datagen.common.errors import DatagenError

CHANNELS_LAST_HELP = "NHWC layout for the nets (faster convolutions); default: on for CPU, where it measured faster (README, Performance)."
COMPILE_HELP = "torch.compile the nets (falls back to eager where unavailable); off by default: it measured slower on CPU (README, Performance)."


def parse_scales(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DatagenError(f"{option} {text}: give a number or a comma list such as 0.2,0.5") from None


def stdout() -> Console:
    """A command's own output: stdout, and wide enough to read when piped."""
    return Console(width=None if sys.stdout.isatty() else 160)


def one_line(prefix: str, message: str) -> None:
    """Print `prefix message` as exactly one line on stderr; the message is never read as markup."""
    first = " ".join(str(message).split()) or "(no message)"
    console.print(f"{prefix} {first}", markup=False, highlight=False, soft_wrap=True)
