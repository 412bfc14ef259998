"""Shared fixtures: the CLI in-process (and, for smoke tests, as a real process), tiny runs, no network."""

import os
import shutil
import socket
import subprocess
import sys

# One torch thread, here and in every subprocess a test starts (they inherit it): on 2 cores, two threads
# per process stall badly whenever anything else runs, and the kill/resume tests compare losses computed in
# a subprocess with losses computed in-process, so both sides must use the same thread count.
os.environ["OMP_NUM_THREADS"] = "1"
from dataclasses import dataclass
from pathlib import Path

import pytest

DATAGEN = Path(sys.executable).with_name("datagen")  # the installed console script


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed `datagen` script in its own process: what a user's shell runs."""
    return subprocess.run([str(DATAGEN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def real_cli(tmp_path):
    """real_cli(*args) runs the `datagen` script as a subprocess in tmp_path: keep to one smoke test per command."""
    return lambda *args, **kw: run_cli(*args, cwd=tmp_path, **kw)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """cli(*args) runs datagen's real entry point in this process, in tmp_path: its exit code, stdout and stderr."""
    from datagen.cli.main import main

    def invoke(*args: str, **_: object) -> Done:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["datagen", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return invoke


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: any connection attempt fails as it would offline. Unix sockets stay: they
    are how DataLoader workers hand tensors back to the main process."""
    local_connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise OSError("network disabled in datagen's tests")

    def connect(sock, address, *args, **kwargs):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return local_connect(sock, address, *args, **kwargs)
        return refuse()
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One 1-epoch tiny8 SelfExGAN run on the bundled digits, shared read-only: tests get copies (`run`).

    It is checked after the session: a test that wrote into it would make results depend on test order.
    """
    from datagen.train import loop as training

    out = tmp_path_factory.mktemp("tiny") / "run"
    training.fit(training.prepare(training.TrainOptions(dataset="digits", recipe="tiny8", epochs=1, out=out, progress=False)))
    before = _listing(out)
    yield out
    assert _listing(out) == before, "a test wrote into the shared tiny_run: use the `run` fixture (a copy)"


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the shared tiny run, free to write reference.pt, filters/ and figures into."""
    return Path(shutil.copytree(tiny_run, tmp_path / "tiny-run", symlinks=True))


@pytest.fixture(scope="session")
def tiny_reference(tiny_run, tmp_path_factory):
    """A copy of tiny_run with its reference classifier fitted (reference.pt: the slow part of bench noise and of
    evaluate's quality numbers), fitted once and shared read-only like tiny_run: tests copy it before writing."""
    from datagen.classify import reference
    from datagen.data.sources import load

    out = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("tiny-reference") / "run", symlinks=True))
    train, test = (load("digits", split, size=8, channels=1) for split in ("train", "test"))
    reference.load_or_fit(out, train, lambda: test)
    before = _listing(out)
    yield out
    assert _listing(out) == before, "a test wrote into the shared tiny_reference: copy it first"
