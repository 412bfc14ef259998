"""The run directory: its files, its status, the metrics log, and the `runs/latest` pointer."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from datagen.common.console import console
from datagen.common.errors import DatagenError
from datagen.common.files import is_temporary, safe_name, write_failed, write_json, write_text


RUNS_ROOT = Path("runs")


# How the checkpoint of a run directory is chosen. Not by label fidelity: that needs every train label, which a
# user with a few labels per class does not have (label fidelity stays a per-epoch diagnostic in metrics.jsonl).
CHOSEN_BY = "the last epoch's checkpoint (checkpoints/last.pt): chosen without any label"


def checkpoint_of(run: Path) -> Path:
    """The checkpoint a command uses for RUN: a run directory's last.pt, or RUN itself if it is a file."""
    return run / "checkpoints" / "last.pt" if run.is_dir() else run


def chosen_by(run: Path) -> str:
    """One sentence saying how `checkpoint_of(run)` was chosen (recorded by evaluate)."""
    return CHOSEN_BY if run.is_dir() else "the checkpoint file given on the command line"


def folder_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (or the folder holding a loose checkpoint file)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def default_dir(dataset: str, root: Path = RUNS_ROOT) -> Path:
    stem = safe_name(Path(dataset).stem if Path(dataset).suffix in (".h5", ".hdf5") else dataset)
    base = root / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# What a run writes before its first checkpoint: a run killed then (kill -9, a full disk) leaves only these
_BEFORE_FIRST_CHECKPOINT = {"run.json", "recipe.json", "dataset.json", "metrics.jsonl", "monitor.pt", "samples",
                            "checkpoints", "tensorboard"}


def check_new(path: Path, clear_unsaved: bool = False) -> None:
    """A new run may go into a missing or empty directory, or over a run that died before its first checkpoint
    (nothing to resume there); `clear_unsaved`, under the run's lock, removes that run's files first."""
    if path.exists() and not path.is_dir():
        raise DatagenError(f"--out {path} is a file; give a directory for the run")
    if (path / "checkpoints" / "last.pt").exists():
        raise DatagenError(f"{path} already holds a run: add --resume to continue it, or choose another --out")
    if path.is_dir() and any(path.iterdir()):
        entries = [entry for entry in path.iterdir() if not is_temporary(entry.name)]
        names = {entry.name for entry in entries}
        if "run.json" not in names or not names <= _BEFORE_FIRST_CHECKPOINT or _status(path) == "completed":
            raise DatagenError(f"{path} is not empty: choose a new or empty directory for --out")
        if clear_unsaved:
            console.print(f"{path} holds a run that stopped before its first checkpoint: starting it again",
                          markup=False, highlight=False)
            for entry in path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def _status(run: Path) -> str | None:
    """run.json's status (None if unreadable)."""
    try:
        return json.loads((run / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def ensure_writable(folder: Path, what: str, fix: str) -> None:
    """Create `folder` and prove a file can be written there, or fail with one line naming `fix`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise DatagenError(f"cannot write {what} {folder} ({exc.strerror}); {fix}") from None


def create(path: Path) -> None:
    ensure_writable(path, "the run directory", "choose a writable --out")
    (path / "checkpoints").mkdir(exist_ok=True)  # in a folder just proven writable


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise DatagenError(f"cannot read {path}; is this a datagen run directory?") from None


def set_status(run: Path, status: str, **extra: Any) -> None:
    info = read_json(run / "run.json") if (run / "run.json").exists() else {}
    info.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    write_json(run / "run.json", info)


def point_latest(run: Path, root: Path = RUNS_ROOT) -> None:
    """Make root/latest point at `run` when the run lives in root (the default place for runs)."""
    try:
        if run.resolve().parent != root.resolve():
            return
        link = root / "latest"
        tmp = root / f".latest.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        pass  # a filesystem without symlinks: runs are still found by path


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step, flushed as written."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = path
        if keep_until_step is not None and path.exists():
            # Lines logged after the checkpoint we resume from would be logged again: drop them,
            # and a line cut short by a crash (kill -9, full disk) with them.
            kept = [r for r in _parse_lines(path.read_text()) if r.get("step", 0) <= keep_until_step]
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        try:
            self._fh = path.open("a")
        except OSError as error:
            raise write_failed(path, error) from None

    def write(self, record: dict[str, Any]) -> None:
        try:  # a line cut short by a full disk is dropped on resume (keep_until_step)
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as error:
            raise write_failed(self.path, error) from None

    def close(self) -> None:
        self._fh.close()


def _parse_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # blank, or cut short by a crash
    return records


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return _parse_lines(path.read_text())
