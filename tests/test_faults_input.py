"""Hostile and damaged input: malicious, truncated and corrupt checkpoints, truncated HDF5 seeds, images that fail to
decode. Each gets one line naming the problem and exit 2, and nothing runs or is written. (The other faults:
tests/test_faults_disk.py, tests/test_faults_signals.py; kill -9: tests/test_train.py, tests/test_augment.py,
tests/test_store.py.)"""

from __future__ import annotations

import pickle
import shutil

import h5py
import numpy as np
from PIL import Image


class _RunsCode:
    """A pickle that would create a file when unpickled: what a hostile 'checkpoint' does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _one_error_line(done, *words):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(cli, tmp_path):
    marker = tmp_path / "owned"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"recipe": _RunsCode(marker), "nets": {}}, protocol=2))
    for command in (("augment", "evil.pt", "--per-class", "2"), ("evaluate", "--run", "evil.pt"),
                    ("reconstruct", "evil.pt")):
        _one_error_line(cli(*command), "cannot read checkpoint", "evil.pt")
    assert not marker.exists()


def test_truncated_and_corrupt_checkpoints_are_one_line(cli, run, tmp_path):
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name in ("half.pt", "noise.pt"):
        _one_error_line(cli("augment", name, "--per-class", "2", "--no-filter"), "cannot read checkpoint", name)
    shutil.copytree(run, tmp_path / "r")
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 3])
    _one_error_line(cli("train", "--resume", "--out", "r", "--epochs", "2"), "cannot read checkpoint")


def test_truncated_hdf5_seeds_are_one_line(cli, run, tmp_path):
    labels = np.arange(200) % 10
    with h5py.File(tmp_path / "seeds.h5", "w") as f:
        f["images"] = np.random.default_rng(0).integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)
        f["labels"] = labels
    data = (tmp_path / "seeds.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    _one_error_line(cli("augment", str(run), "--per-class", "2", "--no-filter", "--seeds", "cut.h5", "--out", "o.h5"),
                    "cut.h5")
    _one_error_line(cli("train", "cut.h5", "--recipe", "tiny8", "--out", "t"), "cut.h5")
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "t").exists()


def test_an_image_that_fails_to_decode_is_named(cli, run, tmp_path):
    for label in ("a", "b"):
        (tmp_path / "seeds" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "seeds" / label / f"{i}.png")
    (tmp_path / "seeds" / "b" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    _one_error_line(cli("augment", str(run), "--per-class", "2", "--no-filter", "--seeds", "seeds", "--out", "o.h5"),
                    "9.png", "remove or replace the file")
    assert not (tmp_path / "o.h5").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_again(cli, tmp_path):
    """kill -9 (or a full disk) before the first checkpoint leaves run files but nothing to resume."""
    run = tmp_path / "r"
    (run / "samples").mkdir(parents=True)
    (run / "run.json").write_text('{"status": "running"}')
    (run / "recipe.json").write_text("{}")
    _one_error_line(cli("train", "--resume", "--out", "r"), "before its first checkpoint", "without --resume")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "run.json").write_text("{}")
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    _one_error_line(cli("train", "digits", "--recipe", "tiny8", "--epochs", "1", "--out", "mine"), "not empty")
    done = cli("train", "digits", "--recipe", "tiny8", "--epochs", "1", "--out", "r")
    assert done.returncode == 0, done.stderr
    assert (run / "checkpoints" / "last.pt").is_file() and "starting it again" in done.stdout + done.stderr
    (run / "checkpoints" / "last.pt").unlink()  # a finished run whose checkpoint was deleted is not cleared away
    _one_error_line(cli("train", "digits", "--recipe", "tiny8", "--epochs", "1", "--out", "r"), "not empty")
    assert (run / "metrics.jsonl").is_file()
