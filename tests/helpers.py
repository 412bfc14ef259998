"""Builders the tests share (importable as `helpers`: pytest puts tests/ on sys.path)."""

from pathlib import Path

import numpy as np
from PIL import Image


def png_folder(root: Path, classes: dict[str, int], shape: tuple[int, ...] = (8, 8), seed: int = 0) -> Path:
    """An ImageFolder tree: root/<class>/<i>.png, `classes[name]` random images of `shape` (H×W grey or H×W×C)."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root
