"""Matplotlib figures for files only (never a window), saved atomically; matplotlib loads only when one is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datagen.common.files import atomic_path


def subplots(**options: Any) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(**options)


def save(fig: Any, path: Path) -> Path:
    """Write the figure to `path` (format from its suffix) whole or not at all, and free it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path
