"""`datagen train --tensorboard`: mirror the run's metrics.jsonl and sample grids into TensorBoard event files.

metrics.jsonl stays the run's record; RUN/tensorboard/ is a view of it for TensorBoard. Every record written to
metrics.jsonl becomes scalars under the same names on the same step axis (per-step losses and img_per_s; per-epoch
fidelity, recon_error and epoch_seconds), and each epoch's grids from RUN/samples/ become images.

The `tensorboard` package is optional (pip install 'datagen[tensorboard]'); it is imported only here and only when
the flag is given, so a run without the flag neither needs it nor pays for it.
"""

from __future__ import annotations

import importlib
import numbers
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.train.monitor import grid_paths
from datagen.train.rundir import MetricsLog


FOLDER = "tensorboard"  # inside the run directory, beside metrics.jsonl
AXES = ("epoch", "step")  # where a record sits, not something measured
FLUSH_SECS = 10  # how stale a live TensorBoard view may get between checkpoints (SummaryWriter's default: 120)


def require() -> None:
    """Fail with the fix when the optional tensorboard package is missing, before a run writes anything."""
    try:
        importlib.import_module("torch.utils.tensorboard")  # which imports the tensorboard package
    except ImportError:
        raise DatagenError("--tensorboard needs the tensorboard package: pip install 'datagen[tensorboard]' "
                           "(or pip install tensorboard), or leave out --tensorboard") from None


def folder(run: Path) -> Path:
    return run / FOLDER


def viewing_hint(run: Path) -> str:
    """The one line telling the user where to point TensorBoard."""
    return f"watch it in TensorBoard: tensorboard --logdir {shlex.quote(str(folder(run)))}"


class MetricsAndTensorBoard(MetricsLog):
    """metrics.jsonl, each record mirrored into RUN/tensorboard/; an epoch's record brings its grids along.

    On resume, MetricsLog drops the lines logged after the checkpoint; `purge_step` makes TensorBoard hide the
    events after it the same way, so a step trained again is not shown twice. Events are flushed with every
    epoch's record, i.e. right before each checkpoint: a run killed later (SIGTERM, kill -9, a second Ctrl-C)
    loses only steps that resuming trains again; a run that stops on its own (end, Ctrl-C, NaN) closes the log.
    """

    def __init__(self, path: Path, keep_until_step: int | None = None):
        require()
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(path, keep_until_step)
        self._samples = path.parent / "samples"
        try:
            self._writer = SummaryWriter(log_dir=str(folder(path.parent)), flush_secs=FLUSH_SECS,
                                         purge_step=None if keep_until_step is None else keep_until_step + 1)
        except BaseException:
            super().close()  # metrics.jsonl is open already
            raise

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        step = record["step"]
        for name, value in record.items():
            if name not in AXES and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._writer.add_scalar(name, value, step)
        if record.get("event") == "epoch":
            for kind, png in grid_paths(self._samples, record["epoch"]).items():
                if not png.is_file():  # no prior grid where the recipe fits no prior
                    continue
                with Image.open(png) as grid:  # Monitor.measure has just drawn it
                    pixels = np.asarray(grid.convert("RGB"))
                self._writer.add_image(f"samples/{kind}", pixels, step, dataformats="HWC")
            self._writer.flush()

    def close(self) -> None:
        super().close()
        self._writer.close()
