"""`datagen train`: a complete run, exact resume (after a clean stop and kill -9; Ctrl-C and SIGTERM in
test_faults_signals.py), NaN, dry run, bad input."""

import json
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import png_folder
from PIL import Image

from datagen.common.errors import DatagenError
from datagen.data.sources import load
from datagen.model import checkpoint, speed
from datagen.model.checkpoint import load_model
from datagen.train import loop as training, rundir

TINY = ["train", "digits", "--recipe", "tiny8"]
STEPS_PER_EPOCH = 1302 // 32  # digits' train split: 1302 images (1442 less 140 dev); tiny8's batch: 32


def _opts(out: Path, **kw) -> training.TrainOptions:
    base = dict(dataset="digits", recipe="tiny8", overrides=["train.log_every=1"], epochs=2, out=out, progress=False)
    base.update(kw)
    return training.TrainOptions(**base)


def _steps(run: Path) -> list[dict]:
    """Per-step records without the timing field, which differs run to run."""
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in rundir.read_metrics(run / "metrics.jsonl") if "event" not in r]


class Uninterrupted:
    """Runs trained straight through, every step logged: what each resumed run must reproduce, step for step.

    Trained once per module (3 epochs; longer only if a test needs more). The steps of an uninterrupted
    N-epoch run are the first N epochs of a longer one: --epochs only says where to stop.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.out: Path | None = None
        self.epochs = 0

    def run(self, epochs: int = 3) -> Path:
        """The run directory (read only: copy it to write), trained now if no run so far has `epochs`."""
        if self.epochs < epochs:
            self.epochs = max(epochs, 3)
            self.out = self.folder / f"straight-{self.epochs}"
            assert training.fit(training.prepare(_opts(self.out, epochs=self.epochs))).status == "completed"
        return self.out

    def steps(self, epochs: int) -> list[dict]:
        return [r for r in _steps(self.run(epochs)) if r["epoch"] <= epochs]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return Uninterrupted(tmp_path_factory.mktemp("uninterrupted"))


def test_a_run_writes_everything_a_user_looks_at(cli, tmp_path):
    done = cli(*TINY, "--epochs", "2", "--out", "runs/first")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "first"
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    records = rundir.read_metrics(run / "metrics.jsonl")
    assert all({"epoch", "step"} <= set(r) for r in records)
    epochs = [r for r in records if r.get("event") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["fidelity"] <= 1 and r["recon_error"] > 0 for r in epochs)
    for epoch in (1, 2):
        for kind in ("recon", "gauss"):
            with Image.open(run / "samples" / f"epoch-{epoch:03d}-{kind}.png") as im:
                assert im.size[0] > 8 * 8
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["recipe"]["name"] == "tiny8"
    # what evaluate's leak check reads: the exact training images, by fingerprint and by content hash
    train = load("digits", "train", size=8, channels=1)
    assert state["dataset"]["fingerprint"] == train.fingerprint()
    assert torch.equal(state["dataset"]["image_hashes"], train.image_hashes())
    assert not (run / "checkpoints" / "best.pt").exists()  # no checkpoint is chosen by labels
    assert not list(run.rglob("*.tmp"))
    assert "reconstructions:" in done.stderr and "Traceback" not in done.stderr


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, uninterrupted):
    first = training.fit(training.prepare(_opts(tmp_path / "split", epochs=1)))
    assert first.epoch == 1
    resumed = training.fit(training.prepare(_opts(tmp_path / "split", dataset=None, recipe=None, resume=True)))
    assert resumed.status == "completed" and resumed.epoch == 2
    a, b = uninterrupted.steps(2), _steps(tmp_path / "split")
    assert len(a) == len(b) == 2 * STEPS_PER_EPOCH
    assert a == b  # every step's losses, including all of epoch 2, identical


def test_already_trained_says_so(tmp_path, uninterrupted):
    run = shutil.copytree(uninterrupted.run(), tmp_path / "r")
    again = training.fit(training.prepare(_opts(run, dataset=None, recipe=None, epochs=3, resume=True)))
    assert again.status == "completed" and "already trained 3 epochs" in again.message


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = training.train_step
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        logs = real_step(*args, **kw)
        return {**logs, "eg_loss": float("nan")} if calls["n"] > STEPS_PER_EPOCH + 5 else logs

    monkeypatch.setattr(training, "train_step", flaky)
    result = training.fit(training.prepare(_opts(tmp_path / "r", epochs=3)))
    assert result.status == "failed" and "NaN" in result.message and "lower learning rate" in result.message
    assert checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")["epoch"] == 1  # epoch 1 was good
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


def _train_in_background(cwd: Path) -> subprocess.Popen:
    """`datagen train` on digits in its own process, every step logged, for far longer than any test waits."""
    args = [sys.executable, "-m", "datagen.cli", *TINY, "--set", "train.log_every=1", "--out", "r", "--epochs", "400"]
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, metrics: Path, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and ready(rundir.read_metrics(metrics)):
            return
        time.sleep(0.02)
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"training never got there (exit {proc.returncode}): {err[-2000:]}")


@pytest.mark.slow
def test_kill_9_then_resume_continues_exactly(tmp_path, uninterrupted):
    """SIGKILL mid-epoch, after a checkpoint was written: the checkpoint is whole, the steps logged after it are
    dropped, and the resumed run's losses are the uninterrupted run's."""
    proc = _train_in_background(tmp_path)
    metrics = tmp_path / "r" / "metrics.jsonl"
    # epoch 1's checkpoint is saved before the first step of epoch 2 is logged; kill once a few are
    _wait_for(proc, metrics, lambda records: sum(r["epoch"] >= 2 and "event" not in r for r in records) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "running"  # it never got to say
    state = checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["epoch"] >= 1
    logged = rundir.read_metrics(metrics)
    assert max(r["step"] for r in logged) > state["step"]  # steps after the checkpoint were logged, then lost
    target = state["epoch"] + 1
    resumed = training.fit(training.prepare(_opts(tmp_path / "r", dataset=None, recipe=None, resume=True, epochs=target)))
    assert resumed.status == "completed" and resumed.epoch == target
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "completed"
    a, b = _steps(tmp_path / "r"), uninterrupted.steps(target)
    assert a == b and len(a) == target * STEPS_PER_EPOCH  # no step twice, none missing, every loss the same


def test_dry_run_prints_shapes_and_writes_nothing(cli, tmp_path):
    done = cli("train", "mnist-5k", "--dry-run", "--out", "x")
    assert done.returncode == 0
    assert '"name": "mnist-cpu"' in done.stdout and "(1, 32, 32)" in done.stdout and "parameters" in done.stdout
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_imagefolder_with_an_explicit_recipe(cli, tmp_path):
    png_folder(tmp_path / "folder", {"ring": 40, "bar": 40}, shape=(12, 12))
    done = cli("train", str(tmp_path / "folder"), "--recipe", "tiny8", "--batch-size", "16", "--epochs", "1", "--out", "r")
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / "r" / "dataset.json").read_text())
    assert info["images"] == 2 * (40 - 8 - 3)  # per class: 40, less 8 test and 3 dev
    assert info["class_names"] == ["bar", "ring"] and info["shape"] == [8, 8, 1]


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    mixed = tmp / "mixed"
    for name, size in (("a", 8), ("b", 9)):
        (mixed / "c").mkdir(parents=True, exist_ok=True)
        Image.new("L", (size, size)).save(mixed / "c" / f"{name}.png")
    corrupt = tmp / "corrupt" / "c"
    corrupt.mkdir(parents=True)
    Image.new("L", (8, 8)).save(corrupt / "good.png")
    (corrupt / "broken.png").write_bytes(b"\x89PNG not really")
    with h5py.File(tmp / "nolabels.h5", "w") as f:
        f["images"] = np.zeros((4, 8, 8, 1), np.uint8)
    tiny8 = (resources.files("datagen.builtin_recipes") / "tiny8.toml").read_text()
    (tmp / "bad.toml").write_text(tiny8.replace("act = \"tanh\"", "act = \"tanh\", colour = 1"))
    (tmp / "shape.toml").write_text(tiny8.replace("{ fc = 8, act = \"sigmoid\" }", "{ fc = 9, act = \"sigmoid\" }"))
    return {
        "unknown name": (["mnist-5", "--recipe", "tiny8"], "did you mean 'mnist-5k'"),
        "missing path": (["nope/dir", "--recipe", "tiny8"], "no such dataset or path"),
        "empty folder": (["empty", "--recipe", "tiny8"], "no images"),
        "mixed sizes": (["mixed", "--recipe", "tiny8"], "mixed image sizes"),
        "corrupt image": (["corrupt", "--recipe", "tiny8"], "broken.png"),
        "h5 without labels": (["nolabels.h5", "--recipe", "tiny8"], "labels"),
        "recipe unknown key": (["digits", "--recipe", "bad.toml"], "unknown key 'colour'"),
        "recipe shape mismatch": (["digits", "--recipe", "shape.toml"], "encoder"),
        "unknown recipe": (["digits", "--recipe", "tiny"], "unknown recipe"),
        "unknown --set key": (["digits", "--recipe", "tiny8", "--set", "train.lr_d=1"], "unknown recipe key"),
        "path without recipe": (["mixed"], "--recipe"),
        "no cuda": (["digits", "--recipe", "tiny8", "--device", "cuda"], "CUDA"),
        "offline torchvision": (["mnist", "--data-root", "dl", "--recipe", "tiny8"], "cannot download mnist into dl"),
        "wrong type in --set": (["digits", "--recipe", "tiny8", "--set", "train.kl_weight=abc"], "must be a number"),
        "bad betas": (["digits", "--recipe", "tiny8", "--set", "train.betas=[0.5]"], "two numbers"),
        "usage error": (["digits", "--recipe", "tiny8", "--batch-size", "1"], "--batch-size"),
        "markup in a name": (["x[/b]"], "x[/b]"),
    }


@pytest.mark.parametrize("case", [
    "unknown name", "missing path", "empty folder", "mixed sizes", "corrupt image", "h5 without labels",
    "recipe unknown key", "recipe shape mismatch", "unknown recipe", "unknown --set key", "path without recipe", "no cuda",
    "offline torchvision", "wrong type in --set", "bad betas", "usage error", "markup in a name"])
def test_bad_input_is_one_line_exit_2_and_leaves_no_run(cli, tmp_path, case):
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args, expected = _bad_inputs(tmp_path)[case]
    done = cli("train", *args, "--epochs", "1", "--out", "run")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_resume_with_another_recipe_or_into_an_existing_run(cli, run, tmp_path):
    r = run.name  # a finished 1-epoch tiny8 run on digits, in the folder `cli` runs in
    other = cli("train", "digits", "--recipe", "mnist-cpu", "--epochs", "2", "--resume", "--out", r)
    assert other.returncode == 2 and "trained with recipe 'tiny8'" in other.stderr
    again = cli(*TINY, "--epochs", "1", "--out", r)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    changed = cli("train", "--epochs", "2", "--resume", "--out", r, "--batch-size", "8")
    assert changed.returncode == 2 and "batch_size" in changed.stderr
    reseeded = cli("train", "--epochs", "2", "--resume", "--out", r, "--seed", "5")
    assert reseeded.returncode == 2 and "seed" in reseeded.stderr
    moved = cli("train", "mnist-5k", "--epochs", "2", "--resume", "--out", r)
    assert moved.returncode == 2 and "fingerprints differ" in moved.stderr
    # none of the refused resumes touched the finished run
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    into_full = cli(*TINY, "--epochs", "1", "--out", "notes")
    assert into_full.returncode == 2 and "not empty" in into_full.stderr


def test_checkpoints_load_weights_only(tiny_run, tmp_path):
    state = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    model = load_model(state)
    assert model.decode(torch.zeros(2, 8)).shape == (2, 1, 8, 8)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DatagenError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")


def test_mnist_5k_trains_and_resumes_from_the_command_line(cli, tmp_path):
    """The bundled mnist-5k end to end (4,000 train images, 28x28 conformed to tiny8's 8x8), resumed by the CLI
    with the dataset taken from the run. (mnist-cpu, its default recipe, is stepped in test_selfexgan.)"""
    first = cli("train", "mnist-5k", "--recipe", "tiny8", "--batch-size", "128", "--epochs", "1", "--out", "m")
    assert first.returncode == 0, first.stderr
    second = cli("train", "--epochs", "2", "--resume", "--out", "m")
    assert second.returncode == 0, second.stderr
    records = rundir.read_metrics(tmp_path / "m" / "metrics.jsonl")
    assert [r["epoch"] for r in records if r.get("event") == "epoch"] == [1, 2]
    assert records[-1]["step"] == 2 * (3600 // 128)  # mnist-5k's train split: 4000 less 400 dev
    assert json.loads((tmp_path / "m" / "dataset.json").read_text())["source"] == "mnist-5k"


def test_speed_flags_reach_the_nets_and_contiguous_nets_train_the_same_way_again(cli, tmp_path, monkeypatch):
    seen = []
    real_prepare = speed.prepare
    monkeypatch.setattr(speed, "prepare", lambda nets, how: (seen.append(how), real_prepare(nets, how)))
    first = training.fit(training.prepare(_opts(tmp_path / "a", epochs=1, channels_last=False)))
    second = training.fit(training.prepare(_opts(tmp_path / "b", epochs=1, channels_last=False)))
    assert first.status == second.status == "completed"
    assert seen[0] == speed.Speed(channels_last=False, compile=False, amp=False)
    assert _steps(tmp_path / "a") == _steps(tmp_path / "b")  # reproducible in either layout
    done = cli(*TINY, "--epochs", "1", "--no-channels-last", "--no-amp", "--dry-run")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_kill_9_before_the_first_checkpoint_then_the_same_command_starts_again(tmp_path):
    """SIGKILL during epoch 1: no checkpoint, so nothing to resume; the same command (no --resume) starts over."""
    proc = _train_in_background(tmp_path)
    _wait_for(proc, tmp_path / "r" / "metrics.jsonl", lambda records: len(records) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()
    again = training.fit(training.prepare(_opts(tmp_path / "r", epochs=1)))
    assert again.status == "completed" and (tmp_path / "r" / "checkpoints" / "last.pt").is_file()
