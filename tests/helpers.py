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


def judge_every_tenth(monkeypatch) -> None:
    """Replace augment's filter with a judge that labels the i-th candidate it sees class i mod 10: per class it
    accepts one candidate in ten, so a filtered augment runs through at a known 90% rejection (a 1-epoch tiny G
    gives a real filter nothing to accept)."""
    import torch

    from datagen.generate import augment as augment_module

    judged = [0]

    def judge(net, x):
        classes = (judged[0] + torch.arange(len(x))) % 10
        judged[0] += len(x)
        return torch.nn.functional.one_hot(classes, 10).float()

    monkeypatch.setattr(augment_module, "probabilities", judge)


def augment_in_background(run: Path, out: Path, cwd: Path, started_bytes: int):
    """`datagen augment` (3,000 per class, batches of 16) in its own process, returned once `out` holds
    `started_bytes`; and its arguments, for the `--resume` that completes it."""
    import subprocess
    import sys
    import time

    args = ["augment", str(run), "--per-class", "3000", "--batch-size", "16", "--seeds-per-class", "5", "--no-filter",
            "--exclude-unlabeled", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "datagen.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or out.stat().st_size < started_bytes):
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    return proc, args
