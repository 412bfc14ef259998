"""Shared helpers: run the real `datagen` command in a subprocess (exit codes, stderr, no traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    """cli(*args) runs datagen in tmp_path and returns the completed process."""
    return lambda *args, **kw: run_cli(*args, cwd=tmp_path, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One 1-epoch tiny8 SelfExGAN run on the bundled digits, shared by every test that only reads it."""
    from datagen import train as training

    out = tmp_path_factory.mktemp("tiny") / "run"
    training.fit(training.prepare(training.TrainOptions(dataset="digits", recipe="tiny8", epochs=1, out=out, progress=False)))
    return out
